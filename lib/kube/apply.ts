/**
 * Applying a bundle's objects to the cluster with server-side apply, in phases so that a
 * custom resource can travel in the same bundle as its CustomResourceDefinition:
 *
 * 1. Namespaces and CustomResourceDefinitions;
 * 2. wait, through the API, until those CRDs are Established and discovery serves their
 *    kinds (kubectl finds the kind of a custom resource through discovery);
 * 3. everything else.
 *
 * The two apply phases are the only kubectl processes: one `kubectl apply --server-side`
 * each. The wait is a poll of the CRDs through lib/kube/api.ts.
 *
 * Server-side apply keeps no `last-applied-configuration` annotation, so objects larger than
 * the 262,144-byte annotation limit (big CRDs) apply like any other.
 *
 * Namespaces: an object without `metadata.namespace` is sent as it is, and kubectl puts a
 * namespaced one in its configured namespace (in a pod: the service account's namespace;
 * with a kubeconfig: the context's namespace, else "default"), exactly as a plain
 * `kubectl apply` would. We do not fill one in, because telling namespaced from cluster-scoped
 * kinds needs discovery, and kubectl already does that. The inventory, though, records the
 * namespace each object actually landed in, read from the API server's answer (`-o json`),
 * so pruning later never has to guess.
 */
import { delay } from "../backoff.ts";
import { errorMessage, KubePicoCdError } from "../errors.ts";
import { isRecord } from "../manifests/bundle.ts";
import { groupOf, refOf, type ObjectRef } from "../manifests/object-ref.ts";
import { isTransientKubeError, resourcePath, type KubeApi } from "./api.ts";
import { discoveryOf } from "./discovery.ts";
import { crdHealth } from "./health.ts";
import { runKubectl, type KubectlTarget } from "./kubectl.ts";

/** The least an object to apply must have; `KubeObject` of lib/wire/message.ts fits. */
export interface ApplyObject {
  apiVersion: string;
  kind: string;
  metadata?: { name?: string | undefined; namespace?: string | undefined } | undefined;
}

/** One applied object, as the API server reported it. No contents: names only. */
export type InventoryItem = ObjectRef;

export type ApplyPhase = "namespaces-and-crds" | "crds-established" | "objects";

/** What {@link applyObjects} did. */
export interface ApplyResult {
  /** Every applied object, in the order kubectl reported them, phase by phase. */
  inventory: InventoryItem[];
  /** Duration of each phase that ran, in order. */
  phases: { phase: ApplyPhase; durationMs: number }[];
  /** Wall time of the whole apply, in milliseconds. */
  durationMs: number;
}

/** Options of {@link applyObjects}. */
export interface ApplyOptions {
  /** kubectl binary and cluster, for the apply phases. */
  kubectl: KubectlTarget;
  /** The same cluster's API, for the wait for CRDs. */
  api: KubeApi;
  /** Field manager of server-side apply. Default "kube-pico-cd". */
  fieldManager?: string;
  /** Pass `--force-conflicts`: take over fields another manager owns. Default false. */
  forceConflicts?: boolean;
  /** Budget of the whole apply (all phases), in milliseconds. Default 300000 (5 minutes). */
  timeoutMs?: number;
  /** Aborting kills the running kubectl (the apply then rejects with a KubectlError) or ends the wait for CRDs (with the signal's reason). */
  signal?: AbortSignal | undefined;
}

const defaults = { fieldManager: "kube-pico-cd", forceConflicts: false, timeoutMs: 300_000 } as const;

/** True for the objects of the first phase: Namespaces and CustomResourceDefinitions. */
export function isFirstPhaseObject(obj: ApplyObject): boolean {
  const group = groupOf(obj.apiVersion);
  return (obj.kind === "Namespace" && group === "") || (obj.kind === "CustomResourceDefinition" && group === "apiextensions.k8s.io");
}

/** The argv (after the kubectl binary and global flags) of one apply phase. Exported for tests. */
export function applyArgs(options: { fieldManager?: string; forceConflicts?: boolean } = {}): string[] {
  const { fieldManager = defaults.fieldManager, forceConflicts = defaults.forceConflicts } = options;
  return ["apply", "--server-side", `--field-manager=${fieldManager}`, ...(forceConflicts ? ["--force-conflicts"] : []), "-o", "json", "-f", "-"];
}

/** The kubectl input of one phase: a v1 List, which `kubectl apply -f -` flattens. */
export function toListJson(objects: readonly ApplyObject[]): string {
  return JSON.stringify({ apiVersion: "v1", kind: "List", items: objects });
}

/**
 * The inventory from `kubectl apply -o json` output: a single object, or a List of them.
 *
 * @throws {SyntaxError} when the output is not JSON of that shape.
 */
export function inventoryFromApplyOutput(stdout: string): InventoryItem[] {
  if (stdout.trim() === "") return [];
  const parsed: unknown = JSON.parse(stdout);
  const items = isRecord(parsed) && parsed["kind"] === "List" && Array.isArray(parsed["items"]) ? parsed["items"] : [parsed];
  return items.map((item: unknown) => {
    if (!isRecord(item) || typeof item["apiVersion"] !== "string" || typeof item["kind"] !== "string" || !isRecord(item["metadata"])) {
      throw new SyntaxError("Cannot read the inventory from kubectl apply output: an item lacks apiVersion, kind or metadata");
    }
    const { name, namespace } = item["metadata"];
    if (typeof name !== "string") throw new SyntaxError("Cannot read the inventory from kubectl apply output: an item lacks metadata.name");
    return refOf({ apiVersion: item["apiVersion"], kind: item["kind"], metadata: { name, namespace: typeof namespace === "string" ? namespace : undefined } });
  });
}

/**
 * Applies `objects` with `kubectl apply --server-side`, Namespaces and CRDs first, then
 * waits for those CRDs to be Established, then applies the rest. An empty list does nothing.
 *
 * @throws {KubectlError} when a phase fails (an object rejected by the API server, a CRD not
 * Established in time, the budget exhausted, the signal aborted). Objects of earlier
 * phases, and those kubectl applied before the failure, stay applied.
 */
export async function applyObjects(objects: readonly ApplyObject[], options: ApplyOptions): Promise<ApplyResult> {
  const { kubectl, fieldManager = defaults.fieldManager, forceConflicts = defaults.forceConflicts, timeoutMs = defaults.timeoutMs, signal } = options;
  if (!(Number.isFinite(timeoutMs) && timeoutMs > 0)) {
    throw new RangeError(`Cannot apply objects as 'timeoutMs' must be a positive finite number: current value is ${timeoutMs}`);
  }
  const started = performance.now();
  const remainingMs = () => Math.max(1, Math.round(timeoutMs - (performance.now() - started)));
  const first = objects.filter(isFirstPhaseObject);
  const rest = objects.filter((obj) => !isFirstPhaseObject(obj));
  const crdNames = first.filter((obj) => obj.kind === "CustomResourceDefinition").map((obj) => obj.metadata?.name ?? "");

  const inventory: InventoryItem[] = [];
  const phases: ApplyResult["phases"] = [];
  const args = applyArgs({ fieldManager, forceConflicts });
  const applyPhase = async (phase: ApplyPhase, batch: readonly ApplyObject[]) => {
    const result = await runKubectl(args, { ...kubectl, stdin: toListJson(batch), timeoutMs: remainingMs(), signal });
    inventory.push(...inventoryFromApplyOutput(result.stdout));
    phases.push({ phase, durationMs: result.durationMs });
  };

  if (first.length > 0) await applyPhase("namespaces-and-crds", first);
  if (crdNames.length > 0) {
    const budget = remainingMs();
    const result = await runKubectl(waitEstablishedArgs(crdNames, budget), { ...kubectl, timeoutMs: budget + 5_000, signal });
    phases.push({ phase: "crds-established", durationMs: result.durationMs });
  }
  if (rest.length > 0) await applyPhase("objects", rest);
  return { inventory, phases, durationMs: Math.round(performance.now() - started) };
}
