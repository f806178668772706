/**
 * Health after an apply: did the workloads of the bundle come up? Polls the applied
 * Deployments, StatefulSets, DaemonSets, Jobs and CustomResourceDefinitions with `kubectl get`
 * and judges each from its status, the way `kubectl rollout status` and kstatus do:
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
 * that object and the reason. Other kinds are not checked. A failed `kubectl get` is retried
 * until the budget runs out; it never fails the deploy.
 */
import { groupOf } from "./apply.ts";
import { delay } from "../backoff.ts";
import { isRecord } from "../manifests/bundle.ts";
import { errorMessage } from "../errors.ts";
import { runKubectl, type KubectlTarget } from "./kubectl.ts";
import type { RecordedObject } from "./record.ts";

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
  kubectl: KubectlTarget;
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
  now?: () => number;
}

const CHECKED: ReadonlySet<string> = new Set(["apps/Deployment", "apps/StatefulSet", "apps/DaemonSet", "batch/Job", "apiextensions.k8s.io/CustomResourceDefinition"]);

/** True for the kinds whose health is checked. */
export function isHealthChecked(item: Pick<RecordedObject, "group" | "kind">): boolean {
  return CHECKED.has(`${item.group}/${item.kind}`);
}

/** `group/kind/namespace/name`, the key objects are named by in outcomes (`/Namespace//web`). */
export function objectRef(item: RecordedObject): string {
  return `${item.group}/${item.kind}/${item.namespace ?? ""}/${item.name}`;
}

/** The kubectl resource type of an item: `Deployment.apps`, or `ConfigMap` for the core group. */
export function resourceType(item: Pick<RecordedObject, "group" | "kind">): string {
  return item.group === "" ? item.kind : `${item.kind}.${item.group}`;
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
 * The health of one live object (the JSON of `kubectl get -o json`), judged by its kind.
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

function crdHealth(crd: unknown): ObjectHealth {
  const names = condition(crd, "NamesAccepted");
  if (names?.status === "False") return { state: "failed", reason: describeCondition(names) || "NamesAccepted is False" };
  if (condition(crd, "Established")?.status === "True") return { state: "ready" };
  return { state: "progressing", reason: "not Established yet" };
}

/** The items of `kubectl get -o json` output: one object, a List, or nothing (--ignore-not-found). */
export function itemsOfGetOutput(stdout: string): unknown[] {
  if (stdout.trim() === "") return [];
  const parsed: unknown = JSON.parse(stdout);
  if (isRecord(parsed) && parsed["kind"] === "List" && Array.isArray(parsed["items"])) return parsed["items"];
  return [parsed];
}

/** The key of a live object, as {@link objectRef} makes it. */
export function liveRef(object: unknown): string {
  const group = groupOf(String(field(object, "apiVersion") ?? ""));
  const namespace = field(object, "metadata", "namespace");
  return `${group}/${String(field(object, "kind"))}/${typeof namespace === "string" ? namespace : ""}/${String(field(object, "metadata", "name"))}`;
}

/**
 * The argv of one `kubectl get` of several objects, grouped by namespace (cluster-scoped
 * objects without `--namespace`). Exported for tests.
 */
export function getObjectsArgs(namespace: string | undefined, items: readonly RecordedObject[]): string[] {
  return [
    "get",
    ...(namespace === undefined ? [] : [`--namespace=${namespace}`]),
    ...items.map((item) => `${resourceType(item)}/${item.name}`),
    "--ignore-not-found",
    "-o",
    "json",
  ];
}

/** Items grouped by namespace (undefined: cluster-scoped), in first-seen order. */
export function byNamespace<T extends { namespace?: string | undefined }>(items: readonly T[]): Map<string | undefined, T[]> {
  const groups = new Map<string | undefined, T[]>();
  for (const item of items) {
    const list = groups.get(item.namespace) ?? [];
    list.push(item);
    groups.set(item.namespace, list);
  }
  return groups;
}

/**
 * Waits until every checked object of `inventory` is healthy, one is Degraded, or
 * `timeoutMs` has passed. Resolves Healthy at once when nothing is checked.
 *
 * @throws the signal's reason when `signal` aborts (shutdown, lost lock): no verdict then.
 */
export async function waitForHealth(inventory: readonly RecordedObject[], options: WaitForHealthOptions): Promise<HealthResult> {
  const { kubectl, timeoutMs = 300_000, intervalMs = 2_000, signal, stopSignal, now = Date.now } = options;
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
  const groups = byNamespace(checked);
  for (;;) {
    signal?.throwIfAborted();
    let waitingFor: { object: string; reason: string } | undefined;
    for (const [namespace, items] of groups) {
      const remainingMs = Math.max(1_000, started + timeoutMs - now());
      let live: Map<string, unknown>;
      try {
        const { stdout } = await runKubectl(getObjectsArgs(namespace, items), { ...kubectl, timeoutMs: Math.min(30_000, remainingMs), signal });
        live = new Map(itemsOfGetOutput(stdout).map((object) => [liveRef(object), object]));
      } catch (error) {
        signal?.throwIfAborted();
        waitingFor ??= { object: objectRef(items[0]!), reason: `cannot read it: ${errorMessage(error)}` };
        continue;
      }
      for (const item of items) {
        const ref = objectRef(item);
        const object = live.get(ref);
        if (object === undefined) {
          // A Job may delete itself once finished (ttlSecondsAfterFinished: 0).
          if (item.kind === "Job") continue;
          waitingFor ??= { object: ref, reason: "not found after the apply" };
          continue;
        }
        const health = objectHealth(object);
        if (health.state === "failed") return done("Degraded", { object: ref, reason: health.reason });
        if (health.state === "progressing") waitingFor ??= { object: ref, reason: health.reason };
      }
    }
    if (waitingFor === undefined) return done("Healthy");
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
