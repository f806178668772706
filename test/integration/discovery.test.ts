/** Discovery against the real kube-apiserver: built-in kinds, kinds it does not serve, and a CRD created meanwhile. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { KubeApi } from "../../lib/kube/api.ts";
import { Discovery, readObject } from "../../lib/kube/discovery.ts";
import { createNamespace, kubectl } from "../env/testenv.ts";
import { testKubeApi } from "../helpers/kube-api.ts";
import { until } from "../helpers/until.ts";

let api: KubeApi;
const unique = () => Math.random().toString(36).slice(2, 8);

beforeAll(async () => {
  api = await testKubeApi();
}, 300_000);

afterAll(() => api.close());

const gadgetCrd = (group: string) => ({
  apiVersion: "apiextensions.k8s.io/v1",
  kind: "CustomResourceDefinition",
  metadata: { name: `gadgets.${group}` },
  spec: {
    group,
    scope: "Cluster",
    names: { plural: "gadgets", singular: "gadget", kind: "Gadget" },
    versions: [{ name: "v1", served: true, storage: true, schema: { openAPIV3Schema: { type: "object", "x-kubernetes-preserve-unknown-fields": true } } }],
  },
});

describe("Discovery against kube-apiserver", () => {
  test("resourceFor() finds core and grouped kinds with their plural and scope", async () => {
    const discovery = new Discovery(api);
    expect(await discovery.resourceFor("", "ConfigMap")).toMatchObject({ group: "", version: "v1", kind: "ConfigMap", resource: "configmaps", namespaced: true });
    expect(await discovery.resourceFor("", "Namespace")).toMatchObject({ group: "", version: "v1", kind: "Namespace", resource: "namespaces", namespaced: false });
    expect(await discovery.resourceFor("apps", "Deployment")).toMatchObject({ group: "apps", version: "v1", kind: "Deployment", resource: "deployments", namespaced: true });
    expect(await discovery.resourceFor("apiextensions.k8s.io", "CustomResourceDefinition")).toMatchObject({
      group: "apiextensions.k8s.io",
      version: "v1",
      kind: "CustomResourceDefinition",
      resource: "customresourcedefinitions",
      namespaced: false,
    });
  });

  test("resourceFor() uses the group's preferred version", async () => {
    // autoscaling serves v1 and v2 and prefers v2.
    expect(await new Discovery(api).resourceFor("autoscaling", "HorizontalPodAutoscaler")).toMatchObject({ version: "v2", resource: "horizontalpodautoscalers" });
  });

  test("resourceFor() is null for a kind or a group the server does not serve", async () => {
    const discovery = new Discovery(api);
    expect(await discovery.resourceFor("", "NoSuchKind")).toBeNull();
    expect(await discovery.resourceFor("apps", "Deployment", { version: "v1beta1" })).toBeNull();
    expect(await discovery.resourceFor(`nosuch-${unique()}.example.com`, "Thing")).toBeNull();
  });

  test("resourceFor() finds the kind of a CRD created after the cache was filled", async () => {
    const discovery = new Discovery(api);
    const group = `d${unique()}.example.com`;
    expect(await discovery.resourceFor(group, "Gadget")).toBeNull();
    expect((await kubectl(["apply", "-f", "-"], { stdin: JSON.stringify(gadgetCrd(group)) })).code).toBe(0);
    const found = await until("discovery to serve the new CRD", async () => (await discovery.resourceFor(group, "Gadget")) ?? undefined, 30_000);
    expect(found).toMatchObject({ group, version: "v1", kind: "Gadget", resource: "gadgets", namespaced: false });
    await kubectl(["delete", "crd", `gadgets.${group}`, "--wait=false"]);
  });
});

describe("readObject() against kube-apiserver", () => {
  test("readObject() reads an object at its group's preferred version, and is null when there is none", async () => {
    const ns = await createNamespace("read");
    expect((await kubectl(["create", "configmap", "here", "-n", ns, "--from-literal=a=b"])).code).toBe(0);
    const got = (await readObject(api, { group: "", kind: "ConfigMap", namespace: ns, name: "here" })) as { apiVersion: string; data: unknown };
    expect(got.apiVersion).toBe("v1");
    expect(got.data).toEqual({ a: "b" });
    expect(await readObject(api, { group: "", kind: "ConfigMap", namespace: ns, name: "absent" })).toBeNull();
    expect(await readObject(api, { group: "", kind: "Namespace", name: ns })).toMatchObject({ kind: "Namespace", metadata: { name: ns } });
  });

  test("readObject() is null for an object whose CRD was deleted after discovery cached it", async () => {
    const group = `r${unique()}.example.com`;
    expect((await kubectl(["apply", "-f", "-"], { stdin: JSON.stringify(gadgetCrd(group)) })).code).toBe(0);
    expect((await kubectl(["wait", "--for=condition=Established", `crd/gadgets.${group}`, "--timeout=30s"])).code).toBe(0);
    const gadget = { apiVersion: `${group}/v1`, kind: "Gadget", metadata: { name: "g1" } };
    await until("the custom resource to be created", async () => (await kubectl(["apply", "-f", "-"], { stdin: JSON.stringify(gadget) })).code === 0, 30_000);
    const ref = { group, kind: "Gadget", name: "g1" };
    expect(await readObject(api, ref)).toMatchObject({ kind: "Gadget", metadata: { name: "g1" } });
    expect((await kubectl(["delete", "crd", `gadgets.${group}`, "--wait=true", "--timeout=60s"])).code).toBe(0);
    await until("the deleted CRD's objects to be unreadable", async () => (await readObject(api, ref)) === null, 30_000);
  });
});
