/**
 * Rendering a kustomization directory with `kubectl kustomize`, which runs entirely on the
 * client (no cluster needed). The argv is an array, never a shell string.
 */
import { spawn } from "node:child_process";
import { KubectlError } from "./errors.ts";

/** Names kubectl recognises as a kustomization file, in its order of preference. */
export const KUSTOMIZATION_FILE_NAMES = ["kustomization.yaml", "kustomization.yml", "Kustomization"] as const;

/** Options of {@link renderKustomization}. */
export interface RenderKustomizationOptions {
  /** The kubectl binary (a name looked up on PATH, or a path). Default `"kubectl"`. */
  kubectl?: string;
  /** Aborts the render; the child is killed. */
  signal?: AbortSignal;
  /** Kill kubectl after this long. Default 120000 ms. */
  timeoutMs?: number;
}

/** Largest rendered output accepted, in bytes; far above any message SQS accepts. */
const MAX_OUTPUT_BYTES = 256 * 1024 * 1024;
const MAX_STDERR_BYTES = 64 * 1024;

/**
 * Runs `kubectl kustomize <dir>` and returns the rendered multi-document YAML.
 *
 * @throws {KubectlError} when kubectl is missing (`reason: "spawn"`), exits non-zero, times
 * out, is aborted or prints more than 256 MiB.
 */
export function renderKustomization(dir: string, options: RenderKustomizationOptions = {}): Promise<string> {
  const { kubectl = "kubectl", signal, timeoutMs = 120_000 } = options;
  const argv = [kubectl, "kustomize", dir];
  return new Promise((resolvePromise, reject) => {
    const fail = (
      message: string,
      reason: KubectlError["reason"],
      details: { exitCode: number | null; signal: string | null; stderr: string },
      cause?: unknown,
    ) =>
      reject(
        new KubectlError(message, { argv, ...details, reason, serverReason: undefined }, cause === undefined ? {} : { cause }),
      );
    if (signal?.aborted) {
      fail(`Cannot render the kustomization in ${dir}: aborted`, "aborted", { exitCode: null, signal: null, stderr: "" });
      return;
    }
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", "pipe", "pipe"] });
    const stdout: Buffer[] = [];
    let stdoutBytes = 0;
    let stderr = "";
    let ended: KubectlError["reason"] | undefined;
    const stop = (reason: KubectlError["reason"]) => {
      ended ??= reason;
      child.kill("SIGKILL");
    };
    const timer = setTimeout(() => stop("timeout"), timeoutMs);
    const onAbort = () => stop("aborted");
    signal?.addEventListener("abort", onAbort, { once: true });
    child.stdout.on("data", (chunk: Buffer) => {
      stdoutBytes += chunk.length;
      if (stdoutBytes > MAX_OUTPUT_BYTES) stop("output-limit");
      else stdout.push(chunk);
    });
    child.stderr.on("data", (chunk: Buffer) => {
      if (stderr.length < MAX_STDERR_BYTES) stderr += chunk.toString("utf8");
    });
    child.on("error", (error: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      const why =
        error.code === "ENOENT"
          ? `kubectl not found at "${kubectl}" (install kubectl, pass --kubectl PATH, or use --no-kustomize)`
          : error.message;
      fail(`Cannot render the kustomization in ${dir}: ${why}`, "spawn", { exitCode: null, signal: null, stderr }, error);
    });
    child.on("close", (exitCode, exitSignal) => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      const details = { exitCode, signal: exitSignal, stderr: stderr.slice(0, MAX_STDERR_BYTES) };
      if (ended === "timeout") {
        fail(`Cannot render the kustomization in ${dir}: kubectl did not finish within ${timeoutMs} ms`, "timeout", details);
      } else if (ended === "aborted") {
        fail(`Cannot render the kustomization in ${dir}: aborted`, "aborted", details);
      } else if (ended === "output-limit") {
        fail(`Cannot render the kustomization in ${dir}: output exceeds ${MAX_OUTPUT_BYTES} bytes`, "output-limit", details);
      } else if (exitCode !== 0) {
        const firstLine = stderr.trim().split("\n")[0] ?? "";
        fail(
          `Cannot render the kustomization in ${dir}: ${argv.join(" ")} exited with code ${exitCode ?? exitSignal}` +
            (firstLine ? `: ${firstLine}` : ""),
          "exit",
          details,
        );
      } else {
        resolvePromise(Buffer.concat(stdout).toString("utf8"));
      }
    });
  });
}
