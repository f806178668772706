import { describe, expect, test } from "bun:test";
import { intendedInventory, mergeInventories } from "../../lib/listener/intent.ts";
import type { KubeObject } from "../../lib/manifests/bundle.ts";

const obj = (apiVersion: string, kind: string, name: string, namespace?: string, extra: Record<string, unknown> = {}): KubeObject =>
  ({ apiVersion, kind, metadata: namespace === undefined ? { name } : { name, namespace }, ...extra }) as KubeObject;

describe("intendedInventory()", () => {
  test("intendedInventory() puts a namespaced object without a namespace into the default namespace, as kubectl does", () => {
    expect(intendedInventory([obj("v1", "ConfigMap", "a")], "team")).toEqual([{ group: "", kind: "ConfigMap", namespace: "team", name: "a" }]);
  });
  test("intendedInventory() keeps an object's own namespace", () => {
    expect(intendedInventory([obj("apps/v1", "Deployment", "web", "prod")], "team")).toEqual([{ group: "apps", kind: "Deployment", namespace: "prod", name: "web" }]);
  });
  test("intendedInventory() gives built-in cluster-scoped kinds no namespace, even when the manifest names one", () => {
    expect(
      intendedInventory([obj("v1", "Namespace", "prod"), obj("rbac.authorization.k8s.io/v1", "ClusterRole", "r", "ignored"), obj("apiextensions.k8s.io/v1", "CustomResourceDefinition", "x.example.com")], "team"),
    ).toEqual([
      { group: "", kind: "Namespace", name: "prod" },
      { group: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "r" },
      { group: "apiextensions.k8s.io", kind: "CustomResourceDefinition", name: "x.example.com" },
    ]);
  });
  test("intendedInventory() reads the scope of the bundle's own CRDs", () => {
    const crd = obj("apiextensions.k8s.io/v1", "CustomResourceDefinition", "gizmos.example.com", undefined, { spec: { group: "example.com", scope: "Cluster", names: { kind: "Gizmo" } } });
    const nsCrd = obj("apiextensions.k8s.io/v1", "CustomResourceDefinition", "widgets.example.com", undefined, { spec: { group: "example.com", scope: "Namespaced", names: { kind: "Widget" } } });
    expect(intendedInventory([crd, nsCrd, obj("example.com/v1", "Gizmo", "g"), obj("example.com/v1", "Widget", "w")], "team").slice(2)).toEqual([
      { group: "example.com", kind: "Gizmo", name: "g" },
      { group: "example.com", kind: "Widget", namespace: "team", name: "w" },
    ]);
  });
  test("intendedInventory() lists an object twice in the bundle once", () => {
    expect(intendedInventory([obj("v1", "ConfigMap", "a", "x"), obj("v1", "ConfigMap", "a", "x")], "team")).toHaveLength(1);
  });
});

describe("mergeInventories()", () => {
  test("mergeInventories() keeps the first list's order and adds what it lacks", () => {
    const a = [{ group: "", kind: "ConfigMap", namespace: "x", name: "a" }];
    const b = [{ group: "", kind: "ConfigMap", namespace: "x", name: "b" }, { group: "", kind: "ConfigMap", namespace: "x", name: "a" }];
    expect(mergeInventories(a, b)).toEqual([a[0]!, b[0]!]);
  });
});
