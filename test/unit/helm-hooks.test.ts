import { describe, expect, test } from "bun:test";
import { applyHelmHookRules, helmHookDecision } from "../../lib/manifests/helm-hooks.ts";
import type { BundledObject } from "../../lib/manifests/kube-object.ts";

function hooked(kind: string, name: string, hook: unknown, apiVersion = "v1"): BundledObject {
  return {
    object: { apiVersion, kind, metadata: { name, namespace: "shop", annotations: { "helm.sh/hook": hook, "helm.sh/hook-weight": "1" } } },
    source: `chart.yaml:${name.length}:1`,
  };
}

const plain: BundledObject = { object: { apiVersion: "v1", kind: "Service", metadata: { name: "web", namespace: "shop" } }, source: "chart.yaml:1:1" };

describe("helmHookDecision()", () => {
  test("helmHookDecision() keeps an object without the hook annotation, without a notice", () => {
    expect(helmHookDecision(plain)).toEqual({ action: "keep" });
  });

  test.each([
    ["test", "left out Pod shop/t (helm.sh/hook: test): Helm tests run only under helm test"],
    ["test-success", "left out Pod shop/t (helm.sh/hook: test-success): Helm tests run only under helm test"],
    ["test-failure", "left out Pod shop/t (helm.sh/hook: test-failure): Helm tests run only under helm test"],
  ])("helmHookDecision() leaves out a test hook (%s) with a notice", (hook, notice) => {
    expect(helmHookDecision(hooked("Pod", "t", hook))).toEqual({ action: "leave-out", notice });
  });

  test.each(["pre-delete", "post-delete", "pre-rollback", "post-rollback"])(
    "helmHookDecision() leaves out a %s hook, whose moment never comes, with a notice",
    (hook) => {
      expect(helmHookDecision(hooked("Job", "j", hook, "batch/v1"))).toEqual({
        action: "leave-out",
        notice: `left out Job shop/j (helm.sh/hook: ${hook}): it runs only when Helm uninstalls or rolls back a release, which publishing never does`,
      });
    },
  );

  test.each(["pre-install", "post-install", "pre-upgrade", "post-upgrade"])(
    "helmHookDecision() applies a %s hook as an ordinary object, saying what is not run",
    (hook) => {
      expect(helmHookDecision(hooked("ConfigMap", "c", hook))).toEqual({
        action: "keep",
        notice: `applied ConfigMap shop/c as an ordinary object (helm.sh/hook: ${hook}): Helm's hook order, hook-weight and hook-delete-policy are not run`,
      });
    },
  );

  test("helmHookDecision() says that a hook Job cannot be changed by a later build", () => {
    expect(helmHookDecision(hooked("Job", "migrate", "pre-upgrade", "batch/v1"))).toEqual({
      action: "keep",
      notice:
        "applied Job shop/migrate as an ordinary object (helm.sh/hook: pre-upgrade): Helm's hook order, hook-weight and hook-delete-policy are not run; a Job cannot be changed once created, so a build that changes it fails to apply while the old one exists",
    });
  });

  test("helmHookDecision() applies a crd-install hook, since the listener applies CRDs first", () => {
    const crd = hooked("CustomResourceDefinition", "widgets.example.com", "crd-install", "apiextensions.k8s.io/v1");
    expect(helmHookDecision(crd)).toEqual({
      action: "keep",
      notice:
        "applied CustomResourceDefinition shop/widgets.example.com as an ordinary object (helm.sh/hook: crd-install): the listener applies CustomResourceDefinitions before other objects",
    });
  });

  test("helmHookDecision() applies an object when any of its hooks is applied, reading the list as Helm does (case, spaces)", () => {
    expect(helmHookDecision(hooked("Secret", "s", " Post-Delete , PRE-INSTALL")).action).toBe("keep");
    expect(helmHookDecision(hooked("Pod", "t", "test, post-delete")).action).toBe("leave-out");
  });

  test("helmHookDecision() leaves out install and upgrade hooks under installHooks omit, but still applies crd-install", () => {
    expect(helmHookDecision(hooked("Job", "j", "pre-install,post-upgrade", "batch/v1"), { installHooks: "omit" })).toEqual({
      action: "leave-out",
      notice: "left out Job shop/j (helm.sh/hook: pre-install,post-upgrade): install and upgrade hooks are left out (--helm-hooks=omit)",
    });
    expect(helmHookDecision(hooked("CustomResourceDefinition", "w", "crd-install"), { installHooks: "omit" }).action).toBe("keep");
  });

  test("helmHookDecision() refuses a hook Helm does not know, listing the known ones", () => {
    expect(helmHookDecision(hooked("Job", "j", "pre-instal", "batch/v1"))).toEqual({
      action: "refuse",
      problem:
        'Job shop/j has an unknown helm.sh/hook "pre-instal" (known: pre-install, post-install, pre-upgrade, post-upgrade, crd-install, test, test-success, test-failure, pre-delete, post-delete, pre-rollback, post-rollback)',
    });
    expect(helmHookDecision(hooked("Job", "j", "constructor", "batch/v1")).action).toBe("refuse");
    expect(helmHookDecision(hooked("Job", "j", "", "batch/v1")).action).toBe("refuse");
  });

  test("helmHookDecision() refuses a hook annotation that is not a string", () => {
    expect(helmHookDecision(hooked("Job", "j", ["test"], "batch/v1"))).toEqual({
      action: "refuse",
      problem: "Job shop/j has a helm.sh/hook annotation that is not a string",
    });
  });
});

describe("applyHelmHookRules()", () => {
  test("applyHelmHookRules() keeps the order of what it keeps and prefixes notices and problems with the source", () => {
    const migrate = hooked("Job", "migrate", "pre-install", "batch/v1");
    const result = applyHelmHookRules([plain, hooked("Pod", "test", "test"), migrate, hooked("Job", "bad", "never", "batch/v1")]);
    expect(result.items).toEqual([plain, migrate]);
    expect(result.leftOut).toBe(1);
    expect(result.notices).toEqual([
      "chart.yaml:4:1: left out Pod shop/test (helm.sh/hook: test): Helm tests run only under helm test",
      "chart.yaml:7:1: applied Job shop/migrate as an ordinary object (helm.sh/hook: pre-install): Helm's hook order, hook-weight and hook-delete-policy are not run; a Job cannot be changed once created, so a build that changes it fails to apply while the old one exists",
    ]);
    expect(result.problems).toEqual([
      'chart.yaml:3:1: Job shop/bad has an unknown helm.sh/hook "never" (known: pre-install, post-install, pre-upgrade, post-upgrade, crd-install, test, test-success, test-failure, pre-delete, post-delete, pre-rollback, post-rollback)',
    ]);
  });
});
