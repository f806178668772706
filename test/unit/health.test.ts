import { describe, expect, test } from "bun:test";
import { KubeApi } from "../../lib/kube/api.ts";
import { crdHealth, isHealthChecked, objectHealth, waitForHealth } from "../../lib/kube/health.ts";
import { closedPort } from "../helpers/unreachable.ts";

/** A client of an API server that cannot be reached (nothing listens on its port). */
async function unreachableApi(): Promise<KubeApi> {
  return new KubeApi({ server: `https://127.0.0.1:${await closedPort()}`, insecureSkipTlsVerify: true, namespace: "default", source: "test" }, { timeoutMs: 1_000 });
}

/** A client that must never be asked: its server is not a usable URL for a request. */
const unusedApi = new KubeApi({ server: "https://unused.invalid", namespace: "default", source: "test" });

const deployment = (spec: Record<string, unknown>, status: Record<string, unknown>, generation = 1) => ({
  apiVersion: "apps/v1",
  kind: "Deployment",
  metadata: { name: "web", namespace: "app", generation },
  spec,
  status,
});

describe("objectHealth()", () => {
  test("a Deployment with every replica updated and available is ready", () => {
    expect(objectHealth(deployment({ replicas: 2 }, { observedGeneration: 1, replicas: 2, updatedReplicas: 2, availableReplicas: 2 }))).toEqual({ state: "ready" });
  });

  test("a Deployment whose new generation is not observed yet is progressing", () => {
    expect(objectHealth(deployment({ replicas: 1 }, { observedGeneration: 1, replicas: 1, updatedReplicas: 1, availableReplicas: 1 }, 2))).toEqual({
      state: "progressing",
      reason: "the controller has not observed generation 2 yet",
    });
  });

  test("a Deployment with old replicas left is progressing", () => {
    expect(objectHealth(deployment({ replicas: 2 }, { observedGeneration: 1, replicas: 3, updatedReplicas: 2, availableReplicas: 2 }))).toEqual({
      state: "progressing",
      reason: "1 old replicas are pending termination",
    });
  });

  test("a Deployment without replicas in spec wants one", () => {
    expect(objectHealth(deployment({}, { observedGeneration: 1 }))).toEqual({ state: "progressing", reason: "0 of 1 replicas updated" });
  });

  test("a Deployment past its progress deadline is failed, with the condition's reason and message", () => {
    const d = deployment({ replicas: 1 }, {
      observedGeneration: 1,
      conditions: [{ type: "Progressing", status: "False", reason: "ProgressDeadlineExceeded", message: 'ReplicaSet "web-1" has timed out progressing.' }],
    });
    expect(objectHealth(d)).toEqual({ state: "failed", reason: 'ProgressDeadlineExceeded: ReplicaSet "web-1" has timed out progressing.' });
  });

  test("a StatefulSet is ready when its pods are ready and on the update revision", () => {
    const sts = { apiVersion: "apps/v1", kind: "StatefulSet", metadata: { generation: 1 }, spec: { replicas: 2 }, status: { observedGeneration: 1, readyReplicas: 2, currentRevision: "a", updateRevision: "b", updatedReplicas: 1 } };
    expect(objectHealth(sts)).toEqual({ state: "progressing", reason: "rolling out revision b: 1 of 2 pods updated" });
    expect(objectHealth({ ...sts, status: { ...sts.status, currentRevision: "b" } })).toEqual({ state: "ready" });
  });

  test("a StatefulSet with a partition needs only the pods above it updated", () => {
    const sts = {
      apiVersion: "apps/v1",
      kind: "StatefulSet",
      metadata: { generation: 1 },
      spec: { replicas: 3, updateStrategy: { type: "RollingUpdate", rollingUpdate: { partition: 2 } } },
      status: { observedGeneration: 1, readyReplicas: 3, updatedReplicas: 1, currentRevision: "a", updateRevision: "b" },
    };
    expect(objectHealth(sts)).toEqual({ state: "ready" });
  });

  test("a DaemonSet is progressing until every scheduled pod is available", () => {
    const ds = { apiVersion: "apps/v1", kind: "DaemonSet", metadata: { generation: 3 }, status: { observedGeneration: 3, desiredNumberScheduled: 4, updatedNumberScheduled: 4, numberAvailable: 3 } };
    expect(objectHealth(ds)).toEqual({ state: "progressing", reason: "3 of 4 scheduled pods available" });
  });

  test("a Job is ready when Complete, failed when Failed, ready when suspended", () => {
    const job = (status: Record<string, unknown>, spec: Record<string, unknown> = {}) => ({ apiVersion: "batch/v1", kind: "Job", metadata: {}, spec, status });
    expect(objectHealth(job({ conditions: [{ type: "Complete", status: "True" }] }))).toEqual({ state: "ready" });
    expect(objectHealth(job({ conditions: [{ type: "Failed", status: "True", reason: "BackoffLimitExceeded", message: "Job has reached the specified backoff limit" }] }))).toEqual({
      state: "failed",
      reason: "BackoffLimitExceeded: Job has reached the specified backoff limit",
    });
    expect(objectHealth(job({}, { suspend: true }))).toEqual({ state: "ready" });
    expect(objectHealth(job({ succeeded: 1 }, { completions: 3 }))).toEqual({ state: "progressing", reason: "1 of 3 completions" });
  });

  test("a CRD is ready when Established and failed when its names are not accepted", () => {
    const crd = (conditions: unknown[]) => ({ apiVersion: "apiextensions.k8s.io/v1", kind: "CustomResourceDefinition", metadata: {}, status: { conditions } });
    expect(objectHealth(crd([{ type: "Established", status: "True" }]))).toEqual({ state: "ready" });
    expect(objectHealth(crd([{ type: "NamesAccepted", status: "False", reason: "MultipleNamesNotAllowed", message: "x" }]))).toEqual({ state: "failed", reason: "MultipleNamesNotAllowed: x" });
  });

  test("other kinds are ready", () => {
    expect(objectHealth({ apiVersion: "v1", kind: "ConfigMap", metadata: {} })).toEqual({ state: "ready" });
  });
});

describe("crdHealth()", () => {
  const crd = (status?: unknown) => ({ apiVersion: "apiextensions.k8s.io/v1", kind: "CustomResourceDefinition", metadata: { name: "w.example.com" }, ...(status === undefined ? {} : { status }) });
  test("crdHealth() is progressing while a CRD has no status or no conditions yet", () => {
    expect(crdHealth(crd())).toEqual({ state: "progressing", reason: "not Established yet" });
    expect(crdHealth(crd({}))).toEqual({ state: "progressing", reason: "not Established yet" });
    expect(crdHealth(crd({ conditions: [] }))).toEqual({ state: "progressing", reason: "not Established yet" });
    expect(crdHealth(crd({ conditions: [{ type: "NamesAccepted", status: "True" }, { type: "Established", status: "False" }] }))).toEqual({
      state: "progressing",
      reason: "not Established yet",
    });
  });

  test("crdHealth() is failed when NamesAccepted is False, even if Established says True", () => {
    const conditions = [
      { type: "NamesAccepted", status: "False", reason: "MultipleNamesNotAllowed", message: '"widgets" is already in use' },
      { type: "Established", status: "True" },
    ];
    expect(crdHealth(crd({ conditions }))).toEqual({ state: "failed", reason: 'MultipleNamesNotAllowed: "widgets" is already in use' });
  });
});

describe("isHealthChecked()", () => {
  test("isHealthChecked() covers the workload kinds and CRDs only", () => {
    expect(isHealthChecked({ group: "apps", kind: "Deployment" })).toBe(true);
    expect(isHealthChecked({ group: "batch", kind: "Job" })).toBe(true);
    expect(isHealthChecked({ group: "apiextensions.k8s.io", kind: "CustomResourceDefinition" })).toBe(true);
    expect(isHealthChecked({ group: "batch", kind: "CronJob" })).toBe(false);
    expect(isHealthChecked({ group: "", kind: "ConfigMap" })).toBe(false);
    expect(isHealthChecked({ group: "example.com", kind: "Deployment" })).toBe(false);
  });
});

describe("waitForHealth()", () => {
  test("waitForHealth() is Healthy at once, without a request, when nothing is checked", async () => {
    const result = await waitForHealth([{ group: "", kind: "ConfigMap", namespace: "a", name: "b" }], { api: unusedApi, now: () => 1_000 });
    expect(result).toEqual({ status: "Healthy", durationMs: 0, checked: 0 });
  });

  test("waitForHealth() throws a RangeError naming the bad timeout", async () => {
    await expect(waitForHealth([], { api: unusedApi, timeoutMs: 0 })).rejects.toThrow(
      new RangeError("Cannot wait for health as 'timeoutMs' must be a positive finite number: current value is 0"),
    );
  });

  test("waitForHealth() reports Timeout with the read error when the API server cannot be reached", async () => {
    const api = await unreachableApi();
    const result = await waitForHealth([{ group: "apps", kind: "Deployment", namespace: "a", name: "web" }], { api, timeoutMs: 50, intervalMs: 10 });
    expect(result.status).toBe("Timeout");
    expect(result.object).toBe("apps/Deployment/a/web");
    expect(result.reason).toMatch(/^not healthy after 0 s: cannot read it: Cannot reach the Kubernetes API server for GET \/apis?: /);
    api.close();
  });

  test("waitForHealth() rejects with the signal's reason when aborted", async () => {
    const api = await unreachableApi();
    const reason = new Error("stop");
    const result = waitForHealth([{ group: "apps", kind: "Deployment", namespace: "a", name: "web" }], { api, timeoutMs: 60_000, intervalMs: 10, signal: AbortSignal.abort(reason) });
    await expect(result).rejects.toBe(reason);
    api.close();
  });
});
