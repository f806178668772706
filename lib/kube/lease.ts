/**
 * One deploy at a time per cluster: a mutex across listener replicas, kept in a
 * coordination.k8s.io/v1 Lease in the listener's namespace, through kubectl only.
 *
 * - Acquire: create the Lease, or take it over when it is free (no holder) or expired
 *   (renewTime + leaseDurationSeconds in the past); both are compare-and-swap writes (create
 *   fails if it exists, replace carries the resourceVersion read), so two replicas never both
 *   win.
 * - While held, a background loop renews it (renewTime = now) every `renewIntervalMs`. If
 *   renewing keeps failing until the lease could expire for others, or someone else took
 *   it, the lock's `lost` signal aborts with a {@link LockLostError}: the holder must stop.
 * - Release clears the holder, so the next replica need not wait for expiry.
 *
 * Expiry compares the holder's renewTime with this replica's clock, so replicas' clocks must
 * agree to well within the lease duration (NTP-synchronized nodes do).
 */
import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import { z } from "zod";
import { createBackoff, delay } from "../backoff.ts";
import { errorMessage, KubectlError, LockError, LockLostError } from "../errors.ts";
import { runKubectl, type KubectlTarget } from "./kubectl.ts";

/** Default name of the Lease. */
export const DEFAULT_LOCK_LEASE = "kube-pico-cd-deploy";

/** Options of {@link tryAcquireLock} and {@link acquireLock}. */
export interface LockOptions {
  kubectl: KubectlTarget;
  /** The listener's namespace. */
  namespace: string;
  /** Lease name. Default {@link DEFAULT_LOCK_LEASE}. */
  name?: string;
  /** holderIdentity written to the Lease. Default {@link defaultHolderIdentity}(). */
  identity?: string;
  /** How long a lease lives without renewal, in seconds. Default 30. */
  leaseDurationSeconds?: number;
  /** Time between renewals, in milliseconds. Default a third of the lease duration. */
  renewIntervalMs?: number;
  /** Per kubectl call, in milliseconds. Default 10000 (and never more than `renewIntervalMs`). */
  timeoutMs?: number;
  /** Clock, in milliseconds since the epoch. Default `Date.now`. */
  now?: () => number;
  /** Told about each failed renewal that did not (yet) lose the lock. */
  onRenewError?: (error: unknown) => void;
  /** Aborting stops waiting or kills the running kubectl call. Not the lock's lifetime. */
  signal?: AbortSignal | undefined;
}

/** A lock this process holds. */
export interface HeldLock {
  readonly identity: string;
  readonly namespace: string;
  readonly name: string;
  /** Aborts, with a {@link LockLostError} as reason, when the lock is lost while held. */
  readonly lost: AbortSignal;
  /**
   * Stops renewing and clears the holder so another replica can take the lock at once.
   * Does nothing more when the lock was already lost.
   *
   * @throws {LockError} when the Lease cannot be written; it then expires on its own after
   * `leaseDurationSeconds`.
   */
  release(): Promise<void>;
}

/** A Lease as this module reads and writes it; other fields are kept as they are. */
interface LeaseObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; resourceVersion?: string; [key: string]: unknown };
  spec?: LeaseSpec;
  [key: string]: unknown;
}

/** The fields of a Lease's spec this module uses. */
export interface LeaseSpec {
  holderIdentity?: string;
  leaseDurationSeconds?: number;
  acquireTime?: string;
  renewTime?: string;
  leaseTransitions?: number;
  [key: string]: unknown;
}

const leaseSchema = z.looseObject({
  apiVersion: z.string(),
  kind: z.string(),
  metadata: z.looseObject({ name: z.string(), namespace: z.string().optional(), resourceVersion: z.string().optional() }),
  spec: z
    .looseObject({
      holderIdentity: z.string().optional(),
      leaseDurationSeconds: z.number().optional(),
      acquireTime: z.string().optional(),
      renewTime: z.string().optional(),
      leaseTransitions: z.number().optional(),
    })
    .optional(),
});

/** `<hostname>-<8 random hex digits>`: the pod name in a pod, unique per process. */
export function defaultHolderIdentity(): string {
  return `${hostname()}-${randomBytes(4).toString("hex")}`;
}

/**
 * A time in the Kubernetes MicroTime format (RFC 3339 with exactly six fractional digits,
 * UTC), which the API server requires for Lease times.
 */
export function formatMicroTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, ".$1000Z");
}

/** Milliseconds since the epoch of an RFC 3339 time with any number of fractional digits; NaN if invalid. */
export function parseMicroTime(text: string): number {
  const match = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})$/.exec(text);
  if (match === null) return Number.NaN;
  const [, base, fraction = "", zone] = match;
  return Date.parse(`${base}.${fraction.padEnd(3, "0").slice(0, 3)}${zone}`);
}

/**
 * Whether a Lease can be taken: "free" (no holder), "expired" (renewTime +
 * leaseDurationSeconds is in the past, or either is missing or unreadable), or "held".
 */
export function leaseStatus(spec: LeaseSpec | undefined, nowMs: number): "free" | "expired" | "held" {
  if (spec?.holderIdentity === undefined || spec.holderIdentity === "") return "free";
  const renewedMs = parseMicroTime(spec.renewTime ?? spec.acquireTime ?? "");
  const durationSeconds = spec.leaseDurationSeconds;
  if (!Number.isFinite(renewedMs) || durationSeconds === undefined) return "expired";
  return renewedMs + durationSeconds * 1000 < nowMs ? "expired" : "held";
}

interface Resolved {
  kubectl: KubectlTarget;
  namespace: string;
  name: string;
  identity: string;
  leaseDurationSeconds: number;
  renewIntervalMs: number;
  timeoutMs: number;
  now: () => number;
  onRenewError: (error: unknown) => void;
}

function resolve(options: LockOptions): Resolved {
  const {
    kubectl,
    namespace,
    name = DEFAULT_LOCK_LEASE,
    identity = defaultHolderIdentity(),
    leaseDurationSeconds = 30,
    now = Date.now,
    onRenewError = () => {},
  } = options;
  if (!Number.isInteger(leaseDurationSeconds) || leaseDurationSeconds < 1) {
    throw new RangeError(`Cannot use the lock as 'leaseDurationSeconds' must be a positive integer: current value is ${leaseDurationSeconds}`);
  }
  const { renewIntervalMs = Math.round((leaseDurationSeconds * 1000) / 3) } = options;
  if (!(Number.isFinite(renewIntervalMs) && renewIntervalMs > 0 && renewIntervalMs < leaseDurationSeconds * 1000)) {
    throw new RangeError(
      `Cannot use the lock as 'renewIntervalMs' must be positive and below the lease duration (${leaseDurationSeconds * 1000} ms): current value is ${renewIntervalMs}`,
    );
  }
  const { timeoutMs = Math.min(10_000, renewIntervalMs) } = options;
  if (identity === "") throw new RangeError("Cannot use the lock as 'identity' must not be empty: current value is \"\"");
  return { kubectl, namespace, name, identity, leaseDurationSeconds, renewIntervalMs, timeoutMs, now, onRenewError };
}

/**
 * Takes the lock if it is free or expired, without waiting.
 *
 * @returns the held lock, or null when another holder has it (or won the race for it).
 * @throws {LockError} when the Lease cannot be read or written (forbidden, API down).
 */
export async function tryAcquireLock(options: LockOptions): Promise<HeldLock | null> {
  const r = resolve(options);
  const { signal } = options;
  const current = await getLease(r, signal);
  const nowMs = r.now();
  const spec: LeaseSpec = {
    holderIdentity: r.identity,
    leaseDurationSeconds: r.leaseDurationSeconds,
    acquireTime: formatMicroTime(nowMs),
    renewTime: formatMicroTime(nowMs),
  };
  let written: LeaseObject | null;
  if (current === null) {
    const lease: LeaseObject = {
      apiVersion: "coordination.k8s.io/v1",
      kind: "Lease",
      metadata: { name: r.name, namespace: r.namespace, labels: { "app.kubernetes.io/managed-by": "kube-pico-cd" } },
      spec: { ...spec, leaseTransitions: 0 },
    };
    written = await writeLease(r, "create", lease, signal);
  } else {
    if (leaseStatus(current.spec, nowMs) === "held") return null;
    const transitions = (current.spec?.leaseTransitions ?? 0) + (current.spec?.holderIdentity ? 1 : 0);
    written = await writeLease(r, "replace", { ...current, spec: { ...current.spec, ...spec, leaseTransitions: transitions } }, signal);
  }
  return written === null ? null : hold(r, written, nowMs);
}

/**
 * Waits until the lock is taken, polling with jittered backoff (200 ms growing to 2 s)
 * while another replica holds it.
 *
 * @throws {LockError} when the Lease cannot be read or written.
 * @throws the signal's reason when `signal` aborts first.
 */
export async function acquireLock(options: LockOptions): Promise<HeldLock> {
  const { signal } = options;
  const backoff = createBackoff({ baseMs: 200, maxMs: 2_000 });
  // Resolve once, so a generated identity stays the same across attempts.
  const fixed: LockOptions = { ...options, identity: options.identity ?? defaultHolderIdentity() };
  for (;;) {
    signal?.throwIfAborted();
    let held: HeldLock | null;
    try {
      held = await tryAcquireLock(fixed);
    } catch (error) {
      // An abort that killed a kubectl call surfaces as a LockError; report it as an abort.
      signal?.throwIfAborted();
      throw error;
    }
    if (held !== null) return held;
    await delay(Math.max(50, backoff.next()), { signal });
  }
}

function hold(r: Resolved, acquired: LeaseObject, acquiredAtMs: number): HeldLock {
  const lostController = new AbortController();
  const stopRenewing = new AbortController();
  let lease = acquired;
  let lastRenewedMs = acquiredAtMs;
  // Give up before others may see the lease as expired: one renew interval of margin.
  const renewDeadlineMs = r.leaseDurationSeconds * 1000 - r.renewIntervalMs;
  const where = { namespace: r.namespace, leaseName: r.name, holderIdentity: r.identity };
  const lose = (why: string, cause?: unknown) => {
    if (lostController.signal.aborted) return;
    lostController.abort(new LockLostError(`Lost the deploy lock Lease ${r.namespace}/${r.name} held as ${r.identity}: ${why}`, where, cause === undefined ? undefined : { cause }));
  };

  const renewOnce = async (): Promise<void> => {
    const nowMs = r.now();
    const next: LeaseObject = { ...lease, spec: { ...lease.spec, renewTime: formatMicroTime(nowMs), leaseDurationSeconds: r.leaseDurationSeconds } };
    try {
      const written = await writeLease(r, "replace", next, stopRenewing.signal);
      if (written !== null) {
        lease = written;
        lastRenewedMs = nowMs;
        return;
      }
      // The resourceVersion moved: see whether it is still ours (someone edited labels, say).
      const seen = await getLease(r, stopRenewing.signal);
      if (seen === null) return lose("the Lease was deleted");
      if (seen.spec?.holderIdentity !== r.identity) return lose(`it is now held by ${JSON.stringify(seen.spec?.holderIdentity ?? "")}`);
      lease = seen;
      const again = await writeLease(r, "replace", { ...seen, spec: { ...seen.spec, renewTime: formatMicroTime(nowMs) } }, stopRenewing.signal);
      if (again !== null) {
        lease = again;
        lastRenewedMs = nowMs;
      }
    } catch (error) {
      if (stopRenewing.signal.aborted) return;
      r.onRenewError(error);
    }
    if (r.now() - lastRenewedMs >= renewDeadlineMs) {
      lose(`not renewed for ${r.now() - lastRenewedMs} ms (deadline ${renewDeadlineMs} ms)`);
    }
  };

  const loop = (async () => {
    while (!stopRenewing.signal.aborted && !lostController.signal.aborted) {
      try {
        await delay(r.renewIntervalMs, { signal: stopRenewing.signal });
      } catch {
        return;
      }
      await renewOnce();
    }
  })();

  let released: Promise<void> | undefined;
  return {
    identity: r.identity,
    namespace: r.namespace,
    name: r.name,
    lost: lostController.signal,
    release() {
      released ??= (async () => {
        stopRenewing.abort();
        await loop;
        if (lostController.signal.aborted) return;
        const { holderIdentity: _, ...rest } = lease.spec ?? {};
        const freed: LeaseObject = { ...lease, spec: { ...rest, renewTime: formatMicroTime(r.now()) } };
        const written = await writeLease(r, "replace", freed);
        if (written !== null) return;
        // Changed under us; clear the holder only if it is still ours.
        const seen = await getLease(r);
        if (seen === null || seen.spec?.holderIdentity !== r.identity) return;
        const { holderIdentity: __, ...seenRest } = seen.spec;
        await writeLease(r, "replace", { ...seen, spec: { ...seenRest, renewTime: formatMicroTime(r.now()) } });
      })();
      return released;
    },
  };
}

async function getLease(r: Resolved, signal?: AbortSignal): Promise<LeaseObject | null> {
  try {
    const { stdout } = await runKubectl(["get", "lease", r.name, `--namespace=${r.namespace}`, "-o", "json"], {
      ...r.kubectl,
      timeoutMs: r.timeoutMs,
      signal,
    });
    return leaseSchema.parse(JSON.parse(stdout)) as LeaseObject;
  } catch (error) {
    if (error instanceof KubectlError && error.serverReason === "NotFound" && error.stderr.includes(`"${r.name}" not found`)) return null;
    throw lockError(r, "read", error);
  }
}

/** Create or replace (compare-and-swap on resourceVersion); null when the race was lost. */
async function writeLease(r: Resolved, verb: "create" | "replace", lease: LeaseObject, signal?: AbortSignal): Promise<LeaseObject | null> {
  try {
    const { stdout } = await runKubectl([verb, "-f", "-", "-o", "json"], { ...r.kubectl, stdin: JSON.stringify(lease), timeoutMs: r.timeoutMs, signal });
    return leaseSchema.parse(JSON.parse(stdout)) as LeaseObject;
  } catch (error) {
    if (error instanceof KubectlError) {
      if (verb === "create" && error.serverReason === "AlreadyExists") return null;
      if (verb === "replace" && (error.serverReason === "Conflict" || error.serverReason === "NotFound")) return null;
    }
    throw lockError(r, verb === "create" ? "create" : "write", error);
  }
}

function lockError(r: Resolved, what: string, error: unknown): LockError {
  const why = errorMessage(error);
  return new LockError(`Cannot ${what} the deploy lock Lease ${r.namespace}/${r.name}: ${why}`, { namespace: r.namespace, leaseName: r.name }, { cause: error });
}
