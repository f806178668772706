/**
 * The one way kube-pico-cd talks to Kubernetes: the kubectl binary, started with an argv
 * array (never a shell string). Going through kubectl gives every authentication method
 * for free: the service account in a pod, KUBECONFIG with exec plugins on EKS, and so on.
 *
 * Runs under Bun, Node and Deno: only `node:` built-ins.
 */
import { Buffer } from "node:buffer";
import { spawn } from "node:child_process";
import { KubectlError } from "../errors.ts";

/** Which kubectl to run and against which cluster; shared by every module that calls kubectl. */
export interface KubectlTarget {
  /** Path or name (looked up on PATH) of the kubectl binary. */
  kubectlPath: string;
  /**
   * Kubeconfig file, passed as `--kubeconfig`. When absent kubectl decides as usual:
   * `KUBECONFIG`, then `~/.kube/config`, then the in-cluster service account.
   */
  kubeconfig?: string | undefined;
  /**
   * Global flags placed before the command's own arguments on every call, for example
   * `["--as=system:serviceaccount:ns:name"]` or `["--request-timeout=10s"]`.
   */
  extraArgs?: readonly string[] | undefined;
}

/** Options of {@link runKubectl}. */
export interface RunKubectlOptions extends KubectlTarget {
  /** Written to kubectl's standard input, which is then closed. Never logged nor kept in errors. */
  stdin?: string | Uint8Array | undefined;
  /** Aborting kills kubectl (SIGTERM, then SIGKILL after `killGraceMs`). */
  signal?: AbortSignal | undefined;
  /** Kill kubectl after this many milliseconds. Default: no timeout. */
  timeoutMs?: number | undefined;
  /** Milliseconds between SIGTERM and SIGKILL when killing. Default 5000. */
  killGraceMs?: number | undefined;
  /** Fail (and kill kubectl) when stdout grows past this many bytes. Default 64 MiB. */
  maxStdoutBytes?: number | undefined;
  /** Keep at most this many bytes of stderr; the rest is dropped. Default 64 KiB. */
  maxStderrBytes?: number | undefined;
}

/** What a successful kubectl run produced. */
export interface KubectlResult {
  /** The full argv, kubectl binary first. */
  argv: readonly string[];
  stdout: string;
  stderr: string;
  durationMs: number;
}

const defaults = {
  killGraceMs: 5_000,
  drainMs: 2_000,
  maxStdoutBytes: 64 * 1024 * 1024,
  maxStderrBytes: 64 * 1024,
} as const;

/**
 * Builds the argv of a kubectl call: binary, `--kubeconfig`, the target's extra flags, then
 * `args`. Exported so tests and logs can show exactly what runs.
 */
export function kubectlArgv(args: readonly string[], target: KubectlTarget): string[] {
  const { kubectlPath, kubeconfig, extraArgs = [] } = target;
  return [kubectlPath, ...(kubeconfig === undefined ? [] : [`--kubeconfig=${kubeconfig}`]), ...extraArgs, ...args];
}

/**
 * The Kubernetes status reason in kubectl's stderr, e.g. "NotFound" from
 * `Error from server (NotFound): configmaps "x" not found`, or "Invalid" from
 * `The ConfigMap "X" is invalid: …` (kubectl prints validation failures without the
 * prefix). Undefined when there is none.
 */
export function serverReasonOf(stderr: string): string | undefined {
  const reason = /Error from server \(([A-Za-z]+)\)/.exec(stderr)?.[1];
  if (reason !== undefined) return reason;
  return /^The [A-Za-z0-9.]+ "[^"]*" is invalid: /m.test(stderr) ? "Invalid" : undefined;
}

/**
 * Runs kubectl with `args` and resolves with its output when it exits 0.
 *
 * @throws {KubectlError} when kubectl cannot be started, exits non-zero, is killed by the
 * timeout or the signal, or writes more than `maxStdoutBytes` to stdout. The promise
 * settles only after the process has exited.
 */
export function runKubectl(args: readonly string[], options: RunKubectlOptions): Promise<KubectlResult> {
  const {
    stdin,
    signal,
    timeoutMs,
    killGraceMs = defaults.killGraceMs,
    maxStdoutBytes = defaults.maxStdoutBytes,
    maxStderrBytes = defaults.maxStderrBytes,
  } = options;
  const { drainMs } = defaults;
  const argv = kubectlArgv(args, options);
  const [command, ...rest] = argv as [string, ...string[]];
  if (timeoutMs !== undefined && !(Number.isFinite(timeoutMs) && timeoutMs > 0)) {
    throw new RangeError(`Cannot run kubectl as 'timeoutMs' must be a positive finite number: current value is ${timeoutMs}`);
  }
  const started = performance.now();
  const fail = (
    reason: KubectlError["reason"],
    what: string,
    details: { exitCode: number | null; signal: string | null; stderr: string },
    cause?: unknown,
  ): KubectlError => {
    const serverReason = serverReasonOf(details.stderr);
    const firstLines = details.stderr.trim().split("\n").slice(0, 3).join(" | ");
    const message = `Cannot run \`${describeArgv(argv)}\`: ${what}${firstLines === "" ? "" : `: ${firstLines}`}`;
    return new KubectlError(message, { argv, ...details, reason, serverReason }, cause === undefined ? undefined : { cause });
  };

  if (signal?.aborted) {
    return Promise.reject(fail("aborted", "aborted before start", { exitCode: null, signal: null, stderr: "" }, signal.reason));
  }

  return new Promise<KubectlResult>((resolve, reject) => {
    const child = spawn(command, rest, { stdio: ["pipe", "pipe", "pipe"], windowsHide: true });
    const stdoutChunks: Uint8Array[] = [];
    let stdoutBytes = 0;
    const stderrChunks: Uint8Array[] = [];
    let stderrBytes = 0;
    let stderrDropped = 0;
    let ended: { reason: "timeout" | "aborted" | "output-limit"; cause?: unknown } | undefined;
    let spawnError: Error | undefined;
    let killTimer: ReturnType<typeof setTimeout> | undefined;
    let timeoutTimer: ReturnType<typeof setTimeout> | undefined;

    const kill = (reason: "timeout" | "aborted" | "output-limit", cause?: unknown) => {
      if (ended !== undefined) return;
      ended = cause === undefined ? { reason } : { reason, cause };
      child.kill("SIGTERM");
      killTimer = setTimeout(() => child.kill("SIGKILL"), killGraceMs);
    };
    const onAbort = () => kill("aborted", signal?.reason);
    signal?.addEventListener("abort", onAbort, { once: true });
    if (timeoutMs !== undefined) timeoutTimer = setTimeout(() => kill("timeout"), timeoutMs);

    child.stdout.on("data", (chunk: Uint8Array) => {
      stdoutBytes += chunk.byteLength;
      if (stdoutBytes > maxStdoutBytes) {
        kill("output-limit");
        return;
      }
      stdoutChunks.push(chunk);
    });
    child.stderr.on("data", (chunk: Uint8Array) => {
      const room = maxStderrBytes - stderrBytes;
      if (room <= 0) {
        stderrDropped += chunk.byteLength;
        return;
      }
      const kept = chunk.byteLength <= room ? chunk : chunk.subarray(0, room);
      stderrChunks.push(kept);
      stderrBytes += kept.byteLength;
      stderrDropped += chunk.byteLength - kept.byteLength;
    });
    // kubectl may exit before reading all of stdin (bad flag, failed auth): EPIPE is expected
    // then and the exit code tells what happened.
    child.stdin.on("error", () => {});
    let settled = false;
    const cleanUp = () => {
      settled = true;
      signal?.removeEventListener("abort", onAbort);
      clearTimeout(timeoutTimer);
      clearTimeout(killTimer);
    };
    child.on("error", (error) => {
      spawnError = error;
      // A process that never started emits no reliable "close" on every runtime.
      if (child.pid === undefined && !settled) {
        cleanUp();
        reject(fail("spawn", `cannot start ${command}: ${error.message}`, { exitCode: null, signal: null, stderr: "" }, error));
      }
    });
    // "close" waits for every holder of kubectl's stdout and stderr, which includes a
    // grandchild (an exec credential plugin) that outlives a killed kubectl. Once kubectl
    // itself has exited, give the pipes a moment to drain, then close them from our side.
    let drainTimer: ReturnType<typeof setTimeout> | undefined;
    child.on("exit", () => {
      drainTimer = setTimeout(() => {
        child.stdout.destroy();
        child.stderr.destroy();
      }, drainMs);
    });
    child.on("close", (code, killedBy) => {
      clearTimeout(drainTimer);
      if (settled) return;
      cleanUp();
      const stderr =
        Buffer.concat(stderrChunks).toString("utf8") + (stderrDropped > 0 ? `\n[${stderrDropped} more bytes of stderr dropped]` : "");
      const details = { exitCode: code, signal: killedBy, stderr };
      if (spawnError !== undefined && code === null && killedBy === null) {
        // Started, then failed in a way only the "error" event reports.
        reject(fail("spawn", `cannot start ${command}: ${spawnError.message}`, details, spawnError));
      } else if (ended?.reason === "timeout") {
        reject(fail("timeout", `timed out after ${timeoutMs} ms`, details));
      } else if (ended?.reason === "aborted") {
        reject(fail("aborted", "aborted", details, ended.cause));
      } else if (ended?.reason === "output-limit") {
        reject(fail("output-limit", `stdout exceeded ${maxStdoutBytes} bytes`, details));
      } else if (code !== 0) {
        reject(fail("exit", code === null ? `killed by ${killedBy}` : `exit code ${code}`, details));
      } else {
        resolve({
          argv,
          stdout: Buffer.concat(stdoutChunks).toString("utf8"),
          stderr,
          durationMs: Math.round(performance.now() - started),
        });
      }
    });
    if (child.stdin !== null) {
      if (stdin === undefined) child.stdin.end();
      else child.stdin.end(stdin);
    }
  });
}

/** argv as one readable line for messages: binary name only, arguments quoted when needed. */
function describeArgv(argv: readonly string[]): string {
  return argv
    .map((arg, i) => (i === 0 ? (arg.split("/").pop() ?? arg) : arg))
    .map((arg) => (/^[\w@%+=:,./-]+$/.test(arg) ? arg : JSON.stringify(arg)))
    .join(" ");
}
