/**
 * The listener when processes die, stop or compete, and when the API server goes away:
 * deploys complete exactly once, shutdown waits for the deploy in hand, two replicas never
 * move the cluster or the record backwards, and an outage heals without a restart.
 */
import { describe, expect, test } from "bun:test";
import type { KubeObject } from "../../lib/manifests/bundle.ts";
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
      await listener.waitForLog((l) => l.msg === "cannot deploy now; the batch is held and tried again");
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

describe("listener: SQS and HTTP", () => {
  test("SQS unreachable at start: the listener backs off without a crash or a busy loop, and deploys once SQS is there", async () => {
    const { freePort } = await import("../env/process.ts");
    const { startDedicatedElasticMQ } = await import("../env/testenv.ts");
    const { CreateQueueCommand, SQSClient } = await import("@aws-sdk/client-sqs");
    const ns = await createNamespace("sqsdown");
    const port = await freePort();
    const queueUrl = `http://127.0.0.1:${port}/000000000000/later`;
    const listener = await startListener({ queueUrl, namespace: ns, env: { KUBE_PICO_CD_ENDPOINT_URL: `http://127.0.0.1:${port}` } });
    let closeRelay = async () => {};
    try {
      // The listener checks its queue at start (lib/sqs/find-queue.ts), retrying while SQS is away.
      await listener.waitForLog((l) => l.msg === "checking the queue failed; backing off" && l.attempt === 3, 30_000);
      const failures = listener.lines.filter((l) => l.msg === "checking the queue failed; backing off");
      // Backing off, not spinning: a handful of attempts over several seconds.
      expect(failures.length).toBeLessThan(10);
      expect(listener.child.exitCode).toBeNull();
      // SQS comes back with the queue already there (a queue missing once SQS answers stops the
      // listener): ElasticMQ on a port of its own, reached on the listener's port by a TCP relay
      // opened once the queue exists.
      const sqs = await startDedicatedElasticMQ();
      const client = new SQSClient({ endpoint: sqs.endpoint, region: "us-east-1" });
      await client.send(new CreateQueueCommand({ QueueName: "later" }));
      const { createServer, connect } = await import("node:net");
      const relay = createServer((socket) => {
        const upstream = connect(Number(new URL(sqs.endpoint).port), "127.0.0.1");
        socket.pipe(upstream).pipe(socket);
        socket.on("error", () => upstream.destroy());
        upstream.on("error", () => socket.destroy());
      });
      await new Promise<void>((ready) => relay.listen(port, "127.0.0.1", ready));
      closeRelay = () => new Promise<void>((done) => relay.close(() => done()));
      const { encodeMessage } = await import("../../lib/wire/message.ts");
      const { SendMessageCommand } = await import("@aws-sdk/client-sqs");
      const { body } = encodeMessage({ build: { id: "after-sqs-outage", timestampMs: 1 }, objects: [configMap(ns, "app", { v: "1" })] });
      await client.send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: body }));
      client.destroy();
      await until("the build recorded", async () => (await readRecord(ns))?.current?.build.id === "after-sqs-outage", 90_000);
    } finally {
      listener.kill("SIGTERM");
      expect(await listener.exited).toBe(0);
      await closeRelay();
    }
  }, 150_000);

  test("a deploy longer than the visibility timeout is kept hidden by the heartbeat: a second replica never receives it", async () => {
    const { writeFileSync, chmodSync, mkdtempSync } = await import("node:fs");
    const { tmpdir } = await import("node:os");
    const { join } = await import("node:path");
    const { testEnv } = await import("../env/testenv.ts");
    const ns = await createNamespace("heartbeat");
    const queue = await createQueue();
    // The real kubectl, slowed down on apply: the deploy then outlasts the 3 s visibility timeout.
    const slow = join(mkdtempSync(join(tmpdir(), "kpcd-slow-")), "kubectl");
    writeFileSync(slow, `#!/bin/sh\ncase " $* " in *" apply "*) sleep 8;; esac\nexec ${(await testEnv()).kubectl} "$@"\n`);
    chmodSync(slow, 0o755);
    const env = { KUBE_PICO_CD_VISIBILITY_TIMEOUT_SECONDS: "3", KUBE_PICO_CD_KUBECTL: slow };
    const listeners = [await startListener({ queueUrl: queue.url, namespace: ns, env }), await startListener({ queueUrl: queue.url, namespace: ns, env })];
    try {
      const sent = await sendBundle(queue.url, [configMap(ns, "app", { v: "slow" })], { timestampMs: 1 });
      await until("the build recorded", async () => (await readRecord(ns))?.current?.build.id === sent.build.id, 60_000);
      const applying = listeners.flatMap((l) => l.lines.filter((line) => line.msg === "applying build"));
      expect(applying).toHaveLength(1);
      expect(applying[0]?.receiveCount).toBe(1);
      // The message is deleted right after the record is written.
      await until("the queue empty", async () => {
        const d = await queueDepth(queue.url);
        return d.visible + d.inFlight === 0;
      });
      expect(listeners.flatMap((l) => l.lines.filter((line) => line.msg === "applying build"))).toHaveLength(1);
    } finally {
      for (const l of listeners) l.kill("SIGTERM");
      for (const l of listeners) await l.exited;
    }
  }, 90_000);

  test("/healthz answers at once and /readyz once SQS and the API server were reached", async () => {
    const ns = await createNamespace("probes");
    const queue = await createQueue();
    const listener = await startListener({ queueUrl: queue.url, namespace: ns, env: { KUBE_PICO_CD_HTTP_PORT: "0", KUBE_PICO_CD_HTTP_HOST: "127.0.0.1" } });
    try {
      const listening = await listener.waitForLog((l) => l.msg === "listening");
      const base = `http://127.0.0.1:${listening.httpPort as number}`;
      expect((await fetch(`${base}/healthz`)).status).toBe(200);
      const ready = await until("/readyz 200", async () => ((await fetch(`${base}/readyz`)).status === 200 ? true : undefined), 30_000);
      expect(ready).toBe(true);
    } finally {
      listener.kill("SIGTERM");
      expect(await listener.exited).toBe(0);
    }
  });
});
