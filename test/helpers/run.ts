/** Runs one of the project's programs as a child process, as CI or an operator would, and collects its output. */
import { spawn } from "node:child_process";
import { testEnv } from "../env/testenv.ts";

export interface ProcessRun {
  /** Exit code; null when a signal ended it. */
  code: number | null;
  stdout: string;
  stderr: string;
  elapsedMs: number;
}

/** Runs `argv` to completion with exactly `env` (nothing inherited). */
export function runProcess(argv: readonly string[], options: { env: Record<string, string>; cwd?: string }): Promise<ProcessRun> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { cwd: options.cwd, env: options.env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
    child.once("error", reject);
    child.once("close", (code) => resolve({ code, stdout, stderr, elapsedMs: Math.round(performance.now() - started) }));
  });
}

/** A clean environment that reaches the test ElasticMQ with dummy credentials and never a real AWS account. */
export async function awsTestEnv(): Promise<Record<string, string>> {
  const env = await testEnv();
  return {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    HOME: process.env.HOME ?? "/tmp",
    AWS_ACCESS_KEY_ID: "test",
    AWS_SECRET_ACCESS_KEY: "test",
    AWS_REGION: env.region,
    AWS_EC2_METADATA_DISABLED: "true",
    KUBE_PICO_CD_ENDPOINT_URL: env.sqsEndpoint,
  };
}
