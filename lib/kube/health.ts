/**
 * Health after an apply: did the workloads of the bundle come up? Polls the applied
 * Deployments, StatefulSets, DaemonSets, Jobs and CustomResourceDefinitions through the API
 * (a GET each, at the preferred version of the object's group; lib/kube/discovery.ts finds
 * the path) and judges each from its status, the way `kubectl rollout status` and kstatus do:
 *
 * - Deployment: the controller observed the new generation, every replica is updated and
 *   available, no old replica is left; Degraded when its `Progressing` condition says
 *   `ProgressDeadlineExceeded` (spec.progressDeadlineSeconds, 600 s by default).
 * - StatefulSet: observed, `readyReplicas` reached `replicas`, and (RollingUpdate) every pod
 *   is on the update revision, or at least those above the partition.
 * - DaemonSet: observed, every scheduled pod updated and available (RollingUpdate).
 * - Job: `Complete`; Degraded when `Failed`. A suspended Job counts as healthy.
 * - CustomResourceDefinition: `Established`; Degraded when `NamesAccepted` is False.
 *
 * The result is Healthy (all of them), Degraded (the first one that can no longer succeed;
 * waiting stops there) or Timeout (the budget ran out while one was still progressing), with
 * that object and the reason. Other kinds are not checked. A read that fails (API server
 * unreachable, overloaded, forbidden) is retried until the budget runs out; it never fails
 * the deploy.
 */
import { delay } from "../backoff.ts";
import { isRecord } from "../manifests/bundle.ts";
import { formatRef, groupOf, type ObjectRef } from "../manifests/object-ref.ts";
import { errorMessage } from "../errors.ts";
import type { KubeApi } from "./api.ts";
import { readObject } from "./discovery.ts";

/** The verdict on the whole bundle. */
export type HealthStatus = "Healthy" | "Degraded" | "Timeout";

/** What {@link waitForHealth} found; stored as the outcome's `health`. */
export interface HealthResult {
  status: HealthStatus;
  /** Time spent waiting, in ms. */
  durationMs: number;
  /** Objects checked. */
  checked: number;
  /** The object that is not healthy, as `group/kind/namespace/name`. */
  object?: string;
  reason?: string;
}

/** The state of one object. */
export type ObjectHealth = { state: "ready" } | { state: "progressing"; reason: string } | { state: "failed"; reason: string };

/** Options of {@link waitForHealth}. */
export interface WaitForHealthOptions {
  /** The API server to read the objects from. */
  api: KubeApi;
  /** How long to wait for every object, in ms. Default 300000. */
  timeoutMs?: number;
  /** Time between polls, in ms. Default 2000. */
  intervalMs?: number;
  signal?: AbortSignal | undefined;
  /**
   * Aborted when the listener is asked to stop: the wait then ends at once with Timeout, so
   * the applied build is still recorded within the shutdown grace period.
   */
  stopSignal?: AbortSignal | undefined;
  /**
   * Told after each poll that leaves objects to wait for: how many of the checked objects are
   * healthy, and the first that is not, with why (progress for `publish --wait`).
   */
  onPoll?: (progress: { healthy: number; checked: number; waitingFor: { object: string; reason: string } }) => void;
  now?: () => number;
}

const CHECKED: ReadonlySet<string> = new Set(["apps/Deployment", "apps/StatefulSet", "apps/DaemonSet", "batch/Job", "apiextensions.k8s.io/CustomResourceDefinition"]);

/** True for the kinds whose health is checked. */
export function isHealthChecked(item: Pick<ObjectRef, "group" | "kind">): boolean {
  return CHECKED.has(`${item.group}/${item.kind}`);
}

function field(object: unknown, ...path: string[]): unknown {
  let at: unknown = object;
  for (const key of path) {
    if (!isRecord(at)) return undefined;
    at = at[key];
  }
  return at;
}

function num(value: unknown, fallback = 0): number {
  return typeof value === "number" && Number.isFinite(value) ? value : fallback;
}

function condition(object: unknown, type: string): { status?: string; reason?: string; message?: string } | undefined {
  const conditions = field(object, "status", "conditions");
  if (!Array.isArray(conditions)) return undefined;
  const found = conditions.find((c: unknown) => isRecord(c) && c["type"] === type);
  if (!isRecord(found)) return undefined;
  const text = (key: string) => (typeof found[key] === "string" ? (found[key] as string) : undefined);
  const out: { status?: string; reason?: string; message?: string } = {};
  for (const key of ["status", "reason", "message"] as const) {
    const value = text(key);
    if (value !== undefined) out[key] = value;
  }
  return out;
}

function describeCondition(c: { reason?: string; message?: string }): string {
  return [c.reason, c.message].filter((part) => part !== undefined && part !== "").join(": ");
}

/** Progressing until the controller has seen the current spec. */
function notObserved(object: unknown): ObjectHealth | undefined {
  const generation = num(field(object, "metadata", "generation"));
  const observed = num(field(object, "status", "observedGeneration"), -1);
  return observed < generation ? { state: "progressing", reason: `the controller has not observed generation ${generation} yet` } : undefined;
}

/**
 * The health of one live object (as the API server returns it), judged by its kind.
 * Kinds that are not checked are ready.
 */
export function objectHealth(object: unknown): ObjectHealth {
  switch (`${groupOf(String(field(object, "apiVersion") ?? ""))}/${String(field(object, "kind"))}`) {
    case "apps/Deployment":
      return deploymentHealth(object);
    case "apps/StatefulSet":
      return statefulSetHealth(object);
    case "apps/DaemonSet":
      return daemonSetHealth(object);
    case "batch/Job":
      return jobHealth(object);
    case "apiextensions.k8s.io/CustomResourceDefinition":
      return crdHealth(object);
    default:
      return { state: "ready" };
  }
}

function deploymentHealth(d: unknown): ObjectHealth {
  const progressing = condition(d, "Progressing");
  if (progressing?.status === "False" && progressing.reason === "ProgressDeadlineExceeded") {
    return { state: "failed", reason: describeCondition(progressing) };
  }
  const pending = notObserved(d);
  if (pending) return pending;
  const replicas = num(field(d, "spec", "replicas"), 1);
  const updated = num(field(d, "status", "updatedReplicas"));
  const total = num(field(d, "status", "replicas"));
  const available = num(field(d, "status", "availableReplicas"));
  const failure = condition(d, "ReplicaFailure");
  const because = failure?.status === "True" ? ` (${describeCondition(failure)})` : "";
  if (updated < replicas) return { state: "progressing", reason: `${updated} of ${replicas} replicas updated${because}` };
  if (total > updated) return { state: "progressing", reason: `${total - updated} old replicas are pending termination` };
  if (available < updated) return { state: "progressing", reason: `${available} of ${updated} updated replicas available${because}` };
  return { state: "ready" };
}

function statefulSetHealth(s: unknown): ObjectHealth {
  const strategy = field(s, "spec", "updateStrategy", "type") ?? "RollingUpdate";
  const pending = notObserved(s);
  if (pending) return pending;
  if (strategy !== "RollingUpdate") return { state: "ready" };
  const replicas = num(field(s, "spec", "replicas"), 1);
  const ready = num(field(s, "status", "readyReplicas"));
  if (ready < replicas) return { state: "progressing", reason: `${ready} of ${replicas} replicas ready` };
  const partition = num(field(s, "spec", "updateStrategy", "rollingUpdate", "partition"));
  if (partition > 0) {
    const updated = num(field(s, "status", "updatedReplicas"));
    return updated < replicas - partition
      ? { state: "progressing", reason: `${updated} of ${replicas - partition} replicas above the partition updated` }
      : { state: "ready" };
  }
  const current = field(s, "status", "currentRevision");
  const update = field(s, "status", "updateRevision");
  if (current !== update) return { state: "progressing", reason: `rolling out revision ${String(update)}: ${num(field(s, "status", "updatedReplicas"))} of ${replicas} pods updated` };
  return { state: "ready" };
}

function daemonSetHealth(ds: unknown): ObjectHealth {
  const pending = notObserved(ds);
  if (pending) return pending;
  if ((field(ds, "spec", "updateStrategy", "type") ?? "RollingUpdate") !== "RollingUpdate") return { state: "ready" };
  const desired = num(field(ds, "status", "desiredNumberScheduled"));
  const updated = num(field(ds, "status", "updatedNumberScheduled"));
  const available = num(field(ds, "status", "numberAvailable"));
  if (updated < desired) return { state: "progressing", reason: `${updated} of ${desired} scheduled pods updated` };
  if (available < desired) return { state: "progressing", reason: `${available} of ${desired} scheduled pods available` };
  return { state: "ready" };
}

function jobHealth(job: unknown): ObjectHealth {
  const failed = condition(job, "Failed");
  if (failed?.status === "True") return { state: "failed", reason: describeCondition(failed) || "Failed" };
  if (condition(job, "Complete")?.status === "True") return { state: "ready" };
  if (field(job, "spec", "suspend") === true) return { state: "ready" };
  const succeeded = num(field(job, "status", "succeeded"));
  const completions = num(field(job, "spec", "completions"), 1);
  return { state: "progressing", reason: `${succeeded} of ${completions} completions` };
}

/**
 * The health of a CustomResourceDefinition: ready when `Established`, failed when
 * `NamesAccepted` is False, progressing otherwise (also while it has no status yet).
 */
export function crdHealth(crd: unknown): ObjectHealth {
  const names = condition(crd, "NamesAccepted");
  if (names?.status === "False") return { state: "failed", reason: describeCondition(names) || "NamesAccepted is False" };
  if (condition(crd, "Established")?.status === "True") return { state: "ready" };
  return { state: "progressing", reason: "not Established yet" };
}

/** What one poll found of one checked object. */
type Observed = { state: "live"; object: unknown } | { state: "absent" } | { state: "unreadable"; reason: string };

/**
 * Waits until every checked object of `inventory` is healthy, one is Degraded, or
 * `timeoutMs` has passed. Resolves Healthy at once, without a request, when nothing is checked.
 * Each poll reads the checked objects side by side; the verdict goes by inventory order (the
 * first Degraded object, or the first one still waited for).
 *
 * @throws the signal's reason when `signal` aborts (shutdown, lost lock): no verdict then.
 */
export async function waitForHealth(inventory: readonly ObjectRef[], options: WaitForHealthOptions): Promise<HealthResult> {
  const { api, timeoutMs = 300_000, intervalMs = 2_000, signal, stopSignal, onPoll, now = Date.now } = options;
  if (!(Number.isFinite(timeoutMs) && timeoutMs > 0)) {
    throw new RangeError(`Cannot wait for health as 'timeoutMs' must be a positive finite number: current value is ${timeoutMs}`);
  }
  const started = now();
  const checked = inventory.filter(isHealthChecked);
  const done = (status: HealthStatus, extra: { object?: string; reason?: string } = {}): HealthResult => ({
    status,
    durationMs: now() - started,
    checked: checked.length,
    ...extra,
  });
  if (checked.length === 0) return done("Healthy");
  const observe = async (item: ObjectRef): Promise<Observed> => {
    const requestTimeoutMs = Math.min(30_000, Math.max(1_000, started + timeoutMs - now()));
    try {
      const object = await readObject(api, item, { signal, timeoutMs: requestTimeoutMs });
      return object === null ? { state: "absent" } : { state: "live", object };
    } catch (error) {
      signal?.throwIfAborted();
      return { state: "unreadable", reason: `cannot read it: ${errorMessage(error)}` };
    }
  };
  for (;;) {
    signal?.throwIfAborted();
    const observed = await Promise.all(checked.map(observe));
    let waitingFor: { object: string; reason: string } | undefined;
    let healthy = 0;
    for (const [index, item] of checked.entries()) {
      const ref = formatRef(item);
      const seen = observed[index]!;
      if (seen.state === "unreadable") {
        waitingFor ??= { object: ref, reason: seen.reason };
        continue;
      }
      if (seen.state === "absent") {
        // A Job may delete itself once finished (ttlSecondsAfterFinished: 0).
        if (item.group === "batch" && item.kind === "Job") continue;
        waitingFor ??= { object: ref, reason: "not found after the apply" };
        continue;
      }
      const health = objectHealth(seen.object);
      if (health.state === "failed") return done("Degraded", { object: ref, reason: health.reason });
      if (health.state === "progressing") waitingFor ??= { object: ref, reason: health.reason };
      else healthy++;
    }
    if (waitingFor === undefined) return done("Healthy");
    onPoll?.({ healthy, checked: checked.length, waitingFor });
    const leftMs = started + timeoutMs - now();
    if (leftMs <= 0) return done("Timeout", { object: waitingFor.object, reason: `not healthy after ${Math.round(timeoutMs / 1000)} s: ${waitingFor.reason}` });
    if (stopSignal?.aborted) {
      return done("Timeout", { object: waitingFor.object, reason: `not healthy when the listener stopped after ${Math.round((now() - started) / 1000)} s: ${waitingFor.reason}` });
    }
    const sleepSignal = stopSignal && signal ? AbortSignal.any([signal, stopSignal]) : (stopSignal ?? signal);
    await delay(Math.min(intervalMs, leftMs), sleepSignal ? { signal: sleepSignal } : {}).catch((error: unknown) => {
      // A stop request only ends the sleep; the loop then returns Timeout after one more look.
      if (signal?.aborted || !stopSignal?.aborted) throw error;
    });
  }
}
