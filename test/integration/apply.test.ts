/** The phased server-side apply against the real kube-apiserver. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { applyObjects, waitForCrds, type ApplyObject, type ApplyOptions } from "../../lib/kube/apply.ts";
import { KubeApi } from "../../lib/kube/api.ts";
import { errorMessage, KubeApiError, KubectlError, KubePicoCdError } from "../../lib/errors.ts";
import { createNamespace, kubectl, testEnv } from "../env/testenv.ts";
import { connectionOf, testKubeApi } from "../helpers/kube-api.ts";

let admin: Pick<ApplyOptions, "kubectl" | "api">;
const unique = () => Math.random().toString(36).slice(2, 8);

beforeAll(async () => {
  const env = await testEnv();
  admin = { kubectl: { kubectlPath: env.kubectl, kubeconfig: env.kubeconfig }, api: await testKubeApi() };
}, 300_000);

afterAll(() => admin.api.close());

const deployment = (ns: string, name: string) => ({
  apiVersion: "apps/v1",
  kind: "Deployment",
  metadata: { name, namespace: ns },
  spec: {
    replicas: 1,
    selector: { matchLabels: { app: name } },
    template: { metadata: { labels: { app: name } }, spec: { containers: [{ name: "app", image: "example.invalid/app:1" }] } },
  },
});

/** A namespaced CRD for kind Widget in group `group`, with room for a large description. */
const widgetCrd = (group: string, description = "A widget.", names = { plural: "widgets", singular: "widget", kind: "Widget", listKind: "WidgetList" }) => ({
  apiVersion: "apiextensions.k8s.io/v1",
  kind: "CustomResourceDefinition",
  metadata: { name: `${names.plural}.${group}` },
  spec: {
    group,
    scope: "Namespaced",
    names,
    versions: [
      {
        name: "v1",
        served: true,
        storage: true,
        schema: {
          openAPIV3Schema: {
            type: "object",
            description,
            properties: { spec: { type: "object", properties: { size: { type: "integer" } } } },
          },
        },
      },
    ],
  },
});

describe("applyObjects() against kube-apiserver", () => {
  test("applyObjects() applies a Namespace, a ConfigMap and a Deployment and returns their inventory", async () => {
    const ns = `apply-${unique()}`;
    const objects: ApplyObject[] = [
      deployment(ns, "web"),
      { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "settings", namespace: ns }, data: { mode: "fast" } } as ApplyObject,
      { apiVersion: "v1", kind: "Namespace", metadata: { name: ns } },
    ];
    const result = await applyObjects(objects, admin);
    expect(result.inventory).toEqual([
      { group: "", kind: "Namespace", name: ns },
      { group: "apps", kind: "Deployment", namespace: ns, name: "web" },
      { group: "", kind: "ConfigMap", namespace: ns, name: "settings" },
    ]);
    expect(result.phases.map((p) => p.phase)).toEqual(["namespaces-and-crds", "objects"]);
    const cm = await kubectl(["get", "configmap", "settings", "-n", ns, "-o", "jsonpath={.data.mode}"]);
    expect(cm.stdout).toBe("fast");
    const managers = await kubectl(["get", "deployment", "web", "-n", ns, "-o", "jsonpath={.metadata.managedFields[*].manager}"]);
    expect(managers.stdout.split(" ")).toContain("kube-pico-cd");
  });

  test("applyObjects() applies a CRD and a custom resource of it in one call", async () => {
    const ns = await createNamespace("crd");
    const group = `g${unique()}.example.com`;
    const widget = { apiVersion: `${group}/v1`, kind: "Widget", metadata: { name: "w1", namespace: ns }, spec: { size: 3 } };
    const result = await applyObjects([widget, widgetCrd(group)], admin);
    expect(result.phases.map((p) => p.phase)).toEqual(["namespaces-and-crds", "crds-established", "objects"]);
    expect(result.inventory).toEqual([
      { group: "apiextensions.k8s.io", kind: "CustomResourceDefinition", name: `widgets.${group}` },
      { group, kind: "Widget", namespace: ns, name: "w1" },
    ]);
    const got = await kubectl(["get", `widgets.${group}`, "w1", "-n", ns, "-o", "jsonpath={.spec.size}"]);
    expect(got.stdout).toBe("3");
  });

  test("applyObjects() applies a CRD larger than the 262,144-byte annotation limit", async () => {
    const group = `big${unique()}.example.com`;
    const crd = widgetCrd(group, "x".repeat(300_000));
    expect(JSON.stringify(crd).length).toBeGreaterThan(262_144);
    const result = await applyObjects([crd], admin);
    expect(result.inventory).toEqual([{ group: "apiextensions.k8s.io", kind: "CustomResourceDefinition", name: `widgets.${group}` }]);
    const got = await kubectl(["get", "crd", `widgets.${group}`, "-o", "jsonpath={.status.conditions[?(@.type==\"Established\")].status}"]);
    expect(got.stdout).toBe("True");
  });

  test("applyObjects() rejects with a KubectlError carrying the API server's message when an object is invalid", async () => {
    const ns = await createNamespace("invalid");
    const bad = { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "Not_A_Valid_Name", namespace: ns }, data: {} } as ApplyObject;
    const error = (await applyObjects([bad], admin).catch((e: unknown) => e)) as KubectlError;
    expect(error).toBeInstanceOf(KubectlError);
    expect(error.exitCode).toBe(1);
    expect(error.argv.slice(-7)).toEqual(["apply", "--server-side", "--field-manager=kube-pico-cd", "-o", "json", "-f", "-"]);
    expect(error.stderr).toStartWith('The ConfigMap "Not_A_Valid_Name" is invalid: metadata.name: Invalid value: "Not_A_Valid_Name"');
    expect(error.serverReason).toBe("Invalid");
  });

  test("applyObjects() keeps the first phase applied when a later object is rejected", async () => {
    const ns = `half-${unique()}`;
    const bad = { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "Bad_Name", namespace: ns } } as ApplyObject;
    await expect(applyObjects([{ apiVersion: "v1", kind: "Namespace", metadata: { name: ns } }, bad], admin)).rejects.toBeInstanceOf(
      KubectlError,
    );
    expect((await kubectl(["get", "namespace", ns])).code).toBe(0);
  });

  test("applyObjects() puts an object without a namespace in kubectl's namespace and records where it landed", async () => {
    const name = `no-ns-${unique()}`;
    const result = await applyObjects([{ apiVersion: "v1", kind: "ConfigMap", metadata: { name } }], admin);
    // The test kubeconfig's context namespace is "default".
    expect(result.inventory).toEqual([{ group: "", kind: "ConfigMap", namespace: "default", name }]);
    await kubectl(["delete", "configmap", name, "-n", "default"]);
  });

  test("applyObjects() fails on a field owned by another manager unless forceConflicts is set", async () => {
    const ns = await createNamespace("conflict");
    const cm = (value: string) => ({ apiVersion: "v1", kind: "ConfigMap", metadata: { name: "shared", namespace: ns }, data: { key: value } }) as ApplyObject;
    const other = await kubectl(["apply", "--server-side", "--field-manager=someone-else", "-f", "-"], { stdin: JSON.stringify(cm("theirs")) });
    expect(other.code).toBe(0);
    const error = (await applyObjects([cm("ours")], admin).catch((e: unknown) => e)) as KubectlError;
    expect(error).toBeInstanceOf(KubectlError);
    expect(error.stderr).toContain("conflict");
    await applyObjects([cm("ours")], { ...admin, forceConflicts: true });
    expect((await kubectl(["get", "configmap", "shared", "-n", ns, "-o", "jsonpath={.data.key}"])).stdout).toBe("ours");
  });

  test("applyObjects() of no objects runs no kubectl and returns an empty inventory", async () => {
    const result = await applyObjects([], { kubectl: { kubectlPath: "/nonexistent/kubectl" }, api: admin.api });
    expect(result.inventory).toEqual([]);
    expect(result.phases).toEqual([]);
  });

  test("applyObjects() fails the wait with the NamesAccepted message when a CRD's kind is already taken in its group, and applies nothing after it", async () => {
    const ns = await createNamespace("names");
    const group = `n${unique()}.example.com`;
    await applyObjects([widgetCrd(group)], admin);
    const taken = widgetCrd(group, "Also a widget.", { plural: "gizmos", singular: "gizmo", kind: "Widget", listKind: "GizmoList" });
    const cm = { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "after", namespace: ns } } as ApplyObject;
    const error = await applyObjects([taken, cm], admin).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(KubePicoCdError);
    expect(errorMessage(error)).toBe(`Cannot apply the objects that follow the CustomResourceDefinitions as gizmos.${group} cannot be Established: KindConflict: "Widget" is already in use`);
    expect((await kubectl(["get", "configmap", "after", "-n", ns])).code).not.toBe(0);
    await kubectl(["delete", "crd", `widgets.${group}`, `gizmos.${group}`, "--wait=false"]);
  });

  test("applyObjects() applies 3 CRDs of over 256 KiB each and a custom resource of each on the first attempt, 20 of 20 times", async () => {
    const ns = await createNamespace("big-crds");
    const failures: string[] = [];
    for (let round = 1; round <= 20; round++) {
      // Fresh groups each round: every CRD is new, so none has conditions when the wait starts.
      const groups = [1, 2, 3].map((i) => `r${round}x${i}${unique()}.example.com`);
      const crds = groups.map((group) => widgetCrd(group, `${group} `.repeat(Math.ceil(270_000 / (group.length + 1)))));
      for (const crd of crds) expect(JSON.stringify(crd).length).toBeGreaterThan(262_144);
      const widgets = groups.map((group) => ({ apiVersion: `${group}/v1`, kind: "Widget", metadata: { name: "w", namespace: ns }, spec: { size: round } }));
      try {
        const result = await applyObjects([...widgets, ...crds], { ...admin, timeoutMs: 120_000 });
        expect(result.phases.map((p) => p.phase)).toEqual(["namespaces-and-crds", "crds-established", "objects"]);
        expect(result.inventory.slice(3)).toEqual(groups.map((group) => ({ group, kind: "Widget", namespace: ns, name: "w" })));
      } catch (error) {
        failures.push(`round ${round}: ${errorMessage(error)}`);
      }
      await kubectl(["delete", "crd", ...groups.map((group) => `widgets.${group}`), "--wait=false"]);
    }
    expect(failures).toEqual([]);
  }, 600_000);
});

describe("waitForCrds() against kube-apiserver", () => {
  test("waitForCrds() resolves at once for a CRD that is already Established and served", async () => {
    const group = `e${unique()}.example.com`;
    await applyObjects([widgetCrd(group)], admin);
    const started = performance.now();
    await waitForCrds(admin.api, [`widgets.${group}`], { timeoutMs: 10_000 });
    expect(performance.now() - started).toBeLessThan(2_000);
    await kubectl(["delete", "crd", `widgets.${group}`, "--wait=false"]);
  });

  test("waitForCrds() throws after its budget, naming a CRD that does not exist", async () => {
    const error = await waitForCrds(admin.api, ["nothings.example.com"], { timeoutMs: 500 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(KubePicoCdError);
    expect(errorMessage(error)).toBe("Cannot apply the objects that follow the CustomResourceDefinitions as 1 of 1 were not Established within 1 s: nothings.example.com (not found)");
  });

  test("waitForCrds() rejects with the KubeApiError at once when it may not read CRDs", async () => {
    const nobody = new KubeApi(connectionOf((await testEnv()).unprivilegedKubeconfig));
    const started = performance.now();
    const error = await waitForCrds(nobody, ["widgets.example.com"], { timeoutMs: 30_000 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(KubeApiError);
    expect((error as KubeApiError).status.code).toBe(403);
    expect(performance.now() - started).toBeLessThan(5_000);
    nobody.close();
  });
});
