/**
 * The listener's policy: what a bundle may touch (namespaces, kinds, cluster-scoped objects),
 * checked before anything is applied, and what of a bundle may be shown (Secret values are
 * masked in every error text that reaches the log or the version record).
 *
 * Every object kubectl would apply is checked: kubectl unpacks any object that carries an
 * `items` array (and applies the items, not the wrapper), so a ConfigMap named `innocent`
 * could smuggle a ConfigMap into kube-system. Such list-shaped objects are refused outright
 * ({@link checkListObjects}, reason `list-object`), and policy, the listener's protected-object
 * check and Secret masking look at {@link everyObject}, the items included, in case one ever
 * slips through.
 *
 * Scope without asking the API server: an object is treated as cluster-scoped when its kind
 * is a built-in cluster-scoped kind (lib/manifests/cluster-scoped.ts), is declared
 * `spec.scope: Cluster` by a CustomResourceDefinition of the same bundle, or matches the
 * configured extra list ({@link isKnownClusterScoped}), or when it has no `metadata.namespace`.
 * The limitation: a cluster-scoped kind of a CustomResourceDefinition installed otherwise and
 * not listed, written *with* a namespace, is taken for namespaced. Allowed kinds (or
 * `--cluster-scoped-kinds`) close that gap; RBAC remains the boundary (docs/security.md).
 *
 * The same rules narrow each app (lib/listener/scope.ts): an app's scope is a Policy too.
 */
import { isRecord, type KubeObject } from "../manifests/bundle.ts";
import { KubePicoCdError, MessageRejectedError } from "../errors.ts";
import { groupOf } from "../manifests/object-ref.ts";
import { clusterScopedCustomKinds, isClusterScopedKind } from "../manifests/cluster-scoped.ts";

/**
 * What bundles may do. Kind patterns are `Kind` (any API group) or `group/Kind`, the group
 * being the part of apiVersion before `/` and `core` for the core group (`core/Secret`,
 * `rbac.authorization.k8s.io/ClusterRoleBinding`, `rbac.authorization.k8s.io/*`). Namespace
 * and kind patterns are globs: `*` any characters, `?` one character; case-sensitive.
 */
export interface Policy {
  /** Namespaces objects may be in (and Namespace objects may be named); undefined: any. */
  allowedNamespaces?: readonly string[];
  /** Kinds objects may have; undefined: any. */
  allowedKinds?: readonly string[];
  /** Kinds no object may have; wins over allowedKinds. */
  deniedKinds: readonly string[];
  /** Whether cluster-scoped objects (including objects without a namespace) may be applied. */
  allowClusterScoped: boolean;
  /** Kinds known to be cluster-scoped besides the built-in ones (kinds of your CRDs). */
  clusterScopedKinds: readonly string[];
}

/** The policy that allows everything (the default). */
export const OPEN_POLICY: Policy = { deniedKinds: [], allowClusterScoped: true, clusterScopedKinds: [] };

const NAMESPACE_PATTERN = /^[a-z0-9*?]([-a-z0-9*?]*[a-z0-9*?])?$/;
const KIND_PATTERN = /^(?:[a-z0-9*?]([-a-z0-9.*?]*[a-z0-9*?])?\/)?[A-Za-z0-9*?]+$/;

/** What is wrong with a namespace glob, or undefined. */
export function namespacePatternProblem(pattern: string): string | undefined {
  return NAMESPACE_PATTERN.test(pattern) ? undefined : `${JSON.stringify(pattern)} is not a namespace glob (lowercase letters, digits, '-', '*', '?')`;
}

/** What is wrong with a kind pattern, or undefined. */
export function kindPatternProblem(pattern: string): string | undefined {
  return KIND_PATTERN.test(pattern) ? undefined : `${JSON.stringify(pattern)} is not a kind pattern (Kind or group/Kind, e.g. Secret, core/Secret, rbac.authorization.k8s.io/*)`;
}

const globCache = new Map<string, RegExp>();

/** True when the glob `pattern` (`*` any characters, `?` one character; case-sensitive) matches all of `text`. */
export function globMatches(pattern: string, text: string): boolean {
  let regex = globCache.get(pattern);
  if (regex === undefined) {
    const source = [...pattern].map((c) => (c === "*" ? ".*" : c === "?" ? "." : c.replace(/[.+^${}()|[\]\\/-]/g, "\\$&"))).join("");
    regex = new RegExp(`^${source}$`, "s");
    globCache.set(pattern, regex);
  }
  return regex.test(text);
}

/** The API group of an object as kind patterns name it: `core` for the core group (whose group is "" everywhere else). */
function patternGroupOf(object: KubeObject): string {
  return groupOf(object.apiVersion) || "core";
}

/** True when `object`'s group and kind match the kind pattern (see {@link Policy}). */
export function kindMatches(pattern: string, object: KubeObject): boolean {
  const slash = pattern.lastIndexOf("/");
  if (slash === -1) return globMatches(pattern, object.kind);
  return globMatches(pattern.slice(0, slash), patternGroupOf(object)) && globMatches(pattern.slice(slash + 1), object.kind);
}

/**
 * True when `object` is of a kind known to be cluster-scoped: a built-in one, one that a
 * CustomResourceDefinition of its bundle declares so (`customKinds`, from
 * `clusterScopedCustomKinds` of lib/manifests/cluster-scoped.ts), or one matching a pattern of
 * `clusterScopedKinds` (the policy's, `--cluster-scoped-kinds`).
 */
export function isKnownClusterScoped(object: KubeObject, clusterScopedKinds: readonly string[], customKinds: ReadonlySet<string>): boolean {
  return isClusterScopedKind(object, customKinds) || clusterScopedKinds.some((pattern) => kindMatches(pattern, object));
}

function describe(object: KubeObject): string {
  const group = groupOf(object.apiVersion);
  const kind = group === "" ? object.kind : `${group}/${object.kind}`;
  const where = object.metadata.namespace === undefined ? "" : `${object.metadata.namespace}/`;
  return `${kind} ${where}${object.metadata.name}`;
}

/** How deep {@link everyObject} follows `items` inside `items`. kubectl follows any depth; deeper ones are refused anyway. */
export const MAX_LIST_DEPTH = 16;

/** True when kubectl would treat `object` as a list and apply its items: it has an `items` array, or its kind ends in `List`. */
export function isListShaped(object: KubeObject): boolean {
  return Array.isArray((object as Record<string, unknown>)["items"]) || (typeof object.kind === "string" && object.kind.endsWith("List"));
}

/**
 * `objects` and, after each list-shaped one, the objects in its `items` (at any depth up to
 * {@link MAX_LIST_DEPTH}), in order: everything kubectl could apply of them. Items that are
 * not objects are left out (kubectl refuses them); an item's missing `apiVersion`, `kind` or
 * `metadata` reads as empty, so that checks see it rather than skip it.
 */
export function everyObject(objects: readonly KubeObject[]): KubeObject[] {
  const out: KubeObject[] = [];
  const visit = (object: KubeObject, depth: number) => {
    out.push(object);
    const items = (object as Record<string, unknown>)["items"];
    if (!Array.isArray(items) || depth >= MAX_LIST_DEPTH) return;
    for (const item of items) if (isRecord(item)) visit(asObject(item), depth + 1);
  };
  for (const object of objects) visit(object, 0);
  return out;
}

function asObject(item: Record<string, unknown>): KubeObject {
  const metadata = isRecord(item["metadata"]) ? item["metadata"] : {};
  return {
    ...item,
    apiVersion: typeof item["apiVersion"] === "string" ? item["apiVersion"] : "",
    kind: typeof item["kind"] === "string" ? item["kind"] : "",
    metadata: {
      ...metadata,
      name: typeof metadata["name"] === "string" ? metadata["name"] : "",
      ...(typeof metadata["namespace"] === "string" ? { namespace: metadata["namespace"] } : {}),
    },
  } as KubeObject;
}

/**
 * Rejects a bundle with any list-shaped object ({@link isListShaped}), naming each one and
 * how many items it holds. Not a setting: a publisher flattens lists (`kind: List`) before
 * sending, so a list in a payload is never needed, and its items would escape every check.
 *
 * @throws {MessageRejectedError} with reason `list-object`.
 */
export function checkListObjects(objects: readonly KubeObject[]): void {
  const lists = objects.filter(isListShaped);
  if (lists.length === 0) return;
  const described = lists.map((object) => {
    const items = (object as Record<string, unknown>)["items"];
    return `${describe(object)} (${Array.isArray(items) ? `an items array of ${items.length}` : "a kind ending in List"})`;
  });
  throw new MessageRejectedError(
    "list-object",
    `Rejected message: ${lists.length} of ${objects.length} objects are list-shaped, and kubectl would apply their items past the listener's checks, so nothing is applied (send the items as objects of their own): ${described.join("; ")}`,
  );
}

/**
 * Every object that `policy` forbids, one line each: the object (`group/Kind namespace/name`)
 * and every rule it breaks. Looks at {@link everyObject} of `objects`, list items included.
 */
export function policyViolations(objects: readonly KubeObject[], policy: Policy): string[] {
  const { allowedNamespaces, allowedKinds, deniedKinds, allowClusterScoped, clusterScopedKinds } = policy;
  const violations: string[] = [];
  const customKinds = clusterScopedCustomKinds(everyObject(objects));
  for (const object of everyObject(objects)) {
    const broken: string[] = [];
    const denied = deniedKinds.find((pattern) => kindMatches(pattern, object));
    if (denied !== undefined) broken.push(`kind denied by ${JSON.stringify(denied)}`);
    if (allowedKinds !== undefined && !allowedKinds.some((pattern) => kindMatches(pattern, object))) broken.push("kind not in the allowed kinds");
    const knownClusterScoped = isKnownClusterScoped(object, clusterScopedKinds, customKinds);
    const namespace = object.metadata.namespace;
    if (!allowClusterScoped && (knownClusterScoped || namespace === undefined)) {
      broken.push(knownClusterScoped ? "cluster-scoped objects are not allowed" : "no metadata.namespace, so it counts as cluster-scoped, and cluster-scoped objects are not allowed");
    }
    if (allowedNamespaces !== undefined) {
      const isNamespace = groupOf(object.apiVersion) === "" && object.kind === "Namespace";
      if (isNamespace && !allowedNamespaces.some((pattern) => globMatches(pattern, object.metadata.name))) {
        broken.push("namespace name not in the allowed namespaces");
      } else if (!knownClusterScoped && namespace === undefined && allowClusterScoped) {
        broken.push("no metadata.namespace, and only allowed namespaces may be used (name one, or list the kind in the cluster-scoped kinds)");
      } else if (!knownClusterScoped && namespace !== undefined && !allowedNamespaces.some((pattern) => globMatches(pattern, namespace))) {
        broken.push(`namespace ${JSON.stringify(namespace)} not in the allowed namespaces`);
      }
    }
    if (broken.length > 0) violations.push(`${describe(object)}: ${broken.join("; ")}`);
  }
  return violations;
}

/**
 * Rejects a bundle with a list-shaped object ({@link checkListObjects}), then one with any
 * object that `policy` forbids, listing every such object.
 *
 * @throws {MessageRejectedError} with reason `list-object` or `policy`.
 */
export function checkPolicy(objects: readonly KubeObject[], policy: Policy): void {
  checkListObjects(objects);
  const violations = policyViolations(objects, policy);
  if (violations.length === 0) return;
  throw new MessageRejectedError(
    "policy",
    `Rejected message: ${violations.length} of ${objects.length} objects break the listener's policy, so nothing is applied: ${violations.join("; ")}`,
  );
}

/** Secret values shorter than this are not searched for in texts (they would mask ordinary words). */
export const MIN_REDACTED_VALUE_LENGTH = 4;

/** Marks what was removed from a text. */
export const REDACTED = "[redacted]";

function scalarLeaves(value: unknown, out: string[], depth = 0): void {
  if (depth > 32) return;
  if (typeof value === "string") out.push(value);
  else if (typeof value === "number" || typeof value === "boolean" || typeof value === "bigint") out.push(String(value));
  else if (Array.isArray(value)) for (const item of value) scalarLeaves(item, out, depth + 1);
  else if (typeof value === "object" && value !== null) for (const item of Object.values(value)) scalarLeaves(item, out, depth + 1);
}

/**
 * The values of every Secret of `objects`, list items included (under `data` and `stringData`, any depth, and the
 * decoded form of base64 `data`), in the forms they may take in an error text: as they are,
 * JSON-quoted, and line by line. Longest first, so that a value is masked before its parts.
 */
export function secretValues(objects: readonly KubeObject[]): string[] {
  const leaves: string[] = [];
  // Secrets inside list-shaped objects too: kubectl's errors may echo them.
  for (const object of everyObject(objects)) {
    if (object.kind !== "Secret" || groupOf(object.apiVersion) !== "") continue;
    const data: string[] = [];
    scalarLeaves(object["data"], data);
    for (const value of data) {
      leaves.push(value);
      if (/^[A-Za-z0-9+/]*={0,2}$/.test(value)) leaves.push(Buffer.from(value, "base64").toString("utf8"));
    }
    scalarLeaves(object["stringData"], leaves);
  }
  const needles = new Set<string>();
  for (const value of leaves) {
    for (const form of [value, JSON.stringify(value).slice(1, -1), ...value.split(/\r?\n/)]) {
      if (form.trim().length >= MIN_REDACTED_VALUE_LENGTH) needles.add(form);
    }
  }
  return [...needles].sort((a, b) => b.length - a.length);
}

/**
 * `text` without the Secret values of `objects` (see {@link secretValues}), and without the
 * values the API server echoes when it cannot read a Secret's `data` or `stringData`
 * (`.stringData.password: expected string, got &value.valueUnstructured{Value:31415926535}`).
 */
export function redactSecretValues(text: string, objects: readonly KubeObject[]): string {
  let out = text.replace(/(\.(?:data|stringData|binaryData)\.[^\n]*?: expected [^\n]*?, got )[^\n]*/g, `$1${REDACTED}`);
  for (const needle of secretValues(objects)) out = out.split(needle).join(REDACTED);
  return out;
}

/**
 * A copy of `error` for logs and records with {@link redactSecretValues} applied to its
 * message and to every string it carries (a KubectlError's stderr, say), and to its causes.
 */
export function redactError(error: unknown, objects: readonly KubeObject[], depth = 0): Error {
  const source = error instanceof Error ? error : new Error(String(error));
  // Stays a KubePicoCdError when it was one: the logger prints stacks of unknown errors only.
  const message = redactSecretValues(source.message, objects);
  const copy = source instanceof KubePicoCdError ? new KubePicoCdError(message) : new Error(message);
  copy.name = source.name;
  for (const [key, value] of Object.entries(source)) {
    if (key === "name" || key === "message") continue;
    if (typeof value === "string") (copy as unknown as Record<string, unknown>)[key] = redactSecretValues(value, objects);
    else if (Array.isArray(value) && value.every((v) => typeof v === "string")) (copy as unknown as Record<string, unknown>)[key] = value.map((v: string) => redactSecretValues(v, objects));
    else if (value === null || typeof value === "number" || typeof value === "boolean") (copy as unknown as Record<string, unknown>)[key] = value;
  }
  if (source.cause !== undefined && depth < 4) copy.cause = redactError(source.cause, objects, depth + 1);
  // The original stack starts with the unredacted message: keep only its frames.
  const frames = (source.stack ?? "").split("\n").filter((line) => /^\s+at /.test(line));
  copy.stack = [`${copy.name}: ${copy.message}`, ...frames].join("\n");
  return copy;
}
