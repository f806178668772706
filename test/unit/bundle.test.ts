import { describe, expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { collectBundle, matchesGlob, parseManifests, type CollectBundleOptions } from "../../lib/manifests/bundle.ts";
import { formatRef, refOf } from "../../lib/manifests/object-ref.ts";
import { BundleError, KubectlError } from "../../lib/errors.ts";

const fixtures = resolve(import.meta.dir, "../fixtures");

async function problemsOf(paths: string[], options: CollectBundleOptions = {}): Promise<BundleError> {
  try {
    await collectBundle(paths, { cwd: fixtures, ...options });
  } catch (error) {
    expect(error).toBeInstanceOf(BundleError);
    return error as BundleError;
  }
  throw new Error("collectBundle() accepted the input");
}

describe("parseManifests()", () => {
  test("parseManifests() drops empty documents and keeps the rest in order with their positions", () => {
    const text = "---\n# only a comment\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: b}\n";
    const parsed = parseManifests(text, "ns.yaml");
    expect(parsed.problems).toEqual([]);
    expect(parsed.items.map((item) => [item.object.metadata.name, item.source])).toEqual([
      ["a", "ns.yaml:4:1"],
      ["b", "ns.yaml:9:1"],
    ]);
  });

  test("parseManifests() flattens kind: List, with the position of each item", () => {
    const text = "apiVersion: v1\nkind: List\nitems:\n  - apiVersion: v1\n    kind: Namespace\n    metadata: {name: a}\n  - apiVersion: v1\n    kind: Namespace\n    metadata: {name: b}\n";
    const parsed = parseManifests(text, "list.yaml");
    expect(parsed.items.map((item) => [item.object.metadata.name, item.source])).toEqual([
      ["a", "list.yaml:4:5"],
      ["b", "list.yaml:7:5"],
    ]);
  });

  test("parseManifests() reads scalars as kubectl does: 0644 is octal, yes is true, dates stay strings", () => {
    const text = "apiVersion: v1\nkind: X\nmetadata: {name: a}\nspec: {mode: 0644, enabled: yes, day: 2024-01-02, port: 8080}\n";
    expect(parseManifests(text, "x.yaml").items[0]?.object["spec"]).toEqual({
      mode: 420,
      enabled: true,
      day: "2024-01-02",
      port: 8080,
    });
  });

  test("parseManifests() resolves anchors, aliases and merge keys", () => {
    const text = "apiVersion: v1\nkind: X\nmetadata:\n  name: a\n  labels: &l {app: a}\n  annotations:\n    <<: *l\n    extra: b\n";
    expect(parseManifests(text, "x.yaml").items[0]?.object.metadata).toEqual({
      name: "a",
      labels: { app: "a" },
      annotations: { app: "a", extra: "b" },
    });
  });

  test("parseManifests() reports a YAML error with file, line and column", () => {
    expect(parseManifests("apiVersion: v1\nkind: X\n  bad: indent\n", "x.yaml").problems).toEqual([
      "x.yaml:2:7: Nested mappings are not allowed in compact mappings",
      "x.yaml:2:7: Implicit keys need to be on a single line",
    ]);
  });

  test("parseManifests() reports a duplicate key", () => {
    expect(parseManifests("apiVersion: v1\nkind: X\nkind: Y\n", "x.yaml").problems).toEqual([
      "x.yaml:3:1: Map keys must be unique",
    ]);
  });

  test("parseManifests() reports keys that become the same JSON key, in nested maps too", () => {
    expect(parseManifests("apiVersion: v1\nkind: X\nmetadata: {name: a}\ndata:\n  1: a\n  '1': b\n", "x.yaml").problems).toEqual([
      "x.yaml:6:3: Map keys must be unique",
    ]);
  });

  test("parseManifests() checks the keys of a large map in linear time", () => {
    const lines = Array.from({ length: 50_000 }, (_, i) => `  key${i}: "${i}"`).join("\n");
    const started = performance.now();
    const parsed = parseManifests(`apiVersion: v1\nkind: ConfigMap\nmetadata: {name: big}\ndata:\n${lines}\n`, "big.yaml");
    expect(parsed.problems).toEqual([]);
    expect(Object.keys(parsed.items[0]?.object["data"] as object).length).toBe(50_000);
    expect(performance.now() - started).toBeLessThan(5_000);
  });

  test("parseManifests() reports a document that is not a mapping", () => {
    expect(parseManifests("- a\n- b\n", "x.yaml").problems).toEqual(["x.yaml:1:1: object is not a mapping (got a list)"]);
  });

  test("parseManifests() reports each missing required field", () => {
    const text = [
      "kind: X\nmetadata: {name: a}",
      "apiVersion: v1\nmetadata: {name: b}",
      "apiVersion: v1\nkind: X\nmetadata: {}",
      "apiVersion: v1\nkind: X\nmetadata: {name: c, namespace: ''}",
    ].join("\n---\n");
    expect(parseManifests(text, "x.yaml").problems).toEqual([
      'x.yaml:1:1: object "a" has no apiVersion',
      'x.yaml:4:1: object "b" has no kind',
      "x.yaml:7:1: X has no metadata.name",
      'x.yaml:11:1: X "c" has an invalid metadata.namespace (must be a non-empty string)',
    ]);
  });
});

describe("matchesGlob()", () => {
  test("matchesGlob() matches a pattern without / against the file name at any depth", () => {
    expect(matchesGlob("k8s/app/secret.tmpl.yaml", "*.tmpl.yaml")).toBe(true);
    expect(matchesGlob("k8s/app/secret.yaml", "*.tmpl.yaml")).toBe(false);
  });

  test("matchesGlob() matches a pattern with / against the whole path; ** spans directories", () => {
    expect(matchesGlob("k8s/dev/a/b.yaml", "k8s/dev/**")).toBe(true);
    expect(matchesGlob("k8s/dev", "k8s/dev/**")).toBe(false);
    expect(matchesGlob("k8s/dev", "k8s/dev")).toBe(true);
    expect(matchesGlob("k8s/a/dev/x.yaml", "**/dev/*.yaml")).toBe(true);
    expect(matchesGlob("k8s/dev/x.yaml", "k8s/*.yaml")).toBe(false);
    expect(matchesGlob("k8s/dev/x.yaml", "./k8s/dev/?.yaml")).toBe(true);
  });
});

describe("collectBundle()", () => {
  test("collectBundle() reads *.yaml, *.yml and *.json in sorted order, skipping hidden directories and other files", async () => {
    const bundle = await collectBundle(["repo-basic"], { cwd: fixtures, ignore: ["*.tmpl.yaml"] });
    expect(bundle.inputs).toEqual([
      "repo-basic/k8s/00-namespace.yaml",
      "repo-basic/k8s/app/accounts.yml",
      "repo-basic/k8s/app/config.json",
      "repo-basic/k8s/app/deployment.yaml",
    ]);
    expect(bundle.items.map((item) => `${formatRef(refOf(item.object))} ${item.source}`)).toEqual([
      "/Namespace//shop repo-basic/k8s/00-namespace.yaml:1:1",
      "/ServiceAccount/shop/web repo-basic/k8s/app/accounts.yml:4:5",
      "rbac.authorization.k8s.io/Role/shop/web repo-basic/k8s/app/accounts.yml:9:5",
      "/ConfigMap/shop/web-config repo-basic/k8s/app/config.json:1:1",
      "apps/Deployment/shop/web repo-basic/k8s/app/deployment.yaml:2:1",
      "/Service/shop/web repo-basic/k8s/app/deployment.yaml:32:1",
    ]);
    expect(bundle.objects).toEqual(bundle.items.map((item) => item.object));
  });

  test("collectBundle() keeps the order of the paths given and reads a path given twice once", async () => {
    const bundle = await collectBundle(
      ["repo-basic/k8s/app/config.json", "repo-basic/k8s/00-namespace.yaml", "repo-basic/k8s/app/config.json"],
      { cwd: fixtures },
    );
    expect(bundle.inputs).toEqual(["repo-basic/k8s/app/config.json", "repo-basic/k8s/00-namespace.yaml"]);
  });

  test("collectBundle() reports a file skipped only by --ignore when the ignore is missing", async () => {
    const error = await problemsOf(["repo-basic"]);
    expect(error.message).toBe(
      "Cannot bundle the manifests: repo-basic/k8s/app/secret.tmpl.yaml:2:1: Secret has no metadata.name",
    );
  });

  test("collectBundle() rejects broken YAML naming file, line and column", async () => {
    const error = await problemsOf(["invalid/broken-yaml"]);
    expect(error.problems).toEqual([
      "invalid/broken-yaml/app.yaml:7:1: Flow sequence in block collection must be sufficiently indented and end with a ]",
    ]);
  });

  test("collectBundle() rejects an object without kind", async () => {
    const error = await problemsOf(["invalid/missing-kind"]);
    expect(error.message).toBe('Cannot bundle the manifests: invalid/missing-kind/app.yaml:6:1: object "no-kind" has no kind');
  });

  test("collectBundle() rejects a duplicate object naming both files", async () => {
    const error = await problemsOf(["invalid/duplicate"]);
    expect(error.message).toBe(
      "Cannot bundle the manifests: invalid/duplicate/b.yaml:2:1: duplicate object apps/Deployment/web/api (first defined at invalid/duplicate/a.yaml:1:1)",
    );
  });

  test("collectBundle() rejects an empty bundle", async () => {
    const error = await problemsOf(["invalid/empty"]);
    expect(error.message).toBe(
      "Cannot bundle the manifests: no objects found in invalid/empty (pass --allow-empty to publish an empty bundle)",
    );
  });

  test("collectBundle() accepts an empty bundle with allowEmpty", async () => {
    const bundle = await collectBundle(["invalid/empty"], { cwd: fixtures, allowEmpty: true });
    expect(bundle.objects).toEqual([]);
  });

  test("collectBundle() lists every problem of every input at once", async () => {
    const error = await problemsOf(["invalid/missing-kind", "invalid/broken-yaml", "does-not-exist", "repo-basic/k8s/app/notes.md"]);
    expect(error.message).toBe(
      [
        "Cannot bundle the manifests: 4 problems:",
        "  - does-not-exist: no such file or directory",
        "  - repo-basic/k8s/app/notes.md: not a .yaml, .yml or .json file",
        '  - invalid/missing-kind/app.yaml:6:1: object "no-kind" has no kind',
        "  - invalid/broken-yaml/app.yaml:7:1: Flow sequence in block collection must be sufficiently indented and end with a ]",
      ].join("\n"),
    );
  });

  test("collectBundle() renders a directory holding a kustomization.yaml with kubectl kustomize", async () => {
    const bundle = await collectBundle(["repo-kustomize/deploy/overlay"], { cwd: fixtures });
    expect(bundle.inputs).toEqual(["repo-kustomize/deploy/overlay"]);
    expect(bundle.items).toEqual([
      {
        object: { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "prod-settings", namespace: "prod" }, data: { level: "base" } },
        source: "repo-kustomize/deploy/overlay (kubectl kustomize):1:1",
      },
    ]);
  });

  test("collectBundle() reads the files of a kustomization directory, without the kustomization, when kustomize is off", async () => {
    const bundle = await collectBundle(["repo-kustomize"], { cwd: fixtures, kustomize: false });
    expect(bundle.inputs).toEqual(["repo-kustomize/deploy/base/configmap.yaml"]);
  });

  test("collectBundle() throws KubectlError saying how to fix a missing kubectl", async () => {
    const promise = collectBundle(["repo-kustomize/deploy/overlay"], { cwd: fixtures, kubectl: "/nonexistent/kubectl" });
    await expect(promise).rejects.toBeInstanceOf(KubectlError);
    await expect(promise).rejects.toThrow(
      'Cannot render the kustomization in repo-kustomize/deploy/overlay: kubectl could not be started as "/nonexistent/kubectl" (install kubectl, pass --kubectl PATH, or use --no-kustomize)',
    );
  });

  test("collectBundle() shows paths outside the working directory as absolute", async () => {
    const dir = mkdtempSync(join(tmpdir(), "bundle-test-"));
    writeFileSync(join(dir, "a.yaml"), "kind: X\n");
    const error = await problemsOf([dir]);
    expect(error.problems).toEqual([`${dir}/a.yaml:1:1: object has no apiVersion`]);
  });
});
