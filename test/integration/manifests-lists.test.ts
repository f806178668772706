/**
 * publish reads lists as kubectl reads them: against the kubectl and the API server of the
 * test environment, `kubectl apply --dry-run=client -f DIR` (which asks the server for
 * discovery and the live objects, and changes nothing) applies exactly the objects of the
 * bundle, in the same order and with the same content; where kubectl refuses a list, or
 * would read an object as one, the bundle is refused.
 */
import { beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { BundleError } from "../../lib/errors.ts";
import { collectBundle } from "../../lib/manifests/bundle.ts";
import { groupOf } from "../../lib/manifests/object-ref.ts";
import type { KubeObject } from "../../lib/manifests/kube-object.ts";
import { testEnv } from "../env/testenv.ts";
import { runProcess, type ProcessRun } from "../helpers/run.ts";

const fixtures = resolve(import.meta.dir, "../fixtures");

let kubectl = "";
let env: Record<string, string> = {};

beforeAll(async () => {
  const info = await testEnv();
  kubectl = info.kubectl;
  env = { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: mkdtempSync(join(tmpdir(), "manifests-lists-")), KUBECONFIG: info.kubeconfig };
}, 900_000);

function dryRun(dir: string, output: "name" | "json"): Promise<ProcessRun> {
  return runProcess([kubectl, "apply", "--dry-run=client", "-o", output, "-f", join(fixtures, dir)], { env });
}

/** An object as `kubectl apply -o name` prints it: `kind[.group]/name`, lower-case kind. */
function nameOf(object: KubeObject): string {
  const group = groupOf(object.apiVersion);
  return `${object.kind.toLowerCase()}${group === "" ? "" : `.${group}`}/${object.metadata.name}`;
}

async function bundleProblems(dir: string): Promise<readonly string[]> {
  const error = await collectBundle([dir], { cwd: fixtures }).catch((e: unknown) => e);
  expect(error).toBeInstanceOf(BundleError);
  return (error as BundleError).problems;
}

describe("lists, as kubectl reads them", () => {
  test("collectBundle() of typed lists (ConfigMapList, RoleBindingList, RoleList, List) yields the objects kubectl apply names, in its order", async () => {
    const [kubectlRun, bundle] = await Promise.all([dryRun("repo-lists", "name"), collectBundle(["repo-lists"], { cwd: fixtures })]);
    expect(kubectlRun.stderr).toBe("");
    expect(kubectlRun.code).toBe(0);
    expect(bundle.objects.map(nameOf)).toEqual(kubectlRun.stdout.trimEnd().split("\n"));
    expect(bundle.objects).toHaveLength(14);
  });

  test("collectBundle() yields, item for item, the objects kubectl would send, kind and apiVersion taken from the list where an item names neither", async () => {
    const [kubectlRun, bundle] = await Promise.all([dryRun("repo-lists", "json"), collectBundle(["repo-lists"], { cwd: fixtures })]);
    expect(kubectlRun.code).toBe(0);
    const sent = (JSON.parse(kubectlRun.stdout) as { items: KubeObject[] }).items.map((object) => {
      // What kubectl applies is in its last-applied annotation, with an empty annotations map added.
      const annotations = object.metadata["annotations"] as Record<string, string>;
      const applied = JSON.parse(annotations["kubectl.kubernetes.io/last-applied-configuration"]!) as KubeObject;
      expect(applied.metadata["annotations"]).toEqual({});
      delete applied.metadata["annotations"];
      return applied;
    });
    expect(bundle.objects).toEqual(sent);
    expect(bundle.objects.find((object) => object.metadata.name === "grafana-dashboard-pods")).toMatchObject({ apiVersion: "v1", kind: "ConfigMap" });
  });

  test("collectBundle() refuses a list inside a list, as kubectl does", async () => {
    const kubectlRun = await dryRun("invalid/list-nested", "name");
    expect(kubectlRun.code).toBe(1);
    expect(kubectlRun.stdout).toBe("");
    expect(kubectlRun.stderr).toBe("error: *unstructured.Unstructured is not a list: no Items field in this object\n");
    expect(await bundleProblems("invalid/list-nested")).toEqual([
      "invalid/list-nested/app.yaml:7:3: List (document 1) items[1]: a list inside a list, which kubectl cannot apply: move its items into the outer list",
    ]);
  });

  test("collectBundle() refuses a list item that is not an object, as kubectl does", async () => {
    const kubectlRun = await dryRun("invalid/list-item-not-object", "name");
    expect(kubectlRun.code).toBe(1);
    expect(kubectlRun.stderr).toContain("ValidationError(ConfigMapList.items[1]): invalid type for io.k8s.api.core.v1.ConfigMap");
    expect(await bundleProblems("invalid/list-item-not-object")).toEqual([
      "invalid/list-item-not-object/app.yaml:11:3: ConfigMapList (document 2) items[1]: object is not a mapping (got string)",
    ]);
  });

  test("collectBundle() refuses a kind ending in List without items, which kubectl cannot apply", async () => {
    const kubectlRun = await dryRun("invalid/list-without-items", "name");
    expect(kubectlRun.code).toBe(1);
    expect(kubectlRun.stderr).toContain('missing required field "items" in io.k8s.api.core.v1.ConfigMapList');
    expect(await bundleProblems("invalid/list-without-items")).toHaveLength(1);
  });

  test("collectBundle() refuses an object with items, which kubectl silently replaces by its items", async () => {
    const kubectlRun = await dryRun("invalid/object-with-items", "name");
    expect(kubectlRun.code).toBe(0);
    expect(kubectlRun.stdout).toBe("configmap/inner\n");
    expect(await bundleProblems("invalid/object-with-items")).toEqual([
      'invalid/object-with-items/app.yaml:1:1: ConfigMap "outer" has an items field, so kubectl would apply its items instead of the ConfigMap itself: remove items, or make it a list (kind: List, or a kind ending in List)',
    ]);
  });
});
