import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { MessageRejectedError } from "../../lib/errors.ts";
import { parseAppsConfig, type AppsConfig } from "../../lib/listener/apps-config.ts";
import { intendedInventory } from "../../lib/listener/intent.ts";
import { checkPolicy, OPEN_POLICY } from "../../lib/listener/policy.ts";
import { checkAppScope, requireAppScope, scopeFor, withDefaultNamespace, type AppScope } from "../../lib/listener/scope.ts";
import { BUILT_IN_CLUSTER_SCOPED_KINDS, clusterScopedCustomKinds, isBuiltInClusterScoped } from "../../lib/manifests/cluster-scoped.ts";
import type { KubeObject, MessageSignature } from "../../lib/wire/message.ts";
import { thrown } from "../helpers/thrown.ts";

const FILE = "/etc/kube-pico-cd/apps/apps.yaml";
const KEY_A = "0123456789abcdef";
const KEY_B = "fedcba9876543210";

function object(apiVersion: string, kind: string, name: string, namespace?: string, extra: Record<string, unknown> = {}): KubeObject {
  return { apiVersion, kind, metadata: { name, ...(namespace === undefined ? {} : { namespace }) }, ...extra } as KubeObject;
}

const config = (text: string): AppsConfig => parseAppsConfig(text, FILE, [KEY_A, KEY_B]);

const PLATFORM = config(`
apps:
  - name: "team-a-*"
    namespaces: ["team-a-*"]
  - name: team-a-billing
    namespaces: [billing]
    defaultNamespace: billing
    kinds: ["apps/*", "core/*"]
    deniedKinds: ["core/Secret"]
    trustedKeys: ["${KEY_A}"]
  - name: "team-*"
    namespaces: [shared]
  - name: ops
    allowClusterScoped: true
`);

const scopeOf = (config: AppsConfig | undefined, app: string): AppScope => requireAppScope(config, app);

describe("scopeFor()", () => {
  test("scopeFor() without an apps configuration gives every app an open scope and no default namespace", () => {
    expect(scopeFor(undefined, "shop")).toEqual({ scope: { app: "shop", policy: { deniedKinds: [], allowClusterScoped: true } } });
  });

  const cases: { app: string; origin: string; namespaces?: readonly string[] }[] = [
    { app: "team-a-billing", origin: `entry "team-a-billing" (apps[1]) of ${FILE}`, namespaces: ["billing"] },
    { app: "team-a-web", origin: `entry "team-a-*" (apps[0]) of ${FILE}`, namespaces: ["team-a-*"] },
    { app: "team-b-web", origin: `entry "team-*" (apps[2]) of ${FILE}`, namespaces: ["shared"] },
    { app: "ops", origin: `entry "ops" (apps[3]) of ${FILE}` },
  ];
  for (const { app, origin, namespaces } of cases) {
    test(`scopeFor() finds ${app} under ${origin.split(" of ")[0]}: exact names before globs, then the first glob in file order`, () => {
      const scope = scopeOf(PLATFORM, app);
      expect(scope.origin).toBe(origin);
      expect(scope.policy.allowedNamespaces).toEqual(namespaces);
    });
  }

  test("scopeFor() turns an entry into the app's policy, default namespace and keys", () => {
    expect(scopeFor(PLATFORM, "team-a-billing")).toEqual({
      scope: {
        app: "team-a-billing",
        origin: `entry "team-a-billing" (apps[1]) of ${FILE}`,
        defaultNamespace: "billing",
        policy: { deniedKinds: ["core/Secret"], allowClusterScoped: false, allowedNamespaces: ["billing"], allowedKinds: ["apps/*", "core/*"] },
        trustedKeys: [KEY_A],
      },
    });
  });

  test("scopeFor() refuses an app no entry names when unknownApps is refuse, naming the app and the file", () => {
    expect(scopeFor(PLATFORM, "blog")).toEqual({
      refused: `Rejected message: app "blog" has no entry in the apps configuration ${FILE} (no name or glob there matches it), and unknownApps is refuse: add an entry for it (apps: [{ name: blog, namespaces: [...] }]), or write unknownApps: allow`,
    });
  });

  test("scopeFor() runs an app no entry names under defaults when unknownApps is allow", () => {
    const allowing = config("apps: [{ name: shop }]\nunknownApps: allow\ndefaults: { namespaces: [sandbox], defaultNamespace: sandbox }\n");
    expect(scopeFor(allowing, "blog")).toEqual({
      scope: { app: "blog", origin: `defaults of ${FILE} (unknownApps: allow)`, defaultNamespace: "sandbox", policy: { deniedKinds: [], allowClusterScoped: false, allowedNamespaces: ["sandbox"] } },
    });
  });

  test("scopeFor() needs an entry for the default app, the app of messages that name none", () => {
    expect("refused" in scopeFor(PLATFORM, "default")).toBe(true);
    expect(scopeOf(config("apps: [{ name: default, namespaces: [web] }]"), "default").policy.allowedNamespaces).toEqual(["web"]);
  });

  test("requireAppScope() throws the refusal as a MessageRejectedError with reason unknown-app", () => {
    const error = thrown(() => requireAppScope(PLATFORM, "blog"), MessageRejectedError);
    expect(error.reason).toBe("unknown-app");
    expect(error.message).toStartWith('Rejected message: app "blog" has no entry in the apps configuration');
  });
});

describe("withDefaultNamespace()", () => {
  const crd = object("apiextensions.k8s.io/v1", "CustomResourceDefinition", "gizmos.example.com", undefined, { spec: { group: "example.com", scope: "Cluster", names: { kind: "Gizmo" } } });
  const cases: { what: string; input: KubeObject; expected: string | undefined; extra?: readonly string[] }[] = [
    { what: "a namespaced object without a namespace", input: object("v1", "ConfigMap", "a"), expected: "shop" },
    { what: "a namespaced object with an empty namespace", input: object("v1", "ConfigMap", "a", ""), expected: "shop" },
    { what: "an object of an unknown kind without a namespace", input: object("example.com/v1", "Widget", "w"), expected: "shop" },
    { what: "an object with its own namespace", input: object("apps/v1", "Deployment", "api", "web"), expected: "web" },
    { what: "a Namespace", input: object("v1", "Namespace", "shop"), expected: undefined },
    { what: "a built-in cluster-scoped kind", input: object("rbac.authorization.k8s.io/v1", "ClusterRole", "r"), expected: undefined },
    { what: "a kind the bundle's own CRD declares cluster-scoped", input: object("example.com/v1", "Gizmo", "g"), expected: undefined },
    { what: "a kind of --cluster-scoped-kinds", input: object("cert-manager.io/v1", "ClusterIssuer", "ca"), expected: undefined, extra: ["cert-manager.io/ClusterIssuer"] },
  ];
  for (const { what, input, expected, extra = [] } of cases) {
    test(`withDefaultNamespace() gives ${what} ${expected === undefined ? "no namespace" : `namespace ${expected}`}`, () => {
      // The bundle holds a CRD declaring Gizmo cluster-scoped; it changes nothing for the other kinds.
      expect(withDefaultNamespace([crd, input], "shop", extra)[1]?.metadata.namespace).toBe(expected);
    });
  }

  test("withDefaultNamespace() copies the objects it changes and leaves its input alone", () => {
    const input = [object("v1", "ConfigMap", "a", undefined, { data: { k: "v" } }), object("v1", "ConfigMap", "b", "web")];
    const out = withDefaultNamespace(input, "shop", []);
    expect(input[0]!.metadata.namespace).toBeUndefined();
    expect(out[0]).toEqual(object("v1", "ConfigMap", "a", "shop", { data: { k: "v" } }));
    expect(out[0]).not.toBe(input[0]);
    expect(out[1]).toBe(input[1]!);
  });

  test("withDefaultNamespace() without a namespace returns the objects as they are", () => {
    const input = [object("v1", "ConfigMap", "a")];
    const out = withDefaultNamespace(input, undefined, []);
    expect(out).toEqual(input);
    expect(out[0]).toBe(input[0]!);
  });
});

describe("checkAppScope()", () => {
  const signed = (keyId: string): MessageSignature => ({ algorithm: "ed25519", keyId, value: "AAAA" });
  const bundle = (objects: KubeObject[], signature?: MessageSignature) => ({ build: { id: "b-7", timestampMs: 1 }, objects, ...(signature === undefined ? {} : { signature }) });
  const billing = scopeOf(PLATFORM, "team-a-billing");

  test("checkAppScope() accepts a bundle inside the scope, signed by one of the app's keys", () => {
    expect(() => checkAppScope(bundle([object("apps/v1", "Deployment", "api", "billing"), object("v1", "ConfigMap", "c", "billing")], signed(KEY_A)), billing, [])).not.toThrow();
  });

  test("checkAppScope() does nothing for an open scope (no apps configuration)", () => {
    const open = scopeOf(undefined, "shop");
    expect(() => checkAppScope(bundle([object("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "admin"), object("v1", "Secret", "s", "kube-system")]), open, [])).not.toThrow();
  });

  test("checkAppScope() rejects a bundle signed by a trusted key the app may not use, as unknown-key", () => {
    const error = thrown(() => checkAppScope(bundle([object("v1", "ConfigMap", "c", "billing")], signed(KEY_B)), billing, []), MessageRejectedError);
    expect(error.reason).toBe("unknown-key");
    expect(error.message).toBe(
      `Rejected message: build "b-7" of app "team-a-billing" is signed by key ${KEY_B}, which the app may not use: entry "team-a-billing" (apps[1]) of ${FILE} allows only key ${KEY_A} (add ${KEY_B} to its trustedKeys, or sign with one of those)`,
    );
  });

  test("checkAppScope() rejects an unsigned bundle of an app that lists keys, as unsigned", () => {
    const error = thrown(() => checkAppScope(bundle([object("v1", "ConfigMap", "c", "billing")]), billing, []), MessageRejectedError);
    expect(error.reason).toBe("unsigned");
    expect(error.message).toBe(`Rejected message: build "b-7" of app "team-a-billing" is not signed, and entry "team-a-billing" (apps[1]) of ${FILE} allows only key ${KEY_A}`);
  });

  test("checkAppScope() accepts any signer, or none, when the app lists no keys", () => {
    const web = scopeOf(PLATFORM, "team-a-web");
    expect(() => checkAppScope(bundle([object("v1", "ConfigMap", "c", "team-a-web")], signed(KEY_B)), web, [])).not.toThrow();
    expect(() => checkAppScope(bundle([object("v1", "ConfigMap", "c", "team-a-web")]), web, [])).not.toThrow();
  });

  test("checkAppScope() rejects a bundle with objects outside the scope as scope, listing every one and each rule it breaks", () => {
    const objects = [
      object("apps/v1", "Deployment", "api", "billing"),
      object("v1", "Secret", "db", "billing"),
      object("v1", "ConfigMap", "c", "team-a-web"),
      object("batch/v1", "Job", "migrate", "billing"),
      object("v1", "Namespace", "billing"),
    ];
    const error = thrown(() => checkAppScope(bundle(objects, signed(KEY_A)), billing, []), MessageRejectedError);
    expect(error.reason).toBe("scope");
    expect(error.message).toBe(
      `Rejected message: 4 of 5 objects of build "b-7" of app "team-a-billing" are outside the app's scope (entry "team-a-billing" (apps[1]) of ${FILE}), so nothing is applied: ` +
        'Secret billing/db: kind denied by "core/Secret"; ' +
        'ConfigMap team-a-web/c: namespace "team-a-web" not in the allowed namespaces; ' +
        "batch/Job billing/migrate: kind not in the allowed kinds; " +
        "Namespace billing: cluster-scoped objects are not allowed",
    );
  });

  test("checkAppScope() checks the signer before the objects", () => {
    const error = thrown(() => checkAppScope(bundle([object("v1", "Secret", "db", "billing")], signed(KEY_B)), billing, []), MessageRejectedError);
    expect(error.reason).toBe("unknown-key");
  });

  test("checkAppScope() knows the listener's cluster-scoped kinds, so a cluster-scoped object written with a namespace is still one", () => {
    const web = scopeOf(PLATFORM, "team-a-web");
    const issuer = object("cert-manager.io/v1", "ClusterIssuer", "ca", "team-a-web");
    expect(() => checkAppScope(bundle([issuer]), web, [])).not.toThrow();
    const error = thrown(() => checkAppScope(bundle([issuer]), web, ["cert-manager.io/ClusterIssuer"]), MessageRejectedError);
    expect(error.message).toEndWith("cert-manager.io/ClusterIssuer team-a-web/ca: cluster-scoped objects are not allowed");
  });

  test("checkAppScope() lets an app with allowClusterScoped apply cluster-scoped objects", () => {
    expect(() => checkAppScope(bundle([object("v1", "Namespace", "ops"), object("rbac.authorization.k8s.io/v1", "ClusterRole", "r")]), scopeOf(PLATFORM, "ops"), [])).not.toThrow();
  });

  test("checkAppScope() sees the objects inside a list-shaped object", () => {
    const list = object("v1", "ConfigMap", "innocent", "billing", { items: [object("v1", "Secret", "smuggled", "kube-system")] });
    const error = thrown(() => checkAppScope(bundle([list], signed(KEY_A)), billing, []), MessageRejectedError);
    expect(error.message).toContain("Secret kube-system/smuggled:");
  });
});

describe("the default namespace and both checks together", () => {
  const shop = scopeOf(config("apps: [{ name: shop, namespaces: [shop], defaultNamespace: shop }]"), "shop");

  test("objects without a namespace pass a scope of namespaces once the default namespace is applied, and only then", () => {
    const objects = [object("v1", "ConfigMap", "a"), object("apps/v1", "Deployment", "api")];
    const decoded = { build: { id: "b", timestampMs: 1 }, objects };
    expect(thrown(() => checkAppScope(decoded, shop, []), MessageRejectedError).reason).toBe("scope");
    const placed = withDefaultNamespace(objects, shop.defaultNamespace, []);
    expect(() => checkAppScope({ ...decoded, objects: placed }, shop, [])).not.toThrow();
  });

  test("the listener-wide policy stays the ceiling: an object the scope allows is still refused by the flags", () => {
    const placed = withDefaultNamespace([object("v1", "Secret", "a")], shop.defaultNamespace, []);
    expect(() => checkAppScope({ build: { id: "b", timestampMs: 1 }, objects: placed }, shop, [])).not.toThrow();
    expect(thrown(() => checkPolicy(placed, { ...OPEN_POLICY, deniedKinds: ["Secret"] }), MessageRejectedError).reason).toBe("policy");
  });
});

describe("cluster-scoped kinds: one table for the policy, the intent and the default namespace", () => {
  test("every built-in cluster-scoped kind gets no default namespace, no intent namespace, and counts as cluster-scoped for a policy", () => {
    for (const key of BUILT_IN_CLUSTER_SCOPED_KINDS) {
      const slash = key.indexOf("/");
      const group = key.slice(0, slash);
      const kind = key.slice(slash + 1);
      const o = object(group === "" ? "v1" : `${group}/v1`, kind, "x");
      expect(isBuiltInClusterScoped(o)).toBe(true);
      expect(withDefaultNamespace([o], "shop", [])[0]?.metadata.namespace).toBeUndefined();
      expect(intendedInventory([o], "shop")[0]?.namespace).toBeUndefined();
      const written = object(o.apiVersion, kind, "x", "shop");
      expect(thrown(() => checkPolicy([written], { ...OPEN_POLICY, allowClusterScoped: false }), MessageRejectedError).reason).toBe("policy");
    }
  });

  test("the table holds the core group as \"\" and kinds by their exact name", () => {
    expect(BUILT_IN_CLUSTER_SCOPED_KINDS.has("/Namespace")).toBe(true);
    expect(BUILT_IN_CLUSTER_SCOPED_KINDS.has("storage.k8s.io/VolumeAttributesClass")).toBe(true);
    expect(isBuiltInClusterScoped(object("apps/v1", "Namespace", "x"))).toBe(false);
    expect(isBuiltInClusterScoped(object("v1", "ConfigMap", "x"))).toBe(false);
  });

  test("clusterScopedCustomKinds() reads the kinds of the bundle's CRDs with spec.scope Cluster, and skips the others", () => {
    const crd = (kind: string, scope: unknown) => object("apiextensions.k8s.io/v1", "CustomResourceDefinition", `${kind}.example.com`, undefined, { spec: { group: "example.com", scope, names: { kind } } });
    expect([...clusterScopedCustomKinds([crd("Gizmo", "Cluster"), crd("Widget", "Namespaced"), crd("Odd", 3), object("v1", "ConfigMap", "c")])]).toEqual(["example.com/Gizmo"]);
  });

  test("the policy counts a kind of the bundle's own cluster-scoped CRD as cluster-scoped", () => {
    const crd = object("apiextensions.k8s.io/v1", "CustomResourceDefinition", "gizmos.example.com", undefined, { spec: { group: "example.com", scope: "Cluster", names: { kind: "Gizmo" } } });
    const gizmo = object("example.com/v1", "Gizmo", "g");
    // Without the CRD a Gizmo without a namespace is refused where only allowed namespaces may be used; with it, it is known to be cluster-scoped.
    expect(thrown(() => checkPolicy([gizmo], { ...OPEN_POLICY, allowedNamespaces: ["shop"] }), MessageRejectedError).reason).toBe("policy");
    expect(() => checkPolicy([crd, gizmo], { ...OPEN_POLICY, allowedNamespaces: ["shop"] })).not.toThrow();
  });
});

describe("docs/apps.md's platform example does what the page says", () => {
  const platform = parseAppsConfig(readFileSync(join(dirname(fileURLToPath(import.meta.url)), "..", "..", "deploy", "apps-config", "apps.yaml"), "utf8"), FILE, ["4f1c2a9be0d37c55", KEY_A, KEY_B]);
  const bundle = (objects: KubeObject[], keyId: string) => ({ build: { id: "b", timestampMs: 1 }, objects, signature: { algorithm: "ed25519" as const, keyId, value: "AAAA" } });
  const reasonOf = (app: string, objects: KubeObject[], keyId: string): string | undefined => {
    try {
      const scope = requireAppScope(platform, app);
      checkAppScope(bundle(withDefaultNamespace(objects, scope.defaultNamespace, []), keyId), scope, []);
      return undefined;
    } catch (error) {
      return (error as MessageRejectedError).reason;
    }
  };
  const cases: { what: string; app: string; objects: KubeObject[]; keyId: string; reason: string | undefined }[] = [
    { what: "team-a-web gets the team-a-* entry", app: "team-a-web", objects: [object("apps/v1", "Deployment", "web", "team-a-web")], keyId: KEY_A, reason: undefined },
    { what: "team-b-api signed with team A's key is unknown-key", app: "team-b-api", objects: [object("apps/v1", "Deployment", "api", "team-b-api")], keyId: KEY_A, reason: "unknown-key" },
    { what: "an app blog is unknown-app", app: "blog", objects: [object("v1", "ConfigMap", "c", "blog")], keyId: KEY_A, reason: "unknown-app" },
    { what: "a bundle that names no app is unknown-app", app: "default", objects: [object("v1", "ConfigMap", "c", "web")], keyId: KEY_A, reason: "unknown-app" },
    { what: "platform may create Namespaces and CRDs", app: "platform", objects: [object("v1", "Namespace", "team-c"), object("apiextensions.k8s.io/v1", "CustomResourceDefinition", "x.example.com")], keyId: "4f1c2a9be0d37c55", reason: undefined },
    { what: "a Namespace team-c from team B is scope", app: "team-b-api", objects: [object("v1", "Namespace", "team-c")], keyId: KEY_B, reason: "scope" },
    { what: "shop's objects without a namespace land in shop", app: "shop", objects: [object("v1", "ConfigMap", "c")], keyId: KEY_A, reason: undefined },
  ];
  for (const { what, app, objects, keyId, reason } of cases) {
    test(what, () => {
      expect(reasonOf(app, objects, keyId)).toBe(reason);
    });
  }
});
