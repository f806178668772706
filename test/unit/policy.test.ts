import { describe, expect, test } from "bun:test";
import { KubectlError, MessageRejectedError } from "../../lib/errors.ts";
import type { KubeObject } from "../../lib/wire/message.ts";
import {
  checkPolicy,
  kindMatches,
  kindPatternProblem,
  namespacePatternProblem,
  OPEN_POLICY,
  policyViolations,
  redactError,
  redactSecretValues,
  type Policy,
} from "../../lib/listener/policy.ts";

function object(apiVersion: string, kind: string, name: string, namespace?: string, extra: Record<string, unknown> = {}): KubeObject {
  return { apiVersion, kind, metadata: { name, ...(namespace === undefined ? {} : { namespace }) }, ...extra } as KubeObject;
}

const configMap = object("v1", "ConfigMap", "app", "web-prod");
const secret = object("v1", "Secret", "db", "web-prod");
const crb = object("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "admin");
const deployment = object("apps/v1", "Deployment", "api", "web-prod");

describe("kind patterns", () => {
  test("kindMatches() matches Kind in any group, group/Kind in that group, core for the core group", () => {
    expect(kindMatches("Secret", secret)).toBe(true);
    expect(kindMatches("core/Secret", secret)).toBe(true);
    expect(kindMatches("apps/Secret", secret)).toBe(false);
    expect(kindMatches("rbac.authorization.k8s.io/ClusterRoleBinding", crb)).toBe(true);
    expect(kindMatches("rbac.authorization.k8s.io/*", crb)).toBe(true);
    expect(kindMatches("Cluster*", crb)).toBe(true);
    expect(kindMatches("secret", secret)).toBe(false);
  });

  test("kindPatternProblem() and namespacePatternProblem() refuse what is not a pattern", () => {
    expect(kindPatternProblem("rbac.authorization.k8s.io/ClusterRole")).toBeUndefined();
    expect(kindPatternProblem("a b")).toBe('"a b" is not a kind pattern (Kind or group/Kind, e.g. Secret, core/Secret, rbac.authorization.k8s.io/*)');
    expect(namespacePatternProblem("team-*")).toBeUndefined();
    expect(namespacePatternProblem("Team")).toBe(`"Team" is not a namespace glob (lowercase letters, digits, '-', '*', '?')`);
  });
});

describe("policyViolations()", () => {
  test("policyViolations() of the open policy is empty", () => {
    expect(policyViolations([configMap, secret, crb, deployment], OPEN_POLICY)).toEqual([]);
  });

  test("policyViolations() lists denied kinds and kinds outside the allowed ones", () => {
    const policy: Policy = { ...OPEN_POLICY, allowedKinds: ["ConfigMap", "Secret", "apps/*"], deniedKinds: ["core/Secret"] };
    expect(policyViolations([configMap, secret, crb, deployment], policy)).toEqual([
      'Secret web-prod/db: kind denied by "core/Secret"',
      "rbac.authorization.k8s.io/ClusterRoleBinding admin: kind not in the allowed kinds",
    ]);
  });

  test("policyViolations() without cluster-scoped objects refuses known cluster-scoped kinds, even with a namespace, and objects without one", () => {
    const policy: Policy = { ...OPEN_POLICY, allowClusterScoped: false };
    const sneaky = object("rbac.authorization.k8s.io/v1", "ClusterRole", "edit", "web-prod");
    const bare = object("v1", "ConfigMap", "bare");
    expect(policyViolations([configMap, crb, sneaky, bare], policy)).toEqual([
      "rbac.authorization.k8s.io/ClusterRoleBinding admin: cluster-scoped objects are not allowed",
      "rbac.authorization.k8s.io/ClusterRole web-prod/edit: cluster-scoped objects are not allowed",
      "ConfigMap bare: no metadata.namespace, so it counts as cluster-scoped, and cluster-scoped objects are not allowed",
    ]);
  });

  test("policyViolations() with allowed namespaces checks namespaces, Namespace names, and objects without a namespace", () => {
    const policy: Policy = { ...OPEN_POLICY, allowedNamespaces: ["web-*"], clusterScopedKinds: ["cert-manager.io/ClusterIssuer"] };
    const other = object("v1", "ConfigMap", "x", "kube-system");
    const ns = object("v1", "Namespace", "kube-public");
    const okNs = object("v1", "Namespace", "web-dev");
    const bare = object("v1", "ConfigMap", "bare");
    const issuer = object("cert-manager.io/v1", "ClusterIssuer", "letsencrypt");
    expect(policyViolations([configMap, other, ns, okNs, bare, issuer, crb], policy)).toEqual([
      'ConfigMap kube-system/x: namespace "kube-system" not in the allowed namespaces',
      "Namespace kube-public: namespace name not in the allowed namespaces",
      "ConfigMap bare: no metadata.namespace, and only allowed namespaces may be used (name one, or list the kind in the cluster-scoped kinds)",
    ]);
  });

  test("policyViolations() names every rule an object breaks", () => {
    const policy: Policy = { ...OPEN_POLICY, deniedKinds: ["ClusterRoleBinding"], allowClusterScoped: false };
    expect(policyViolations([crb], policy)).toEqual([
      'rbac.authorization.k8s.io/ClusterRoleBinding admin: kind denied by "ClusterRoleBinding"; cluster-scoped objects are not allowed',
    ]);
  });

  test("checkPolicy() rejects the whole bundle with reason policy, listing every violating object", () => {
    const policy: Policy = { ...OPEN_POLICY, deniedKinds: ["Secret"], allowClusterScoped: false };
    let error: unknown;
    try {
      checkPolicy([configMap, secret, crb], policy);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(MessageRejectedError);
    expect((error as MessageRejectedError).reason).toBe("policy");
    expect((error as MessageRejectedError).message).toBe(
      "Rejected message: 2 of 3 objects break the listener's policy, so nothing is applied: " +
        'Secret web-prod/db: kind denied by "Secret"; rbac.authorization.k8s.io/ClusterRoleBinding admin: cluster-scoped objects are not allowed',
    );
  });
});

describe("Secret redaction", () => {
  const password = "hunter2-correct-horse";
  const withSecret = [
    configMap,
    object("v1", "Secret", "db", "web-prod", {
      data: { token: Buffer.from("decoded-token-value").toString("base64") },
      stringData: { password, pin: 31415926535, multi: "line-one-AAA\nline-two-BBB" },
    }),
  ];

  test("redactSecretValues() masks stringData values, data values and their decoded forms", () => {
    const text = `failed: ${password} and ${Buffer.from("decoded-token-value").toString("base64")} and decoded-token-value and 31415926535`;
    expect(redactSecretValues(text, withSecret)).toBe("failed: [redacted] and [redacted] and [redacted] and [redacted]");
  });

  test("redactSecretValues() masks JSON-quoted and partial multi-line values", () => {
    expect(redactSecretValues('Invalid value: "line-one-AAA\\nline-two-BBB"', withSecret)).toBe('Invalid value: "[redacted]"');
    expect(redactSecretValues("stderr: line-two-BBB", withSecret)).toBe("stderr: [redacted]");
  });

  test("redactSecretValues() masks what the API server echoes of a Secret field it cannot read, whatever the value", () => {
    const stderr = "Error from server: failed to create typed patch object (ns/a; /v1, Kind=Secret): .stringData.k: expected string, got &value.valueUnstructured{Value:42}";
    expect(redactSecretValues(stderr, [])).toBe(
      "Error from server: failed to create typed patch object (ns/a; /v1, Kind=Secret): .stringData.k: expected string, got [redacted]",
    );
  });

  test("redactSecretValues() leaves texts without Secret values alone", () => {
    expect(redactSecretValues('ConfigMap "app" is invalid', withSecret)).toBe('ConfigMap "app" is invalid');
  });

  test("redactError() masks message, stderr and cause, keeps argv, exit code and the class of error", () => {
    const error = new KubectlError(
      `Cannot run \`kubectl apply\`: exit 1: bad ${password}`,
      { argv: ["kubectl", "apply"], exitCode: 1, signal: null, stderr: `bad ${password}`, reason: "exit", serverReason: undefined },
      { cause: new Error(`inner ${password}`) },
    );
    const redacted = redactError(error, withSecret) as Error & Record<string, unknown>;
    expect(redacted.name).toBe("KubectlError");
    expect(redacted.message).toBe("Cannot run `kubectl apply`: exit 1: bad [redacted]");
    expect(redacted["stderr"]).toBe("bad [redacted]");
    expect(redacted["argv"]).toEqual(["kubectl", "apply"]);
    expect(redacted["exitCode"]).toBe(1);
    expect((redacted.cause as Error).message).toBe("inner [redacted]");
    expect(redacted.stack).not.toContain(password);
  });
});

describe("listener configuration of the policy", () => {
  const base = { KUBE_PICO_CD_QUEUE: "q", KUBE_PICO_CD_NAMESPACE: "ns" };

  test("parseListenerConfig() builds the policy from flags and variables", async () => {
    const { parseListenerConfig } = await import("../../lib/listener/config.ts");
    expect(parseListenerConfig([], base).policy).toEqual(OPEN_POLICY);
    const config = parseListenerConfig(["--deny-cluster-scoped", "--deny-kinds", "Secret", "--deny-kinds", "rbac.authorization.k8s.io/*"], {
      ...base,
      KUBE_PICO_CD_ALLOW_NAMESPACES: "web-*, shop",
      KUBE_PICO_CD_ALLOW_KINDS: "ConfigMap,apps/*",
      KUBE_PICO_CD_CLUSTER_SCOPED_KINDS: "cert-manager.io/ClusterIssuer",
    });
    expect(config.policy).toEqual({
      allowedNamespaces: ["web-*", "shop"],
      allowedKinds: ["ConfigMap", "apps/*"],
      deniedKinds: ["Secret", "rbac.authorization.k8s.io/*"],
      allowClusterScoped: false,
      clusterScopedKinds: ["cert-manager.io/ClusterIssuer"],
    });
  });

  test("parseListenerConfig() names the flag of a bad pattern", async () => {
    const { parseListenerConfig } = await import("../../lib/listener/config.ts");
    const { ConfigError } = await import("../../lib/errors.ts");
    let error: unknown;
    try {
      parseListenerConfig(["--deny-kinds", "not a kind"], { ...base, KUBE_PICO_CD_ALLOW_NAMESPACES: "Web" });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as InstanceType<typeof ConfigError>).problems).toEqual([
      `KUBE_PICO_CD_ALLOW_NAMESPACES: "Web" is not a namespace glob (lowercase letters, digits, '-', '*', '?')`,
      '--deny-kinds: "not a kind" is not a kind pattern (Kind or group/Kind, e.g. Secret, core/Secret, rbac.authorization.k8s.io/*)',
    ]);
  });
});

describe("list-shaped objects", () => {
  const smuggled = object("v1", "ConfigMap", "innocent", "web-prod", { items: [object("v1", "ConfigMap", "planted", "kube-system"), "not an object"] });

  test("isListShaped() is true for an object with an items array or a kind ending in List, false otherwise", async () => {
    const { isListShaped } = await import("../../lib/listener/policy.ts");
    expect(isListShaped(smuggled)).toBe(true);
    expect(isListShaped(object("v1", "ConfigMapList", "x", "web-prod"))).toBe(true);
    expect(isListShaped(object("v1", "ConfigMap", "x", "web-prod", { items: "a string" }))).toBe(false);
    expect(isListShaped(configMap)).toBe(false);
  });

  test("everyObject() adds the objects inside items, at any depth, and skips items that are not objects", async () => {
    const { everyObject } = await import("../../lib/listener/policy.ts");
    const nested = object("v1", "List", "outer", undefined, { items: [smuggled, { kind: "Secret" }] });
    expect(everyObject([configMap, nested]).map((o) => `${o.kind}/${o.metadata.namespace ?? "-"}/${o.metadata.name}`)).toEqual([
      "ConfigMap/web-prod/app",
      "List/-/outer",
      "ConfigMap/web-prod/innocent",
      "ConfigMap/kube-system/planted",
      "Secret/-/",
    ]);
  });

  test("checkPolicy() rejects a list-shaped object as list-object, naming it, before it looks at the policy", () => {
    let error: unknown;
    try {
      checkPolicy([configMap, smuggled], { ...OPEN_POLICY, allowedNamespaces: ["other"] });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(MessageRejectedError);
    expect((error as MessageRejectedError).reason).toBe("list-object");
    expect((error as MessageRejectedError).message).toBe(
      "Rejected message: 1 of 2 objects are list-shaped, and kubectl would apply their items past the listener's checks, so nothing is applied (send the items as objects of their own): ConfigMap web-prod/innocent (an items array of 2)",
    );
  });

  test("policyViolations() sees the objects inside items", () => {
    expect(policyViolations([smuggled], { ...OPEN_POLICY, allowedNamespaces: ["web-*"] })).toEqual([`ConfigMap kube-system/planted: namespace "kube-system" not in the allowed namespaces`]);
  });

  test("redactError() masks the values of a Secret inside items", () => {
    const wrapped = object("v1", "ConfigMapList", "wrapper", "web-prod", { items: [object("v1", "Secret", "db", "web-prod", { stringData: { password: "hunter2-secret" } })] });
    expect(redactError(new Error("apply failed: hunter2-secret"), [wrapped]).message).toBe("apply failed: [redacted]");
  });
});

describe("require-target", () => {
  const base = { KUBE_PICO_CD_QUEUE: "q", KUBE_PICO_CD_NAMESPACE: "ns" };
  const key = (() => {
    const { generateKeyPairSync } = require("node:crypto") as typeof import("node:crypto");
    return generateKeyPairSync("ed25519").publicKey.export({ type: "spki", format: "pem" }).toString();
  })();

  test("parseListenerConfig() turns require-target on by default only when a target and trusted keys are both given", async () => {
    const { parseListenerConfig } = await import("../../lib/listener/config.ts");
    expect(parseListenerConfig([], base).requireTarget).toBe(false);
    expect(parseListenerConfig([], { ...base, KUBE_PICO_CD_TARGET: "prod" }).requireTarget).toBe(false);
    expect(parseListenerConfig([], { ...base, KUBE_PICO_CD_TRUSTED_KEYS: key }).requireTarget).toBe(false);
    expect(parseListenerConfig([], { ...base, KUBE_PICO_CD_TARGET: "prod", KUBE_PICO_CD_TRUSTED_KEYS: key }).requireTarget).toBe(true);
  });

  test("parseListenerConfig() takes true and false over the default", async () => {
    const { parseListenerConfig } = await import("../../lib/listener/config.ts");
    expect(parseListenerConfig([], { ...base, KUBE_PICO_CD_TARGET: "prod", KUBE_PICO_CD_TRUSTED_KEYS: key, KUBE_PICO_CD_REQUIRE_TARGET: "false" }).requireTarget).toBe(false);
    expect(parseListenerConfig(["--require-target", "true", "--target", "prod"], base).requireTarget).toBe(true);
  });

  test("parseListenerConfig() refuses require-target true without a target, and a value that is not auto, true or false", async () => {
    const { parseListenerConfig } = await import("../../lib/listener/config.ts");
    const { ConfigError } = await import("../../lib/errors.ts");
    const problemsOf = (argv: string[], env: Record<string, string>) => {
      try {
        parseListenerConfig(argv, env);
      } catch (e) {
        if (e instanceof ConfigError) return e.problems;
        throw e;
      }
      return [];
    };
    expect(problemsOf([], { ...base, KUBE_PICO_CD_REQUIRE_TARGET: "true" })).toEqual([
      "KUBE_PICO_CD_REQUIRE_TARGET: bundles must name this listener's target, but no target is given (set KUBE_PICO_CD_TARGET)",
    ]);
    expect(problemsOf(["--require-target", "maybe"], base)).toEqual([`--require-target: must be auto, true or false: current value is "maybe"`]);
  });
});

describe("rejection dispositions", () => {
  test("rejectionDisposition() keeps what a configuration change could cure and deletes the rest", async () => {
    const { REJECTION_DISPOSITIONS, rejectionDisposition } = await import("../../lib/listener/rejections.ts");
    const kept = Object.entries(REJECTION_DISPOSITIONS)
      .filter(([, d]) => d === "dead-letter")
      .map(([reason]) => reason)
      .sort();
    expect(kept).toEqual(["empty-bundle", "ownership-conflict", "policy", "require-target", "scope", "target", "unknown-app", "unknown-key", "unsupported-version"]);
    expect(rejectionDisposition("bad-signature")).toBe("delete");
    expect(rejectionDisposition("list-object")).toBe("delete");
    expect(rejectionDisposition("no-such-reason")).toBe("delete");
    expect(rejectionDisposition("toString")).toBe("delete");
  });

  test("deadLetterTargetOf() reads the dead-letter queue's name and account from a RedrivePolicy", async () => {
    const { deadLetterTargetOf } = await import("../../lib/sqs/dead-letter.ts");
    expect(deadLetterTargetOf(JSON.stringify({ deadLetterTargetArn: "arn:aws:sqs:eu-west-1:123456789012:deploy-dlq.fifo", maxReceiveCount: "5" }))).toEqual({
      arn: "arn:aws:sqs:eu-west-1:123456789012:deploy-dlq.fifo",
      name: "deploy-dlq.fifo",
      account: "123456789012",
    });
    expect(deadLetterTargetOf(undefined)).toBeUndefined();
    expect(deadLetterTargetOf("not json")).toBeUndefined();
    expect(deadLetterTargetOf(JSON.stringify({ deadLetterTargetArn: "arn:aws:sns:eu-west-1:1:topic" }))).toBeUndefined();
  });
});
