/**
 * Object identity: which Kubernetes object a manifest, a live object or an inventory item is.
 * An object is named by its API group, kind, namespace and name; the version is not part of
 * it (`apps/v1` and `apps/v1beta1` Deployments named alike are one object).
 *
 * One convention everywhere: the core group is `""` (as in `apiVersion: v1`), and a
 * cluster-scoped object has no namespace. Whoever shows a group to users in another form
 * (the policy's `core/Secret` patterns) converts at that edge.
 */

/**
 * The identity of one object. Same shape as the inventory items of the version record
 * (`RecordedObject` of lib/kube/record.ts), so either is accepted where the other is expected.
 */
export interface ObjectRef {
  /** API group; "" for the core group. */
  group: string;
  kind: string;
  /** Absent (or undefined) for cluster-scoped objects. */
  namespace?: string | undefined;
  name: string;
}

/** The least an object must have to be named: a manifest (`KubeObject`) or a live object read from the API. */
export interface NamedObject {
  apiVersion: string;
  kind: string;
  metadata?: { name?: string | undefined; namespace?: string | undefined } | undefined;
}

/**
 * The API group of an apiVersion: the part before `/`, "" for the core group.
 *
 * @example groupOf("apps/v1") // "apps"
 * @example groupOf("v1") // ""
 */
export function groupOf(apiVersion: string): string {
  const slash = apiVersion.indexOf("/");
  return slash === -1 ? "" : apiVersion.slice(0, slash);
}

/**
 * The identity of an object. An empty `metadata.namespace` counts as none, as the API server
 * reports cluster-scoped objects; a missing name is "".
 *
 * @example refOf({ apiVersion: "apps/v1", kind: "Deployment", metadata: { name: "api", namespace: "web" } })
 * // { group: "apps", kind: "Deployment", namespace: "web", name: "api" }
 */
export function refOf(object: NamedObject): ObjectRef {
  const namespace = object.metadata?.namespace;
  const ref: ObjectRef = { group: groupOf(object.apiVersion), kind: object.kind, name: object.metadata?.name ?? "" };
  if (namespace !== undefined && namespace !== "") ref.namespace = namespace;
  return ref;
}

/**
 * `group/kind/namespace/name`, with the core group and a missing namespace empty: the text
 * objects are named by in outcomes, logs and duplicate checks. Records already written use
 * it, so it never changes.
 *
 * @example formatRef({ group: "", kind: "Namespace", name: "web" }) // "/Namespace//web"
 */
export function formatRef(ref: ObjectRef): string {
  return `${ref.group}/${ref.kind}/${ref.namespace ?? ""}/${ref.name}`;
}

/** True when `a` and `b` name the same object (an absent and an empty namespace are the same). */
export function sameRef(a: ObjectRef, b: ObjectRef): boolean {
  return a.group === b.group && a.kind === b.kind && (a.namespace ?? "") === (b.namespace ?? "") && a.name === b.name;
}

