/** The pure parts of the phased apply: argv, phase split and inventory parsing. */
import { describe, expect, test } from "bun:test";
import { applyArgs, groupOf, inventoryFromApplyOutput, isFirstPhaseObject, toListJson, waitEstablishedArgs } from "../../lib/kube/apply.ts";

describe("applyArgs()", () => {
  test("applyArgs() is a server-side apply from stdin with the kube-pico-cd field manager", () => {
    expect(applyArgs()).toEqual(["apply", "--server-side", "--field-manager=kube-pico-cd", "-o", "json", "-f", "-"]);
  });

  test("applyArgs() adds --force-conflicts when asked", () => {
    expect(applyArgs({ forceConflicts: true, fieldManager: "ci" })).toEqual([
      "apply",
      "--server-side",
      "--field-manager=ci",
      "--force-conflicts",
      "-o",
      "json",
      "-f",
      "-",
    ]);
  });
});

describe("waitEstablishedArgs()", () => {
  test("waitEstablishedArgs() waits for each CRD by its full resource name, timeout rounded up to seconds", () => {
    expect(waitEstablishedArgs(["widgets.example.com", "gadgets.example.com"], 12_300)).toEqual([
      "wait",
      "--for=condition=Established",
      "--timeout=13s",
      "customresourcedefinitions.apiextensions.k8s.io/widgets.example.com",
      "customresourcedefinitions.apiextensions.k8s.io/gadgets.example.com",
    ]);
  });
});

describe("isFirstPhaseObject()", () => {
  test("isFirstPhaseObject() is true for Namespaces and CustomResourceDefinitions only", () => {
    expect(isFirstPhaseObject({ apiVersion: "v1", kind: "Namespace" })).toBe(true);
    expect(isFirstPhaseObject({ apiVersion: "apiextensions.k8s.io/v1", kind: "CustomResourceDefinition" })).toBe(true);
    expect(isFirstPhaseObject({ apiVersion: "v1", kind: "ConfigMap" })).toBe(false);
    expect(isFirstPhaseObject({ apiVersion: "example.com/v1", kind: "Namespace" })).toBe(false);
  });
});

describe("groupOf()", () => {
  test("groupOf() is the part before the slash, empty for the core group", () => {
    expect([groupOf("apps/v1"), groupOf("v1"), groupOf("apiextensions.k8s.io/v1")]).toEqual(["apps", "", "apiextensions.k8s.io"]);
  });
});

describe("toListJson()", () => {
  test("toListJson() wraps the objects in a v1 List", () => {
    expect(JSON.parse(toListJson([{ apiVersion: "v1", kind: "ConfigMap", metadata: { name: "a" } }]))).toEqual({
      apiVersion: "v1",
      kind: "List",
      items: [{ apiVersion: "v1", kind: "ConfigMap", metadata: { name: "a" } }],
    });
  });
});

describe("inventoryFromApplyOutput()", () => {
  test("inventoryFromApplyOutput() lists group, kind, namespace and name of each item of a List", () => {
    const stdout = JSON.stringify({
      apiVersion: "v1",
      kind: "List",
      items: [
        { apiVersion: "v1", kind: "Namespace", metadata: { name: "app" } },
        { apiVersion: "apps/v1", kind: "Deployment", metadata: { name: "web", namespace: "app" }, spec: { replicas: 1 } },
        { apiVersion: "v1", kind: "Secret", metadata: { name: "creds", namespace: "app" }, data: { password: "aHVudGVyMg==" } },
      ],
    });
    expect(inventoryFromApplyOutput(stdout)).toEqual([
      { group: "", kind: "Namespace", name: "app" },
      { group: "apps", kind: "Deployment", namespace: "app", name: "web" },
      { group: "", kind: "Secret", namespace: "app", name: "creds" },
    ]);
  });

  test("inventoryFromApplyOutput() reads a single object (kubectl prints one object without a List)", () => {
    const stdout = JSON.stringify({ apiVersion: "v1", kind: "ConfigMap", metadata: { name: "a", namespace: "default" } });
    expect(inventoryFromApplyOutput(stdout)).toEqual([{ group: "", kind: "ConfigMap", namespace: "default", name: "a" }]);
  });

  test("inventoryFromApplyOutput() of empty output is empty", () => {
    expect(inventoryFromApplyOutput("\n")).toEqual([]);
  });

  test("inventoryFromApplyOutput() throws when an item has no name", () => {
    expect(() => inventoryFromApplyOutput(JSON.stringify({ apiVersion: "v1", kind: "ConfigMap", metadata: {} }))).toThrow(
      new SyntaxError("Cannot read the inventory from kubectl apply output: an item lacks metadata.name"),
    );
  });
});
