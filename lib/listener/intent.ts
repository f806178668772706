/**
 * The inventory of a deploy intent: the objects a build may create, named before kubectl runs,
 * so that after a crash the next prune knows what may be live. Pure.
 *
 * kubectl puts a namespaced object without `metadata.namespace` into its default namespace
 * (the context's, or the service account's in a pod); cluster-scoped kinds have none. Telling
 * the two apart exactly needs discovery; for the intent a table of the built-in cluster-scoped
 * kinds and the scopes of the bundle's own CRDs is enough, because the inventory recorded after
 * a successful apply comes from the API server's answer, and a wrong guess here only makes a
 * later prune find nothing to delete.
 */
import { groupOf } from "../manifests/object-ref.ts";
import type { KubeObject } from "../manifests/bundle.ts";
import type { RecordedObject } from "../kube/record.ts";

/** Built-in cluster-scoped kinds, as `group/kind` (core group ""). */
const CLUSTER_SCOPED: ReadonlySet<string> = new Set([
  "/Namespace",
  "/Node",
  "/PersistentVolume",
  "/ComponentStatus",
  "apiextensions.k8s.io/CustomResourceDefinition",
  "apiregistration.k8s.io/APIService",
  "rbac.authorization.k8s.io/ClusterRole",
  "rbac.authorization.k8s.io/ClusterRoleBinding",
  "storage.k8s.io/StorageClass",
  "storage.k8s.io/CSIDriver",
  "storage.k8s.io/CSINode",
  "storage.k8s.io/VolumeAttachment",
  "scheduling.k8s.io/PriorityClass",
  "node.k8s.io/RuntimeClass",
  "admissionregistration.k8s.io/MutatingWebhookConfiguration",
  "admissionregistration.k8s.io/ValidatingWebhookConfiguration",
  "admissionregistration.k8s.io/ValidatingAdmissionPolicy",
  "admissionregistration.k8s.io/ValidatingAdmissionPolicyBinding",
  "certificates.k8s.io/CertificateSigningRequest",
  "flowcontrol.apiserver.k8s.io/FlowSchema",
  "flowcontrol.apiserver.k8s.io/PriorityLevelConfiguration",
  "networking.k8s.io/IngressClass",
  "networking.k8s.io/IPAddress",
  "networking.k8s.io/ServiceCIDR",
]);

/** `group/kind` of the bundle's CRDs whose `spec.scope` is Cluster. */
function clusterScopedCustomKinds(objects: readonly KubeObject[]): Set<string> {
  const kinds = new Set<string>();
  for (const o of objects) {
    if (o.kind !== "CustomResourceDefinition" || groupOf(o.apiVersion) !== "apiextensions.k8s.io") continue;
    const spec = (o as { spec?: { group?: unknown; scope?: unknown; names?: { kind?: unknown } } }).spec;
    if (spec?.scope === "Cluster" && typeof spec.group === "string" && typeof spec.names?.kind === "string") kinds.add(`${spec.group}/${spec.names.kind}`);
  }
  return kinds;
}

/** The objects `objects` may create, each in the namespace kubectl will put it in. */
export function intendedInventory(objects: readonly KubeObject[], defaultNamespace: string): RecordedObject[] {
  const customClusterScoped = clusterScopedCustomKinds(objects);
  const items = objects.map((o): RecordedObject => {
    const group = groupOf(o.apiVersion);
    const key = `${group}/${o.kind}`;
    const clusterScoped = CLUSTER_SCOPED.has(key) || customClusterScoped.has(key);
    const namespace = clusterScoped ? undefined : (o.metadata.namespace ?? defaultNamespace);
    return namespace === undefined ? { group, kind: o.kind, name: o.metadata.name } : { group, kind: o.kind, namespace, name: o.metadata.name };
  });
  return mergeInventories(items, []);
}

/** `a` then the items of `b` that `a` lacks, without duplicates, in first-seen order. */
export function mergeInventories(a: readonly RecordedObject[], b: readonly RecordedObject[]): RecordedObject[] {
  const seen = new Set<string>();
  const out: RecordedObject[] = [];
  for (const item of [...a, ...b]) {
    const key = `${item.group}/${item.kind}/${item.namespace ?? ""}/${item.name}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(item);
  }
  return out;
}
