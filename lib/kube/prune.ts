/**
 * Prune: after a successful apply, delete what the previous build applied and the new one
 * no longer holds. Only objects of the recorded inventory are ever candidates, and of those
 * only ones that still carry our server-side apply field manager (an object someone deleted
 * and re-created by hand is theirs now) or that nobody manages any field of.
 *
 * Kept, and dropped from the inventory (they are no longer ours to delete later):
 * - objects annotated `kube-pico-cd.io/prune: disabled`;
 * - CustomResourceDefinitions, unless `pruneCrds` (deleting one deletes every resource of it);
 * - objects no longer managed by our field manager.
 *
 * Deleted in phases, each waiting for the previous: workloads and every other object, then
 * Namespaces, then CRDs. `--wait=false`: the deletion is requested, and finalizers and the
 * garbage collector finish it, so a finalizer that never completes cannot hold up the
 * deploy. An object that could not be read or deleted stays in the inventory, so the next
 * deploy tries again; that is a warning, never a failed deploy (its objects are applied).
 */
import { errorMessage, KubectlError } from "../errors.ts";
import { runKubectl, type KubectlTarget } from "./kubectl.ts";
import { byNamespace, itemsOfGetOutput, liveRef, objectRef, resourceType } from "./health.ts";
import type { RecordedObject } from "./record.ts";

/** The annotation that keeps an object when it leaves the bundle: `kube-pico-cd.io/prune: disabled`. */
export const PRUNE_ANNOTATION = "kube-pico-cd.io/prune";

/** An object that was not pruned although it left the bundle, and why. */
export type KeptObject = RecordedObject & { why: string };

/** What {@link pruneObjects} did. */
export interface PruneResult {
  /** Deleted (deletion requested). */
  pruned: RecordedObject[];
  /** Left the bundle but kept; no longer in the inventory. */
  kept: KeptObject[];
  /** Could not be read or deleted: they stay in the inventory. */
  failed: { object: RecordedObject; error: string }[];
  /** Already gone from the cluster. */
  gone: RecordedObject[];
  durationMs: number;
}

/** Options of {@link pruneObjects}. */
export interface PruneOptions {
  kubectl: KubectlTarget;
  /** Our server-side apply field manager. Default "kube-pico-cd". */
  fieldManager?: string;
  /** Also delete CustomResourceDefinitions that left the bundle. Default false. */
  pruneCrds?: boolean;
  /** Per kubectl call, in ms. Default 60000. */
  timeoutMs?: number;
  signal?: AbortSignal | undefined;
}

/** The objects of `previous` that are not in `next`, in `previous` order. */
export function pruneCandidates(previous: readonly RecordedObject[], next: readonly RecordedObject[]): RecordedObject[] {
  const keep = new Set(next.map(objectRef));
  const seen = new Set<string>();
  return previous.filter((item) => {
    const k = objectRef(item);
    if (keep.has(k) || seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

function isCrd(item: RecordedObject): boolean {
  return item.group === "apiextensions.k8s.io" && item.kind === "CustomResourceDefinition";
}

function isNamespace(item: RecordedObject): boolean {
  return item.group === "" && item.kind === "Namespace";
}

/** The deletion phase of an object: 0 workloads and the rest, 1 Namespaces, 2 CRDs. */
export function prunePhase(item: RecordedObject): 0 | 1 | 2 {
  return isCrd(item) ? 2 : isNamespace(item) ? 1 : 0;
}

/** Why a live object must be kept, or undefined when it may be deleted. */
export function keepReason(live: unknown, fieldManager: string): string | undefined {
  const metadata = (live as { metadata?: { annotations?: Record<string, unknown>; managedFields?: unknown } }).metadata;
  const annotation = metadata?.annotations?.[PRUNE_ANNOTATION];
  if (typeof annotation === "string" && annotation.trim().toLowerCase() === "disabled") return `annotation ${PRUNE_ANNOTATION}: disabled`;
  // An object whose applied fields are all identifying (a bare Namespace) has no
  // managedFields at all: nobody else claims it either, so it stays a candidate.
  const managers = Array.isArray(metadata?.managedFields) ? (metadata.managedFields as { manager?: unknown }[]) : [];
  if (managers.length > 0 && !managers.some((m) => m.manager === fieldManager)) return `not managed by field manager ${fieldManager} any more`;
  return undefined;
}

/** Groups by namespace, then by resource type: one kubectl call each. */
function groups(items: readonly RecordedObject[]): { namespace: string | undefined; type: string; items: RecordedObject[] }[] {
  const out: { namespace: string | undefined; type: string; items: RecordedObject[] }[] = [];
  for (const [namespace, inNamespace] of byNamespace(items)) {
    const byType = new Map<string, RecordedObject[]>();
    for (const item of inNamespace) {
      const list = byType.get(resourceType(item)) ?? [];
      list.push(item);
      byType.set(resourceType(item), list);
    }
    for (const [type, list] of byType) out.push({ namespace, type, items: list });
  }
  return out;
}

/** The argv of a grouped get or delete. Exported for tests. */
export function pruneArgs(verb: "get" | "delete", namespace: string | undefined, type: string, names: readonly string[]): string[] {
  return [
    verb,
    ...(namespace === undefined ? [] : [`--namespace=${namespace}`]),
    type,
    ...names,
    "--ignore-not-found",
    // kubectl hides managedFields unless asked; the field manager check needs them.
    ...(verb === "get" ? ["--show-managed-fields", "-o", "json"] : ["--wait=false"]),
  ];
}

/** True when kubectl says the resource type itself is gone (its CRD was deleted): so are its objects. */
function isUnknownType(error: unknown): boolean {
  return error instanceof KubectlError && /the server doesn't have a resource type|no matches for kind/.test(error.stderr);
}

/**
 * Deletes the objects of `previous` missing from `next` (see the module comment for what is
 * kept and in which order). Never throws for a single object: failures are in `failed`.
 *
 * @throws the signal's reason when `signal` aborts.
 */
export async function pruneObjects(previous: readonly RecordedObject[], next: readonly RecordedObject[], options: PruneOptions): Promise<PruneResult> {
  const { kubectl, fieldManager = "kube-pico-cd", pruneCrds = false, timeoutMs = 60_000, signal } = options;
  const started = performance.now();
  const result: PruneResult = { pruned: [], kept: [], failed: [], gone: [], durationMs: 0 };
  const candidates: RecordedObject[] = [];
  for (const item of pruneCandidates(previous, next)) {
    if (isCrd(item) && !pruneCrds) result.kept.push({ ...item, why: "CustomResourceDefinitions are pruned only with --prune-crds" });
    else candidates.push(item);
  }

  // Read every candidate first: the annotation and the field manager decide.
  const deletable: RecordedObject[] = [];
  for (const group of groups(candidates)) {
    let live: Map<string, unknown>;
    try {
      const { stdout } = await runKubectl(pruneArgs("get", group.namespace, group.type, group.items.map((i) => i.name)), { ...kubectl, timeoutMs, signal });
      live = new Map(itemsOfGetOutput(stdout).map((object) => [liveRef(object), object]));
    } catch (error) {
      signal?.throwIfAborted();
      if (isUnknownType(error)) {
        result.gone.push(...group.items);
        continue;
      }
      for (const item of group.items) result.failed.push({ object: item, error: `cannot read it: ${errorMessage(error)}` });
      continue;
    }
    for (const item of group.items) {
      const object = live.get(objectRef(item));
      if (object === undefined) {
        result.gone.push(item);
        continue;
      }
      const why = keepReason(object, fieldManager);
      if (why === undefined) deletable.push(item);
      else result.kept.push({ ...item, why });
    }
  }

  for (const phase of [0, 1, 2] as const) {
    for (const group of groups(deletable.filter((item) => prunePhase(item) === phase))) {
      try {
        await runKubectl(pruneArgs("delete", group.namespace, group.type, group.items.map((i) => i.name)), { ...kubectl, timeoutMs, signal });
        result.pruned.push(...group.items);
      } catch (error) {
        signal?.throwIfAborted();
        for (const item of group.items) result.failed.push({ object: item, error: `cannot delete it: ${errorMessage(error)}` });
      }
    }
  }
  result.durationMs = Math.round(performance.now() - started);
  return result;
}
