/**
 * Drift correction, off by default (`--drift-interval-minutes`): the listener keeps the last
 * applied bundle in the cluster and re-applies it every interval with the deployer's
 * server-side apply, which puts back every field of ours that someone changed by hand, as
 * Flux's periodic reconciliation does.
 *
 * Keeping the bundle (after each successful apply, still under the deploy Lease):
 *
 * - in a Secret in the listener's namespace (default "kube-pico-cd-bundle"), not a
 *   ConfigMap: bundles may hold Secrets, and whoever may read ConfigMaps there must not
 *   read their data;
 * - as the gzip'd **payload** of the build: the exact bytes whose SHA-256 is the build's
 *   digest (lib/wire/message.ts), i.e. the canonical JSON of its objects. `publish` sends
 *   that form and a legacy message's digest is defined over it, so the bytes are rebuilt
 *   from the decoded objects and checked against the digest; a payload that is not in
 *   canonical form (another publisher's) cannot be rebuilt and is not kept. Build id, build
 *   time, digest and object count go into annotations, for people only: nothing trusts them;
 * - only when the gzip'd payload fits in {@link MAX_KEPT_BUNDLE_BYTES} (900 KiB): the API
 *   server refuses Secrets of more than 1 MiB of data. A bundle that is not kept is applied
 *   all the same, and the older kept bundle is deleted, so that no pass re-applies an
 *   outdated build; the outcome gets a warning.
 *
 * A pass takes the deploy Lease without waiting (a deploy in hand wins, the pass is skipped),
 * reads the version record and the kept bundle, and re-applies the bundle only when
 *
 * 1. the record has a current build and no unfinished deploy (`inflight`): re-applying the
 *    older current build over a half-applied newer one would move objects backwards;
 * 2. the SHA-256 of the inflated payload is the record's current digest: the Secret is
 *    checked against the record, never against itself, so whoever may write Secrets in the
 *    listener's namespace cannot have anything applied that the record does not name;
 * 3. every object passes the listener's policy as configured now (lib/listener/policy.ts):
 *    a build admitted under a wider policy is not put back after the policy was narrowed.
 *
 * Passes are logged and told to `onPass` (metrics), not written to the record's history,
 * where they would push deploys out.
 */
import { Buffer } from "node:buffer";
import { gunzipSync, gzipSync } from "node:zlib";
import { z } from "zod";
import { applyObjects } from "../kube/apply.ts";
import { isNotFound, resourcePath, type KubeApi } from "../kube/api.ts";
import { delay } from "../backoff.ts";
import { kubeObjectProblem, type KubeObject } from "../manifests/bundle.ts";
import { errorMessage, KeptBundleError } from "../errors.ts";
import type { KubectlTarget } from "../kube/kubectl.ts";
import { tryAcquireLease, type HeldLease } from "../kube/lease.ts";
import type { Logger } from "../log.ts";
import { canonicalJson, DEFAULT_MAX_DECOMPRESSED_BYTES, sha256Hex, type DecodedMessage } from "../wire/message.ts";
import { policyViolations, redactError, type Policy } from "./policy.ts";
import { readRecord, type VersionRecord } from "../kube/record.ts";
import { DEFAULT_APP } from "./apps.ts";

/** Default name of the Secret that keeps the last applied bundle. */
export const DEFAULT_BUNDLE_SECRET = "kube-pico-cd-bundle";
/**
 * Largest gzip'd payload kept, in bytes: 900 KiB, under the API server's 1 MiB limit of a
 * Secret's data with room for the other keys.
 */
export const MAX_KEPT_BUNDLE_BYTES = 900 * 1024;
/**
 * The `format` value of the kept bundle's Secret that this module writes and reads. Format 1
 * (the objects, trusted by their own annotations) is never applied; the next deploy replaces it.
 */
export const KEPT_BUNDLE_FORMAT = "2";
/** Data key of the gzip'd payload. */
export const KEPT_PAYLOAD_KEY = "payload.json.gz";

/** Annotations of the kept bundle's Secret: for people reading it; a pass never trusts them. */
export const KEPT_ANNOTATIONS = {
  buildId: "kube-pico-cd.io/build-id",
  buildTimestampMs: "kube-pico-cd.io/build-timestamp-ms",
  digest: "kube-pico-cd.io/digest",
  objects: "kube-pico-cd.io/objects",
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
  | { kind: "too-large"; compressedBytes: number }
  /** The payload cannot be rebuilt from the objects: it was not in canonical form. */
  | { kind: "not-canonical" };

/**
 * The payload of `decoded`: the canonical JSON of its objects, when its SHA-256 is the
 * digest (always for `publish`'s and legacy messages); undefined otherwise.
 */
export function keptPayload(decoded: Pick<DecodedMessage, "objects" | "digest">): Buffer | undefined {
  const payload = Buffer.from(canonicalJson(decoded.objects), "utf8");
  return sha256Hex(payload) === decoded.digest ? payload : undefined;
}

/**
 * The Secret that keeps `decoded`'s payload; "too-large" when the gzip'd payload is over
 * `limitBytes` (default {@link MAX_KEPT_BUNDLE_BYTES}); "not-canonical" when the payload
 * cannot be rebuilt (see {@link keptPayload}).
 */
export function encodeKeptBundle(decoded: Pick<DecodedMessage, "objects" | "digest" | "build">, where: KeptBundleWhere & { limitBytes?: number }): EncodedKeptBundle {
  const { namespace, name = DEFAULT_BUNDLE_SECRET, limitBytes = MAX_KEPT_BUNDLE_BYTES } = where;
  const payload = keptPayload(decoded);
  if (payload === undefined) return { kind: "not-canonical" };
  const gzipped = gzipSync(payload, { level: 9 });
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
      },
    },
    data: {
      format: Buffer.from(KEPT_BUNDLE_FORMAT, "utf8").toString("base64"),
      [KEPT_PAYLOAD_KEY]: gzipped.toString("base64"),
    },
  };
  return { kind: "secret", secret, compressedBytes: gzipped.length };
}

/** The outcome warning of a bundle too large to keep. */
export function tooLargeWarning(compressedBytes: number, limitBytes: number = MAX_KEPT_BUNDLE_BYTES): string {
  return `bundle too large to keep for drift correction: ${compressedBytes} bytes > ${limitBytes} bytes gzip'd; drift correction pauses until a smaller build is applied`;
}

/** The outcome warning of a bundle whose payload was not in canonical form. */
export const NOT_CANONICAL_WARNING =
  "bundle not kept for drift correction: its payload is not canonical JSON (as publish writes it), so the exact bytes of its digest cannot be kept; drift correction pauses until such a build is applied";

const keptSecretSchema = z.object({
  metadata: z.object({ annotations: z.record(z.string(), z.string()).optional() }),
  data: z.record(z.string(), z.string()).optional(),
});

/** What a kept bundle's Secret holds, before it is checked against the record. */
export interface KeptBundle {
  /** `format` of the Secret; only {@link KEPT_BUNDLE_FORMAT} has a payload. */
  format: string | null;
  /** The inflated payload (format 2). */
  payload?: Buffer;
  /** Its SHA-256, lowercase hex: what is compared with the record's current digest. */
  payloadSha256?: string;
  /** The build id the annotation names: for messages only, never trusted. */
  annotatedBuildId?: string;
}

/**
 * The payload of a kept bundle's Secret, inflated and hashed. Format 1 Secrets (written by
 * earlier versions) come back without a payload.
 *
 * @throws {KeptBundleError} when the Secret is not one this module wrote, or its payload
 * does not inflate within `maxDecompressedBytes` (default 8 MiB; a planted gzip bomb is
 * never inflated in full).
 */
export function readKeptPayload(secret: unknown, where: KeptBundleWhere & { maxDecompressedBytes?: number }): KeptBundle {
  const { namespace, name = DEFAULT_BUNDLE_SECRET, maxDecompressedBytes = DEFAULT_MAX_DECOMPRESSED_BYTES } = where;
  const fail = (why: string, cause?: unknown) =>
    new KeptBundleError(`Cannot read the kept bundle Secret ${namespace}/${name} as ${why}`, { namespace, secretName: name }, cause === undefined ? undefined : { cause });
  const parsed = keptSecretSchema.safeParse(secret);
  if (!parsed.success) throw fail("it is not a Secret object");
  const annotatedBuildId = parsed.data.metadata.annotations?.[KEPT_ANNOTATIONS.buildId];
  const annotated = annotatedBuildId === undefined || annotatedBuildId === "" ? {} : { annotatedBuildId };
  const format = decodeBase64(parsed.data.data?.["format"]) ?? null;
  if (format === "1") return { format, ...annotated };
  if (format !== KEPT_BUNDLE_FORMAT) throw fail(`its 'format' is not ${KEPT_BUNDLE_FORMAT}: current value is ${JSON.stringify(format)}`);
  const data = parsed.data.data?.[KEPT_PAYLOAD_KEY];
  if (data === undefined) throw fail(`it has no '${KEPT_PAYLOAD_KEY}' key`);
  let payload: Buffer;
  try {
    payload = gunzipSync(Buffer.from(data, "base64"), { maxOutputLength: Math.max(1, maxDecompressedBytes) });
  } catch (error) {
    throw fail(`'${KEPT_PAYLOAD_KEY}' does not inflate within ${maxDecompressedBytes} bytes: ${errorMessage(error)}`, error);
  }
  return { format, payload, payloadSha256: sha256Hex(payload), ...annotated };
}

/**
 * The objects of a payload that matched the record's digest.
 *
 * @throws {KeptBundleError} when it is not a JSON list of Kubernetes objects.
 */
export function keptObjects(payload: Buffer, where: KeptBundleWhere): KubeObject[] {
  const { namespace, name = DEFAULT_BUNDLE_SECRET } = where;
  const fail = (why: string, cause?: unknown) =>
    new KeptBundleError(`Cannot read the kept bundle Secret ${namespace}/${name} as ${why}`, { namespace, secretName: name }, cause === undefined ? undefined : { cause });
  let objects: unknown;
  try {
    objects = JSON.parse(payload.toString("utf8"));
  } catch (error) {
    throw fail(`'${KEPT_PAYLOAD_KEY}' is not JSON: ${errorMessage(error)}`, error);
  }
  if (!Array.isArray(objects)) throw fail(`'${KEPT_PAYLOAD_KEY}' is not a list of objects`);
  for (const [i, object] of objects.entries()) {
    const problem = kubeObjectProblem(object);
    if (problem !== undefined) throw fail(`item ${i} of '${KEPT_PAYLOAD_KEY}' is invalid: ${problem}`);
  }
  return objects as KubeObject[];
}

/** What a drift pass does with the record and the kept bundle. */
export type DriftDecision = { action: "apply" } | { action: "skip"; reason: string };

/**
 * Whether the kept bundle may be re-applied, from the record and the kept bundle alone (the
 * policy comes after, on the objects): only the current build, only when no deploy is
 * unfinished, and only a payload whose SHA-256 is the current digest.
 */
export function driftDecision(record: Pick<VersionRecord, "current" | "inflight">, kept: KeptBundle | null): DriftDecision {
  const { current, inflight } = record;
  if (current === null) return { action: "skip", reason: "no build has been applied yet" };
  if (inflight !== null) {
    return {
      action: "skip",
      reason: `the deploy of build ${inflight.build.id} started at ${inflight.startedAt} by ${inflight.holder} did not finish; the next deploy settles it, and the older current build ${current.build.id} is not put back over it`,
    };
  }
  if (kept === null) {
    return { action: "skip", reason: `no bundle is kept for the current build ${current.build.id} (it was too large to keep, or was applied before drift correction was on)` };
  }
  const annotated = kept.annotatedBuildId === undefined ? "" : `, annotated as build ${kept.annotatedBuildId}`;
  if (kept.payloadSha256 === undefined) {
    return { action: "skip", reason: `the kept bundle is in format ${kept.format ?? "?"}${annotated}, which is not checked against the record; the next deploy keeps the current build in format ${KEPT_BUNDLE_FORMAT}` };
  }
  if (kept.payloadSha256 !== current.digest) {
    return {
      action: "skip",
      reason: `the kept bundle's payload has SHA-256 ${kept.payloadSha256}${annotated}, not the current build ${current.build.id}'s digest ${current.digest}; only the current build is re-applied`,
    };
  }
  return { action: "apply" };
}

/** Why the current policy refuses a kept bundle; undefined when it allows every object. */
export function driftPolicyProblem(objects: readonly KubeObject[], policy: Policy, buildId: string): string | undefined {
  const violations = policyViolations(objects, policy);
  if (violations.length === 0) return undefined;
  return `the listener's policy now refuses ${violations.length} of ${objects.length} objects of the current build ${buildId}, so it is not re-applied: ${violations.join("; ")}`;
}

function secretPath(namespace: string, name: string): string {
  return resourcePath({ group: "", version: "v1", resource: "secrets", namespace, name });
}

/** Options of {@link createBundleKeeper}. */
export interface BundleKeeperOptions extends KeptBundleWhere {
  api: KubeApi;
  /** Server-side apply field manager. Default "kube-pico-cd". */
  fieldManager?: string;
  /** Largest gzip'd payload kept, in bytes. Default {@link MAX_KEPT_BUNDLE_BYTES}. */
  limitBytes?: number;
  /** Per request, in ms. Default 30000. */
  timeoutMs?: number;
}

/**
 * The after-apply `keepBundle` hook: writes the kept bundle's Secret, or deletes it when the
 * bundle cannot be kept. Never throws: what could not be done is the returned warning, which
 * lands in the "applied" outcome.
 */
export function createBundleKeeper(options: Omit<BundleKeeperOptions, "name">): (decoded: DecodedMessage, name: string, signal: AbortSignal) => Promise<string | undefined> {
  const { api, namespace, fieldManager = "kube-pico-cd", limitBytes = MAX_KEPT_BUNDLE_BYTES, timeoutMs = 30_000 } = options;
  return async (decoded, name, signal) => {
    const path = secretPath(namespace, name);
    const encoded = encodeKeptBundle(decoded, { namespace, name, limitBytes });
    if (encoded.kind !== "secret") {
      const warning = encoded.kind === "too-large" ? tooLargeWarning(encoded.compressedBytes, limitBytes) : NOT_CANONICAL_WARNING;
      try {
        await api.request({ method: "DELETE", path, timeoutMs, signal });
      } catch (error) {
        if (!isNotFound(error)) {
          return `${warning}; deleting the older kept bundle Secret ${namespace}/${name} failed, but its payload is not the current build's, so no pass applies it: ${errorMessage(error)}`;
        }
      }
      return warning;
    }
    try {
      // Server-side apply, forced, rather than GET then PUT or POST: one request creates or
      // replaces it with no read-modify-write race, a hand edit of our fields cannot block
      // it, and the keys of format 1 that we owned are removed with it.
      await api.request({ method: "PATCH", path, query: { fieldManager, force: true }, body: encoded.secret, contentType: "application/apply-patch+yaml", timeoutMs, signal });
    } catch (error) {
      return `keeping the bundle for drift correction in Secret ${namespace}/${name} failed; passes skip until the next deploy keeps one: ${errorMessage(redactError(error, decoded.objects))}`;
    }
    return undefined;
  };
}

/**
 * Reads the kept bundle's Secret; null when it does not exist.
 *
 * @throws {KeptBundleError} when it cannot be read (forbidden, API server unreachable).
 */
export async function readKeptBundle(options: KeptBundleWhere & { api: KubeApi; timeoutMs?: number; signal?: AbortSignal | undefined }): Promise<unknown | null> {
  const { api, namespace, name = DEFAULT_BUNDLE_SECRET, timeoutMs = 30_000, signal } = options;
  try {
    return await api.getOptional(secretPath(namespace, name), { timeoutMs, signal });
  } catch (error) {
    throw new KeptBundleError(`Cannot read the kept bundle Secret ${namespace}/${name}: ${errorMessage(error)}`, { namespace, secretName: name }, { cause: error });
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
  /** The record's current build: re-applied ("applied"), or the one that was not. */
  buildId?: string;
  /** Objects re-applied. */
  objects?: number;
  durationMs: number;
}

/** Options of {@link driftPass}. */
export interface DriftPassOptions {
  /** The Lease, the record and the kept bundle are read and written through it. */
  api: KubeApi;
  /** The re-apply runs `kubectl apply --server-side`, as the deployer's does. */
  kubectl: KubectlTarget;
  /** The listener's namespace: the record, the Lease and the kept bundle live there. */
  namespace: string;
  /** The listener's policy as configured now: a kept bundle it refuses is not re-applied. */
  policy: Policy;
  /** Version record ConfigMap. Default that of lib/kube/record.ts. */
  stateName?: string;
  /** Deploy Lease. Default that of lib/kube/lease.ts. */
  lockName?: string;
  /** holderIdentity written to the Lease. Default that of lib/kube/lease.ts. */
  identity?: string;
  /** Kept bundle's Secret. Default {@link DEFAULT_BUNDLE_SECRET}. */
  bundleSecret?: string;
  /** The deploy Lease's duration, in seconds, as the deployer's. Default that of lib/kube/lease.ts. */
  leaseDurationSeconds?: number;
  /** Default "kube-pico-cd". */
  fieldManager?: string;
  /** Default true, as the deployer's. */
  forceConflicts?: boolean;
  /** Budget of the re-apply, in ms. Default 300000. */
  applyTimeoutMs?: number;
  /** Default 8 MiB (DEFAULT_MAX_DECOMPRESSED_BYTES). */
  maxDecompressedBytes?: number;
  /** The app whose kept bundle this pass re-applies (logs and metrics). Default the default app. */
  app?: string;
  /**
   * The objects as the deployer applies them: in the app's default namespace, with its
   * ownership mark (lib/listener/ownership.ts). Default: as kept.
   */
  prepare?: (objects: readonly KubeObject[]) => KubeObject[];
  /** Why the app's scope as configured now refuses the kept objects (after `prepare`), or undefined. */
  scopeProblem?: (objects: readonly KubeObject[]) => string | undefined;
  now?: () => number;
}

/**
 * One pass: take the deploy Lease without waiting, read the record and the kept bundle, and
 * re-apply the bundle when {@link driftDecision} and the policy allow it. Never throws; a
 * failure is the report.
 */
export async function driftPass(options: DriftPassOptions, signal: AbortSignal): Promise<DriftPassReport> {
  const {
    api,
    kubectl,
    namespace,
    policy,
    stateName,
    lockName,
    identity,
    bundleSecret = DEFAULT_BUNDLE_SECRET,
    leaseDurationSeconds,
    fieldManager = "kube-pico-cd",
    forceConflicts = true,
    applyTimeoutMs = 300_000,
    maxDecompressedBytes = DEFAULT_MAX_DECOMPRESSED_BYTES,
    prepare = (kept) => [...kept],
    scopeProblem,
    now = Date.now,
  } = options;
  const started = now();
  const done = (report: Omit<DriftPassReport, "durationMs">): DriftPassReport => ({ ...report, durationMs: now() - started });
  const where = { namespace, name: bundleSecret };
  let lease: HeldLease | null = null;
  let objects: readonly KubeObject[] = [];
  try {
    lease = await tryAcquireLease({
      api,
      namespace,
      signal,
      ...(leaseDurationSeconds === undefined ? {} : { leaseDurationSeconds }),
      ...(lockName === undefined ? {} : { name: lockName }),
      ...(identity === undefined ? {} : { identity }),
    });
    if (lease === null) return done({ result: "skipped", reason: "the deploy lock is held (a deploy is running)" });
    const leaseSignal = AbortSignal.any([signal, lease.lost]);
    const record = await readRecord({ api, namespace, signal: leaseSignal, ...(stateName === undefined ? {} : { name: stateName }) });
    const secret = record.current === null || record.inflight !== null ? null : await readKeptBundle({ ...where, api, signal: leaseSignal });
    const kept = secret === null ? null : readKeptPayload(secret, { ...where, maxDecompressedBytes });
    const decision = driftDecision(record, kept);
    const buildId = record.current?.build.id;
    if (decision.action === "skip") return done({ result: "skipped", reason: decision.reason, ...(buildId === undefined ? {} : { buildId }) });
    // The payload is the current build's (its SHA-256 is the record's digest), so it was
    // decoded and admitted when it arrived; the policy may have narrowed since.
    objects = prepare(keptObjects(kept!.payload!, where));
    const refused = driftPolicyProblem(objects, policy, buildId!) ?? scopeProblem?.(objects);
    if (refused !== undefined) return done({ result: "skipped", reason: refused, buildId: buildId! });
    // The Lease may have lapsed while the record and the Secret were read (a paused process).
    if (!lease.isHeld()) return done({ result: "skipped", reason: "the deploy lock was lost before the re-apply", buildId: buildId! });
    const applied = await applyObjects(objects, { kubectl, api, fieldManager, forceConflicts, timeoutMs: applyTimeoutMs, signal: leaseSignal });
    return done({ result: "applied", buildId: buildId!, objects: applied.inventory.length });
  } catch (error) {
    // kubectl's errors may echo Secret values of the bundle: mask them like the deployer does.
    const redacted = redactError(error, objects);
    return done({ result: "failed", reason: redacted.message, error: redacted });
  } finally {
    await lease?.release().catch(() => {
      // It expires by itself after leaseDurationSeconds; the next deploy waits at most that.
    });
  }
}

/** Options of {@link startDriftCorrection}. */
export interface DriftCorrectionOptions {
  /** The passes of one round, one per app with a record: read again before every round. */
  passes: (signal: AbortSignal) => Promise<DriftPassOptions[]>;
  logger: Logger;
  /** Time between the end of a pass and the start of the next, in ms; the first pass starts one interval after start. */
  intervalMs: number;
  /** Aborting stops the loop: no pass starts any more, and the pass in hand has `graceMs` to finish. */
  signal: AbortSignal;
  /** How long the pass in hand may take after `signal` aborted, in ms. Default 25000. */
  graceMs?: number;
  /** Told the result of every pass and its app (metrics). */
  onPass?: (result: DriftPassResult, app: string) => void;
}

/**
 * Runs drift passes every `intervalMs` until `signal` aborts. Resolves once stopped (after
 * the pass in hand finished or was aborted at grace); never rejects.
 *
 * @throws {RangeError} when `intervalMs` is not positive.
 */
export function startDriftCorrection(options: DriftCorrectionOptions): Promise<void> {
  const { logger, intervalMs, signal, graceMs = 25_000, onPass, passes } = options;
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
    log.info("drift correction on", { intervalMs });
    try {
      while (!signal.aborted) {
        try {
          await delay(intervalMs, { signal });
        } catch {
          break;
        }
        let round: DriftPassOptions[];
        try {
          round = await passes(passAbort.signal);
        } catch (error) {
          log.warn("cannot list the apps to correct drift of; the next round tries again", { error: error as Error });
          continue;
        }
        // One app after another: a round's kubectl processes never add up in the pod's memory.
        for (const passOptions of round) {
          if (signal.aborted) break;
          const report = await driftPass(passOptions, passAbort.signal);
          const fields = { app: passOptions.app ?? DEFAULT_APP, result: report.result, build: report.buildId ?? null, objectCount: report.objects ?? null, durationMs: report.durationMs };
          if (report.result === "applied") log.info("drift pass applied the current build again", fields);
          else if (report.result === "skipped") log.info("drift pass skipped", { ...fields, reason: report.reason ?? null });
          else log.warn("drift pass failed; the next pass tries again", { ...fields, error: report.error ?? null });
          try {
            onPass?.(report.result, passOptions.app ?? DEFAULT_APP);
          } catch (error) {
            log.warn("a listener of drift passes failed", { error: error as Error });
          }
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
