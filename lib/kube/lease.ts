/**
 * The deploy Lease: one deploy at a time per cluster, a mutex across listener replicas kept in
 * a coordination.k8s.io/v1 Lease in the listener's namespace, with the semantics of client-go's
 * leader election (k8s.io/client-go/tools/leaderelection), spoken through the API client of
 * lib/kube/api.ts.
 *
 * Three durations, as in client-go:
 *
 * - `leaseDuration`: how long a replica waits, from the moment *it* saw the Lease's record last
 *   change, before it takes the Lease from a holder that stopped renewing.
 * - `renewDeadline`: how long the holder keeps acting without a successful renewal. A timer of
 *   its own, independent of any request in flight, aborts the holder's `lost` signal when it
 *   passes: a request hanging on a dead connection cannot stretch it.
 * - `retryPeriod`: the time between renewals, and between attempts to take the Lease.
 *
 * Why two replicas never hold the Lease at once:
 *
 * 1. Every write is compare-and-swap: a create fails if the Lease exists, a replace carries the
 *    resourceVersion that was read (409 Conflict or AlreadyExists: the race is lost), so of
 *    replicas racing for it at most one wins.
 * 2. The holder gives up before anyone may take over. Let S be the moment (on the holder's
 *    clock) it *sent* its last successful write. No one can see that record before S, and a
 *    replica that would take over waits `leaseDuration` from its own first sighting of it, so
 *    not before S + leaseDuration. The holder's deadline timer fires at S + renewDeadline, and
 *    **renewDeadline < leaseDuration** (refused otherwise): the difference is the margin for
 *    the holder to stop its work and for clocks that run at slightly different rates.
 *
 * Only durations measured on one machine's monotonic clock are ever compared: never a
 * `renewTime` written by one replica against another replica's wall clock, so clock skew
 * between nodes does not matter. `renewTime` and `acquireTime` are written for people and
 * other tools to read; this module never reads them.
 *
 * What the wait is measured from (client-go's observedRecord and observedTime): per Lease, this
 * process remembers the resourceVersion it last saw and the local time it first saw it. Every
 * write (a renewal, a take, a release, an edit by hand) changes the resourceVersion and starts
 * the wait again. The memory belongs to the process, not to one call: it is kept per API client,
 * clock and namespace/name, so a second {@link acquireLease} (the next batch) or a later
 * {@link tryAcquireLease} (the next drift pass) goes on with the wait instead of starting it
 * over. Sharing it is safe because the first sighting of a version is never earlier than the
 * write that made it.
 *
 * A process that was paused (SIGSTOP, a frozen VM, a long garbage collection) runs its timers
 * late: `lost` aborts in the first round of timers after it resumes, but I/O callbacks may run
 * just before that; {@link HeldLease.isHeld} checks the deadline on the spot for the moments
 * that matter.
 *
 * Release clears `holderIdentity` (compare-and-swap), so the next replica takes the Lease at
 * once instead of waiting `leaseDuration`; a release after loss writes nothing.
 */
import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import { z } from "zod";
import { delay } from "../backoff.ts";
import { errorMessage, LockError, LockLostError } from "../errors.ts";
import { isConflict, isNotFound, resourcePath, type KubeApi } from "./api.ts";

/** Default name of the deploy Lease. */
export const DEFAULT_LEASE_NAME = "kube-pico-cd-deploy";
/** The same as {@link DEFAULT_LEASE_NAME}: the name the listener's `--lock-lease` option shows. */
export const DEFAULT_LOCK_LEASE = DEFAULT_LEASE_NAME;

/** The part of {@link KubeApi} this module uses. */
export type LeaseApi = Pick<KubeApi, "request" | "getOptional">;

/** Options of {@link acquireLease} and {@link tryAcquireLease}. */
export interface LeaseOptions {
  api: LeaseApi;
  /** The listener's namespace, where the Lease lives. */
  namespace: string;
  /** Lease name. Default {@link DEFAULT_LEASE_NAME}. */
  name?: string;
  /**
   * holderIdentity written to the Lease; must be unique among the replicas alive at a time, as
   * a holder that finds its own identity in the Lease renews it at once. Default
   * {@link defaultHolderIdentity}().
   */
  identity?: string;
  /**
   * How long other replicas wait, from their own sighting of the holder's last write, before
   * they take the Lease, in seconds. Default 15. May be fractional (tests); the Lease itself
   * says it rounded up to whole seconds.
   */
  leaseDurationSeconds?: number;
  /**
   * How long the holder keeps the Lease without a successful renewal, in seconds; must be
   * below `leaseDurationSeconds`. Default 10, or two thirds of `leaseDurationSeconds` when
   * that is below 15.
   */
  renewDeadlineSeconds?: number;
  /**
   * Time between renewals, and between attempts to take the Lease, in seconds; must be below
   * `renewDeadlineSeconds`. Default 2, or a fifth of `renewDeadlineSeconds` when that is below 10.
   */
  retryPeriodSeconds?: number;
  /** Monotonic clock, in milliseconds. Default `performance.now()`. */
  now?: () => number;
  /**
   * Told after each attempt of {@link acquireLease} that did not take the Lease: the replica
   * that holds it (`holder`), or why the attempt failed (`error`, a {@link LockError}).
   */
  onWait?: (why: { holder?: string; error?: unknown }) => void;
  /** Told about each failed renewal that has not (yet) lost the Lease. */
  onRenewError?: (error: unknown) => void;
  /** Aborting stops waiting for the Lease or aborts the request in flight; not the held Lease's lifetime. */
  signal?: AbortSignal | undefined;
}

/** A Lease this process holds. */
export interface HeldLease {
  readonly identity: string;
  readonly namespace: string;
  readonly name: string;
  /**
   * Aborts, with a {@link LockLostError} as reason, when the Lease is lost while held: no
   * renewal succeeded within `renewDeadlineSeconds`, or another holder (or none) was found.
   * Work done under the Lease must stop when it aborts.
   */
  readonly lost: AbortSignal;
  /**
   * Whether the Lease is still held right now: false once lost or released, and false (and
   * `lost` aborts) when the renew deadline has passed even if its timer has not run yet, as
   * after the process was paused. Ask it right before a write that the Lease protects.
   */
  isHeld(): boolean;
  /**
   * Stops renewing and clears the holder (compare-and-swap) so another replica can take the
   * Lease at once. Writes nothing when the Lease was lost, or is no longer ours. Calling it
   * again returns the same promise.
   *
   * @throws {LockError} when the Lease cannot be written; it then expires by itself after
   * `leaseDurationSeconds`.
   */
  release(): Promise<void>;
}

/** The fields of a Lease's spec this module uses; other fields are kept as they are. */
export interface LeaseSpec {
  holderIdentity?: string;
  leaseDurationSeconds?: number;
  acquireTime?: string;
  renewTime?: string;
  leaseTransitions?: number;
  [key: string]: unknown;
}

/** A Lease as this module reads and writes it; other fields are kept as they are. */
interface LeaseObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; resourceVersion?: string; [key: string]: unknown };
  spec?: LeaseSpec;
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

/** What {@link decideLease} is given: what this replica saw, and when, on its own monotonic clock. */
export interface LeaseDecisionInput {
  /** The Lease's spec as the last GET returned it (`{}` for a Lease without one); null when there is no Lease. */
  observed: LeaseSpec | null;
  /** When this replica first saw the record as it is now (its resourceVersion), in ms. */
  observedChangedAtMs: number;
  /** Now, on the same clock, in ms. */
  nowMs: number;
  /** This replica's holderIdentity. */
  identity: string;
  /** This replica's lease duration, in ms. */
  leaseDurationMs: number;
}

/** What to do about the Lease: create it, take it over, renew it (it is ours), or wait. */
export type LeaseDecision =
  | { action: "create" }
  | { action: "take"; transitions: number }
  | { action: "renew" }
  | { action: "wait"; holder: string; untilMs: number };

/**
 * May this replica hold the Lease now, given what it observed and when? Pure.
 *
 * - No Lease: create it.
 * - Held by this identity: renew it (keeping its acquireTime and transitions).
 * - No holder (released): take it at once.
 * - Held by another: take it only when `observedChangedAtMs + duration <= nowMs`, where the
 *   duration is the larger of ours and the one the record states (the holder's renew deadline
 *   is below the duration it wrote, and a record written by another tool may state none);
 *   otherwise wait until then. The holder's renewTime is never compared with our clock.
 *
 * A take counts one more leaseTransition, as client-go does.
 */
export function decideLease(input: LeaseDecisionInput): LeaseDecision {
  const { observed, observedChangedAtMs, nowMs, identity, leaseDurationMs } = input;
  if (observed === null) return { action: "create" };
  const holder = observed.holderIdentity ?? "";
  if (holder === identity) return { action: "renew" };
  const previous = observed.leaseTransitions;
  const transitions = (typeof previous === "number" && Number.isInteger(previous) && previous >= 0 ? previous : 0) + 1;
  if (holder === "") return { action: "take", transitions };
  const stated = observed.leaseDurationSeconds;
  const statedMs = typeof stated === "number" && Number.isFinite(stated) && stated > 0 ? stated * 1000 : 0;
  const untilMs = observedChangedAtMs + Math.max(leaseDurationMs, statedMs);
  return untilMs <= nowMs ? { action: "take", transitions } : { action: "wait", holder, untilMs };
}

/** Longest single request, in ms; shorter when the renew deadline is short (half of it). */
const MAX_REQUEST_TIMEOUT_MS = 2_000;
/** Attempts to take the Lease are `retryPeriod` apart plus up to this fraction of it, so replicas spread out. */
const RETRY_JITTER = 0.2;

const monotonicNow = (): number => performance.now();

interface Resolved {
  api: LeaseApi;
  namespace: string;
  name: string;
  identity: string;
  /** Object path of the Lease. */
  path: string;
  leaseDurationMs: number;
  /** What the Lease states: whole seconds (the API's type is an integer). */
  statedLeaseDurationSeconds: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
  requestTimeoutMs: number;
  now: () => number;
  onWait: (why: { holder?: string; error?: unknown }) => void;
  onRenewError: (error: unknown) => void;
}

function positiveFinite(value: number): boolean {
  return typeof value === "number" && Number.isFinite(value) && value > 0;
}

function resolve(options: LeaseOptions): Resolved {
  const {
    api,
    namespace,
    name = DEFAULT_LEASE_NAME,
    identity = defaultHolderIdentity(),
    leaseDurationSeconds = 15,
    now = monotonicNow,
    onWait = () => {},
    onRenewError = () => {},
  } = options;
  if (!positiveFinite(leaseDurationSeconds)) {
    throw new RangeError(`Cannot use the lease as 'leaseDurationSeconds' must be a positive finite number: current value is ${leaseDurationSeconds}`);
  }
  const { renewDeadlineSeconds = Math.min(10, (leaseDurationSeconds * 2) / 3) } = options;
  if (!positiveFinite(renewDeadlineSeconds)) {
    throw new RangeError(`Cannot use the lease as 'renewDeadlineSeconds' must be a positive finite number: current value is ${renewDeadlineSeconds}`);
  }
  if (renewDeadlineSeconds >= leaseDurationSeconds) {
    throw new RangeError(`Cannot use the lease as 'renewDeadlineSeconds' must be below 'leaseDurationSeconds' (${leaseDurationSeconds}): current value is ${renewDeadlineSeconds}`);
  }
  const { retryPeriodSeconds = Math.min(2, renewDeadlineSeconds / 5) } = options;
  if (!positiveFinite(retryPeriodSeconds)) {
    throw new RangeError(`Cannot use the lease as 'retryPeriodSeconds' must be a positive finite number: current value is ${retryPeriodSeconds}`);
  }
  if (retryPeriodSeconds >= renewDeadlineSeconds) {
    throw new RangeError(`Cannot use the lease as 'retryPeriodSeconds' must be below 'renewDeadlineSeconds' (${renewDeadlineSeconds}): current value is ${retryPeriodSeconds}`);
  }
  if (namespace === "") throw new RangeError(`Cannot use the lease as 'namespace' must not be empty: current value is ""`);
  if (name === "") throw new RangeError(`Cannot use the lease as 'name' must not be empty: current value is ""`);
  if (identity === "") throw new RangeError(`Cannot use the lease as 'identity' must not be empty: current value is ""`);
  const renewDeadlineMs = renewDeadlineSeconds * 1000;
  return {
    api,
    namespace,
    name,
    identity,
    path: resourcePath({ group: "coordination.k8s.io", version: "v1", resource: "leases", namespace, name }),
    leaseDurationMs: leaseDurationSeconds * 1000,
    statedLeaseDurationSeconds: Math.ceil(leaseDurationSeconds),
    renewDeadlineMs,
    retryPeriodMs: retryPeriodSeconds * 1000,
    // Short, so that a hanging request leaves time for another attempt before the deadline.
    requestTimeoutMs: Math.min(MAX_REQUEST_TIMEOUT_MS, renewDeadlineMs / 2),
    now,
    onWait,
    onRenewError,
  };
}

/** What this process saw of one Lease: its resourceVersion, and when it first saw it, on `clock`. */
interface Observation {
  resourceVersion: string;
  atMs: number;
  clock: () => number;
}

// Per API client (one cluster), then per namespace/name; see the module comment.
const observations = new WeakMap<LeaseApi, Map<string, Observation>>();

/** Records a sighting of the Lease at `atMs`; returns when this version was first seen. */
function observe(r: Resolved, lease: LeaseObject | null, atMs: number): number {
  let seen = observations.get(r.api);
  if (seen === undefined) observations.set(r.api, (seen = new Map()));
  const key = leaseKey(r);
  if (lease === null) {
    seen.delete(key);
    return atMs;
  }
  const version = lease.metadata.resourceVersion ?? "";
  const before = seen.get(key);
  // Another clock's times do not compare with ours; a Lease without a version is new at every sighting.
  if (before !== undefined && before.clock === r.now && version !== "" && before.resourceVersion === version) return before.atMs;
  seen.set(key, { resourceVersion: version, atMs, clock: r.now });
  return atMs;
}

// The Leases this process holds, per API client and namespace/name, each with its holder's
// token: a second acquire with the same identity while one is held must wait, not "renew" the
// other's hold.
const heldHere = new WeakMap<LeaseApi, Map<string, object>>();

function heldKeys(r: Resolved): Map<string, object> {
  let keys = heldHere.get(r.api);
  if (keys === undefined) heldHere.set(r.api, (keys = new Map()));
  return keys;
}

function leaseKey(r: Resolved): string {
  return `${r.namespace}/${r.name}`;
}

/**
 * Takes the Lease if it is free, ours, or expired by this replica's own observation, without
 * waiting. A Lease held by another is never taken at its first sighting: this process must
 * have seen it unchanged for the lease duration (across calls; see the module comment).
 *
 * @returns the held Lease, or null when another replica holds it (or won the race for it).
 * @throws {RangeError} when an option is out of range.
 * @throws {LockError} when the Lease cannot be read or written (forbidden, API server down).
 * @throws the signal's reason when `signal` aborts.
 */
export async function tryAcquireLease(options: LeaseOptions): Promise<HeldLease | null> {
  const result = await attempt(resolve(options), options.signal);
  return result.kind === "held" ? result.lease : null;
}

/**
 * Waits as long as needed for the Lease: while another replica holds it, and while the API
 * server cannot be reached or answers with errors. Tries every `retryPeriodSeconds` (with a
 * little jitter, and right when the holder's lease would expire), telling `onWait` about each
 * attempt that did not take it.
 *
 * @throws {RangeError} when an option is out of range.
 * @throws the signal's reason when `signal` aborts: the only way it rejects otherwise.
 */
export async function acquireLease(options: LeaseOptions): Promise<HeldLease> {
  const r = resolve(options);
  const { signal } = options;
  for (;;) {
    signal?.throwIfAborted();
    let waitMs = r.retryPeriodMs * (1 + Math.random() * RETRY_JITTER);
    try {
      const result = await attempt(r, signal);
      if (result.kind === "held") return result.lease;
      r.onWait(result.holder === undefined ? {} : { holder: result.holder });
      if (result.untilMs !== undefined) waitMs = Math.min(waitMs, Math.max(0, result.untilMs - r.now()));
    } catch (error) {
      if (signal?.aborted) throw signal.reason;
      r.onWait({ error });
    }
    await delay(waitMs, { signal });
  }
}

type Attempt = { kind: "held"; lease: HeldLease } | { kind: "wait"; holder?: string; untilMs?: number };

/** One GET, a decision, and at most one write (and a GET naming the winner of a lost race). */
async function attempt(r: Resolved, signal: AbortSignal | undefined): Promise<Attempt> {
  const current = await getLease(r, signal);
  const nowMs = r.now();
  const decision = decideLease({
    observed: current === null ? null : (current.spec ?? {}),
    observedChangedAtMs: observe(r, current, nowMs),
    nowMs,
    identity: r.identity,
    leaseDurationMs: r.leaseDurationMs,
  });
  if (decision.action === "wait") return { kind: "wait", holder: decision.holder, untilMs: decision.untilMs };
  if (decision.action === "renew" && heldKeys(r).has(leaseKey(r))) return { kind: "wait", holder: r.identity };
  const wallTime = formatMicroTime(Date.now());
  const ours = { holderIdentity: r.identity, leaseDurationSeconds: r.statedLeaseDurationSeconds, renewTime: wallTime };
  let body: LeaseObject;
  if (current === null) {
    body = {
      apiVersion: "coordination.k8s.io/v1",
      kind: "Lease",
      metadata: { name: r.name, namespace: r.namespace, labels: { "app.kubernetes.io/managed-by": "kube-pico-cd" } },
      spec: { ...ours, acquireTime: wallTime, leaseTransitions: 0 },
    };
  } else if (decision.action === "take") {
    body = { ...current, spec: { ...current.spec, ...ours, acquireTime: wallTime, leaseTransitions: decision.transitions } };
  } else {
    body = { ...current, spec: { acquireTime: wallTime, ...current.spec, ...ours } };
  }
  const sentAtMs = r.now();
  const written = await writeLease(r, current === null ? "POST" : "PUT", body, current === null ? "create" : "take", signal);
  if (written === null) {
    // Another replica wrote first; name it, and start waiting from this sighting.
    const winner = await getLease(r, signal);
    observe(r, winner, r.now());
    const holder = winner?.spec?.holderIdentity;
    return holder === undefined || holder === "" ? { kind: "wait" } : { kind: "wait", holder };
  }
  observe(r, written, r.now());
  return { kind: "held", lease: hold(r, written, sentAtMs) };
}

/** Starts renewing a Lease just written (the write was sent at `sentAtMs`). */
function hold(r: Resolved, acquired: LeaseObject, sentAtMs: number): HeldLease {
  const lostController = new AbortController();
  const stopRenewing = new AbortController();
  let lease = acquired;
  // When the last successful write was *sent*: others cannot have seen it earlier (module comment).
  let lastSuccessMs = sentAtMs;
  let lastRenewError: unknown;
  let released = false;
  let deadlineTimer: ReturnType<typeof setTimeout> | undefined;
  const where = { namespace: r.namespace, leaseName: r.name, holderIdentity: r.identity };
  const token = {};
  heldKeys(r).set(leaseKey(r), token);
  const forget = (): void => {
    if (heldKeys(r).get(leaseKey(r)) === token) heldKeys(r).delete(leaseKey(r));
  };

  const lose = (why: string, cause?: unknown): void => {
    if (lostController.signal.aborted || released) return;
    clearTimeout(deadlineTimer);
    stopRenewing.abort();
    forget();
    const message = `Lost the deploy Lease ${r.namespace}/${r.name} held as ${r.identity}: ${why}`;
    lostController.abort(new LockLostError(message, where, cause === undefined ? undefined : { cause }));
  };
  const deadlinePassed = (): boolean => r.now() - lastSuccessMs >= r.renewDeadlineMs;
  // Runs from its own timer, whatever the renew loop is waiting for.
  const checkDeadline = (): void => {
    clearTimeout(deadlineTimer);
    const remainingMs = lastSuccessMs + r.renewDeadlineMs - r.now();
    if (remainingMs > 0) {
      deadlineTimer = setTimeout(checkDeadline, remainingMs);
      return;
    }
    const failed = lastRenewError === undefined ? "" : `; the last attempt failed: ${errorMessage(lastRenewError)}`;
    lose(`no renewal succeeded within the renew deadline of ${r.renewDeadlineMs} ms${failed}`, lastRenewError);
  };

  const renewOnce = async (): Promise<void> => {
    const signal = stopRenewing.signal;
    try {
      const outcome = await renew(r, lease, signal);
      if (signal.aborted) return;
      if (outcome.kind === "lost") return lose(outcome.why);
      // A success that arrives after the deadline does not undo it: `lost` is final.
      if (deadlinePassed()) return checkDeadline();
      lease = outcome.lease;
      lastSuccessMs = outcome.sentAtMs;
      lastRenewError = undefined;
      observe(r, lease, r.now());
      checkDeadline();
    } catch (error) {
      if (signal.aborted) return;
      lastRenewError = error;
      r.onRenewError(error);
    }
  };

  const loop = (async () => {
    let nextAtMs = sentAtMs + r.retryPeriodMs;
    while (!stopRenewing.signal.aborted) {
      try {
        await delay(Math.max(0, nextAtMs - r.now()), { signal: stopRenewing.signal });
      } catch {
        return;
      }
      // Attempts start retryPeriod apart, so one that timed out is followed at once by the next.
      nextAtMs = r.now() + r.retryPeriodMs;
      await renewOnce();
    }
  })();
  checkDeadline();

  const releaseOnce = async (): Promise<void> => {
    // Past the deadline (a paused process whose timer has not run yet) it may be another's.
    if (deadlinePassed()) checkDeadline();
    released = true;
    clearTimeout(deadlineTimer);
    stopRenewing.abort();
    await loop;
    if (lostController.signal.aborted) return;
    const written = await writeLease(r, "PUT", cleared(lease), "release", undefined);
    if (written !== null) {
      observe(r, written, r.now());
      return;
    }
    // The resourceVersion moved (an aborted renewal may have landed): clear it only if still ours.
    const seen = await getLease(r, undefined);
    if (seen === null || seen.spec?.holderIdentity !== r.identity) return;
    const again = await writeLease(r, "PUT", cleared(seen), "release", undefined);
    if (again !== null) observe(r, again, r.now());
  };

  let releasing: Promise<void> | undefined;
  return {
    identity: r.identity,
    namespace: r.namespace,
    name: r.name,
    lost: lostController.signal,
    isHeld() {
      if (released || lostController.signal.aborted) return false;
      if (!deadlinePassed()) return true;
      checkDeadline();
      return false;
    },
    release() {
      releasing ??= releaseOnce().finally(forget);
      return releasing;
    },
  };
}

type Renewal = { kind: "renewed"; lease: LeaseObject; sentAtMs: number } | { kind: "lost"; why: string };

/** One renewal: a replace of the Lease we last wrote; on a conflict, a look at whose it is now. */
async function renew(r: Resolved, lease: LeaseObject, signal: AbortSignal): Promise<Renewal> {
  const sentAtMs = r.now();
  const written = await writeLease(r, "PUT", renewed(r, lease), "renew", signal);
  if (written !== null) return { kind: "renewed", lease: written, sentAtMs };
  // Someone wrote since: maybe a renewal of ours that timed out but landed, maybe another holder.
  const seen = await getLease(r, signal);
  if (seen === null) return { kind: "lost", why: "the Lease was deleted" };
  observe(r, seen, r.now());
  const holder = seen.spec?.holderIdentity ?? "";
  if (holder !== r.identity) return { kind: "lost", why: holder === "" ? "its holder was cleared by someone else" : `it is now held by ${JSON.stringify(holder)}` };
  const retriedAtMs = r.now();
  const again = await writeLease(r, "PUT", renewed(r, seen), "renew", signal);
  if (again === null) {
    throw new LockError(`Cannot renew the deploy Lease ${r.namespace}/${r.name}: it changed again while being renewed`, { namespace: r.namespace, leaseName: r.name });
  }
  return { kind: "renewed", lease: again, sentAtMs: retriedAtMs };
}

function renewed(r: Resolved, lease: LeaseObject): LeaseObject {
  return { ...lease, spec: { ...lease.spec, holderIdentity: r.identity, leaseDurationSeconds: r.statedLeaseDurationSeconds, renewTime: formatMicroTime(Date.now()) } };
}

function cleared(lease: LeaseObject): LeaseObject {
  const { holderIdentity: _, ...rest } = lease.spec ?? {};
  return { ...lease, spec: { ...rest, renewTime: formatMicroTime(Date.now()) } };
}

function parseLease(r: Resolved, value: unknown): LeaseObject {
  const parsed = leaseSchema.safeParse(value);
  if (!parsed.success) {
    throw new LockError(`Cannot read the deploy Lease ${r.namespace}/${r.name}: the API server's answer is not a Lease (${z.prettifyError(parsed.error).replace(/\s+/g, " ")})`, {
      namespace: r.namespace,
      leaseName: r.name,
    });
  }
  return parsed.data as LeaseObject;
}

async function getLease(r: Resolved, signal: AbortSignal | undefined): Promise<LeaseObject | null> {
  let got: unknown;
  try {
    got = await r.api.getOptional(r.path, { signal, timeoutMs: r.requestTimeoutMs });
  } catch (error) {
    throw failure(r, "read", error, signal);
  }
  return got === null ? null : parseLease(r, got);
}

/** Create (POST) or replace (PUT, compare-and-swap on resourceVersion); null when the race was lost. */
async function writeLease(r: Resolved, method: "POST" | "PUT", lease: LeaseObject, what: "create" | "take" | "renew" | "release", signal: AbortSignal | undefined): Promise<LeaseObject | null> {
  const path = method === "POST" ? resourcePath({ group: "coordination.k8s.io", version: "v1", resource: "leases", namespace: r.namespace }) : r.path;
  let written: unknown;
  try {
    written = await r.api.request({ method, path, body: lease, timeoutMs: r.requestTimeoutMs, signal });
  } catch (error) {
    // 409: a stale resourceVersion, or AlreadyExists; 404 on a replace: deleted meanwhile.
    if (isConflict(error) || (method === "PUT" && isNotFound(error))) return null;
    throw failure(r, what === "take" ? "take over" : what, error, signal);
  }
  return parseLease(r, written);
}

/** The error to throw for a failed request: the signal's reason when it aborted, else a LockError. */
function failure(r: Resolved, what: string, error: unknown, signal: AbortSignal | undefined): unknown {
  if (signal?.aborted) return signal.reason;
  return new LockError(`Cannot ${what} the deploy Lease ${r.namespace}/${r.name}: ${errorMessage(error)}`, { namespace: r.namespace, leaseName: r.name }, { cause: error });
}
