/**
 * The error tree of kube-pico-cd. Every error a user may see is a subclass of
 * {@link KubePicoCdError}: the entry scripts print those as one line and anything else in
 * full, because an unknown error is a bug and its stack is what a maintainer needs.
 *
 * Messages say what could not be done, to what, and why.
 */

/** The `code` of a Node.js system error (`ENOENT`, `EACCES`, ...), if it has one. */
export function errorCode(error: unknown): string | undefined {
  return typeof error === "object" && error !== null && typeof (error as { code?: unknown }).code === "string" ? (error as { code: string }).code : undefined;
}

/** The message of a caught value: an Error's message, or the text of anything else thrown. */
export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * {@link errorMessage} with the error's name in front when it says more than "Error": the AWS
 * SDK's errors are named by their code ("QueueDoesNotExist: …").
 */
export function namedErrorMessage(error: unknown): string {
  return error instanceof Error && error.name && error.name !== "Error" ? `${error.name}: ${error.message}` : errorMessage(error);
}

/** Base class of every known error; `name` is constant per subclass so it survives minifying. */
export class KubePicoCdError extends Error {
  override name = "KubePicoCdError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** A setting (flag or environment variable) is missing or invalid; one line per problem. */
export class ConfigError extends KubePicoCdError {
  override name = "ConfigError";
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
    this.problems = problems;
  }
}

/**
 * A kubectl invocation did not succeed: it could not be started, exited non-zero, was
 * killed after its timeout, was aborted, or wrote more output than allowed. Carries the
 * exact argv (never stdin, which may hold manifests or Secret data), the exit code and stderr.
 */
export class KubectlError extends KubePicoCdError {
  override name = "KubectlError";
  /** The full argv, kubectl binary first. */
  readonly argv: readonly string[];
  /** Exit code, or null when the process was killed by a signal or never started. */
  readonly exitCode: number | null;
  /** The signal that ended the process, if any. */
  readonly signal: string | null;
  /** Standard error as captured (capped; see `runKubectl`). */
  readonly stderr: string;
  /** Why it failed, beyond the exit code. */
  readonly reason: "exit" | "spawn" | "timeout" | "aborted" | "output-limit";
  /** The Kubernetes status reason kubectl printed (`Error from server (NotFound): …`), if any. */
  readonly serverReason: string | undefined;
  constructor(
    message: string,
    details: {
      argv: readonly string[];
      exitCode: number | null;
      signal: string | null;
      stderr: string;
      reason: KubectlError["reason"];
      serverReason: string | undefined;
    },
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.argv = details.argv;
    this.exitCode = details.exitCode;
    this.signal = details.signal;
    this.stderr = details.stderr;
    this.reason = details.reason;
    this.serverReason = details.serverReason;
  }
}

/** The status the Kubernetes API server answered with (`metav1.Status`), the parts we use. */
export interface KubeStatus {
  /** HTTP status code, e.g. 404, 409, 422. */
  code: number;
  /** e.g. "NotFound", "Conflict", "AlreadyExists", "Invalid", "Forbidden"; "" when none was given. */
  reason: string;
  message: string;
  /** `details` of the Status (name, kind, causes), as sent. */
  details?: unknown;
}

/**
 * The API server answered a request with an error status. Callers match on `status.reason`
 * and `status.code`, never on the text.
 */
export class KubeApiError extends KubePicoCdError {
  override name = "KubeApiError";
  readonly method: string;
  readonly path: string;
  readonly status: KubeStatus;
  constructor(method: string, path: string, status: KubeStatus) {
    super(`Kubernetes API ${method} ${path} failed: ${status.code}${status.reason === "" ? "" : ` ${status.reason}`}: ${status.message}`);
    this.method = method;
    this.path = path;
    this.status = status;
  }
}

/**
 * The API server could not be asked: connection refused or reset, DNS, TLS, a timeout, or an
 * answer that is not an API answer (a 5xx from a proxy, HTML). Not the request's fault: retry later.
 */
export class KubeUnreachableError extends KubePicoCdError {
  override name = "KubeUnreachableError";
  readonly method: string;
  readonly path: string;
  constructor(method: string, path: string, why: string, options?: { cause?: unknown }) {
    super(`Cannot reach the Kubernetes API server for ${method} ${path}: ${why}`, options);
    this.method = method;
    this.path = path;
  }
}

/** Credentials for the API server could not be loaded (kubeconfig, service account, exec plugin). */
export class KubeConfigError extends KubePicoCdError {
  override name = "KubeConfigError";
}

/**
 * The version record could not be read (forbidden, API server down, unparsable content).
 * Not the same as "no record yet": the caller must apply nothing and leave the message.
 */
export class StateReadError extends KubePicoCdError {
  override name = "StateReadError";
  readonly namespace: string;
  readonly configMapName: string;
  constructor(message: string, where: { namespace: string; configMapName: string }, options?: { cause?: unknown }) {
    super(message, options);
    this.namespace = where.namespace;
    this.configMapName = where.configMapName;
  }
}

/** The version record changed (or appeared, or vanished) since it was read: read it again. */
export class StateConflictError extends KubePicoCdError {
  override name = "StateConflictError";
  readonly namespace: string;
  readonly configMapName: string;
  constructor(message: string, where: { namespace: string; configMapName: string }, options?: { cause?: unknown }) {
    super(message, options);
    this.namespace = where.namespace;
    this.configMapName = where.configMapName;
  }
}

/** The version record could not be written for a reason other than a conflict. */
export class StateWriteError extends KubePicoCdError {
  override name = "StateWriteError";
  readonly namespace: string;
  readonly configMapName: string;
  constructor(message: string, where: { namespace: string; configMapName: string }, options?: { cause?: unknown }) {
    super(message, options);
    this.namespace = where.namespace;
    this.configMapName = where.configMapName;
  }
}

/** The deploy lock (a coordination.k8s.io/v1 Lease) could not be read, taken or released. */
export class LockError extends KubePicoCdError {
  override name = "LockError";
  readonly namespace: string;
  readonly leaseName: string;
  constructor(message: string, where: { namespace: string; leaseName: string }, options?: { cause?: unknown }) {
    super(message, options);
    this.namespace = where.namespace;
    this.leaseName = where.leaseName;
  }
}

/** A held lock was lost (taken over, or not renewed in time); the reason of the lock's `lost` signal. */
export class LockLostError extends KubePicoCdError {
  override name = "LockLostError";
  readonly namespace: string;
  readonly leaseName: string;
  readonly holderIdentity: string;
  constructor(
    message: string,
    where: { namespace: string; leaseName: string; holderIdentity: string },
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.namespace = where.namespace;
    this.leaseName = where.leaseName;
    this.holderIdentity = where.holderIdentity;
  }
}

/** Why {@link decodeMessage} rejected a message body; each one is a different fix. */
export type MessageRejectedReason =
  | "invalid-json"
  | "schema"
  | "unsupported-version"
  | "decode"
  | "too-large"
  | "digest-mismatch"
  | "invalid-manifests"
  // A build stamped further ahead of the clocks than the allowed skew (checked before inflating):
  | "future-build"
  // Trust (lib/listener/trust.ts, checked before inflating) and policy (lib/listener/policy.ts, after decoding):
  | "unsigned"
  | "malformed-signature"
  | "unknown-key"
  | "bad-signature"
  | "policy"
  // The listener's own checks of what a decoded bundle holds and whom it is for (lib/listener/deployer.ts):
  | "list-object"
  | "target"
  | "other-targets"
  | "require-target"
  | "empty-bundle"
  | "protected-object"
  // An object of the bundle is owned by another app (lib/listener/ownership.ts):
  | "ownership-conflict"
  // An app's scope in the apps configuration (lib/listener/scope.ts); a signer outside the app's keys is `unknown-key`:
  | "unknown-app"
  | "scope";

/**
 * A message body is not something this reader can apply: not JSON, not our shape, a version
 * it does not understand, a payload that does not inflate, is too large, does not match its
 * digest, or holds invalid objects. The message names what is wrong; `reason` says which.
 */
export class MessageRejectedError extends KubePicoCdError {
  override name = "MessageRejectedError";
  readonly reason: MessageRejectedReason;
  constructor(reason: MessageRejectedReason, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.reason = reason;
  }
}

/**
 * The manifests to publish are not a valid bundle: YAML errors (with file:line:column),
 * objects lacking apiVersion/kind/metadata.name, duplicates, or an empty bundle.
 * `problems` holds every problem found, one line each; nothing was sent.
 */
export class BundleError extends KubePicoCdError {
  override name = "BundleError";
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    const shown = problems.slice(0, 50);
    const more = problems.length - shown.length;
    super(
      problems.length === 1
        ? `Cannot bundle the manifests: ${problems[0]}`
        : `Cannot bundle the manifests: ${problems.length} problems:\n${shown.map((p) => `  - ${p}`).join("\n")}` +
          (more > 0 ? `\n  … and ${more} more` : ""),
    );
    this.problems = problems;
  }
}

/** The encoded message is larger than the queue accepts; it is never truncated. */
export class MessageTooLargeError extends KubePicoCdError {
  override name = "MessageTooLargeError";
  readonly bodyBytes: number;
  readonly limitBytes: number;
  constructor(message: string, sizes: { bodyBytes: number; limitBytes: number }) {
    super(message);
    this.bodyBytes = sizes.bodyBytes;
    this.limitBytes = sizes.limitBytes;
  }
}

/** A queue could not be resolved or a message could not be sent to it. */
export class QueueSendError extends KubePicoCdError {
  override name = "QueueSendError";
  /** The queue as given (URL or name), or the topic's ARN. */
  readonly queue: string;
  constructor(message: string, queue: string, options?: { cause?: unknown }) {
    super(message, options);
    this.queue = queue;
  }
}

/**
 * The bundle kept for drift correction (a Secret in the listener's namespace, lib/listener/drift.ts)
 * cannot be read or does not decode; a drift pass then applies nothing.
 */
export class KeptBundleError extends KubePicoCdError {
  override name = "KeptBundleError";
  readonly namespace: string;
  readonly secretName: string;
  constructor(message: string, where: { namespace: string; secretName: string }, options?: { cause?: unknown }) {
    super(message, options);
    this.namespace = where.namespace;
    this.secretName = where.secretName;
  }
}

/** Why lib/wire/result.ts refused a result body. */
export type ResultRejectedReason = "invalid-json" | "schema" | "unsupported-kind" | "unsupported-version";

/** A body is not a result message (lib/wire/result.ts) this reader understands; `reason` says why. */
export class ResultRejectedError extends KubePicoCdError {
  override name = "ResultRejectedError";
  readonly reason: ResultRejectedReason;
  constructor(reason: ResultRejectedReason, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.reason = reason;
  }
}
