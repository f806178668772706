import { describe, expect, test } from "bun:test";
import { keepReason, pruneArgs, pruneCandidates, pruneObjects, prunePhase } from "../../lib/kube/prune.ts";

const cm = (name: string, namespace = "app") => ({ group: "", kind: "ConfigMap", namespace, name });

describe("pruneCandidates()", () => {
  test("pruneCandidates() returns the previous objects missing from the new inventory, once each", () => {
    expect(pruneCandidates([cm("a"), cm("b"), cm("b"), cm("c", "other")], [cm("a"), cm("c")])).toEqual([cm("b"), cm("c", "other")]);
  });

  test("pruneCandidates() tells objects apart by group, kind, namespace and name", () => {
    const secret = { group: "", kind: "Secret", namespace: "app", name: "a" };
    expect(pruneCandidates([secret], [cm("a")])).toEqual([secret]);
  });
});

describe("prunePhase()", () => {
  test("prunePhase() deletes workloads first, then Namespaces, then CRDs", () => {
    expect(prunePhase({ group: "apps", kind: "Deployment", namespace: "a", name: "x" })).toBe(0);
    expect(prunePhase({ group: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "x" })).toBe(0);
    expect(prunePhase({ group: "", kind: "Namespace", name: "x" })).toBe(1);
    expect(prunePhase({ group: "apiextensions.k8s.io", kind: "CustomResourceDefinition", name: "x" })).toBe(2);
  });
});

describe("keepReason()", () => {
  const managed = [{ manager: "kube-pico-cd", operation: "Apply" }];
  test("keepReason() keeps an object annotated kube-pico-cd.io/prune: disabled", () => {
    expect(keepReason({ metadata: { annotations: { "kube-pico-cd.io/prune": "disabled" }, managedFields: managed } }, "kube-pico-cd")).toBe("annotation kube-pico-cd.io/prune: disabled");
  });

  test("keepReason() keeps an object that another field manager manages alone", () => {
    expect(keepReason({ metadata: { managedFields: [{ manager: "kubectl-create" }] } }, "kube-pico-cd")).toBe("not managed by field manager kube-pico-cd any more");
  });

  test("keepReason() lets go of our objects, and of objects nobody manages a field of", () => {
    expect(keepReason({ metadata: { managedFields: managed, annotations: { "kube-pico-cd.io/prune": "enabled" } } }, "kube-pico-cd")).toBeUndefined();
    expect(keepReason({ metadata: {} }, "kube-pico-cd")).toBeUndefined();
  });
});

describe("pruneArgs()", () => {
  test("pruneArgs() reads with managed fields and deletes without waiting for finalizers", () => {
    expect(pruneArgs("get", "app", "Deployment.apps", ["a", "b"])).toEqual(["get", "--namespace=app", "Deployment.apps", "a", "b", "--ignore-not-found", "--show-managed-fields", "-o", "json"]);
    expect(pruneArgs("delete", undefined, "Namespace", ["a"])).toEqual(["delete", "Namespace", "a", "--ignore-not-found", "--wait=false"]);
  });
});

describe("pruneObjects()", () => {
  test("pruneObjects() keeps CRDs unless pruneCrds, without calling kubectl", async () => {
    const crd = { group: "apiextensions.k8s.io", kind: "CustomResourceDefinition", name: "widgets.example.com" };
    const result = await pruneObjects([crd], [], { kubectl: { kubectlPath: "/nonexistent/kubectl" } });
    expect(result.kept).toEqual([{ ...crd, why: "CustomResourceDefinitions are pruned only with --prune-crds" }]);
    expect(result.pruned).toEqual([]);
    expect(result.failed).toEqual([]);
  });

  test("pruneObjects() reports objects it cannot read as failed, so they stay in the inventory", async () => {
    const result = await pruneObjects([cm("a")], [], { kubectl: { kubectlPath: "/nonexistent/kubectl" } });
    expect(result.failed.map((f) => f.object)).toEqual([cm("a")]);
    expect(result.failed[0]?.error).toStartWith("cannot read it: Cannot run `kubectl get --namespace=app ConfigMap a");
  });
});
