/** The pure parts of discovery: reading discovery documents and building object paths. */
import { describe, expect, test } from "bun:test";
import { objectPath, parseCoreVersions, parseGroupList, parseResourceList, readObject, type ApiResource } from "../../lib/kube/discovery.ts";
import { KubePicoCdError, KubeUnreachableError } from "../../lib/errors.ts";
import { KubeApi } from "../../lib/kube/api.ts";
import { closedPort } from "../helpers/unreachable.ts";

describe("parseGroupList()", () => {
  test("parseGroupList() lists each group's versions with the preferred one first", () => {
    const apis = {
      kind: "APIGroupList",
      apiVersion: "v1",
      groups: [
        {
          name: "autoscaling",
          versions: [
            { groupVersion: "autoscaling/v1", version: "v1" },
            { groupVersion: "autoscaling/v2", version: "v2" },
          ],
          preferredVersion: { groupVersion: "autoscaling/v2", version: "v2" },
        },
        { name: "apps", versions: [{ groupVersion: "apps/v1", version: "v1" }], preferredVersion: { groupVersion: "apps/v1", version: "v1" } },
      ],
    };
    expect(parseGroupList(apis)).toEqual([
      { group: "autoscaling", versions: ["v2", "v1"] },
      { group: "apps", versions: ["v1"] },
    ]);
  });

  test("parseGroupList() keeps the server's order without a preferred version, and skips malformed entries", () => {
    const apis = { groups: [{ name: "a.example.com", versions: [{ version: "v1beta1" }, { version: "v1" }] }, { versions: [] }, "x", { name: "empty", versions: [] }] };
    expect(parseGroupList(apis)).toEqual([{ group: "a.example.com", versions: ["v1beta1", "v1"] }]);
  });

  test("parseGroupList() of something that is not an APIGroupList is empty", () => {
    expect(parseGroupList(undefined)).toEqual([]);
    expect(parseGroupList({ kind: "Status" })).toEqual([]);
  });
});

describe("parseCoreVersions()", () => {
  test("parseCoreVersions() reads the versions of GET /api", () => {
    expect(parseCoreVersions({ kind: "APIVersions", versions: ["v1"], serverAddressByClientCIDRs: [] })).toEqual(["v1"]);
    expect(parseCoreVersions(null)).toEqual([]);
  });
});

describe("parseResourceList()", () => {
  test("parseResourceList() lists kind, plural and scope of each resource, without subresources", () => {
    const list = {
      kind: "APIResourceList",
      groupVersion: "apps/v1",
      resources: [
        { name: "deployments", singularName: "deployment", namespaced: true, kind: "Deployment", verbs: ["get"] },
        { name: "deployments/status", singularName: "", namespaced: true, kind: "Deployment", verbs: ["get"] },
        { name: "deployments/scale", namespaced: true, group: "autoscaling", version: "v1", kind: "Scale" },
      ],
    };
    expect(parseResourceList(list, "apps", "v1")).toEqual([{ group: "apps", version: "v1", kind: "Deployment", resource: "deployments", namespaced: true, verbs: ["get"] }]);
  });

  test("parseResourceList() takes a resource without `namespaced: true` for cluster-scoped", () => {
    const list = { resources: [{ name: "namespaces", namespaced: false, kind: "Namespace" }, { name: "nodes", kind: "Node" }, { kind: "NoName" }] };
    expect(parseResourceList(list, "", "v1")).toEqual([
      { group: "", version: "v1", kind: "Namespace", resource: "namespaces", namespaced: false },
      { group: "", version: "v1", kind: "Node", resource: "nodes", namespaced: false },
    ]);
  });
});

describe("objectPath()", () => {
  const deployments: ApiResource = { group: "apps", version: "v1", kind: "Deployment", resource: "deployments", namespaced: true };
  const namespaces: ApiResource = { group: "", version: "v1", kind: "Namespace", resource: "namespaces", namespaced: false };

  test("objectPath() puts a namespaced object under its namespace", () => {
    expect(objectPath(deployments, { group: "apps", kind: "Deployment", namespace: "web", name: "api" })).toBe("/apis/apps/v1/namespaces/web/deployments/api");
  });

  test("objectPath() ignores the namespace of a cluster-scoped kind", () => {
    expect(objectPath(namespaces, { group: "", kind: "Namespace", name: "web" })).toBe("/api/v1/namespaces/web");
    expect(objectPath(namespaces, { group: "", kind: "Namespace", namespace: "x", name: "web" })).toBe("/api/v1/namespaces/web");
  });

  test("objectPath() throws a KubePicoCdError for a namespaced kind without a namespace", () => {
    expect(() => objectPath(deployments, { group: "apps", kind: "Deployment", name: "api" })).toThrow(
      new KubePicoCdError("Cannot address apps/Deployment//api as deployments of apps are namespaced and it names no namespace"),
    );
  });
});

describe("readObject()", () => {
  test("readObject() rejects with a KubeUnreachableError naming the discovery request when the API server cannot be reached", async () => {
    const api = new KubeApi({ server: `https://127.0.0.1:${await closedPort()}`, insecureSkipTlsVerify: true, namespace: "default", source: "test" }, { timeoutMs: 2_000 });
    const error = await readObject(api, { group: "apps", kind: "Deployment", namespace: "a", name: "b" }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(KubeUnreachableError);
    expect((error as KubeUnreachableError).message).toMatch(/^Cannot reach the Kubernetes API server for GET \/apis?: /);
    api.close();
  });
});
