/**
 * Rendering a kustomization directory with `kubectl kustomize`, which runs entirely on the
 * client (no cluster needed). Goes through {@link runKubectl} like every kubectl call.
 */
import { KubectlError } from "../errors.ts";
import { runKubectl } from "../kube/kubectl.ts";

/** Names kubectl recognises as a kustomization file, in its order of preference. */
export const KUSTOMIZATION_FILE_NAMES = ["kustomization.yaml", "kustomization.yml", "Kustomization"] as const;

/** Options of {@link renderKustomization}. */
export interface RenderKustomizationOptions {
  /** The kubectl binary (a name looked up on PATH, or a path). Default `"kubectl"`. */
  kubectl?: string;
  /** Aborts the render; kubectl is killed. */
  signal?: AbortSignal;
  /** Kill kubectl after this long. Default 120000 ms. */
  timeoutMs?: number;
  /** How the directory is named in error messages. Default `dir`. */
  label?: string;
}

/** Largest rendered output accepted, in bytes; far above any message SQS accepts. */
const MAX_OUTPUT_BYTES = 256 * 1024 * 1024;

/**
 * Runs `kubectl kustomize <dir>` and returns the rendered multi-document YAML.
 *
 * @throws {KubectlError} when kubectl is missing (`reason: "spawn"`, with a message saying
 * how to fix it), exits non-zero, times out, is aborted or prints more than 256 MiB.
 */
export async function renderKustomization(dir: string, options: RenderKustomizationOptions = {}): Promise<string> {
  const { kubectl = "kubectl", signal, timeoutMs = 120_000, label = dir } = options;
  try {
    const result = await runKubectl(["kustomize", dir], {
      kubectlPath: kubectl,
      signal,
      timeoutMs,
      maxStdoutBytes: MAX_OUTPUT_BYTES,
    });
    return result.stdout;
  } catch (error) {
    if (!(error instanceof KubectlError)) throw error;
    const why =
      error.reason === "spawn"
        ? `kubectl could not be started as "${kubectl}" (install kubectl, pass --kubectl PATH, or use --no-kustomize)`
        : error.message;
    throw new KubectlError(
      `Cannot render the kustomization in ${label}: ${why}`,
      {
        argv: error.argv,
        exitCode: error.exitCode,
        signal: error.signal,
        stderr: error.stderr,
        reason: error.reason,
        serverReason: error.serverReason,
      },
      { cause: error },
    );
  }
}
