/**
 * Helm hooks in rendered charts (`helm template`): objects annotated `helm.sh/hook`, which
 * Helm creates at a moment of a release's life instead of with the release. kube-pico-cd
 * has one moment, the deploy, so each hook is applied then as an ordinary object or left out:
 *
 * - `pre-install`, `post-install`, `pre-upgrade`, `post-upgrade`: applied with the bundle, as
 *   `helm template | kubectl apply -f -` would, with a notice that Helm's ordering
 *   (`hook-weight`, before or after the release) and `hook-delete-policy` are not run. A hook
 *   Job or Pod cannot be changed once created (Helm deletes and recreates it each release),
 *   so the notice says that a changed one fails to apply. Left out instead under
 *   {@link HelmHookOptions.installHooks} `"omit"`.
 * - `crd-install` (Helm 2): applied; the listener applies CustomResourceDefinitions before
 *   every other object, which is what the hook was for.
 * - `test`, `test-success`, `test-failure`: left out; they run under `helm test`.
 * - `pre-delete`, `post-delete`, `pre-rollback`, `post-rollback`: left out; publishing never
 *   uninstalls or rolls back a release, so their moment never comes.
 *
 * An object with several hooks is applied when any of them is applied. As Helm does, the
 * annotation is a comma-separated list, read without case and surrounding spaces; a value
 * Helm does not know is a problem (Helm itself would skip the object without a word).
 */
import type { BundledObject } from "./kube-object.ts";
import { groupOf } from "./object-ref.ts";

/** The annotation that makes an object a Helm hook. */
export const HELM_HOOK_ANNOTATION = "helm.sh/hook";

/** What happens to an object with each hook: Helm 3's events, and Helm 2's `crd-install` and `test-failure`. */
const HOOK_CLASSES = new Map<string, "install" | "crd" | "test" | "never">([
  ["pre-install", "install"],
  ["post-install", "install"],
  ["pre-upgrade", "install"],
  ["post-upgrade", "install"],
  ["crd-install", "crd"],
  ["test", "test"],
  ["test-success", "test"],
  ["test-failure", "test"],
  ["pre-delete", "never"],
  ["post-delete", "never"],
  ["pre-rollback", "never"],
  ["post-rollback", "never"],
]);

type HookClass = typeof HOOK_CLASSES extends Map<string, infer C> ? C : never;

/** Options of {@link helmHookDecision} and {@link applyHelmHookRules}. */
export interface HelmHookOptions {
  /** `"apply"`: install and upgrade hooks are applied as ordinary objects; `"omit"`: left out. Default `"apply"`. */
  installHooks?: "apply" | "omit";
}

/** What becomes of one object. */
export type HelmHookDecision =
  | { action: "keep" }
  | { action: "keep" | "leave-out"; notice: string }
  | { action: "refuse"; problem: string };

function describeObject(item: BundledObject): string {
  const { object } = item;
  const namespace = object.metadata.namespace === undefined ? "" : `${object.metadata.namespace}/`;
  return `${object.kind} ${namespace}${object.metadata.name}`;
}

/** Kinds whose spec cannot be changed by a later apply: the usual hook Jobs and Pods. */
function isImmutableRun(item: BundledObject): boolean {
  const group = groupOf(item.object.apiVersion);
  return (group === "batch" && item.object.kind === "Job") || (group === "" && item.object.kind === "Pod");
}

/** The hook annotation's value, or `undefined` when the object is no hook. */
function hookAnnotation(item: BundledObject): unknown {
  const annotations = item.object.metadata["annotations"];
  if (typeof annotations !== "object" || annotations === null) return undefined;
  return (annotations as Record<string, unknown>)[HELM_HOOK_ANNOTATION];
}

/** What becomes of `item` under the rules of this module (see its comment). */
export function helmHookDecision(item: BundledObject, options: HelmHookOptions = {}): HelmHookDecision {
  const { installHooks = "apply" } = options;
  const value = hookAnnotation(item);
  if (value === undefined) return { action: "keep" };
  const what = describeObject(item);
  if (typeof value !== "string") {
    return { action: "refuse", problem: `${what} has a ${HELM_HOOK_ANNOTATION} annotation that is not a string` };
  }
  const hooks = value.split(",").map((hook) => hook.trim().toLowerCase());
  const classes = new Set<HookClass>();
  for (const hook of hooks) {
    const hookClass = HOOK_CLASSES.get(hook);
    if (hookClass === undefined) {
      return {
        action: "refuse",
        problem: `${what} has an unknown ${HELM_HOOK_ANNOTATION} ${JSON.stringify(hook)} (known: ${[...HOOK_CLASSES.keys()].join(", ")})`,
      };
    }
    classes.add(hookClass);
  }
  const shown = `${HELM_HOOK_ANNOTATION}: ${value}`;
  if (classes.has("install")) {
    if (installHooks === "omit") {
      return { action: "leave-out", notice: `left out ${what} (${shown}): install and upgrade hooks are left out (--helm-hooks=omit)` };
    }
    const immutable = isImmutableRun(item)
      ? `; a ${item.object.kind} cannot be changed once created, so a build that changes it fails to apply while the old one exists`
      : "";
    return {
      action: "keep",
      notice: `applied ${what} as an ordinary object (${shown}): Helm's hook order, hook-weight and hook-delete-policy are not run${immutable}`,
    };
  }
  if (classes.has("crd")) {
    return {
      action: "keep",
      notice: `applied ${what} as an ordinary object (${shown}): the listener applies CustomResourceDefinitions before other objects`,
    };
  }
  if (classes.has("test")) {
    return { action: "leave-out", notice: `left out ${what} (${shown}): Helm tests run only under helm test` };
  }
  return {
    action: "leave-out",
    notice: `left out ${what} (${shown}): it runs only when Helm uninstalls or rolls back a release, which publishing never does`,
  };
}

/** The result of {@link applyHelmHookRules}. */
export interface HelmHookResult {
  /** The objects to bundle, in order. */
  items: BundledObject[];
  /** One line per hook, `source: what was done and why`. */
  notices: string[];
  /** One line per object whose hook annotation cannot be read, `source: what is wrong`. */
  problems: string[];
  /** How many objects were left out. */
  leftOut: number;
}

/** Applies {@link helmHookDecision} to every item. */
export function applyHelmHookRules(items: readonly BundledObject[], options: HelmHookOptions = {}): HelmHookResult {
  const result: HelmHookResult = { items: [], notices: [], problems: [], leftOut: 0 };
  for (const item of items) {
    const decision = helmHookDecision(item, options);
    if (decision.action === "refuse") {
      result.problems.push(`${item.source}: ${decision.problem}`);
      continue;
    }
    if ("notice" in decision) result.notices.push(`${item.source}: ${decision.notice}`);
    if (decision.action === "keep") result.items.push(item);
    else result.leftOut++;
  }
  return result;
}
