/**
 * The deploy path under faults, asserted on the final state of the cluster and the record:
 * one kubectl process per deploy and none for anything else; the in-flight intent that keeps
 * an older build from overtaking one that may be live after a SIGKILL; an API outage and a
 * long Lease wait that spend no retries; and a frozen replica that, resumed, changes nothing.
 */
import { describe, expect, test } from "bun:test";
import { chmodSync, mkdtempSync, readFileSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createNamespace, createQueue, kubectl, startDedicatedControlPlane, testEnv } from "../env/testenv.ts";
import { configMap, queueDepth, sendBundle, sendRaw } from "../helpers/bundles.ts";
import { startListener, type ListenerProcess } from "../helpers/listener-process.ts";
import { readRecord } from "../helpers/record.ts";
import { until } from "../helpers/until.ts";
import { deployment } from "../helpers/workloads.ts";

/** A kubectl that logs each start (one line of its arguments) and then runs the real one. */
async function countingKubectl(): Promise<{ path: string; starts: () => string[] }> {
  const env = await testEnv();
  const dir = mkdtempSync(join(tmpdir(), "kpcd-kubectl-count-"));
  const log = join(dir, "starts.log");
  const path = join(dir, "kubectl");
  writeFileSync(path, `#!/bin/sh\nprintf '%s\\n' "$*" >> '${log}'\nexec '${env.kubectl}' "$@"\n`);
  chmodSync(path, 0o755);
  return { path, starts: () => (existsSync(log) ? readFileSync(log, "utf8").split("\n").filter((l) => l !== "") : []) };
}

async function configMapValue(ns: string, name: string, key: string, kubeconfig?: string): Promise<string | undefined> {
  const got = await kubectl(["get", "configmap", name, "-n", ns, "-o", `jsonpath={.data.${key}}`], kubeconfig === undefined ? {} : { kubeconfig });
  return got.code === 0 ? got.stdout : undefined;
}

async function stopped(listener: ListenerProcess): Promise<void> {
  if (listener.child.exitCode !== null || listener.child.signalCode !== null) return;
  listener.kill("SIGTERM");
  await listener.exited;
}

const fast = { KUBE_PICO_CD_VISIBILITY_TIMEOUT_SECONDS: "5" };

describe("deploy core", () => {
  test("kubectl processes: a small deploy starts exactly one; a duplicate, a superseded and a rejected message none; 60 s idle none", async () => {
    const ns = await createNamespace("count");
    const queue = await createQueue();
    const counter = await countingKubectl();
    const listener = await startListener({ queueUrl: queue.url, namespace: ns, env: { ...fast, KUBE_PICO_CD_KUBECTL: counter.path } });
    try {
      await listener.waitForLog((l) => l.msg === "listening");
      const sent = await sendBundle(queue.url, [configMap(ns, "a", { v: "1" }), configMap(ns, "b", { v: "1" })], { timestampMs: 2_000 });
      await until("the build recorded", async () => (await readRecord(ns))?.current?.build.id === sent.build.id);
      // The outcome's Event and the result are sent after the record: give them a moment.
      await new Promise((r) => setTimeout(r, 1_000));
      expect(counter.starts()).toHaveLength(1);
      expect(counter.starts()[0]).toContain("apply --server-side");

      await sendRaw(queue.url, sent.body);
      await sendBundle(queue.url, [configMap(ns, "a", { v: "old" })], { timestampMs: 1_000 });
      await sendRaw(queue.url, "this is not a bundle");
      await until("duplicate, superseded and rejected recorded", async () => {
        const results = (await readRecord(ns))?.history.map((h) => h.result) ?? [];
        return ["duplicate", "superseded", "rejected"].every((r) => results.includes(r as never));
      });
      await until("the queue empty", async () => {
        const d = await queueDepth(queue.url);
        return d.visible + d.inFlight === 0;
      });
      expect(counter.starts()).toHaveLength(1);

      await new Promise((r) => setTimeout(r, 60_000));
      expect(counter.starts()).toHaveLength(1);
      expect(await configMapValue(ns, "a", "v")).toBe("1");
    } finally {
      await stopped(listener);
    }
  }, 150_000);

  test("SIGKILL during the health wait of C after A was recorded, then B (older than C) published: the cluster and the record end on C, never B, and C's objects are pruned later", async () => {
    const ns = await createNamespace("intent");
    const queue = await createQueue();
    const first = await startListener({ queueUrl: queue.url, namespace: ns, env: { ...fast, KUBE_PICO_CD_HEALTH_TIMEOUT_SECONDS: "120" } });
    let second: ListenerProcess | undefined;
    const seen: string[] = [];
    let watching = true;
    try {
      const a = await sendBundle(queue.url, [configMap(ns, "shared", { build: "A" })], { timestampMs: 1_000, id: "A" });
      await until("A recorded", async () => (await readRecord(ns))?.current?.build.id === a.build.id);
      const c = await sendBundle(queue.url, [configMap(ns, "shared", { build: "C" }), configMap(ns, "c-only", { build: "C" }), deployment(ns, "slow", { unschedulable: true })], {
        timestampMs: 3_000,
        id: "C",
      });
      await first.waitForLog((l) => l.msg === "build applied" && l["build"] === "C");
      first.kill("SIGKILL");
      expect(await first.exited).toBe("SIGKILL");
      const interrupted = await readRecord(ns);
      expect(interrupted?.current?.build.id).toBe("A");
      expect(interrupted?.inflight?.build.id).toBe("C");
      expect(await configMapValue(ns, "shared", "build")).toBe("C");

      const watcher = (async () => {
        while (watching) {
          const v = await configMapValue(ns, "shared", "build");
          if (v !== undefined && seen.at(-1) !== v) seen.push(v);
          await new Promise((r) => setTimeout(r, 100));
        }
      })();
      await sendBundle(queue.url, [configMap(ns, "shared", { build: "B" })], { timestampMs: 2_000, id: "B" });
      second = await startListener({ queueUrl: queue.url, namespace: ns, env: { ...fast, KUBE_PICO_CD_HEALTH_TIMEOUT_SECONDS: "3" } });
      const onC = await until("C recorded after the restart", async () => {
        const r = await readRecord(ns);
        return r?.current?.build.id === c.build.id && r.history.some((h) => h.buildId === "B") ? r : undefined;
      }, 90_000);
      expect(onC.inflight).toBeNull();
      expect(onC.history.filter((h) => h.buildId === "B").map((h) => h.result)).toEqual(["superseded"]);
      expect(await configMapValue(ns, "shared", "build")).toBe("C");

      await sendBundle(queue.url, [configMap(ns, "shared", { build: "D" })], { timestampMs: 4_000, id: "D" });
      await until("D recorded", async () => (await readRecord(ns))?.current?.build.id === "D", 60_000);
      watching = false;
      await watcher;
      expect(seen).not.toContain("B");
      expect(seen.at(-1)).toBe("D");
      expect((await kubectl(["get", "configmap", "c-only", "-n", ns])).code).not.toBe(0);
      expect((await kubectl(["get", "deployment", "slow", "-n", ns, "-o", "jsonpath={.metadata.deletionTimestamp}"])).stdout !== "" || (await kubectl(["get", "deployment", "slow", "-n", ns])).code !== 0).toBe(true);
      expect(await queueDepth(queue.url)).toEqual({ visible: 0, inFlight: 0, delayed: 0 });
    } finally {
      watching = false;
      await stopped(first);
      if (second) await stopped(second);
    }
  }, 180_000);

  test("the API server down for 90 s while 5 builds are published (maxReceiveCount 3): the newest is applied and recorded, the dead-letter queue stays empty", async () => {
    const cp = await startDedicatedControlPlane();
    const ns = "outage-five";
    expect((await kubectl(["create", "namespace", ns], { kubeconfig: cp.kubeconfig })).code).toBe(0);
    const queue = await createQueue({ deadLetter: { maxReceiveCount: 3 } });
    const listener = await startListener({ queueUrl: queue.url, namespace: ns, kubeconfig: cp.kubeconfig, env: fast });
    try {
      await listener.waitForLog((l) => l.msg === "listening");
      await cp.stopApiServer();
      for (let i = 1; i <= 5; i++) await sendBundle(queue.url, [configMap(ns, "app", { v: String(i) })], { timestampMs: i * 1_000, id: `build-${i}` });
      await new Promise((r) => setTimeout(r, 90_000));
      expect(listener.child.exitCode).toBeNull();
      await cp.startApiServer();
      const record = await until("the newest build recorded after the outage", async () => {
        const r = await readRecord(ns, { kubeconfig: cp.kubeconfig }).catch(() => undefined);
        return r?.current?.build.id === "build-5" ? r : undefined;
      }, 90_000);
      expect(record.history.find((h) => h.buildId === "build-5")?.result).toBe("applied");
      expect(record.history.some((h) => h.result === "failed")).toBe(false);
      expect(await configMapValue(ns, "app", "v", cp.kubeconfig)).toBe("5");
      await until("the queue empty", async () => {
        const d = await queueDepth(queue.url);
        return d.visible + d.inFlight + d.delayed === 0;
      });
      expect(await queueDepth(queue.deadLetterUrl!)).toEqual({ visible: 0, inFlight: 0, delayed: 0 });
    } finally {
      await stopped(listener);
    }
  }, 240_000);

  const holdSeconds = Number(process.env.KPCD_LONG_HOLD_SECONDS ?? "300");
  test(`two replicas: one holds the Lease for ${holdSeconds} s (a long health wait) while builds arrive at the other: all are recorded, none dead-lettered`, async () => {
    const ns = await createNamespace("hold");
    const queue = await createQueue({ deadLetter: { maxReceiveCount: 3 } });
    const env = { ...fast, KUBE_PICO_CD_HEALTH_TIMEOUT_SECONDS: String(holdSeconds) };
    const r1 = await startListener({ queueUrl: queue.url, namespace: ns, env });
    let r2: ListenerProcess | undefined;
    try {
      await sendBundle(queue.url, [configMap(ns, "app", { v: "1" }), deployment(ns, "slow", { unschedulable: true })], { timestampMs: 1_000, id: "build-1" });
      await r1.waitForLog((l) => l.msg === "build applied" && l["build"] === "build-1");
      r2 = await startListener({ queueUrl: queue.url, namespace: ns, env });
      await r2.waitForLog((l) => l.msg === "listening");
      for (let i = 2; i <= 5; i++) await sendBundle(queue.url, [configMap(ns, "app", { v: String(i) })], { timestampMs: i * 1_000, id: `build-${i}` });
      await r2.waitForLog((l) => l.msg === "waiting for the deploy Lease; the batch is held", 30_000);
      const record = await until("every build recorded", async () => {
        const r = await readRecord(ns);
        const ids = new Set(r?.history.map((h) => h.buildId));
        return r?.current?.build.id === "build-5" && [1, 2, 3, 4, 5].every((i) => ids.has(`build-${i}`)) ? r : undefined;
      }, (holdSeconds + 120) * 1_000);
      expect(record.history.some((h) => h.result === "failed")).toBe(false);
      expect(await configMapValue(ns, "app", "v")).toBe("5");
      await until("the queue empty", async () => {
        const d = await queueDepth(queue.url);
        return d.visible + d.inFlight + d.delayed === 0;
      });
      expect(await queueDepth(queue.deadLetterUrl!)).toEqual({ visible: 0, inFlight: 0, delayed: 0 });
    } finally {
      await stopped(r1);
      if (r2) await stopped(r2);
    }
  }, (holdSeconds + 240) * 1_000);

  test("a replica frozen (SIGSTOP) past the Lease: the other takes over and deploys a newer build; the frozen one, resumed, changes nothing", async () => {
    const ns = await createNamespace("frozen");
    const queue = await createQueue({ deadLetter: { maxReceiveCount: 5 } });
    const env = { ...fast, KUBE_PICO_CD_HEALTH_TIMEOUT_SECONDS: "10" };
    const r1 = await startListener({ queueUrl: queue.url, namespace: ns, env });
    let r2: ListenerProcess | undefined;
    try {
      await sendBundle(queue.url, [configMap(ns, "shared", { build: "1" }), deployment(ns, "slow", { unschedulable: true })], { timestampMs: 1_000, id: "build-1" });
      await r1.waitForLog((l) => l.msg === "build applied" && l["build"] === "build-1");
      r1.kill("SIGSTOP");
      r2 = await startListener({ queueUrl: queue.url, namespace: ns, env });
      // r1's message comes back after its visibility timeout; r2 finishes the interrupted build.
      await until("build-1 recorded by the other replica", async () => (await readRecord(ns))?.current?.build.id === "build-1", 90_000);
      await sendBundle(queue.url, [configMap(ns, "shared", { build: "2" })], { timestampMs: 2_000, id: "build-2" });
      await until("build-2 recorded", async () => (await readRecord(ns))?.current?.build.id === "build-2", 60_000);
      const before = await readRecord(ns);
      r1.kill("SIGCONT");
      await r1.waitForLog((l) => /Lost the deploy Lease/.test(JSON.stringify(l)), 30_000);
      await new Promise((r) => setTimeout(r, 10_000));
      const after = await readRecord(ns);
      expect(after?.current).toEqual(before!.current);
      expect(after?.inventory).toEqual(before!.inventory);
      expect(after?.inflight ?? null).toBeNull();
      expect(await configMapValue(ns, "shared", "build")).toBe("2");
      expect(r1.child.exitCode).toBeNull();
    } finally {
      r1.kill("SIGCONT");
      await stopped(r1);
      if (r2) await stopped(r2);
    }
  }, 240_000);
});
