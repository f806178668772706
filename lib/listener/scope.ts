/**
 * An app's scope: what one app's bundles may touch and who may sign them, from its entry in
 * the apps configuration (lib/listener/apps-config.ts, docs/apps.md). Pure.
 *
 * The scope narrows the listener-wide policy (the `--allow-*`/`--deny-*` flags), it never
 * widens it: a bundle is applied only when both allow every object. Without an apps
 * configuration every app's scope is open (today's single-policy listener: fit for a cluster
 * whose publishers all trust each other), and no default namespace is set.
 *
 * Per bundle, in this order (the listener wires it; `config` is the ListenerConfig, `apps`
 * the watch of lib/listener/apps-config-watch.ts, `undefined` without `--apps-config`):
 *
 * ```ts
 * const scope = requireAppScope(apps?.current, decoded.app);             // unknown-app
 * const objects = withDefaultNamespace(decoded.objects, scope.defaultNamespace, config.policy.clusterScopedKinds);
 * checkPolicy(objects, config.policy);                                    // the listener-wide ceiling: list-object, policy
 * checkAppScope({ ...decoded, objects }, scope, config.policy.clusterScopedKinds); // unknown-key, unsigned, scope
 * // the intent, the protected-object check, kubectl and prune all take `objects`, and so does
 * // every drift pass of the kept bundle (with the scope in force at that pass).
 * ```
 *
 * The default namespace is applied first so that both checks see each object where kubectl
 * will put it. The limitation it shares with the policy: an object of a cluster-scoped kind the
 * listener does not know (a CRD installed otherwise, not in `--cluster-scoped-kinds`), written
 * without a namespace, gets the default namespace and then counts as namespaced. Allowed kinds
 * and `--cluster-scoped-kinds` close that gap; RBAC remains the boundary.
 */
import { MessageRejectedError } from "../errors.ts";
import { clusterScopedCustomKinds } from "../manifests/cluster-scoped.ts";
import type { KubeObject } from "../manifests/bundle.ts";
import type { DecodedMessage } from "../wire/message.ts";
import type { AppEntry, AppRules, AppsConfig } from "./apps-config.ts";
import { isAppNameGlob } from "./apps-config.ts";
import { globMatches, isKnownClusterScoped, policyViolations, type Policy } from "./policy.ts";

/** What one app may do: its rules from the apps configuration, applied on top of the listener-wide policy. */
export interface AppScope {
  /** The app the scope is for. */
  app: string;
  /** The part of the apps configuration it comes from, for messages (`entry "shop" (apps[0]) of FILE`); undefined without a file. */
  origin?: string;
  /** The namespace of its namespaced objects that name none; undefined: where kubectl puts them. */
  defaultNamespace?: string;
  /** Its namespaces, kinds and cluster scope; the cluster-scoped kinds are the listener's (see {@link checkAppScope}). */
  policy: Omit<Policy, "clusterScopedKinds">;
  /** Key ids its bundles must be signed by; undefined: any key the listener trusts. */
  trustedKeys?: readonly string[];
}

/**
 * The scope of `app` under `config`: the entry named `app` exactly, else the first entry (in
 * file order) whose glob matches it, else `defaults` when `unknownApps` is `allow`. Without a
 * config (no `--apps-config`), an open scope. `refused` is a whole rejection message naming the
 * app and the file, for a MessageRejectedError with reason `unknown-app`.
 */
export function scopeFor(config: AppsConfig | undefined, app: string): { scope: AppScope } | { refused: string } {
  if (config === undefined) return { scope: { app, policy: { deniedKinds: [], allowClusterScoped: true } } };
  const entry = config.apps.find((e) => !isAppNameGlob(e.name) && e.name === app) ?? config.apps.find((e) => isAppNameGlob(e.name) && globMatches(e.name, app));
  if (entry !== undefined) return { scope: scopeOf(app, entry, entryOrigin(entry, config.source)) };
  if (config.unknownApps === "allow") return { scope: scopeOf(app, config.defaults, `defaults of ${config.source} (unknownApps: allow)`) };
  return {
    refused:
      `Rejected message: app ${JSON.stringify(app)} has no entry in the apps configuration ${config.source} (no name or glob there matches it), and unknownApps is refuse: ` +
      `add an entry for it (apps: [{ name: ${app}, namespaces: [...] }]), or write unknownApps: allow`,
  };
}

/**
 * {@link scopeFor}, throwing for a refused app.
 *
 * @throws {MessageRejectedError} with reason `unknown-app`.
 */
export function requireAppScope(config: AppsConfig | undefined, app: string): AppScope {
  const found = scopeFor(config, app);
  if ("refused" in found) throw new MessageRejectedError("unknown-app", found.refused);
  return found.scope;
}

function entryOrigin(entry: AppEntry, source: string): string {
  return `entry ${JSON.stringify(entry.name)} (apps[${entry.index}]) of ${source}`;
}

function scopeOf(app: string, rules: AppRules, origin: string): AppScope {
  return {
    app,
    origin,
    ...(rules.defaultNamespace === undefined ? {} : { defaultNamespace: rules.defaultNamespace }),
    policy: {
      deniedKinds: rules.deniedKinds,
      allowClusterScoped: rules.allowClusterScoped,
      ...(rules.namespaces === undefined ? {} : { allowedNamespaces: rules.namespaces }),
      ...(rules.kinds === undefined ? {} : { allowedKinds: rules.kinds }),
    },
    ...(rules.trustedKeys === undefined ? {} : { trustedKeys: rules.trustedKeys }),
  };
}

/**
 * `objects` with `metadata.namespace` set to `namespace` on each namespaced object that names
 * none (or names ""), as `kubectl apply -n` or Flux's `targetNamespace` would place them.
 * Objects known to be cluster-scoped keep none: the built-in kinds, the kinds that the bundle's
 * own CustomResourceDefinitions declare `spec.scope: Cluster`, and kinds matching
 * `extraClusterScopedKinds` (the policy's `--cluster-scoped-kinds` patterns). The objects
 * that change are copies; the others are returned as they are. With `namespace` undefined,
 * every object is returned as it is.
 */
export function withDefaultNamespace(objects: readonly KubeObject[], namespace: string | undefined, extraClusterScopedKinds: readonly string[]): KubeObject[] {
  if (namespace === undefined) return [...objects];
  const customKinds = clusterScopedCustomKinds(objects);
  return objects.map((object) => {
    const own = object.metadata.namespace;
    if ((own !== undefined && own !== "") || isKnownClusterScoped(object, extraClusterScopedKinds, customKinds)) return object;
    return { ...object, metadata: { ...object.metadata, namespace } };
  });
}

/**
 * Checks a decoded bundle (its objects already given the default namespace, see
 * {@link withDefaultNamespace}) against the app's scope: first the signer, when the scope
 * lists keys, then every object, list items included. `clusterScopedKinds` are the policy's
 * `--cluster-scoped-kinds`, so that the app's scope and the listener-wide policy agree on
 * which objects are cluster-scoped. Does nothing for an open scope (no apps configuration).
 *
 * @throws {MessageRejectedError} with reason `unsigned` (the scope lists keys and the bundle is
 * not signed), `unknown-key` (signed by a key the app may not use) or `scope` (listing every
 * object outside the scope and the rules it breaks).
 */
export function checkAppScope(decoded: Pick<DecodedMessage, "build" | "objects" | "signature">, scope: AppScope, clusterScopedKinds: readonly string[]): void {
  const what = `build ${JSON.stringify(decoded.build.id)} of app ${JSON.stringify(scope.app)}`;
  const { trustedKeys } = scope;
  if (trustedKeys !== undefined) {
    const allowed = `${scope.origin ?? "its scope"} allows only ${trustedKeys.length === 1 ? "key" : "keys"} ${trustedKeys.join(", ")}`;
    const { signature } = decoded;
    if (signature === undefined) throw new MessageRejectedError("unsigned", `Rejected message: ${what} is not signed, and ${allowed}`);
    if (!trustedKeys.includes(signature.keyId)) {
      throw new MessageRejectedError(
        "unknown-key",
        `Rejected message: ${what} is signed by key ${signature.keyId}, which the app may not use: ${allowed} (add ${signature.keyId} to its trustedKeys, or sign with one of those)`,
      );
    }
  }
  const violations = policyViolations(decoded.objects, { ...scope.policy, clusterScopedKinds });
  if (violations.length === 0) return;
  throw new MessageRejectedError(
    "scope",
    `Rejected message: ${violations.length} of ${decoded.objects.length} objects of ${what} are outside the app's scope (${scope.origin ?? "its scope"}), so nothing is applied: ${violations.join("; ")}`,
  );
}
