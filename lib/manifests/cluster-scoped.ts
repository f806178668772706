/**
 * Which kinds are cluster-scoped, known without asking the API server: the built-in table, and
 * the kinds a bundle's own CustomResourceDefinitions declare with `spec.scope: Cluster`. Pure.
 *
 * One table for every reader: the policy (what counts as cluster-scoped), the deploy intent
 * (which inventory items have no namespace) and an app's default namespace (which objects get
 * one). Telling scopes apart exactly needs discovery; a kind missing here is taken for
 * namespaced, which the policy's `--cluster-scoped-kinds` can correct.
 *
 * Kinds are named as object identity names them (lib/manifests/object-ref.ts): `group/Kind`,
 * the core group being "" (`/Namespace`).
 */
import type { KubeObject } from "./bundle.ts";
import { groupOf } from "./object-ref.ts";

/** The built-in cluster-scoped kinds by API group ("" for the core group), up to Kubernetes 1.35. */
const BUILT_IN_BY_GROUP: Readonly<Record<string, readonly string[]>> = {
  "": ["Namespace", "Node", "PersistentVolume", "ComponentStatus"],
  "rbac.authorization.k8s.io": ["ClusterRole", "ClusterRoleBinding"],
  "apiextensions.k8s.io": ["CustomResourceDefinition"],
  "apiregistration.k8s.io": ["APIService"],
  "admissionregistration.k8s.io": [
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "MutatingAdmissionPolicy",
    "MutatingAdmissionPolicyBinding",
  ],
  "storage.k8s.io": ["StorageClass", "CSIDriver", "CSINode", "VolumeAttachment", "VolumeAttributesClass"],
  "scheduling.k8s.io": ["PriorityClass"],
  "node.k8s.io": ["RuntimeClass"],
  "certificates.k8s.io": ["CertificateSigningRequest", "ClusterTrustBundle"],
  "networking.k8s.io": ["IngressClass", "IPAddress", "ServiceCIDR"],
  "flowcontrol.apiserver.k8s.io": ["FlowSchema", "PriorityLevelConfiguration"],
  "resource.k8s.io": ["DeviceClass", "ResourceSlice"],
  "authentication.k8s.io": ["TokenReview", "SelfSubjectReview"],
  "authorization.k8s.io": ["SubjectAccessReview", "SelfSubjectAccessReview", "SelfSubjectRulesReview"],
};

/** `group/Kind` of a kind, the core group being "": the key of {@link BUILT_IN_CLUSTER_SCOPED_KINDS}. */
export function kindKey(group: string, kind: string): string {
  return `${group}/${kind}`;
}

/** The built-in cluster-scoped kinds, as `group/Kind` (core group "": `/Namespace`). */
export const BUILT_IN_CLUSTER_SCOPED_KINDS: ReadonlySet<string> = new Set(
  Object.entries(BUILT_IN_BY_GROUP).flatMap(([group, kinds]) => kinds.map((kind) => kindKey(group, kind))),
);

/** True when `object`'s group and kind are a built-in cluster-scoped kind. */
export function isBuiltInClusterScoped(object: Pick<KubeObject, "apiVersion" | "kind">): boolean {
  return BUILT_IN_CLUSTER_SCOPED_KINDS.has(kindKey(groupOf(object.apiVersion), object.kind));
}

/**
 * `group/Kind` of the kinds that the CustomResourceDefinitions among `objects` declare with
 * `spec.scope: Cluster`. A CRD without a readable group, kind or scope adds nothing.
 */
export function clusterScopedCustomKinds(objects: readonly KubeObject[]): Set<string> {
  const kinds = new Set<string>();
  for (const o of objects) {
    if (o.kind !== "CustomResourceDefinition" || groupOf(o.apiVersion) !== "apiextensions.k8s.io") continue;
    const spec = (o as { spec?: { group?: unknown; scope?: unknown; names?: { kind?: unknown } } }).spec;
    if (spec?.scope === "Cluster" && typeof spec.group === "string" && typeof spec.names?.kind === "string") kinds.add(kindKey(spec.group, spec.names.kind));
  }
  return kinds;
}

/**
 * True when `object` is of a built-in cluster-scoped kind or of one of `customKinds` (from
 * {@link clusterScopedCustomKinds} of its bundle).
 */
export function isClusterScopedKind(object: Pick<KubeObject, "apiVersion" | "kind">, customKinds: ReadonlySet<string>): boolean {
  return isBuiltInClusterScoped(object) || customKinds.has(kindKey(groupOf(object.apiVersion), object.kind));
}
