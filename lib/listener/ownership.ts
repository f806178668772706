/**
 * Ownership marks: which app an object on the cluster belongs to, so that apps sharing a
 * cluster never overwrite or prune each other's objects.
 *
 * Every object the listener applies carries two labels, as kubectl ApplySet's
 * `applyset.kubernetes.io/part-of` and Argo CD's tracking label do:
 *
 * - `kube-pico-cd.io/app: <app>`: the app (lib/listener/apps.ts);
 * - `kube-pico-cd.io/instance: <namespace>`: the listener's namespace, since two listeners
 *   (two installs) may each serve an app of the same name.
 *
 * Labels rather than annotations, so that an app's objects can be found with a label selector
 * ({@link inventoryFromMarks}: a lost record's inventory is rebuilt from them).
 *
 * Before a build is applied, every object of its bundle that exists is read: one that carries
 * another owner's mark rejects the whole bundle (`ownership-conflict`), unless the live object
 * is handed over: its annotation `kube-pico-cd.io/hand-over-to: <app>` names the app taking it
 * (set by its owner's bundle or by hand with `kubectl annotate`; the new owner's apply then
 * replaces the mark). An object without any mark is adopted: it was applied by hand, by
 * another tool, or by a listener from before marks.
 *
 * Prune deletes only objects that carry the app's own mark ({@link pruneKeepReason}), except
 * unmarked objects in the inventory of a record written before marks existed.
 */
import { KubeApiError, MessageRejectedError } from "../errors.ts";
import { isRecord, type KubeObject } from "../manifests/bundle.ts";
import { groupOf, type ObjectRef } from "../manifests/object-ref.ts";
import { isNotFound, resourcePath, type KubeApi } from "../kube/api.ts";
import { discoveryOf, readObject, type ApiResource } from "../kube/discovery.ts";
import type { RecordedObject } from "../kube/record.ts";

/** The label naming the app an object belongs to. */
export const APP_LABEL = "kube-pico-cd.io/app";
/** The label naming the namespace of the listener that applied it. */
export const INSTANCE_LABEL = "kube-pico-cd.io/instance";
/** The annotation on a live object that hands it over to another app (its value: that app). */
export const HAND_OVER_ANNOTATION = "kube-pico-cd.io/hand-over-to";

/** Who owns an object: an app of one listener. */
export interface Owner {
  app: string;
  /** The listener's namespace. */
  instance: string;
}

/** `app` of the listener in `instance`, as people read it: `shop` (in kube-pico-cd). */
export function describeOwner(owner: Owner): string {
  return `app ${JSON.stringify(owner.app)} of the listener in namespace ${owner.instance}`;
}

/** Copies of `objects` with the owner's mark among their labels (nothing else changed). */
export function markObjects(objects: readonly KubeObject[], owner: Owner): KubeObject[] {
  return objects.map((object) => {
    const labels = isRecord(object.metadata.labels) ? object.metadata.labels : {};
    return { ...object, metadata: { ...object.metadata, labels: { ...labels, [APP_LABEL]: owner.app, [INSTANCE_LABEL]: owner.instance } } };
  });
}

function metadataOf(live: unknown): Record<string, unknown> {
  return isRecord(live) && isRecord(live["metadata"]) ? live["metadata"] : {};
}

function stringMap(value: unknown): Record<string, unknown> {
  return isRecord(value) ? value : {};
}

/** The owner a live object's labels name, or undefined when it carries no mark. */
export function ownerOf(live: unknown): Owner | undefined {
  const labels = stringMap(metadataOf(live)["labels"]);
  const app = labels[APP_LABEL];
  if (typeof app !== "string" || app === "") return undefined;
  const instance = labels[INSTANCE_LABEL];
  return { app, instance: typeof instance === "string" ? instance : "" };
}

function sameOwner(a: Owner, b: Owner): boolean {
  return a.app === b.app && a.instance === b.instance;
}

/**
 * Why applying over `live` would take another owner's object, or undefined when it may be
 * applied: no live object, no mark, our own mark, or handed over to our app.
 */
export function conflictOf(live: unknown, owner: Owner): string | undefined {
  if (live === null || live === undefined) return undefined;
  const current = ownerOf(live);
  if (current === undefined || sameOwner(current, owner)) return undefined;
  const handOver = stringMap(metadataOf(live)["annotations"])[HAND_OVER_ANNOTATION];
  if (typeof handOver === "string" && handOver.trim() === owner.app) return undefined;
  return `owned by ${describeOwner(current)}`;
}

/** The key a live object is looked up by: group, kind, namespace (empty when none), name. */
export function liveKey(ref: { group: string; kind: string; namespace?: string | undefined; name: string }): string {
  return `${ref.group}/${ref.kind}/${ref.namespace ?? ""}/${ref.name}`;
}

/**
 * Rejects a bundle of which any object is owned by someone else ({@link conflictOf}), naming
 * every such object and its owner, and how to hand it over. `live[i]` is the live object of
 * `objects[i]`, as {@link readLiveObjects} found it (undefined: none, or unmarked).
 *
 * @throws {MessageRejectedError} with reason `ownership-conflict`.
 */
export function checkOwnership(objects: readonly KubeObject[], live: readonly unknown[], owner: Owner): void {
  const conflicts: string[] = [];
  objects.forEach((object, i) => {
    const why = conflictOf(live[i], owner);
    if (why !== undefined) conflicts.push(`${describeObject(refOf(object))} is ${why}`);
  });
  if (conflicts.length === 0) return;
  throw new MessageRejectedError(
    "ownership-conflict",
    `Rejected message: ${conflicts.length} of ${objects.length} objects belong to another app, so nothing of app ${JSON.stringify(owner.app)} is applied (remove them from this bundle, or have their owner hand them over with the annotation ${HAND_OVER_ANNOTATION}: ${owner.app}): ${conflicts.join("; ")}`,
  );
}

/**
 * Why prune must keep `live` although it left the app's bundle, or undefined when its mark
 * says it is the app's: another owner's mark, or no mark (unless `unmarkedIsOurs`: the
 * inventory predates marks, so its objects carry none).
 */
export function pruneKeepReason(live: unknown, owner: Owner, unmarkedIsOurs: boolean): string | undefined {
  const current = ownerOf(live);
  if (current === undefined) return unmarkedIsOurs ? undefined : `carries no ${APP_LABEL} mark, so it is not ${JSON.stringify(owner.app)}'s to delete`;
  if (!sameOwner(current, owner)) return `${owner.app === current.app ? "owned by the same app name" : "owned"} by ${describeOwner(current)} now`;
  return undefined;
}

/** `apps/Deployment team/web`, `ConfigMap team/settings`: as the policy's rejections name objects. */
function describeObject(ref: ObjectRef): string {
  return `${ref.group === "" ? "" : `${ref.group}/`}${ref.kind} ${ref.namespace === undefined ? "" : `${ref.namespace}/`}${ref.name}`;
}

function refOf(object: KubeObject): ObjectRef {
  const group = groupOf(object.apiVersion);
  const namespace = object.metadata.namespace;
  return namespace === undefined ? { group, kind: object.kind, name: object.metadata.name } : { group, kind: object.kind, namespace, name: object.metadata.name };
}

/** Items of a list answer, and its `continue` token. */
function listPage(document: unknown): { items: unknown[]; next: string | undefined } {
  const items = isRecord(document) && Array.isArray(document["items"]) ? document["items"] : [];
  const metadata = isRecord(document) && isRecord(document["metadata"]) ? document["metadata"] : {};
  const next = typeof metadata["continue"] === "string" && metadata["continue"] !== "" ? metadata["continue"] : undefined;
  return { items, next };
}

/** Every object of `resource` (in `namespace`, or all namespaces) matching `labelSelector`, page by page. */
async function listAll(api: KubeApi, resource: ApiResource, namespace: string | undefined, labelSelector: string, signal: AbortSignal | undefined): Promise<unknown[]> {
  const path = resourcePath({ ...resource, namespace: resource.namespaced ? namespace : undefined });
  const out: unknown[] = [];
  let token: string | undefined;
  do {
    const page = listPage(await api.request({ method: "GET", path, query: { labelSelector, limit: 500, ...(token ? { continue: token } : {}) }, signal, timeoutMs: 30_000 }));
    out.push(...page.items);
    token = page.next;
  } while (token !== undefined);
  return out;
}

function isForbidden(error: unknown): boolean {
  return error instanceof KubeApiError && error.status.code === 403;
}

/**
 * The live object of each of `objects` that carries a mark (anyone's), in `objects` order
 * (undefined: none, or unmarked): one list per kind and namespace with a label selector, so a
 * bundle of hundreds of objects costs a handful of requests. Where listing is forbidden, the
 * objects are read one by one. Kinds the server does not serve yet (a CRD of the same bundle)
 * have no objects. A namespaced object without a namespace is looked for where kubectl puts
 * it, in `defaultNamespace`.
 *
 * @throws {KubeApiError | KubeUnreachableError} when the API cannot answer.
 */
export async function readLiveObjects(api: KubeApi, objects: readonly KubeObject[], options: { defaultNamespace: string; signal?: AbortSignal | undefined }): Promise<unknown[]> {
  const { defaultNamespace, signal } = options;
  const discovery = discoveryOf(api);
  const byKind = new Map<string, { group: string; kind: string; indexes: number[] }>();
  objects.forEach((object, i) => {
    const group = groupOf(object.apiVersion);
    const key = `${group}/${object.kind}`;
    const entry = byKind.get(key) ?? { group, kind: object.kind, indexes: [] };
    entry.indexes.push(i);
    byKind.set(key, entry);
  });
  const live: unknown[] = new Array(objects.length).fill(undefined);
  await Promise.all(
    [...byKind.values()].map(async ({ group, kind, indexes }) => {
      const resource = await discovery.resourceFor(group, kind, { signal });
      if (resource === null) return;
      const namespaceOf = (i: number) => (resource.namespaced ? (objects[i]!.metadata.namespace ?? defaultNamespace) : undefined);
      const byNamespace = new Map<string | undefined, number[]>();
      for (const i of indexes) byNamespace.set(namespaceOf(i), [...(byNamespace.get(namespaceOf(i)) ?? []), i]);
      await Promise.all(
        [...byNamespace].map(async ([namespace, members]) => {
          const wanted = new Map(members.map((i) => [objects[i]!.metadata.name, i]));
          try {
            for (const item of await listAll(api, resource, namespace, APP_LABEL, signal)) {
              const i = wanted.get(String(metadataOf(item)["name"]));
              if (i !== undefined) live[i] = item;
            }
          } catch (error) {
            if (isNotFound(error)) return;
            if (!isForbidden(error)) throw error;
            // Listing forbidden (a Role that grants get only): read each object.
            for (const i of members) {
              const ref = { group, kind, name: objects[i]!.metadata.name, ...(namespace === undefined ? {} : { namespace }) };
              const item = await readObject(api, ref, { signal }).catch((e: unknown) => {
                if (isForbidden(e)) return null;
                throw e;
              });
              if (item !== null && ownerOf(item) !== undefined) live[i] = item;
            }
          }
        }),
      );
    }),
  );
  return live;
}

/** What {@link inventoryFromMarks} found, and the kinds it could not search. */
export interface MarkedInventory {
  inventory: RecordedObject[];
  /** Kinds that could not be listed (forbidden, or failing), with why: their objects are missing. */
  unsearched: string[];
}

/**
 * Every object on the cluster that carries `owner`'s mark: the inventory of an app whose
 * record is gone, so that its next build prunes what it owned. Lists every kind the server
 * serves with the owner's label selector, across all namespaces, or in `namespaces` when given
 * (an app whose scope names them, for a listener allowed only there).
 *
 * @throws {KubeApiError | KubeUnreachableError} when discovery cannot be read.
 */
export async function inventoryFromMarks(api: KubeApi, owner: Owner, options: { namespaces?: readonly string[] | undefined; signal?: AbortSignal | undefined } = {}): Promise<MarkedInventory> {
  const { namespaces, signal } = options;
  const selector = `${APP_LABEL}=${owner.app},${INSTANCE_LABEL}=${owner.instance}`;
  const resources = (await discoveryOf(api).everyResource({ signal })).filter((r) => r.verbs === undefined || r.verbs.includes("list"));
  const inventory: RecordedObject[] = [];
  const unsearched: string[] = [];
  await Promise.all(
    resources.map(async (resource) => {
      const where = resource.namespaced && namespaces !== undefined ? namespaces : [undefined];
      for (const namespace of where) {
        try {
          for (const item of await listAll(api, resource, namespace, selector, signal)) {
            const metadata = metadataOf(item);
            const name = metadata["name"];
            if (typeof name !== "string") continue;
            const ns = resource.namespaced && typeof metadata["namespace"] === "string" ? metadata["namespace"] : undefined;
            inventory.push(ns === undefined ? { group: resource.group, kind: resource.kind, name } : { group: resource.group, kind: resource.kind, namespace: ns, name });
          }
        } catch (error) {
          signal?.throwIfAborted();
          if (isNotFound(error)) continue;
          unsearched.push(`${resource.group || "core"}/${resource.kind}${namespace === undefined ? "" : ` in ${namespace}`}: ${error instanceof Error ? error.message : String(error)}`);
        }
      }
    }),
  );
  inventory.sort((a, b) => liveKey(a).localeCompare(liveKey(b)));
  return { inventory, unsearched };
}
