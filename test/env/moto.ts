/**
 * moto's server: a local SNS (and SQS) from PyPI, for the tests of publishing to a topic. Its
 * SNS delivers to SQS queues of the same server, raw or in a notification envelope, so one
 * moto holds a fleet's topic, its subscribed queues and the result queue. Pinned and installed
 * into the user's cache by scripts/moto-server.sh; started on 127.0.0.1 and a free port, under
 * the caller's directory (which its command line names, so reapAbandoned() finds it).
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { freePort, startProcess, waitUntil, type ManagedProcess } from "./process.ts";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

/** moto's region and account: the ARNs and queue URLs it makes name them. */
export const MOTO_REGION = "us-east-1";
export const MOTO_ACCOUNT = "123456789012";

export interface Moto {
  /** One endpoint for SNS and SQS: http://127.0.0.1:PORT. */
  endpoint: string;
  port: number;
  process: ManagedProcess;
  stop(): Promise<void>;
}

/** Installs moto (first time) or finds it; returns its virtualenv's python. */
export function ensureMoto(): string {
  const server = execFileSync("bash", [join(root, "scripts", "moto-server.sh"), "--prepare"], { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] }).trim();
  return join(dirname(server), "python");
}

/** Starts moto's server in `dir` (logs in `dir`/logs) on a free port, and waits until it answers. */
export async function startMoto(dir: string): Promise<Moto> {
  const python = ensureMoto();
  const port = await freePort();
  mkdirSync(join(dir, "logs"), { recursive: true });
  // A script of the directory's own, so that the server's command line names the directory.
  const script = join(dir, "moto-server.py");
  writeFileSync(script, "from moto.server import main\nmain()\n");
  const proc = startProcess("moto", python, [script, "-H", "127.0.0.1", "-p", String(port)], { logFile: join(dir, "logs", "moto.log"), cwd: dir });
  const endpoint = `http://127.0.0.1:${port}`;
  await waitUntil("moto", async () => (await fetch(`${endpoint}/moto-api/`)).ok, { timeoutMs: 60_000, process: proc });
  return { endpoint, port, process: proc, stop: () => proc.stop() };
}
