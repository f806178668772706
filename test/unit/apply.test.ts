/** The pure parts of the phased apply: argv, phase split, inventory parsing and the CRD wait's verdicts. */
import { describe, expect, test } from "bun:test";
import { applyArgs, crdProgress, crdServes, inventoryFromApplyOutput, isFirstPhaseObject, toListJson, waitForCrds } from "../../lib/kube/apply.ts";
import { KubeApi } from "../../lib/kube/api.ts";
import { KubePicoCdError } from "../../lib/errors.ts";
import { closedPort } from "../helpers/unreachable.ts";

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

const crd = (status?: unknown) => ({
  apiVersion: "apiextensions.k8s.io/v1",
  kind: "CustomResourceDefinition",
  metadata: { name: "widgets.example.com" },
  spec: {
    group: "example.com",
    names: { kind: "Widget", plural: "widgets" },
    versions: [
      { name: "v1", served: true, storage: true },
      { name: "v1beta1", served: false, storage: false },
      { name: "v2", served: true, storage: false },
    ],
  },
  ...(status === undefined ? {} : { status }),
});

describe("crdProgress()", () => {
  test("crdProgress() waits for a CRD with no status, no conditions, or Established not True", () => {
    for (const status of [undefined, {}, { conditions: [] }, { conditions: [{ type: "Established", status: "False" }] }]) {
      expect(crdProgress(crd(status))).toEqual({ state: "waiting", reason: "not Established yet" });
    }
  });

  test("crdProgress() waits for a CRD that is not found (yet)", () => {
    expect(crdProgress(null)).toEqual({ state: "waiting", reason: "not found" });
  });

  test("crdProgress() is ready when Established is True", () => {
    expect(crdProgress(crd({ conditions: [{ type: "NamesAccepted", status: "True" }, { type: "Established", status: "True" }] }))).toEqual({ state: "ready" });
  });

  test("crdProgress() fails with the condition's reason and message when NamesAccepted is False", () => {
    const status = { conditions: [{ type: "NamesAccepted", status: "False", reason: "MultipleNamesNotAllowed", message: '"widgets" is already in use' }] };
    expect(crdProgress(crd(status))).toEqual({ state: "failed", reason: 'MultipleNamesNotAllowed: "widgets" is already in use' });
  });
});

describe("crdServes()", () => {
  test("crdServes() is the group, kind and served versions of a CRD", () => {
    expect(crdServes(crd())).toEqual({ group: "example.com", kind: "Widget", versions: ["v1", "v2"] });
  });

  test("crdServes() is undefined when the spec lacks group or kind", () => {
    expect(crdServes({ spec: { names: {} } })).toBeUndefined();
    expect(crdServes(null)).toBeUndefined();
  });
});

describe("waitForCrds()", () => {
  test("waitForCrds() keeps waiting while the API server cannot be reached, then throws a KubePicoCdError naming each CRD and why", async () => {
    const api = new KubeApi({ server: `https://127.0.0.1:${await closedPort()}`, insecureSkipTlsVerify: true, namespace: "default", source: "test" }, { timeoutMs: 1_000 });
    const error = await waitForCrds(api, ["widgets.example.com"], { timeoutMs: 300, intervalMs: 10 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(KubePicoCdError);
    expect((error as Error).message).toStartWith(
      "Cannot apply the objects that follow the CustomResourceDefinitions as 1 of 1 were not Established within 0 s: widgets.example.com (cannot read it: Cannot reach the Kubernetes API server for GET /apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com: ",
    );
    api.close();
  });

  test("waitForCrds() rejects with the signal's reason when aborted", async () => {
    const api = new KubeApi({ server: `https://127.0.0.1:${await closedPort()}`, insecureSkipTlsVerify: true, namespace: "default", source: "test" });
    const reason = new Error("stop");
    await expect(waitForCrds(api, ["widgets.example.com"], { timeoutMs: 60_000, signal: AbortSignal.abort(reason) })).rejects.toBe(reason);
    api.close();
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
