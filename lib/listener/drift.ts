/**
 * Drift correction, off by default (`--drift-interval-minutes`): the listener keeps the last
 * applied bundle in the cluster and re-applies it every interval with the deployer's
 * server-side apply, which puts back every field of ours that someone changed by hand, as
 * Flux's periodic reconciliation does.
 *
 * Keeping the bundle (after each successful apply, still under the deploy lock):
 *
 * - in a Secret in the listener's namespace (default "kube-pico-cd-bundle"), not a
 *   ConfigMap: bundles may hold Secrets, and whoever may read ConfigMaps there must not
 *   read their data;
 * - as gzip'd JSON of the objects, with the build id and digest in annotations;
 * - only when the gzip'd objects fit in {@link MAX_KEPT_BUNDLE_BYTES} (900 KiB): the API
 *   server refuses Secrets of more than 1 MiB of data. A bundle over it is applied but not
 *   kept, and the older kept bundle is deleted, so that no pass re-applies an outdated
 *   build; the outcome gets a warning.
 *
 * A pass takes the deploy lock without waiting (a deploy in hand wins, the pass is skipped),
 * reads the version record and the kept bundle, and re-applies the bundle only when its
 * digest is the record's current digest: never anything but the current build. Passes are
 * logged and told to `onPass` (metrics), not written to the record's history, where they
 * would push deploys out.
 */
import { Buffer } from "node:buffer";
import { gunzipSync, gzipSync } from "node:zlib";
import { z } from "zod";
import { applyObjects } from "../kube/apply.ts";
import { delay } from "../backoff.ts";
import { kubeObjectProblem, type KubeObject } from "../manifests/bundle.ts";
import { errorMessage, KeptBundleError, KubectlError } from "../errors.ts";
import { runKubectl, type KubectlTarget } from "../kube/kubectl.ts";
import { tryAcquireLock, type HeldLock } from "../kube/lease.ts";
import type { Logger } from "../log.ts";
import type { DecodedMessage } from "../wire/message.ts";
import { DEFAULT_MAX_DECOMPRESSED_BYTES, sha256Hex } from "../wire/message.ts";
import { redactError } from "./policy.ts";
import { readState, type CurrentBuild } from "../kube/record.ts";

/** Default name of the Secret that keeps the last applied bundle. */
export const DEFAULT_BUNDLE_SECRET = "kube-pico-cd-bundle";
/**
 * Largest gzip'd bundle kept, in bytes: 900 KiB, under the API server's 1 MiB limit of a
 * Secret's data with room for the other keys.
 */
export const MAX_KEPT_BUNDLE_BYTES = 900 * 1024;
/** The `format` value of the kept bundle's Secret that this module writes and reads. */
export const KEPT_BUNDLE_FORMAT = "1";
/** Data key of the gzip'd JSON array of objects. */
export const KEPT_OBJECTS_KEY = "objects.json.gz";

/** Annotations of the kept bundle's Secret. */
export const KEPT_ANNOTATIONS = {
  buildId: "kube-pico-cd.io/build-id",
  buildTimestampMs: "kube-pico-cd.io/build-timestamp-ms",
  digest: "kube-pico-cd.io/digest",
  objects: "kube-pico-cd.io/objects",
  /** SHA-256 of the uncompressed JSON: a corrupted or hand-edited copy is never applied. */
  objectsSha256: "kube-pico-cd.io/objects-sha256",
} as const;

/** Where the kept bundle lives. */
export interface KeptBundleWhere {
  namespace: string;
  /** Secret name. Default {@link DEFAULT_BUNDLE_SECRET}. */
  name?: string;
}

/** What {@link encodeKeptBundle} decided. */
export type EncodedKeptBundle =
  | { kind: "secret"; secret: Record<string, unknown>; compressedBytes: number }
  | { kind: "too-large"; compressedBytes: number };

/**
 * The Secret that keeps `decoded`'s objects, or "too-large" when the gzip'd objects are over
 * `limitBytes` (default {@link MAX_KEPT_BUNDLE_BYTES}).
 */
export function encodeKeptBundle(decoded: Pick<DecodedMessage, "objects" | "digest" | "build">, where: KeptBundleWhere & { limitBytes?: number }): EncodedKeptBundle {
  const { namespace, name = DEFAULT_BUNDLE_SECRET, limitBytes = MAX_KEPT_BUNDLE_BYTES } = where;
  const json = Buffer.from(JSON.stringify(decoded.objects), "utf8");
  const gzipped = gzipSync(json, { level: 9 });
  if (gzipped.length > limitBytes) return { kind: "too-large", compressedBytes: gzipped.length };
  const secret = {
    apiVersion: "v1",
    kind: "Secret",
    type: "Opaque",
    metadata: {
      name,
      namespace,
      labels: { "app.kubernetes.io/managed-by": "kube-pico-cd", "app.kubernetes.io/component": "bundle" },
      annotations: {
        [KEPT_ANNOTATIONS.buildId]: decoded.build.id,
        [KEPT_ANNOTATIONS.buildTimestampMs]: String(decoded.build.timestampMs),
        [KEPT_ANNOTATIONS.digest]: decoded.digest,
        [KEPT_ANNOTATIONS.objects]: String(decoded.objects.length),
        [KEPT_ANNOTATIONS.objectsSha256]: sha256Hex(json),
      },
    },
    data: {
      format: Buffer.from(KEPT_BUNDLE_FORMAT, "utf8").toString("base64"),
      [KEPT_OBJECTS_KEY]: gzipped.toString("base64"),
    },
  };
  return { kind: "secret", secret, compressedBytes: gzipped.length };
}

/** The outcome warning of a bundle too large to keep. */
export function tooLargeWarning(compressedBytes: number, limitBytes: number = MAX_KEPT_BUNDLE_BYTES): string {
  return `bundle too large to keep for drift correction: ${compressedBytes} bytes > ${limitBytes} bytes gzip'd; drift correction pauses until a smaller build is applied`;
}

const keptSecretSchema = z.object({
  metadata: z.object({ annotations: z.record(z.string(), z.string()).optional() }),
  data: z.record(z.string(), z.string()).optional(),
});

/** The kept bundle's Secret as `kubectl get -o json` returns it, the parts this module reads. */
export type KeptSecret = z.infer<typeof keptSecretSchema>;

/** Which build a kept bundle holds, from its annotations. */
export interface KeptBundleHeader {
  buildId: string;
  digest: string;
  objectsSha256: string;
}

/**
 * The build a kept bundle's Secret holds.
 *
 * @throws {KeptBundleError} when the Secret is not one this module wrote.
 */
export function keptBundleHeader(secret: unknown, where: KeptBundleWhere): KeptBundleHeader {
  const { namespace, name = DEFAULT_BUNDLE_SECRET } = where;
  const fail = (why: string) => new KeptBundleError(`Cannot read the kept bundle Secret ${namespace}/${name} as ${why}`, { namespace, secretName: name });
  const parsed = keptSecretSchema.safeParse(secret);
  if (!parsed.success) throw fail("it is not a Secret object");
  const annotations = parsed.data.metadata.annotations ?? {};
  const format = decodeBase64(parsed.data.data?.["format"]);
  if (format !== KEPT_BUNDLE_FORMAT) throw fail(`its 'format' is not ${KEPT_BUNDLE_FORMAT}: current value is ${JSON.stringify(format ?? null)}`);
  const buildId = annotations[KEPT_ANNOTATIONS.buildId];
  const digest = annotations[KEPT_ANNOTATIONS.digest];
  const objectsSha256 = annotations[KEPT_ANNOTATIONS.objectsSha256];
  for (const [key, value] of [
    [KEPT_ANNOTATIONS.buildId, buildId],
    [KEPT_ANNOTATIONS.digest, digest],
    [KEPT_ANNOTATIONS.objectsSha256, objectsSha256],
  ] as const) {
    if (value === undefined || value === "") throw fail(`annotation ${key} is missing`);
  }
  return { buildId: buildId!, digest: digest!, objectsSha256: objectsSha256! };
}

/**
 * The objects of a kept bundle's Secret, checked against its SHA-256 annotation.
 *
 * @throws {KeptBundleError} when they do not inflate (or inflate to more than
 * `maxDecompressedBytes`, default 50 MiB), do not match the annotation, or are not objects.
 */
export function keptBundleObjects(secret: unknown, where: KeptBundleWhere & { maxDecompressedBytes?: number }): KubeObject[] {
  const { namespace, name = DEFAULT_BUNDLE_SECRET, maxDecompressedBytes = DEFAULT_MAX_DECOMPRESSED_BYTES } = where;
  const header = keptBundleHeader(secret, where);
  const fail = (why: string, cause?: unknown) =>
    new KeptBundleError(`Cannot read the kept bundle Secret ${namespace}/${name} as ${why}`, { namespace, secretName: name }, cause === undefined ? undefined : { cause });
  const data = (secret as KeptSecret).data?.[KEPT_OBJECTS_KEY];
  if (data === undefined) throw fail(`it has no '${KEPT_OBJECTS_KEY}' key`);
  let json: Buffer;
  try {
    // maxOutputLength stops inflating past the limit: a planted gzip bomb is never inflated in full.
    json = gunzipSync(Buffer.from(data, "base64"), { maxOutputLength: Math.max(1, maxDecompressedBytes) });
  } catch (error) {
    throw fail(`'${KEPT_OBJECTS_KEY}' does not inflate within ${maxDecompressedBytes} bytes: ${errorMessage(error)}`, error);
  }
  const actual = sha256Hex(json);
  if (actual !== header.objectsSha256) throw fail(`its objects' SHA-256 is ${actual}, not ${header.objectsSha256} as annotated`);
  let objects: unknown;
  try {
    objects = JSON.parse(json.toString("utf8"));
  } catch (error) {
    throw fail(`'${KEPT_OBJECTS_KEY}' is not JSON: ${(error as Error).message}`, error);
  }
  if (!Array.isArray(objects)) throw fail(`'${KEPT_OBJECTS_KEY}' is not a list of objects`);
  for (const [i, object] of objects.entries()) {
    const problem = kubeObjectProblem(object);
    if (problem !== undefined) throw fail(`item ${i} of '${KEPT_OBJECTS_KEY}' is invalid: ${problem}`);
  }
  return objects as KubeObject[];
}

/** What a drift pass does with the record's current build and the kept bundle. */
export type DriftDecision = { action: "apply" } | { action: "skip"; reason: string };

/** Apply only the current build: the kept bundle must exist and carry the record's current digest. */
export function driftDecision(current: Pick<CurrentBuild, "digest" | "build"> | null, kept: Pick<KeptBundleHeader, "buildId" | "digest"> | null): DriftDecision {
  if (current === null) return { action: "skip", reason: "no build has been applied yet" };
  if (kept === null) {
    return { action: "skip", reason: `no bundle is kept for the current build ${current.build.id} (it was too large to keep, or was applied before drift correction was on)` };
  }
  if (kept.digest !== current.digest) {
    return {
      action: "skip",
      reason: `the kept bundle is build ${kept.buildId} (digest ${kept.digest}), not the current build ${current.build.id} (digest ${current.digest}); only the current build is re-applied`,
    };
  }
  return { action: "apply" };
}

/** kubectl arguments that write the kept bundle's Secret (stdin: the Secret as JSON). Exported for tests. */
export function keepBundleArgs(fieldManager: string): string[] {
  // Forced: the Secret is ours alone, a hand edit must not block the next write.
  return ["apply", "--server-side", `--field-manager=${fieldManager}`, "--force-conflicts", "-o", "name", "-f", "-"];
}

/** kubectl arguments that delete the kept bundle's Secret. Exported for tests. */
export function deleteKeptBundleArgs(where: KeptBundleWhere): string[] {
  const { namespace, name = DEFAULT_BUNDLE_SECRET } = where;
  return ["delete", "secret", name, `--namespace=${namespace}`, "--ignore-not-found"];
}

/** Options of {@link createBundleKeeper}. */
export interface BundleKeeperOptions extends KeptBundleWhere {
  kubectl: KubectlTarget;
  /** Server-side apply field manager. Default "kube-pico-cd". */
  fieldManager?: string;
  /** Largest gzip'd bundle kept, in bytes. Default {@link MAX_KEPT_BUNDLE_BYTES}. */
  limitBytes?: number;
  /** Per kubectl call, in ms. Default 30000. */
  timeoutMs?: number;
}

/**
 * The after-apply `keepBundle` hook: writes the kept bundle's Secret, or deletes it when the
 * bundle is too large. Never throws: what could not be done is the returned warning, which
 * lands in the "applied" outcome.
 */
export function createBundleKeeper(options: BundleKeeperOptions): (decoded: DecodedMessage, signal: AbortSignal) => Promise<string | undefined> {
  const { kubectl, namespace, name = DEFAULT_BUNDLE_SECRET, fieldManager = "kube-pico-cd", limitBytes = MAX_KEPT_BUNDLE_BYTES, timeoutMs = 30_000 } = options;
  const where = { namespace, name };
  return async (decoded, signal) => {
    const encoded = encodeKeptBundle(decoded, { ...where, limitBytes });
    if (encoded.kind === "too-large") {
      const warning = tooLargeWarning(encoded.compressedBytes, limitBytes);
      try {
        await runKubectl(deleteKeptBundleArgs(where), { ...kubectl, timeoutMs, signal });
      } catch (error) {
        return `${warning}; deleting the older kept bundle Secret ${namespace}/${name} failed, but its build is not the current one, so no pass applies it: ${errorMessage(error)}`;
      }
      return warning;
    }
    try {
      await runKubectl(keepBundleArgs(fieldManager), { ...kubectl, stdin: JSON.stringify(encoded.secret), timeoutMs, signal });
    } catch (error) {
      return `keeping the bundle for drift correction in Secret ${namespace}/${name} failed; passes skip until the next deploy keeps one: ${errorMessage(redactError(error, decoded.objects))}`;
    }
    return undefined;
  };
}

/**
 * Reads the kept bundle's Secret; null when it does not exist.
 *
 * @throws {KeptBundleError} when it cannot be read (forbidden, API server down) or is not JSON.
 */
export async function readKeptBundle(options: KeptBundleWhere & { kubectl: KubectlTarget; timeoutMs?: number; signal?: AbortSignal | undefined }): Promise<unknown | null> {
  const { kubectl, namespace, name = DEFAULT_BUNDLE_SECRET, timeoutMs = 30_000, signal } = options;
  let stdout: string;
  try {
    ({ stdout } = await runKubectl(["get", "secret", name, `--namespace=${namespace}`, "-o", "json"], { ...kubectl, timeoutMs, signal }));
  } catch (error) {
    if (error instanceof KubectlError && error.serverReason === "NotFound" && error.stderr.includes(`secrets "${name}" not found`)) return null;
    throw new KeptBundleError(`Cannot read the kept bundle Secret ${namespace}/${name}: ${errorMessage(error)}`, { namespace, secretName: name }, { cause: error });
  }
  try {
    return JSON.parse(stdout) as unknown;
  } catch (error) {
    throw new KeptBundleError(`Cannot read the kept bundle Secret ${namespace}/${name} as kubectl's output is not JSON: ${errorMessage(error)}`, { namespace, secretName: name }, { cause: error });
  }
}

export type DriftPassResult = "applied" | "failed" | "skipped";

/** What one pass did. */
export interface DriftPassReport {
  result: DriftPassResult;
  /** Why it was skipped, or why it failed. */
  reason?: string;
  /** The error of a failed pass, Secret values masked. */
  error?: Error;
  /** The build re-applied ("applied") or found. */
  buildId?: string;
  /** Objects re-applied. */
  objects?: number;
  durationMs: number;
}

/** Options of {@link driftPass}. */
export interface DriftPassOptions {
  kubectl: KubectlTarget;
  /** The listener's namespace: the record, the lock and the kept bundle live there. */
  namespace: string;
  /** Version record ConfigMap. Default that of lib/kube/record.ts. */
  stateName?: string;
  /** Deploy lock Lease. Default that of lib/kube/lease.ts. */
  lockName?: string;
  /** Kept bundle's Secret. Default {@link DEFAULT_BUNDLE_SECRET}. */
  bundleSecret?: string;
  leaseDurationSeconds?: number;
  /** Default "kube-pico-cd". */
  fieldManager?: string;
  /** Default true, as the deployer's. */
  forceConflicts?: boolean;
  /** Budget of the re-apply, in ms. Default 300000. */
  applyTimeoutMs?: number;
  /** Default 50 MiB. */
  maxDecompressedBytes?: number;
  now?: () => number;
}

/**
 * One pass: take the deploy lock without waiting, read the record and the kept bundle, and
 * re-apply the bundle when it is the current build. Never throws; a failure is the report.
 */
export async function driftPass(options: DriftPassOptions, signal: AbortSignal): Promise<DriftPassReport> {
  const {
    kubectl,
    namespace,
    stateName,
    lockName,
    bundleSecret = DEFAULT_BUNDLE_SECRET,
    leaseDurationSeconds = 30,
    fieldManager = "kube-pico-cd",
    forceConflicts = true,
    applyTimeoutMs = 300_000,
    maxDecompressedBytes = DEFAULT_MAX_DECOMPRESSED_BYTES,
    now = Date.now,
  } = options;
  const started = now();
  const done = (report: Omit<DriftPassReport, "durationMs">): DriftPassReport => ({ ...report, durationMs: now() - started });
  const where = { namespace, name: bundleSecret };
  let lock: HeldLock | null = null;
  let objects: readonly KubeObject[] = [];
  try {
    lock = await tryAcquireLock({ kubectl, namespace, leaseDurationSeconds, signal, ...(lockName === undefined ? {} : { name: lockName }) });
    if (lock === null) return done({ result: "skipped", reason: "the deploy lock is held (a deploy is running)" });
    const lockSignal = AbortSignal.any([signal, lock.lost]);
    const record = await readState({ kubectl, namespace, signal: lockSignal, ...(stateName === undefined ? {} : { name: stateName }) });
    const secret = record.current === null ? null : await readKeptBundle({ ...where, kubectl, signal: lockSignal });
    const header = secret === null ? null : keptBundleHeader(secret, where);
    const decision = driftDecision(record.current, header);
    if (decision.action === "skip") return done({ result: "skipped", reason: decision.reason, ...(header ? { buildId: header.buildId } : {}) });
    objects = keptBundleObjects(secret, { ...where, maxDecompressedBytes });
    const applied = await applyObjects(objects, { kubectl, fieldManager, forceConflicts, timeoutMs: applyTimeoutMs, signal: lockSignal });
    return done({ result: "applied", buildId: header!.buildId, objects: applied.inventory.length });
  } catch (error) {
    // kubectl's errors may echo Secret values of the bundle: mask them like the deployer does.
    const redacted = redactError(error, objects);
    return done({ result: "failed", reason: redacted.message, error: redacted });
  } finally {
    await lock?.release().catch(() => {
      // It expires by itself after leaseDurationSeconds; the next deploy waits at most that.
    });
  }
}

/** Options of {@link startDriftCorrection}. */
export interface DriftCorrectionOptions extends DriftPassOptions {
  logger: Logger;
  /** Time between the end of a pass and the start of the next, in ms; the first pass starts one interval after start. */
  intervalMs: number;
  /** Aborting stops the loop: no pass starts any more, and the pass in hand has `graceMs` to finish. */
  signal: AbortSignal;
  /** How long the pass in hand may take after `signal` aborted, in ms. Default 25000. */
  graceMs?: number;
  /** Told the result of every pass (metrics). */
  onPass?: (result: DriftPassResult) => void;
}

/**
 * Runs drift passes every `intervalMs` until `signal` aborts. Resolves once stopped (after
 * the pass in hand finished or was aborted at grace); never rejects.
 *
 * @throws {RangeError} when `intervalMs` is not positive.
 */
export function startDriftCorrection(options: DriftCorrectionOptions): Promise<void> {
  const { logger, intervalMs, signal, graceMs = 25_000, onPass, ...passOptions } = options;
  if (!(Number.isFinite(intervalMs) && intervalMs > 0)) {
    throw new RangeError(`Cannot start drift correction as 'intervalMs' must be a positive finite number: current value is ${intervalMs}`);
  }
  const log = logger.child({ component: "drift" });
  // The pass in hand outlives `signal` by the grace period, as the deploy in hand does.
  const passAbort = new AbortController();
  let graceTimer: ReturnType<typeof setTimeout> | undefined;
  const onStop = () => {
    graceTimer = setTimeout(() => passAbort.abort(new Error(`drift pass aborted: not finished ${graceMs} ms after stop`)), graceMs);
  };
  if (signal.aborted) onStop();
  else signal.addEventListener("abort", onStop, { once: true });

  return (async () => {
    log.info("drift correction on", { intervalMs, bundleSecret: passOptions.bundleSecret ?? DEFAULT_BUNDLE_SECRET });
    try {
      while (!signal.aborted) {
        try {
          await delay(intervalMs, { signal });
        } catch {
          break;
        }
        const report = await driftPass(passOptions, passAbort.signal);
        const fields = { result: report.result, build: report.buildId ?? null, objectCount: report.objects ?? null, durationMs: report.durationMs };
        if (report.result === "applied") log.info("drift pass applied the current build again", fields);
        else if (report.result === "skipped") log.info("drift pass skipped", { ...fields, reason: report.reason ?? null });
        else log.warn("drift pass failed; the next pass tries again", { ...fields, error: report.error ?? null });
        try {
          onPass?.(report.result);
        } catch (error) {
          log.warn("a listener of drift passes failed", { error: error as Error });
        }
      }
    } finally {
      clearTimeout(graceTimer);
      signal.removeEventListener("abort", onStop);
    }
    log.info("drift correction stopped");
  })();
}

function decodeBase64(text: string | undefined): string | undefined {
  return text === undefined ? undefined : Buffer.from(text, "base64").toString("utf8");
}
