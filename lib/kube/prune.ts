/**
 * Prune: after a successful apply, delete what the previous build applied and the new one
 * no longer holds. Only objects of the recorded inventory are ever candidates, and of those
 * only ones that still carry our server-side apply field manager (an object someone deleted
 * and re-created by hand is theirs now) or that nobody manages any field of.
 *
 * Kept, and dropped from the inventory (they are no longer ours to delete later):
 * - objects annotated `kube-pico-cd.io/prune: disabled`;
 * - CustomResourceDefinitions, unless `pruneCrds` (deleting one deletes every resource of it);
 * - objects no longer managed by our field manager;
 * - objects re-created by someone else between our read and our delete: every delete
 *   carries the uid that was read as a precondition, so the API server refuses it (409).
 *
 * {@link planPrune} decides, given the inventories and what was read; {@link pruneObjects}
 * reads the candidates through the API, asks it, and deletes. Deleted in phases, each
 * after the previous one: workloads and every other object, then Namespaces, then CRDs.
 * Deletion is requested with background propagation, and finalizers and the garbage
 * collector finish it, so a finalizer that never completes cannot hold up the deploy. An
 * object that could not be read or deleted stays in the inventory, so the next deploy tries
 * again; that is a warning, never a failed deploy (its objects are applied).
 */
import { errorMessage } from "../errors.ts";
import { isRecord } from "../manifests/bundle.ts";
import { formatRef, type ObjectRef } from "../manifests/object-ref.ts";
import { isConflict, isNotFound, type KubeApi } from "./api.ts";
import { discoveryOf, objectPath, readObject } from "./discovery.ts";

/** The annotation that keeps an object when it leaves the bundle: `kube-pico-cd.io/prune: disabled`. */
export const PRUNE_ANNOTATION = "kube-pico-cd.io/prune";

/** An object that was not pruned although it left the bundle, and why. */
export type KeptObject = ObjectRef & { why: string };

/** An object prune could not finish with, and why; it stays in the inventory. */
export interface FailedObject {
  object: ObjectRef;
  error: string;
}

/** What {@link pruneObjects} did. */
export interface PruneResult {
  /** Deleted (deletion requested). */
  pruned: ObjectRef[];
  /** Left the bundle but kept; no longer in the inventory. */
  kept: KeptObject[];
  /** Could not be read or deleted: they stay in the inventory. */
  failed: FailedObject[];
  /** Already gone from the cluster (or its kind is no longer served). */
  gone: ObjectRef[];
  durationMs: number;
}

/** Options of {@link pruneObjects}. */
export interface PruneOptions {
  /** The API server to read and delete through. */
  api: KubeApi;
  /** Our server-side apply field manager. Default "kube-pico-cd". */
  fieldManager?: string;
  /** Also delete CustomResourceDefinitions that left the bundle. Default false. */
  pruneCrds?: boolean;
  /** Per API request, in ms. Default 30000. */
  timeoutMs?: number;
  signal?: AbortSignal | undefined;
  /**
   * Why a live candidate must be kept besides the annotation and the field manager, or
   * undefined: the listener keeps objects that carry another app's ownership mark.
   */
  keep?: ((live: unknown) => string | undefined) | undefined;
}

/** The objects of `previous` that are not in `next`, in `previous` order, once each. */
export function pruneCandidates(previous: readonly ObjectRef[], next: readonly ObjectRef[]): ObjectRef[] {
  const keep = new Set(next.map(formatRef));
  const seen = new Set<string>();
  return previous.filter((item) => {
    const k = formatRef(item);
    if (keep.has(k) || seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

function isCrd(item: ObjectRef): boolean {
  return item.group === "apiextensions.k8s.io" && item.kind === "CustomResourceDefinition";
}

function isNamespace(item: ObjectRef): boolean {
  return item.group === "" && item.kind === "Namespace";
}

/** The deletion phase of an object: 0 workloads and the rest, 1 Namespaces, 2 CRDs. */
export function prunePhase(item: ObjectRef): 0 | 1 | 2 {
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

/** Why a CRD that left the bundle is kept without `pruneCrds`. */
export const CRD_KEPT_REASON = "CustomResourceDefinitions are pruned only with --prune-crds";

/** What reading one candidate found. */
export type LiveRead =
  /** The object as the API server returned it (with metadata.uid and managedFields). */
  | { state: "found"; object: unknown }
  /** No such object, or its kind is no longer served (its CRD was deleted). */
  | { state: "gone" }
  | { state: "unreadable"; error: string };

/** One deletion to request: the object and the uid it had when read. */
export interface PlannedDeletion {
  object: ObjectRef;
  uid: string;
}

/** What {@link planPrune} decided. */
export interface PrunePlan {
  /** Deletions by phase: `[0]` workloads and the rest, `[1]` Namespaces, `[2]` CRDs, each in `previous` order. */
  phases: [PlannedDeletion[], PlannedDeletion[], PlannedDeletion[]];
  kept: KeptObject[];
  gone: ObjectRef[];
  /** Could not be read: they stay in the inventory. */
  failed: FailedObject[];
}

/**
 * The candidates that must be read before {@link planPrune} can decide: every object that
 * left the bundle, except CRDs without `pruneCrds` (kept without looking).
 */
export function objectsToRead(previous: readonly ObjectRef[], next: readonly ObjectRef[], options: { pruneCrds: boolean }): ObjectRef[] {
  return pruneCandidates(previous, next).filter((item) => options.pruneCrds || !isCrd(item));
}

/**
 * Decides what to delete: each object of `previous` missing from `next`, unless it is a CRD
 * (without `pruneCrds`), annotated, or no longer ours (see {@link keepReason}). `live` holds
 * what reading each of {@link objectsToRead} found, by `formatRef`; a candidate missing
 * from it was not read, and fails.
 */
export function planPrune(
  previous: readonly ObjectRef[],
  next: readonly ObjectRef[],
  live: ReadonlyMap<string, LiveRead>,
  options: { fieldManager: string; pruneCrds: boolean; keep?: ((live: unknown) => string | undefined) | undefined },
): PrunePlan {
  const { fieldManager, pruneCrds, keep } = options;
  const plan: PrunePlan = { phases: [[], [], []], kept: [], gone: [], failed: [] };
  for (const item of pruneCandidates(previous, next)) {
    if (isCrd(item) && !pruneCrds) {
      plan.kept.push({ ...item, why: CRD_KEPT_REASON });
      continue;
    }
    const read = live.get(formatRef(item));
    if (read === undefined) {
      plan.failed.push({ object: item, error: "cannot read it: it was not read" });
    } else if (read.state === "gone") {
      plan.gone.push(item);
    } else if (read.state === "unreadable") {
      plan.failed.push({ object: item, error: `cannot read it: ${read.error}` });
    } else {
      const why = keepReason(read.object, fieldManager) ?? keep?.(read.object);
      const metadata = isRecord(read.object) && isRecord(read.object["metadata"]) ? read.object["metadata"] : {};
      const uid = metadata["uid"];
      if (why !== undefined) plan.kept.push({ ...item, why });
      else if (typeof uid !== "string" || uid === "") plan.failed.push({ object: item, error: "cannot delete it: the API server returned it without metadata.uid" });
      else plan.phases[prunePhase(item)].push({ object: item, uid });
    }
  }
  return plan;
}

/** Why an object whose delete was refused by its uid precondition is kept. */
export const RECREATED_REASON = "re-created since it was read";

/** The body of a delete that only deletes the object with `uid`, leaving its dependents to the garbage collector. */
export function deleteOptions(uid: string): { kind: "DeleteOptions"; apiVersion: "v1"; preconditions: { uid: string }; propagationPolicy: "Background" } {
  return { kind: "DeleteOptions", apiVersion: "v1", preconditions: { uid }, propagationPolicy: "Background" };
}

/**
 * What a 409 to a delete means, found by reading the object again: the uid precondition
 * failed because the object is someone else's now (kept), or it went away meanwhile (gone),
 * or its deletion is already under way (pruned: some API server versions answer 409 to the
 * delete of a Namespace that is already terminating).
 */
async function afterConflict(
  api: KubeApi,
  object: ObjectRef,
  uid: string,
  conflict: unknown,
  request: { signal: AbortSignal | undefined; timeoutMs: number },
): Promise<(result: PruneResult) => void> {
  let live: unknown;
  try {
    live = await readObject(api, object, request);
  } catch (error) {
    request.signal?.throwIfAborted();
    return (r) => r.failed.push({ object, error: `cannot delete it: ${errorMessage(conflict)}; reading it again failed: ${errorMessage(error)}` });
  }
  if (live === null) return (r) => r.gone.push(object);
  const metadata = isRecord(live) && isRecord(live["metadata"]) ? live["metadata"] : {};
  if (metadata["uid"] !== uid) return (r) => r.kept.push({ ...object, why: RECREATED_REASON });
  if (typeof metadata["deletionTimestamp"] === "string") return (r) => r.pruned.push(object);
  return (r) => r.failed.push({ object, error: `cannot delete it: ${errorMessage(conflict)}` });
}

/**
 * Deletes the objects of `previous` missing from `next` (see the module comment for what is
 * kept and in which order). Never throws for a single object: failures are in `failed`.
 *
 * @throws the signal's reason when `signal` aborts.
 */
export async function pruneObjects(previous: readonly ObjectRef[], next: readonly ObjectRef[], options: PruneOptions): Promise<PruneResult> {
  const { api, fieldManager = "kube-pico-cd", pruneCrds = false, timeoutMs = 30_000, signal, keep } = options;
  const started = performance.now();
  const request = { signal, timeoutMs };

  // Read every candidate first: the annotation, the field manager and the uid decide.
  const toRead = objectsToRead(previous, next, { pruneCrds });
  const reads = await Promise.all(
    toRead.map(async (item): Promise<[string, LiveRead]> => {
      try {
        const object = await readObject(api, item, request);
        return [formatRef(item), object === null ? { state: "gone" } : { state: "found", object }];
      } catch (error) {
        signal?.throwIfAborted();
        return [formatRef(item), { state: "unreadable", error: errorMessage(error) }];
      }
    }),
  );
  const plan = planPrune(previous, next, new Map(reads), { fieldManager, pruneCrds, keep });
  const result: PruneResult = { pruned: [], kept: plan.kept, failed: plan.failed, gone: plan.gone, durationMs: 0 };

  const discovery = discoveryOf(api);
  for (const phase of plan.phases) {
    const outcomes = await Promise.all(
      phase.map(async ({ object, uid }): Promise<(result: PruneResult) => void> => {
        try {
          const resource = await discovery.resourceFor(object.group, object.kind, { signal });
          if (resource === null) return (r) => r.gone.push(object);
          await api.request({ method: "DELETE", path: objectPath(resource, object), body: deleteOptions(uid), ...request });
          return (r) => r.pruned.push(object);
        } catch (error) {
          signal?.throwIfAborted();
          if (isNotFound(error)) return (r) => r.gone.push(object);
          if (isConflict(error)) return await afterConflict(api, object, uid, error, request);
          return (r) => r.failed.push({ object, error: `cannot delete it: ${errorMessage(error)}` });
        }
      }),
    );
    // Recorded in plan order, whatever order the answers came in.
    for (const record of outcomes) record(result);
  }
  result.durationMs = Math.round(performance.now() - started);
  return result;
}
