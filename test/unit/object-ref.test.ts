import { describe, expect, test } from "bun:test";
import { formatRef, groupOf, refOf, sameRef } from "../../lib/manifests/object-ref.ts";

describe("groupOf()", () => {
  test("groupOf() is the part before the slash, empty for the core group", () => {
    expect([groupOf("apps/v1"), groupOf("v1"), groupOf("apiextensions.k8s.io/v1")]).toEqual(["apps", "", "apiextensions.k8s.io"]);
  });
});

describe("refOf()", () => {
  test("refOf() names a manifest by group, kind, namespace and name", () => {
    expect(refOf({ apiVersion: "apps/v1", kind: "Deployment", metadata: { name: "api", namespace: "web" } })).toEqual({
      group: "apps",
      kind: "Deployment",
      namespace: "web",
      name: "api",
    });
  });

  test("refOf() leaves out a missing or empty namespace, as the API server reports cluster-scoped objects", () => {
    expect(refOf({ apiVersion: "v1", kind: "Namespace", metadata: { name: "web" } })).toEqual({ group: "", kind: "Namespace", name: "web" });
    expect(refOf({ apiVersion: "v1", kind: "Namespace", metadata: { name: "web", namespace: "" } })).toEqual({ group: "", kind: "Namespace", name: "web" });
  });

  test("refOf() ignores the version: apps/v1 and apps/v1beta1 name the same object", () => {
    const a = refOf({ apiVersion: "apps/v1", kind: "Deployment", metadata: { name: "x" } });
    const b = refOf({ apiVersion: "apps/v1beta1", kind: "Deployment", metadata: { name: "x" } });
    expect(a).toEqual(b);
  });
});

describe("formatRef()", () => {
  test("formatRef() is group/kind/namespace/name", () => {
    expect(formatRef({ group: "apps", kind: "Deployment", namespace: "web", name: "api" })).toBe("apps/Deployment/web/api");
  });

  test("formatRef() leaves the core group and a missing namespace empty", () => {
    expect(formatRef({ group: "", kind: "Namespace", name: "web" })).toBe("/Namespace//web");
    expect(formatRef({ group: "", kind: "Namespace", namespace: undefined, name: "web" })).toBe("/Namespace//web");
  });
});

describe("sameRef()", () => {
  const cm = { group: "", kind: "ConfigMap", namespace: "app", name: "a" };
  test("sameRef() is true for the same group, kind, namespace and name", () => {
    expect(sameRef(cm, { ...cm })).toBe(true);
    expect(sameRef({ group: "", kind: "Namespace", name: "a" }, { group: "", kind: "Namespace", namespace: "", name: "a" })).toBe(true);
  });

  test("sameRef() tells objects apart by each part", () => {
    expect(sameRef(cm, { ...cm, group: "x" })).toBe(false);
    expect(sameRef(cm, { ...cm, kind: "Secret" })).toBe(false);
    expect(sameRef(cm, { ...cm, namespace: "other" })).toBe(false);
    expect(sameRef(cm, { ...cm, name: "b" })).toBe(false);
  });
});
