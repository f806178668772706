/**
 * Runs the real listener (listener.ts) as a child process against the test environment,
 * and reads its JSON log lines, so tests can send it signals (SIGTERM, SIGKILL) like a
 * kubelet would and wait for what it logs.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { testEnv } from "../env/testenv.ts";
import { awsTestEnv } from "./run.ts";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

export interface LogLine {
  level: string;
  time: string;
  msg: string;
  [key: string]: unknown;
}

export interface ListenerProcess {
  child: ChildProcess;
  lines: LogLine[];
  /** stdout lines that were not JSON, and all stderr. */
  other: string[];
  exited: Promise<number | string>;
  /** Resolves with the first log line (already seen or future) matching `predicate`. */
  waitForLog(predicate: (line: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  kill(signal?: NodeJS.Signals): void;
}

export interface StartListenerOptions {
  queueUrl: string;
  namespace: string;
  /** Extra KUBE_PICO_CD_* (or other) variables. */
  env?: Record<string, string>;
  args?: string[];
  /** Use this kubeconfig instead of the admin one. */
  kubeconfig?: string;
}

/** Environment of a listener in the test environment, fast settings for tests. */
export async function listenerEnv(options: StartListenerOptions): Promise<Record<string, string>> {
  const env = await testEnv();
  return {
    ...(await awsTestEnv()),
    KUBE_PICO_CD_QUEUE: options.queueUrl,
    KUBE_PICO_CD_NAMESPACE: options.namespace,
    KUBE_PICO_CD_KUBECTL: env.kubectl,
    KUBE_PICO_CD_KUBECONFIG: options.kubeconfig ?? env.kubeconfig,
    KUBE_PICO_CD_HTTP_PORT: "-1",
    KUBE_PICO_CD_WAIT_TIME_SECONDS: "1",
    KUBE_PICO_CD_LEASE_DURATION_SECONDS: "5",
    KUBE_PICO_CD_RETRY_BASE_SECONDS: "1",
    KUBE_PICO_CD_RETRY_MAX_SECONDS: "2",
    KUBE_PICO_CD_LOG_LEVEL: "debug",
    ...options.env,
  };
}

export async function startListener(options: StartListenerOptions): Promise<ListenerProcess> {
  const env = await listenerEnv(options);
  const child = spawn(process.execPath, [join(root, "listener.ts"), ...(options.args ?? [])], { env, stdio: ["ignore", "pipe", "pipe"] });
  const lines: LogLine[] = [];
  const other: string[] = [];
  const waiters: { predicate: (l: LogLine) => boolean; resolve: (l: LogLine) => void }[] = [];
  let buffer = "";
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
    buffer += chunk;
    let newline: number;
    while ((newline = buffer.indexOf("\n")) >= 0) {
      const text = buffer.slice(0, newline);
      buffer = buffer.slice(newline + 1);
      let line: LogLine;
      try {
        line = JSON.parse(text) as LogLine;
      } catch {
        other.push(text);
        continue;
      }
      lines.push(line);
      for (const w of [...waiters]) {
        if (w.predicate(line)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(line);
        }
      }
    }
  });
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => other.push(chunk));
  const exited = new Promise<number | string>((resolve) => child.once("exit", (code, signal) => resolve(code ?? signal ?? "unknown")));
  return {
    child,
    lines,
    other,
    exited,
    kill: (signal = "SIGTERM") => void child.kill(signal),
    waitForLog(predicate, timeoutMs = 60_000) {
      const seen = lines.find(predicate);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          reject(new Error(`no matching listener log line within ${timeoutMs} ms; last lines:\n${lines.slice(-15).map((l) => JSON.stringify(l)).join("\n")}\n${other.join("")}`));
        }, timeoutMs);
        waiters.push({
          predicate,
          resolve: (l) => {
            clearTimeout(timer);
            resolve(l);
          },
        });
      });
    },
  };
}

/** Runs `listener --once` to completion and returns its log. */
export async function runListenerOnce(options: StartListenerOptions): Promise<{ code: number | string; lines: LogLine[]; other: string[] }> {
  const listener = await startListener({ ...options, env: { KUBE_PICO_CD_ONCE: "true", ...options.env } });
  const code = await listener.exited;
  return { code, lines: listener.lines, other: listener.other };
}
