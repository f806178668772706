/**
 * Health after the apply, with rollouts that really progress (controller-manager, scheduler
 * and kwok): a Deployment that becomes Available is Healthy; one whose Pods can never be
 * scheduled is Degraded once its progress deadline passes, or Timeout when our budget ends
 * first. Either way the build is applied and becomes the current one.
 */
import { describe, expect, test } from "bun:test";
import { createNamespace, createQueue } from "../env/testenv.ts";
import { configMap, sendBundle } from "../helpers/bundles.ts";
import { runListenerOnce } from "../helpers/listener-process.ts";
import { readRecord } from "../helpers/record.ts";
import { deployment } from "../helpers/workloads.ts";

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
    expect(record?.history[0]?.health?.reason).toMatch(/^not healthy when the listener stopped after \d+ s: 0 of 1 updated replicas available$/);
  });
});
