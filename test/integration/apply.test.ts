/** The phased server-side apply against the real kube-apiserver. */
import { beforeAll, describe, expect, test } from "bun:test";
import { applyObjects, type ApplyObject } from "../../lib/kube/apply.ts";
import { KubectlError } from "../../lib/errors.ts";
import type { KubectlTarget } from "../../lib/kube/kubectl.ts";
import { createNamespace, kubectl, testEnv } from "../env/testenv.ts";

let admin: KubectlTarget;
const unique = () => Math.random().toString(36).slice(2, 8);

beforeAll(async () => {
  const env = await testEnv();
  admin = { kubectlPath: env.kubectl, kubeconfig: env.kubeconfig };
}, 300_000);

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
const widgetCrd = (group: string, description = "A widget.") => ({
  apiVersion: "apiextensions.k8s.io/v1",
  kind: "CustomResourceDefinition",
  metadata: { name: `widgets.${group}` },
  spec: {
    group,
    scope: "Namespaced",
    names: { plural: "widgets", singular: "widget", kind: "Widget", listKind: "WidgetList" },
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
    const result = await applyObjects(objects, { kubectl: admin });
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
    const result = await applyObjects([widget, widgetCrd(group)], { kubectl: admin });
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
    const result = await applyObjects([crd], { kubectl: admin });
    expect(result.inventory).toEqual([{ group: "apiextensions.k8s.io", kind: "CustomResourceDefinition", name: `widgets.${group}` }]);
    const got = await kubectl(["get", "crd", `widgets.${group}`, "-o", "jsonpath={.status.conditions[?(@.type==\"Established\")].status}"]);
    expect(got.stdout).toBe("True");
  });

  test("applyObjects() rejects with a KubectlError carrying the API server's message when an object is invalid", async () => {
    const ns = await createNamespace("invalid");
    const bad = { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "Not_A_Valid_Name", namespace: ns }, data: {} } as ApplyObject;
    const error = (await applyObjects([bad], { kubectl: admin }).catch((e: unknown) => e)) as KubectlError;
    expect(error).toBeInstanceOf(KubectlError);
    expect(error.exitCode).toBe(1);
    expect(error.argv.slice(-7)).toEqual(["apply", "--server-side", "--field-manager=kube-pico-cd", "-o", "json", "-f", "-"]);
    expect(error.stderr).toStartWith('The ConfigMap "Not_A_Valid_Name" is invalid: metadata.name: Invalid value: "Not_A_Valid_Name"');
    expect(error.serverReason).toBe("Invalid");
  });

  test("applyObjects() keeps the first phase applied when a later object is rejected", async () => {
    const ns = `half-${unique()}`;
    const bad = { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "Bad_Name", namespace: ns } } as ApplyObject;
    await expect(applyObjects([{ apiVersion: "v1", kind: "Namespace", metadata: { name: ns } }, bad], { kubectl: admin })).rejects.toBeInstanceOf(
      KubectlError,
    );
    expect((await kubectl(["get", "namespace", ns])).code).toBe(0);
  });

  test("applyObjects() puts an object without a namespace in kubectl's namespace and records where it landed", async () => {
    const name = `no-ns-${unique()}`;
    const result = await applyObjects([{ apiVersion: "v1", kind: "ConfigMap", metadata: { name } }], { kubectl: admin });
    // The test kubeconfig's context namespace is "default".
    expect(result.inventory).toEqual([{ group: "", kind: "ConfigMap", namespace: "default", name }]);
    await kubectl(["delete", "configmap", name, "-n", "default"]);
  });

  test("applyObjects() fails on a field owned by another manager unless forceConflicts is set", async () => {
    const ns = await createNamespace("conflict");
    const cm = (value: string) => ({ apiVersion: "v1", kind: "ConfigMap", metadata: { name: "shared", namespace: ns }, data: { key: value } }) as ApplyObject;
    const other = await kubectl(["apply", "--server-side", "--field-manager=someone-else", "-f", "-"], { stdin: JSON.stringify(cm("theirs")) });
    expect(other.code).toBe(0);
    const error = (await applyObjects([cm("ours")], { kubectl: admin }).catch((e: unknown) => e)) as KubectlError;
    expect(error).toBeInstanceOf(KubectlError);
    expect(error.stderr).toContain("conflict");
    await applyObjects([cm("ours")], { kubectl: admin, forceConflicts: true });
    expect((await kubectl(["get", "configmap", "shared", "-n", ns, "-o", "jsonpath={.data.key}"])).stdout).toBe("ours");
  });

  test("applyObjects() of no objects runs no kubectl and returns an empty inventory", async () => {
    const result = await applyObjects([], { kubectl: { kubectlPath: "/nonexistent/kubectl" } });
    expect(result.inventory).toEqual([]);
    expect(result.phases).toEqual([]);
  });
});
