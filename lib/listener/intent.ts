/**
 * The inventory of a deploy intent: the objects a build may create, named before kubectl runs,
 * so that after a crash the next prune knows what may be live. Pure.
 *
 * kubectl puts a namespaced object without `metadata.namespace` into its default namespace
 * (the context's, or the service account's in a pod); cluster-scoped kinds have none. Telling
 * the two apart exactly needs discovery; for the intent the built-in cluster-scoped kinds and
 * the scopes of the bundle's own CRDs (lib/manifests/cluster-scoped.ts) are enough, because
 * the inventory recorded after a successful apply comes from the API server's answer, and a
 * wrong guess here only makes a later prune find nothing to delete.
 */
import { groupOf } from "../manifests/object-ref.ts";
import type { KubeObject } from "../manifests/bundle.ts";
import { clusterScopedCustomKinds, isClusterScopedKind } from "../manifests/cluster-scoped.ts";
import type { RecordedObject } from "../kube/record.ts";

/** The objects `objects` may create, each in the namespace kubectl will put it in. */
export function intendedInventory(objects: readonly KubeObject[], defaultNamespace: string): RecordedObject[] {
  const customClusterScoped = clusterScopedCustomKinds(objects);
  const items = objects.map((o): RecordedObject => {
    const group = groupOf(o.apiVersion);
    const namespace = isClusterScopedKind(o, customClusterScoped) ? undefined : (o.metadata.namespace ?? defaultNamespace);
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
