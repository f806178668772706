/**
 * The listener when processes die, stop or compete, and when the API server goes away:
 * deploys complete exactly once, shutdown waits for the deploy in hand, two replicas never
 * move the cluster or the record backwards, and an outage heals without a restart.
 */
import { describe, expect, test } from "bun:test";
import type { KubeObject } from "../../lib/bundle.ts";
import { createNamespace, createQueue, kubectl, startDedicatedControlPlane } from "../env/testenv.ts";
import { configMap, queueDepth, sendBundle } from "../helpers/bundles.ts";
import { startListener } from "../helpers/listener-process.ts";
import { readRecord } from "../helpers/record.ts";
import { until } from "../helpers/until.ts";


/** A bundle big enough that its apply takes a noticeable time. */
function manyConfigMaps(ns: string, count: number, version: string): KubeObject[] {
  return Array.from({ length: count }, (_, i) => configMap(ns, `cm-${i}`, { version, filler: "x".repeat(2_000) }));
}

const fast = { KUBE_PICO_CD_VISIBILITY_TIMEOUT_SECONDS: "5" };

describe("listener: resilience", () => {
  test("kill -9 during an apply, then a restart: the deploy completes and is recorded exactly once", async () => {
    const ns = await createNamespace("kill");
    const queue = await createQueue();
    const sent = await sendBundle(queue.url, manyConfigMaps(ns, 300, "1"), { timestampMs: 1_000 });
    const first = await startListener({ queueUrl: queue.url, namespace: ns, env: fast });
    await first.waitForLog((l) => l.msg === "applying build");
    first.kill("SIGKILL");
    expect(await first.exited).toBe("SIGKILL");
    expect((await readRecord(ns))?.current ?? null).toBeNull();

    const second = await startListener({ queueUrl: queue.url, namespace: ns, env: fast });
    try {
      const record = await until("the build recorded", async () => {
        const r = await readRecord(ns);
        return r?.current?.build.id === sent.build.id ? r : undefined;
      });
      expect(record.history.filter((h) => h.result === "applied" && h.buildId === sent.build.id)).toHaveLength(1);
      expect(record.current?.objectCount).toBe(300);
      await until("the queue empty", async () => {
        const d = await queueDepth(queue.url);
        return d.visible + d.inFlight === 0;
      });
    } finally {
      second.kill("SIGTERM");
      await second.exited;
    }
  });

  test("SIGTERM during an apply: the apply finishes, is recorded, and the process exits 0", async () => {
    const ns = await createNamespace("term");
    const queue = await createQueue();
    const listener = await startListener({ queueUrl: queue.url, namespace: ns });
    const sent = await sendBundle(queue.url, manyConfigMaps(ns, 300, "1"), { timestampMs: 1_000 });
    await listener.waitForLog((l) => l.msg === "applying build");
    listener.kill("SIGTERM");
    expect(await listener.exited).toBe(0);
    const messages = listener.lines.map((l) => l.msg);
    expect(messages.indexOf("build applied")).toBeGreaterThan(messages.indexOf("stop requested; finishing the deploy in hand"));
    expect(messages.at(-1)).toBe("stopped");
    expect((await readRecord(ns))?.current?.build.id).toBe(sent.build.id);
    expect(await queueDepth(queue.url)).toEqual({ visible: 0, inFlight: 0, delayed: 0 });
  });

  test("two listeners on one queue, fed interleaved builds: the cluster and the record end on the newest, and the record never moves backwards", async () => {
    const ns = await createNamespace("two");
    const queue = await createQueue();
    const listeners = [await startListener({ queueUrl: queue.url, namespace: ns }), await startListener({ queueUrl: queue.url, namespace: ns })];
    const seen: number[] = [];
    let watching = true;
    const watcher = (async () => {
      while (watching) {
        const ts = (await readRecord(ns))?.current?.build.timestampMs;
        if (ts !== undefined && seen.at(-1) !== ts) seen.push(ts);
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    try {
      for (const ts of [1, 3, 2, 5, 4, 7, 6, 9, 8, 10]) {
        await sendBundle(queue.url, [configMap(ns, "app", { version: String(ts) })], { timestampMs: ts * 1_000 });
        await new Promise((r) => setTimeout(r, 150));
      }
      await until("build 10 recorded and the queue empty", async () => {
        const r = await readRecord(ns);
        const d = await queueDepth(queue.url);
        return r?.current?.build.timestampMs === 10_000 && d.visible + d.inFlight === 0;
      });
    } finally {
      watching = false;
      await watcher;
      for (const l of listeners) l.kill("SIGTERM");
      for (const l of listeners) expect(await l.exited).toBe(0);
    }
    expect((await kubectl(["get", "configmap", "app", "-n", ns, "-o", "jsonpath={.data.version}"])).stdout).toBe("10");
    expect(seen).toEqual([...seen].sort((a, b) => a - b));
    const applied = (await readRecord(ns))!.history.filter((h) => h.result === "applied").map((h) => h.timestampMs!);
    expect(applied).toEqual([...applied].sort((a, b) => b - a));
    // Both replicas took part.
    expect(listeners.every((l) => l.lines.some((line) => line.msg === "applying build" || line.msg.includes("superseded") || line.msg.includes("duplicate")))).toBe(true);
  }, 120_000);

  test("the API server stopped for a while: the listener recovers and applies after it returns, without a restart", async () => {
    const cp = await startDedicatedControlPlane();
    const ns = "outage";
    const run = (args: string[]) => kubectl(args, { kubeconfig: cp.kubeconfig });
    expect((await run(["create", "namespace", ns])).code).toBe(0);
    const queue = await createQueue();
    const listener = await startListener({ queueUrl: queue.url, namespace: ns, kubeconfig: cp.kubeconfig, env: fast });
    try {
      await listener.waitForLog((l) => l.msg === "listening");
      await cp.stopApiServer();
      const sent = await sendBundle(queue.url, [configMap(ns, "app", { v: "after-outage" })], { timestampMs: 1_000 });
      await listener.waitForLog((l) => l.msg === "the batch could not be handled; its messages stay for a retry");
      await new Promise((r) => setTimeout(r, 3_000));
      expect(listener.child.exitCode).toBeNull();
      await cp.startApiServer();
      const record = await until("the build recorded after the outage", async () => {
        const r = await readRecord(ns, { kubeconfig: cp.kubeconfig }).catch(() => undefined);
        return r?.current?.build.id === sent.build.id ? r : undefined;
      }, 90_000);
      expect(record.history[0]?.result).toBe("applied");
      expect((await run(["get", "configmap", "app", "-n", ns, "-o", "jsonpath={.data.v}"])).stdout).toBe("after-outage");
      expect(listener.child.exitCode).toBeNull();
    } finally {
      listener.kill("SIGTERM");
      expect(await listener.exited).toBe(0);
    }
  }, 150_000);
});
