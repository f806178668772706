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

/** Where the wait for CRDs stands with one of them. */
export type CrdProgress =
  | { state: "ready" }
  /** Not Established yet (also: no status or no conditions yet), or not served by discovery yet. */
  | { state: "waiting"; reason: string }
  /** Can never become Established as it is (NamesAccepted is False). */
  | { state: "failed"; reason: string };

/** The group, kind and served versions of a CRD, from its spec; undefined when the spec lacks them. */
export function crdServes(crd: unknown): { group: string; kind: string; versions: string[] } | undefined {
  const spec = isRecord(crd) && isRecord(crd["spec"]) ? crd["spec"] : undefined;
  const names = spec !== undefined && isRecord(spec["names"]) ? spec["names"] : undefined;
  const group = spec?.["group"];
  const kind = names?.["kind"];
  if (typeof group !== "string" || typeof kind !== "string") return undefined;
  const versions = Array.isArray(spec?.["versions"])
    ? spec["versions"].flatMap((v: unknown) => (isRecord(v) && v["served"] === true && typeof v["name"] === "string" ? [v["name"]] : []))
    : [];
  return { group, kind, versions };
}

/** The stage of the wait a CRD read from the API (null: not found) is at, from its conditions alone. */
export function crdProgress(crd: unknown): CrdProgress {
  if (crd === null) return { state: "waiting", reason: "not found" };
  const health = crdHealth(crd);
  if (health.state === "ready") return { state: "ready" };
  return health.state === "failed" ? { state: "failed", reason: health.reason } : { state: "waiting", reason: "not Established yet" };
}

/** Options of {@link waitForCrds}. */
export interface WaitForCrdsOptions {
  /** Give up after this many ms. */
  timeoutMs: number;
  /** First time between polls, in ms; doubles up to `maxIntervalMs`. Default 100. */
  intervalMs?: number;
  /** Largest time between polls, in ms. Default 1000. */
  maxIntervalMs?: number;
  signal?: AbortSignal | undefined;
}

/**
 * Waits until every CRD of `names` is Established and discovery serves each of its served
 * versions (kubectl maps a custom resource to its path through discovery, which follows
 * Established by a moment). A CRD not readable for a transient reason (API server
 * unreachable, overloaded) is waited for like one not Established yet.
 *
 * @throws {KubePicoCdError} when a CRD can never be Established (NamesAccepted is False) or
 *   the budget runs out; the message names each CRD still waited for and why.
 * @throws {KubeApiError} when a CRD or discovery cannot be read for a reason that will not pass (Forbidden).
 * @throws the signal's reason when `signal` aborts.
 */
export async function waitForCrds(api: KubeApi, names: readonly string[], options: WaitForCrdsOptions): Promise<void> {
  const { timeoutMs, intervalMs = 100, maxIntervalMs = 1_000, signal } = options;
  const started = performance.now();
  const leftMs = () => timeoutMs - (performance.now() - started);
  const discovery = discoveryOf(api);
  const waiting = new Map(names.map((name) => [name, "not read yet"]));

  /** Why `name` is still waited for, or undefined when it is ready. */
  const check = async (name: string): Promise<string | undefined> => {
    const requestTimeoutMs = Math.min(10_000, Math.max(1_000, leftMs()));
    try {
      const path = resourcePath({ group: "apiextensions.k8s.io", version: "v1", resource: "customresourcedefinitions", name });
      const crd = await api.getOptional(path, { signal, timeoutMs: requestTimeoutMs });
      const progress = crdProgress(crd);
      if (progress.state === "failed") {
        throw new KubePicoCdError(`Cannot apply the objects that follow the CustomResourceDefinitions as ${name} cannot be Established: ${progress.reason}`);
      }
      if (progress.state === "waiting") return progress.reason;
      const serves = crdServes(crd);
      if (serves === undefined) return undefined;
      for (const version of serves.versions) {
        if ((await discovery.resourceFor(serves.group, serves.kind, { version, signal })) === null) {
          return `Established, but discovery does not serve ${serves.kind} in ${serves.group}/${version} yet`;
        }
      }
      return undefined;
    } catch (error) {
      signal?.throwIfAborted();
      if (isTransientKubeError(error)) return `cannot read it: ${errorMessage(error)}`;
      throw error;
    }
  };

  for (let interval = intervalMs; ; interval = Math.min(maxIntervalMs, interval * 2)) {
    signal?.throwIfAborted();
    const pending = [...waiting.keys()];
    const reasons = await Promise.all(pending.map(check));
    for (const [index, name] of pending.entries()) {
      const reason = reasons[index];
      if (reason === undefined) waiting.delete(name);
      else waiting.set(name, reason);
    }
    if (waiting.size === 0) return;
    const left = leftMs();
    if (left <= 0) {
      const which = [...waiting].map(([name, reason]) => `${name} (${reason})`).join(", ");
      throw new KubePicoCdError(
        `Cannot apply the objects that follow the CustomResourceDefinitions as ${waiting.size} of ${names.length} were not Established within ${Math.round(timeoutMs / 1000)} s: ${which}`,
      );
    }
    await delay(Math.min(interval, left), signal ? { signal } : {});
  }
}

/**
 * Applies `objects` with `kubectl apply --server-side`, Namespaces and CRDs first, then
 * waits for those CRDs (see {@link waitForCrds}), then applies the rest. An empty list does
 * nothing. The budget `timeoutMs` covers all phases.
 *
 * @throws {KubectlError} when an apply phase fails (an object rejected by the API server, the
 *   budget exhausted, the signal aborted).
 * @throws {KubePicoCdError} when a CRD is not Established within the budget or can never be
 *   (see {@link waitForCrds}); a KubeApiError when the CRDs cannot be read (Forbidden).
 * @throws the signal's reason when it aborts during the wait for CRDs.
 *
 * Objects of earlier phases, and those kubectl applied before a failure, stay applied.
 */
export async function applyObjects(objects: readonly ApplyObject[], options: ApplyOptions): Promise<ApplyResult> {
  const { kubectl, api, fieldManager = defaults.fieldManager, forceConflicts = defaults.forceConflicts, timeoutMs = defaults.timeoutMs, signal } = options;
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
    const waitStarted = performance.now();
    await waitForCrds(api, crdNames, { timeoutMs: remainingMs(), signal });
    phases.push({ phase: "crds-established", durationMs: Math.round(performance.now() - waitStarted) });
  }
  if (rest.length > 0) await applyPhase("objects", rest);
  return { inventory, phases, durationMs: Math.round(performance.now() - started) };
}
