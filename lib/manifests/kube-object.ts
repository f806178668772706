/**
 * A Kubernetes object as the bundle holds it and the listener applies it, and the check that
 * a value is one.
 */

/**
 * A Kubernetes object as it is applied: `apiVersion`, `kind` and `metadata.name` are
 * required non-empty strings; `metadata.namespace`, when present, a non-empty string.
 */
export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; [key: string]: unknown };
  [key: string]: unknown;
}

/** True for a JSON object (not null, not an array). */
export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function nonEmptyString(value: unknown): value is string {
  return typeof value === "string" && value.length > 0;
}

/**
 * Checks that `value` is a {@link KubeObject}; returns what is wrong (one phrase, e.g.
 * `object "api" has no kind`), or `undefined` when it is valid.
 */
export function kubeObjectProblem(value: unknown): string | undefined {
  if (!isRecord(value)) {
    return `object is not a mapping (got ${value === null ? "null" : Array.isArray(value) ? "a list" : typeof value})`;
  }
  const metadata = value["metadata"];
  const name = isRecord(metadata) && nonEmptyString(metadata["name"]) ? metadata["name"] : undefined;
  const what = name === undefined ? "object" : `object "${name}"`;
  if (!nonEmptyString(value["apiVersion"])) return `${what} has no apiVersion`;
  if (!nonEmptyString(value["kind"])) return `${what} has no kind`;
  if (name === undefined) return `${value["kind"]} has no metadata.name`;
  const namespace = (metadata as Record<string, unknown>)["namespace"];
  if (namespace !== undefined && !nonEmptyString(namespace)) {
    return `${value["kind"]} "${name}" has an invalid metadata.namespace (must be a non-empty string)`;
  }
  return undefined;
}

/** An object of the bundle with where it came from (`file:line:column`). */
export interface BundledObject {
  object: KubeObject;
  source: string;
  /** True when every map of `object` has its keys in sorted order (lib/manifests/plain-value.ts), so that JSON.stringify writes its canonical JSON. */
  keysSorted?: true;
}
