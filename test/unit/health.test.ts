import { describe, expect, test } from "bun:test";
import { getObjectsArgs, isHealthChecked, itemsOfGetOutput, objectHealth, waitForHealth } from "../../lib/kube/health.ts";

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

describe("isHealthChecked() and getObjectsArgs()", () => {
  test("isHealthChecked() covers the workload kinds and CRDs only", () => {
    expect(isHealthChecked({ group: "apps", kind: "Deployment" })).toBe(true);
    expect(isHealthChecked({ group: "batch", kind: "Job" })).toBe(true);
    expect(isHealthChecked({ group: "batch", kind: "CronJob" })).toBe(false);
    expect(isHealthChecked({ group: "", kind: "ConfigMap" })).toBe(false);
  });

  test("getObjectsArgs() reads several objects of one namespace in one call", () => {
    expect(getObjectsArgs("app", [
      { group: "apps", kind: "Deployment", namespace: "app", name: "web" },
      { group: "batch", kind: "Job", namespace: "app", name: "migrate" },
    ])).toEqual(["get", "--namespace=app", "Deployment.apps/web", "Job.batch/migrate", "--ignore-not-found", "-o", "json"]);
  });

  test("itemsOfGetOutput() reads a single object, a List and nothing", () => {
    expect(itemsOfGetOutput("")).toEqual([]);
    expect(itemsOfGetOutput('{"kind":"Deployment"}')).toEqual([{ kind: "Deployment" }]);
    expect(itemsOfGetOutput('{"kind":"List","items":[{"kind":"A"},{"kind":"B"}]}')).toEqual([{ kind: "A" }, { kind: "B" }]);
  });
});

describe("waitForHealth()", () => {
  test("waitForHealth() is Healthy at once, without calling kubectl, when nothing is checked", async () => {
    const result = await waitForHealth([{ group: "", kind: "ConfigMap", namespace: "a", name: "b" }], { kubectl: { kubectlPath: "/nonexistent/kubectl" } });
    expect(result).toEqual({ status: "Healthy", durationMs: 0, checked: 0 });
  });

  test("waitForHealth() throws a RangeError naming the bad timeout", async () => {
    await expect(waitForHealth([], { kubectl: { kubectlPath: "kubectl" }, timeoutMs: 0 })).rejects.toThrow(
      new RangeError("Cannot wait for health as 'timeoutMs' must be a positive finite number: current value is 0"),
    );
  });

  test("waitForHealth() reports Timeout with the read error when kubectl cannot run", async () => {
    const result = await waitForHealth([{ group: "apps", kind: "Deployment", namespace: "a", name: "web" }], { kubectl: { kubectlPath: "/nonexistent/kubectl" }, timeoutMs: 50, intervalMs: 10 });
    expect(result.status).toBe("Timeout");
    expect(result.object).toBe("apps/Deployment/a/web");
    expect(result.reason).toStartWith("not healthy after 0 s: cannot read it: Cannot run `kubectl get --namespace=a Deployment.apps/web");
  });
});
