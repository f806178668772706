/**
 * Health after the apply, with rollouts that really progress (controller-manager, scheduler
 * and kwok): a Deployment that becomes Available is Healthy; one whose Pods can never be
 * scheduled is Degraded once its progress deadline passes, or Timeout when our budget ends
 * first. Either way the build is applied and becomes the current one.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { KubeApi } from "../../lib/kube/api.ts";
import { waitForHealth } from "../../lib/kube/health.ts";
import type { KubeObject } from "../../lib/manifests/bundle.ts";
import { refOf } from "../../lib/manifests/object-ref.ts";
import { createNamespace, createQueue, kubectl, testEnv } from "../env/testenv.ts";
import { configMap, sendBundle } from "../helpers/bundles.ts";
import { connectionOf, testKubeApi } from "../helpers/kube-api.ts";
import { runListenerOnce } from "../helpers/listener-process.ts";
import { readRecord } from "../helpers/record.ts";
import { deployment } from "../helpers/workloads.ts";

let api: KubeApi;

beforeAll(async () => {
  api = await testKubeApi();
}, 300_000);

afterAll(() => api.close());

async function apply(...objects: KubeObject[]): Promise<void> {
  const result = await kubectl(["apply", "--server-side", "-f", "-"], { stdin: JSON.stringify({ apiVersion: "v1", kind: "List", items: objects }) });
  if (result.code !== 0) throw new Error(`kubectl apply failed: ${result.stderr}`);
}

describe("waitForHealth() against kube-apiserver", () => {
  test("waitForHealth() is Healthy once a Deployment has rolled out, and skips kinds it does not check", async () => {
    const ns = await createNamespace("wfh-ok");
    const web = deployment(ns, "web", { replicas: 2 });
    await apply(configMap(ns, "cfg", {}), web);
    const result = await waitForHealth([refOf(configMap(ns, "cfg", {})), refOf(web)], { api, timeoutMs: 60_000, intervalMs: 200 });
    expect(result).toMatchObject({ status: "Healthy", checked: 1 });
  });

  test("waitForHealth() is Degraded, naming the Deployment, once its progress deadline passes", async () => {
    const ns = await createNamespace("wfh-degraded");
    const stuck = deployment(ns, "stuck", { unschedulable: true, progressDeadlineSeconds: 2 });
    await apply(stuck);
    const result = await waitForHealth([refOf(stuck)], { api, timeoutMs: 60_000, intervalMs: 200 });
    expect(result.status).toBe("Degraded");
    expect(result.object).toBe(`apps/Deployment/${ns}/stuck`);
    expect(result.reason).toStartWith("ProgressDeadlineExceeded: ");
  });

  test("waitForHealth() is Timeout for an object that is not there, and a Job that is gone counts as done", async () => {
    const ns = await createNamespace("wfh-missing");
    const result = await waitForHealth(
      [
        { group: "batch", kind: "Job", namespace: ns, name: "finished-and-deleted" },
        { group: "apps", kind: "StatefulSet", namespace: ns, name: "absent" },
      ],
      { api, timeoutMs: 500, intervalMs: 100 },
    );
    expect(result).toMatchObject({ status: "Timeout", checked: 2, object: `apps/StatefulSet/${ns}/absent`, reason: "not healthy after 1 s: not found after the apply" });
  });

  test("waitForHealth() is Healthy for an Established CRD", async () => {
    const group = `h${Math.random().toString(36).slice(2, 8)}.example.com`;
    const crd = {
      apiVersion: "apiextensions.k8s.io/v1",
      kind: "CustomResourceDefinition",
      metadata: { name: `things.${group}` },
      spec: { group, scope: "Namespaced", names: { plural: "things", kind: "Thing" }, versions: [{ name: "v1", served: true, storage: true, schema: { openAPIV3Schema: { type: "object" } } }] },
    } as KubeObject;
    await apply(crd);
    expect(await waitForHealth([refOf(crd)], { api, timeoutMs: 30_000, intervalMs: 100 })).toMatchObject({ status: "Healthy", checked: 1 });
    await kubectl(["delete", "crd", `things.${group}`, "--wait=false"]);
  });

  test("waitForHealth() keeps waiting while it may not read the objects, and says why when the budget ends", async () => {
    const nobody = new KubeApi(connectionOf((await testEnv()).unprivilegedKubeconfig));
    const result = await waitForHealth([{ group: "apps", kind: "Deployment", namespace: "default", name: "web" }], { api: nobody, timeoutMs: 300, intervalMs: 100 });
    expect(result.status).toBe("Timeout");
    expect(result.reason).toStartWith("not healthy after 0 s: cannot read it: Kubernetes API GET /api");
    expect(result.reason).toContain("403 Forbidden");
    nobody.close();
  });
});


describe("health", () => {
  test("a Deployment that rolls out is recorded Healthy", async () => {
    const ns = await createNamespace("healthy");
    const queue = await createQueue();
    const sent = await sendBundle(queue.url, [configMap(ns, "cfg", {}), deployment(ns, "web", { replicas: 2 })], { timestampMs: 1_000 });
    const run = await runListenerOnce({ queueUrl: queue.url, namespace: ns });
    expect(run.code).toBe(0);
    const record = await readRecord(ns);
    expect(record?.current?.build.id).toBe(sent.build.id);
    const outcome = record?.history[0];
    expect(outcome?.result).toBe("applied");
    expect(outcome?.health).toMatchObject({ status: "Healthy", checked: 1 });
    expect(outcome?.health?.durationMs).toBeLessThan(60_000);
  });

  test("a Deployment whose Pods can never be scheduled is recorded Degraded when its progress deadline passes", async () => {
    const ns = await createNamespace("degraded");
    const queue = await createQueue();
    const sent = await sendBundle(queue.url, [deployment(ns, "stuck", { unschedulable: true, progressDeadlineSeconds: 3 })], { timestampMs: 1_000 });
    const started = Date.now();
    const run = await runListenerOnce({ queueUrl: queue.url, namespace: ns, env: { KUBE_PICO_CD_HEALTH_TIMEOUT_SECONDS: "60" } });
    expect(run.code).toBe(0);
    expect(Date.now() - started).toBeLessThan(60_000);
    const record = await readRecord(ns);
    expect(record?.current?.build.id).toBe(sent.build.id);
    const outcome = record?.history[0];
    expect(outcome?.result).toBe("applied");
    expect(outcome?.health?.status).toBe("Degraded");
    expect(outcome?.health?.object).toBe(`apps/Deployment/${ns}/stuck`);
    expect(outcome?.health?.reason).toStartWith("ProgressDeadlineExceeded: ");
  });

  test("a Deployment still progressing when the health budget ends is recorded Timeout with the reason", async () => {
    const ns = await createNamespace("timeout");
    const queue = await createQueue();
    await sendBundle(queue.url, [deployment(ns, "slow", { unschedulable: true })], { timestampMs: 1_000 });
    const started = Date.now();
    const run = await runListenerOnce({ queueUrl: queue.url, namespace: ns, env: { KUBE_PICO_CD_HEALTH_TIMEOUT_SECONDS: "4" } });
    expect(run.code).toBe(0);
    expect(Date.now() - started).toBeLessThan(30_000);
    const outcome = (await readRecord(ns))?.history[0];
    expect(outcome?.result).toBe("applied");
    expect(outcome?.health).toMatchObject({ status: "Timeout", checked: 1, object: `apps/Deployment/${ns}/slow`, reason: "not healthy after 4 s: 0 of 1 updated replicas available" });
    expect(outcome?.health?.durationMs).toBeGreaterThanOrEqual(4_000);
    expect(outcome?.health?.durationMs).toBeLessThan(10_000);
  });

  test("--no-wait-health records no health", async () => {
    const ns = await createNamespace("nohealth");
    const queue = await createQueue();
    await sendBundle(queue.url, [deployment(ns, "slow", { unschedulable: true })], { timestampMs: 1_000 });
    expect((await runListenerOnce({ queueUrl: queue.url, namespace: ns, args: ["--no-wait-health"] })).code).toBe(0);
    const outcome = (await readRecord(ns))?.history[0];
    expect(outcome?.result).toBe("applied");
    expect(outcome?.health).toBeUndefined();
  });
});

describe("health on shutdown", () => {
  test("SIGTERM during a health wait ends it at once: the build is recorded applied with Timeout, and the process exits 0", async () => {
    const ns = await createNamespace("health-stop");
    const queue = await createQueue();
    const sent = await sendBundle(queue.url, [deployment(ns, "slow", { unschedulable: true })], { timestampMs: 1_000 });
    const { startListener } = await import("../helpers/listener-process.ts");
    const listener = await startListener({ queueUrl: queue.url, namespace: ns, env: { KUBE_PICO_CD_HEALTH_TIMEOUT_SECONDS: "600" } });
    await listener.waitForLog((l) => l.msg === "build applied");
    const stopped = Date.now();
    listener.kill("SIGTERM");
    expect(await listener.exited).toBe(0);
    // Well inside the default 25 s grace: one more look at the objects, then the record.
    expect(Date.now() - stopped).toBeLessThan(15_000);
    const record = await readRecord(ns);
    expect(record?.current?.build.id).toBe(sent.build.id);
    expect(record?.history[0]?.health).toMatchObject({ status: "Timeout", object: `apps/Deployment/${ns}/slow` });
    // The one more look may come before or after the Deployment controller made the ReplicaSet.
    expect(record?.history[0]?.health?.reason).toMatch(
      /^not healthy when the listener stopped after \d+ s: (the controller has not observed generation 1 yet|0 of 1 replicas updated|0 of 1 updated replicas available)$/,
    );
  });
});
