import { describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { collectBundle, matchesGlob, parseManifests, readBundle, type CollectBundleOptions } from "../../lib/manifests/bundle.ts";
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
      "Cannot bundle the manifests: no objects found in invalid/empty (pass --allow-empty-bundle to publish an empty bundle)",
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

  test("collectBundle() replaces typed lists by their items, in file, document and item order", async () => {
    const bundle = await collectBundle(["repo-lists"], { cwd: fixtures });
    expect(bundle.items.map((item) => `${formatRef(refOf(item.object))} ${item.source}`)).toEqual([
      "/Namespace//monitoring repo-lists/00-namespace.yaml:1:1",
      "/ConfigMap/monitoring/grafana-dashboard-apiserver repo-lists/grafana-dashboardDefinitions.yaml:4:3",
      "/ConfigMap/monitoring/grafana-dashboard-nodes repo-lists/grafana-dashboardDefinitions.yaml:14:3",
      "/ConfigMap/monitoring/grafana-dashboard-pods repo-lists/grafana-dashboardDefinitions.yaml:25:3",
      "rbac.authorization.k8s.io/RoleBinding/default/prometheus-k8s repo-lists/prometheus-roleBindingSpecificNamespaces.yaml:3:3",
      "rbac.authorization.k8s.io/RoleBinding/kube-system/prometheus-k8s repo-lists/prometheus-roleBindingSpecificNamespaces.yaml:16:3",
      "rbac.authorization.k8s.io/RoleBinding/monitoring/prometheus-k8s repo-lists/prometheus-roleBindingSpecificNamespaces.yaml:29:3",
      "rbac.authorization.k8s.io/Role/default/prometheus-k8s repo-lists/prometheus-roleSpecificNamespaces.yaml:3:3",
      "rbac.authorization.k8s.io/Role/kube-system/prometheus-k8s repo-lists/prometheus-roleSpecificNamespaces.yaml:15:3",
      "rbac.authorization.k8s.io/Role/monitoring/prometheus-k8s repo-lists/prometheus-roleSpecificNamespaces.yaml:27:3",
      "/ServiceAccount/monitoring/prometheus-k8s repo-lists/prometheus-serviceAccount.yaml:1:1",
      "/Service/monitoring/prometheus-k8s repo-lists/zz-mixed.yaml:1:1",
      "/ConfigMap/monitoring/prometheus-rules repo-lists/zz-mixed.yaml:13:3",
      "/Secret/monitoring/prometheus-additional-scrape-configs repo-lists/zz-mixed.yaml:17:3",
    ]);
    expect(bundle.objects.every((object) => !("items" in object) && !object.kind.endsWith("List"))).toBe(true);
  });

  test("collectBundle() names the file, position, document and item of a list item that is not an object", async () => {
    const error = await problemsOf(["invalid/list-item-not-object", "invalid/list-nested"]);
    expect(error.problems).toEqual([
      "invalid/list-item-not-object/app.yaml:11:3: ConfigMapList (document 2) items[1]: object is not a mapping (got string)",
      "invalid/list-nested/app.yaml:7:3: List (document 1) items[1]: a list inside a list, which kubectl cannot apply: move its items into the outer list",
    ]);
  });

  test("collectBundle() refuses an object that kubectl would read as a list, and a list without items", async () => {
    const error = await problemsOf(["invalid/object-with-items", "invalid/list-without-items"]);
    expect(error.problems).toEqual([
      'invalid/object-with-items/app.yaml:1:1: ConfigMap "outer" has an items field, so kubectl would apply its items instead of the ConfigMap itself: remove items, or make it a list (kind: List, or a kind ending in List)',
      'invalid/list-without-items/app.yaml:1:1: ConfigMapList "settings" has no items: kubectl reads a kind ending in List as a list only when it has an items array (write items: [] for an empty list)',
    ]);
  });

  test("collectBundle() applies Helm install hooks, leaves out test and delete hooks, with one notice each", async () => {
    const bundle = await collectBundle(["helm-rendered"], { cwd: fixtures });
    expect(bundle.objects.map((object) => `${object.kind}/${object.metadata.name}`)).toEqual([
      "ServiceAccount/web",
      "Service/web",
      "Deployment/web",
      "Job/web-migrate",
    ]);
    expect(bundle.notices).toEqual([
      "helm-rendered/web.yaml:49:1: applied Job shop/web-migrate as an ordinary object (helm.sh/hook: pre-install,pre-upgrade): Helm's hook order, hook-weight and hook-delete-policy are not run; a Job cannot be changed once created, so a build that changes it fails to apply while the old one exists",
      "helm-rendered/web.yaml:68:1: left out Job shop/web-cleanup (helm.sh/hook: post-delete): it runs only when Helm uninstalls or rolls back a release, which publishing never does",
      "helm-rendered/web.yaml:85:1: left out Pod shop/web-test-connection (helm.sh/hook: test): Helm tests run only under helm test",
    ]);
  });

  test("collectBundle() leaves out install hooks too with helmHooks omit", async () => {
    const bundle = await collectBundle(["helm-rendered"], { cwd: fixtures, helmHooks: "omit" });
    expect(bundle.objects.map((object) => object.metadata.name)).toEqual(["web", "web", "web"]);
    expect(bundle.notices).toHaveLength(3);
  });

  test("collectBundle() counts an empty bundle after hooks are left out", async () => {
    const promise = collectBundle(["-"], { cwd: fixtures, readStdin: async () => "apiVersion: v1\nkind: Pod\nmetadata:\n  name: t\n  annotations: {helm.sh/hook: test}\n" });
    await expect(promise).rejects.toThrow("Cannot bundle the manifests: no objects found in - (1 Helm hook left out; pass --allow-empty-bundle to publish an empty bundle)");
  });

  test("collectBundle() reads - from standard input, once, in the order of the paths", async () => {
    let reads = 0;
    const readStdin = async () => {
      reads++;
      return "apiVersion: v1\nkind: Namespace\nmetadata: {name: piped}\n";
    };
    const bundle = await collectBundle(["-", "repo-basic/k8s/00-namespace.yaml", "-"], { cwd: fixtures, readStdin });
    expect(reads).toBe(1);
    expect(bundle.inputs).toEqual(["<stdin>", "repo-basic/k8s/00-namespace.yaml"]);
    expect(bundle.items.map((item) => `${item.object.metadata.name} ${item.source}`)).toEqual(["piped <stdin>:1:1", "shop repo-basic/k8s/00-namespace.yaml:1:1"]);
  });

  test("collectBundle() reports a problem of standard input with its position", async () => {
    const error = await problemsOf(["-"], { readStdin: async () => "kind: X\n" });
    expect(error.problems).toEqual(["<stdin>:1:1: object has no apiVersion"]);
  });

  test("publish --dry-run - reads the manifests from its real standard input (helm template | publish -)", () => {
    const root = resolve(import.meta.dir, "../..");
    const child = spawnSync(process.execPath, [join(root, "publish.ts"), "--dry-run", "--json", "-"], {
      cwd: root,
      input: readFileSync(join(fixtures, "helm-rendered/web.yaml")),
      encoding: "utf8",
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin" },
    });
    expect(child.status).toBe(0);
    expect((JSON.parse(child.stdout) as { objects: number; inputs: string[] })).toMatchObject({ objects: 4, inputs: ["<stdin>"] });
    expect(child.stderr.split("\n").filter(Boolean).map((line) => line.slice(0, line.indexOf(" (")))).toEqual([
      "publish: notice: <stdin>:49:1: applied Job shop/web-migrate as an ordinary object",
      "publish: notice: <stdin>:68:1: left out Job shop/web-cleanup",
      "publish: notice: <stdin>:85:1: left out Pod shop/web-test-connection",
    ]);
  });

  test("collectBundle() reports an entry it cannot stat, such as a dangling symlink, and reads the rest", async () => {
    const dir = mkdtempSync(join(tmpdir(), "bundle-test-"));
    symlinkSync(join(dir, "missing.yaml"), join(dir, "a.yaml"));
    writeFileSync(join(dir, "b.yaml"), "apiVersion: v1\nkind: Namespace\nmetadata: {name: b}\n");
    const error = await problemsOf([dir]);
    expect(error.problems).toEqual([`${dir}/a.yaml: cannot read: ENOENT`]);
  });

  test("collectBundle() reads a file reached twice through a symlink once, where it is first met", async () => {
    const dir = mkdtempSync(join(tmpdir(), "bundle-test-"));
    mkdirSync(join(dir, "b"));
    writeFileSync(join(dir, "b", "ns.yaml"), "apiVersion: v1\nkind: Namespace\nmetadata: {name: b}\n");
    symlinkSync(join(dir, "b", "ns.yaml"), join(dir, "a.yaml"));
    const bundle = await collectBundle([dir], { cwd: dir });
    expect(bundle.inputs).toEqual(["a.yaml"]);
  });
});

describe("readBundle()", () => {
  test("readBundle() hands over the objects collectBundle() returns, in the same order, and counts them", async () => {
    const dir = mkdtempSync(join(tmpdir(), "kpcd-read-bundle-"));
    writeFileSync(join(dir, "a.yaml"), "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n");
    writeFileSync(
      join(dir, "b.yaml"),
      "apiVersion: v1\nkind: Pod\nmetadata:\n  name: t\n  annotations: {helm.sh/hook: test}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n",
    );
    const handed: string[] = [];
    const summary = await readBundle([dir], { onItem: (item) => handed.push(`${(JSON.parse(item.json) as { metadata: { name: string } }).metadata.name}@${item.source}`) });
    const bundle = await collectBundle([dir]);
    expect(handed).toEqual(bundle.items.map((item) => `${item.object.metadata.name}@${item.source}`));
    expect(handed.map((h) => h.split("@")[0])).toEqual(["a", "b", "c"]);
    expect(summary.objectCount).toBe(3);
    expect(summary.inputs).toEqual(bundle.inputs);
    expect(summary.notices).toEqual(bundle.notices);
    expect(summary.notices).toHaveLength(1);
  });

  test("readBundle() reports reading problems before hook problems and hook problems before duplicates, across files", async () => {
    const dir = mkdtempSync(join(tmpdir(), "kpcd-read-bundle-"));
    writeFileSync(join(dir, "1.yaml"), "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dup\n  annotations: {helm.sh/hook: nope}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: d}\n");
    writeFileSync(join(dir, "2.yaml"), "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: d}\n---\nkind: ConfigMap\n");
    const error = await problemsOf([dir], { cwd: dir });
    expect(error.problems.map((p) => p.replace(/ \(known: .*\)$/, ""))).toEqual([
      "2.yaml:5:1: object has no apiVersion",
      '1.yaml:1:1: ConfigMap dup has an unknown helm.sh/hook "nope"',
      "2.yaml:1:1: duplicate object /ConfigMap//d (first defined at 1.yaml:7:1)",
    ]);
  });
});
