/**
 * Many apps through one listener, asserted on the cluster and the records: each app's stream
 * ends on its own newest build on a standard and on a FIFO queue, no app prunes or takes
 * another's objects, one app's long health wait never delays another's deploy, the apps
 * configuration places and limits each app's objects, a record from before apps is adopted
 * as it is, and a record deleted by hand is rebuilt from the ownership marks.
 */
import { describe, expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createNamespace, createQueue, kubectl } from "../env/testenv.ts";
import { configMap, queueDepth, sendAppBundle, sendBundle } from "../helpers/bundles.ts";
import { startListener, type ListenerProcess } from "../helpers/listener-process.ts";
import { readRecord } from "../helpers/record.ts";
import { until } from "../helpers/until.ts";
import { deployment } from "../helpers/workloads.ts";
import { APP_LABEL, INSTANCE_LABEL } from "../../lib/listener/ownership.ts";
import { encodeRecord, type VersionRecord } from "../../lib/kube/record.ts";

const fast = { KUBE_PICO_CD_VISIBILITY_TIMEOUT_SECONDS: "5", KUBE_PICO_CD_HEALTH_TIMEOUT_SECONDS: "5" };

async function stopped(listener: ListenerProcess | undefined): Promise<void> {
  if (listener === undefined || listener.child.exitCode !== null || listener.child.signalCode !== null) return;
  listener.kill("SIGTERM");
  await listener.exited;
}

/** The record of `app` in the listener's namespace `ns`. */
const recordOf = (ns: string, app: string) => readRecord(ns, { name: app === "default" ? "kube-pico-cd-state" : `kube-pico-cd-state-${app}` });

async function configMapJson(ns: string, name: string): Promise<{ data?: Record<string, string>; metadata: { labels?: Record<string, string>; resourceVersion: string; uid: string } } | undefined> {
  const got = await kubectl(["get", "configmap", name, "-n", ns, "-o", "json"]);
  return got.code === 0 ? JSON.parse(got.stdout) : undefined;
}

async function configMapNames(ns: string): Promise<string[]> {
  const got = await kubectl(["get", "configmaps", "-n", ns, "-o", "jsonpath={.items[*].metadata.name}"]);
  return got.stdout.split(" ").filter((n) => n !== "" && n !== "kube-root-ca.crt" && !n.startsWith("kube-pico-cd-state")).sort();
}

async function drained(queueUrl: string): Promise<void> {
  await until("the queue drained", async () => {
    const d = await queueDepth(queueUrl);
    return d.visible + d.inFlight + d.delayed === 0;
  }, 60_000);
}

describe("many apps through one listener", () => {
  for (const fifo of [false, true]) {
    test(`apps A and B published interleaved to one ${fifo ? "FIFO" : "standard"} queue: each ends on its own newest build, neither prunes the other's objects, each history holds only its own builds`, async () => {
      const ns = await createNamespace(fifo ? "apps-fifo" : "apps-std");
      const queue = await createQueue({ fifo });
      // A's builds drop a-old and B's drop b-old: each prune must take only its own.
      for (const [t, n] of [
        [1_000, "1"],
        [2_000, "2"],
        [3_000, "3"],
      ] as const) {
        await sendAppBundle(queue.url, "a", [configMap(ns, "a-main", { build: `a${n}` }), ...(n === "1" ? [configMap(ns, "a-old", { build: "a1" })] : [])], { timestampMs: t, id: `a${n}` }, { fifo });
        await sendAppBundle(queue.url, "b", [configMap(ns, "b-main", { build: `b${n}` }), ...(n === "1" ? [configMap(ns, "b-old", { build: "b1" })] : [])], { timestampMs: t + 500, id: `b${n}` }, { fifo });
      }
      const listener = await startListener({ queueUrl: queue.url, namespace: ns, env: fast });
      try {
        await until("both apps on build 3", async () => (await recordOf(ns, "a"))?.current?.build.id === "a3" && (await recordOf(ns, "b"))?.current?.build.id === "b3", 90_000);
        await drained(queue.url);
        // Build 1 of each app may have been superseded before it was ever applied: then its
        // "-old" object was never created. Either way it is gone now, and the other app's main object stays.
        expect(await configMapNames(ns)).toEqual(["a-main", "b-main"]);
        expect((await configMapJson(ns, "a-main"))?.data).toEqual({ build: "a3" });
        expect((await configMapJson(ns, "b-main"))?.data).toEqual({ build: "b3" });
        const a = (await recordOf(ns, "a"))!;
        const b = (await recordOf(ns, "b"))!;
        expect(a.history.map((h) => h.buildId).every((id) => id?.startsWith("a"))).toBe(true);
        expect(b.history.map((h) => h.buildId).every((id) => id?.startsWith("b"))).toBe(true);
        expect(a.history.every((h) => h.app === "a")).toBe(true);
        expect(a.inventory.map((o) => o.name)).toEqual(["a-main"]);
        expect(b.inventory.map((o) => o.name)).toEqual(["b-main"]);
        // Each build was handled once: applied or superseded, never twice.
        expect(a.history.map((h) => h.buildId).sort()).toEqual(["a1", "a2", "a3"]);
        expect((await configMapJson(ns, "a-main"))?.metadata.labels).toMatchObject({ [APP_LABEL]: "a", [INSTANCE_LABEL]: ns });
        // The default app was never written to.
        expect(await recordOf(ns, "default")).toBeUndefined();
      } finally {
        await stopped(listener);
      }
    }, 150_000);
  }

  test("B's bundle holds A's ConfigMap: B is rejected whole with ownership-conflict naming it, nothing of B is applied, A is untouched; handed over, B takes it", async () => {
    const ns = await createNamespace("apps-own");
    const queue = await createQueue({ deadLetter: { maxReceiveCount: 5 } });
    const listener = await startListener({ queueUrl: queue.url, namespace: ns, env: fast });
    try {
      await sendAppBundle(queue.url, "a", [configMap(ns, "shared", { owner: "a" }), configMap(ns, "a-only", { v: "1" })], { timestampMs: 1_000, id: "a1" });
      await until("A applied", async () => (await recordOf(ns, "a"))?.current?.build.id === "a1");
      const before = (await configMapJson(ns, "shared"))!;

      await sendAppBundle(queue.url, "b", [configMap(ns, "b-only", { v: "1" }), configMap(ns, "shared", { owner: "b" })], { timestampMs: 2_000, id: "b1" });
      const b = await until("B rejected", async () => {
        const r = await recordOf(ns, "b");
        return r?.history.find((h) => h.buildId === "b1") ? r : undefined;
      });
      const outcome = b.history.find((h) => h.buildId === "b1")!;
      expect(outcome.result).toBe("rejected");
      expect(outcome.error).toStartWith("ownership-conflict:");
      expect(outcome.error).toContain(`ConfigMap ${ns}/shared is owned by app "a"`);
      expect(b.current).toBeNull();
      expect(b.inflight).toBeNull();
      expect(await configMapJson(ns, "b-only")).toBeUndefined();
      const after = (await configMapJson(ns, "shared"))!;
      expect(after.data).toEqual({ owner: "a" });
      expect(after.metadata.resourceVersion).toBe(before.metadata.resourceVersion);
      // Curable by a hand-over: it waits in the dead-letter queue, not lost.
      await until("B's message in the dead-letter queue", async () => (await queueDepth(queue.deadLetterUrl!)).visible === 1);

      // A hands it over; B's next build takes it, and A's next build (without it) leaves it alone.
      expect((await kubectl(["annotate", "configmap", "shared", "-n", ns, "kube-pico-cd.io/hand-over-to=b"])).code).toBe(0);
      await sendAppBundle(queue.url, "b", [configMap(ns, "b-only", { v: "2" }), configMap(ns, "shared", { owner: "b" })], { timestampMs: 3_000, id: "b2" });
      await until("B applied", async () => (await recordOf(ns, "b"))?.current?.build.id === "b2");
      expect((await configMapJson(ns, "shared"))?.metadata.labels?.[APP_LABEL]).toBe("b");
      await sendAppBundle(queue.url, "a", [configMap(ns, "a-only", { v: "2" })], { timestampMs: 4_000, id: "a2" });
      const a2 = await until("A's next build applied", async () => {
        const r = await recordOf(ns, "a");
        return r?.current?.build.id === "a2" ? r : undefined;
      });
      expect((await configMapJson(ns, "shared"))?.data).toEqual({ owner: "b" });
      expect(a2.history[0]?.kept?.map((k) => k.name)).toEqual(["shared"]);
    } finally {
      await stopped(listener);
    }
  }, 120_000);

  test("A's Deployment never becomes ready (health wait 120 s) while B publishes twice: both of B's builds are recorded within seconds, before A's wait ends", async () => {
    const ns = await createNamespace("apps-slow");
    const queue = await createQueue();
    const listener = await startListener({ queueUrl: queue.url, namespace: ns, env: { ...fast, KUBE_PICO_CD_HEALTH_TIMEOUT_SECONDS: "120" } });
    try {
      await listener.waitForLog((l) => l.msg === "listening");
      await sendAppBundle(queue.url, "a", [deployment(ns, "never-ready", { unschedulable: true })], { timestampMs: 1_000, id: "a1" });
      await listener.waitForLog((l) => l.msg === "build applied" && l["build"] === "a1", 30_000);
      const started = Date.now();
      await sendAppBundle(queue.url, "b", [configMap(ns, "b", { v: "1" })], { timestampMs: 2_000, id: "b1" });
      await until("B's first build recorded", async () => (await recordOf(ns, "b"))?.current?.build.id === "b1", 30_000);
      await sendAppBundle(queue.url, "b", [configMap(ns, "b", { v: "2" })], { timestampMs: 3_000, id: "b2" });
      await until("B's second build recorded", async () => (await recordOf(ns, "b"))?.current?.build.id === "b2", 30_000);
      const took = Date.now() - started;
      console.log(`measured: two builds of app b recorded ${took} ms after app a's health wait began`);
      expect(took).toBeLessThan(30_000);
      // A is still waiting: its build is in flight, not recorded.
      const a = await recordOf(ns, "a");
      expect(a?.current).toBeNull();
      expect(a?.inflight?.build.id).toBe("a1");
    } finally {
      await stopped(listener);
    }
  }, 120_000);

  test("the apps configuration: an object without a namespace lands in its app's default namespace; one outside the app's namespaces gets the whole bundle rejected; an app it does not name is refused into the default record", async () => {
    const ns = await createNamespace("apps-scope");
    const shopNs = await createNamespace("shop");
    const queue = await createQueue({ deadLetter: { maxReceiveCount: 5 } });
    const dir = mkdtempSync(join(tmpdir(), "kpcd-apps-"));
    const file = join(dir, "apps.yaml");
    writeFileSync(file, `apps:\n  - name: shop\n    namespaces: [${shopNs}]\n    defaultNamespace: ${shopNs}\nunknownApps: refuse\n`);
    const listener = await startListener({ queueUrl: queue.url, namespace: ns, env: { ...fast, KUBE_PICO_CD_APPS_CONFIG: file } });
    try {
      const unplaced = { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "settings" }, data: { v: "1" } };
      await sendAppBundle(queue.url, "shop", [unplaced as never], { timestampMs: 1_000, id: "s1" });
      const shop = await until("shop applied", async () => {
        const r = await recordOf(ns, "shop");
        return r?.current?.build.id === "s1" ? r : undefined;
      });
      expect((await configMapJson(shopNs, "settings"))?.data).toEqual({ v: "1" });
      expect(await configMapJson(ns, "settings")).toBeUndefined();
      expect(shop.inventory).toEqual([{ group: "", kind: "ConfigMap", namespace: shopNs, name: "settings" }]);

      // One object outside the scope: nothing of the bundle is applied.
      await sendAppBundle(queue.url, "shop", [configMap(shopNs, "in-scope", { v: "2" }), configMap(ns, "outside", { v: "2" })], { timestampMs: 2_000, id: "s2" });
      const refused = await until("s2 rejected", async () => (await recordOf(ns, "shop"))?.history.find((h) => h.buildId === "s2"));
      expect(refused.result).toBe("rejected");
      expect(refused.error).toStartWith("scope:");
      expect(refused.error).toContain(`ConfigMap ${ns}/outside`);
      expect(await configMapJson(shopNs, "in-scope")).toBeUndefined();
      expect(await configMapJson(ns, "outside")).toBeUndefined();

      // An app the file does not name: refused, recorded in the default app's record, no record of its own.
      await sendAppBundle(queue.url, "stranger", [configMap(ns, "stranger", { v: "1" })], { timestampMs: 3_000, id: "x1" });
      const stranger = await until("stranger refused", async () => (await recordOf(ns, "default"))?.history.find((h) => h.buildId === "x1"));
      expect(stranger.result).toBe("rejected");
      expect(stranger.app).toBe("stranger");
      expect(stranger.error).toStartWith("unknown-app:");
      expect(await recordOf(ns, "stranger")).toBeUndefined();
      expect(await configMapJson(ns, "stranger")).toBeUndefined();
      await until("the curable rejections in the dead-letter queue", async () => (await queueDepth(queue.deadLetterUrl!)).visible === 2);
    } finally {
      await stopped(listener);
    }
  }, 120_000);

  test("upgrade in place: a record written before apps is adopted as the default app's, nothing changes, the history is kept, and the next default build prunes its unmarked objects as before", async () => {
    const ns = await createNamespace("apps-upgrade");
    const queue = await createQueue();
    // As a listener from before apps left things: unmarked objects and a record without "marks".
    for (const name of ["keep", "drop"]) expect((await kubectl(["apply", "--server-side", "--field-manager=kube-pico-cd", "-f", "-"], { stdin: JSON.stringify(configMap(ns, name, { v: "old" })) })).code).toBe(0);
    const old: VersionRecord = {
      current: { build: { id: "old-1", timestampMs: 1_000 }, digest: "0".repeat(64), appliedAt: "2026-01-01T00:00:00.000Z", messageId: "m-old", objectCount: 2 },
      inflight: null,
      inventory: [
        { group: "", kind: "ConfigMap", namespace: ns, name: "keep" },
        { group: "", kind: "ConfigMap", namespace: ns, name: "drop" },
      ],
      history: [{ result: "applied", time: "2026-01-01T00:00:00.000Z", buildId: "old-1", timestampMs: 1_000, messageId: "m-old" }],
    };
    const data = encodeRecord(old);
    delete data["marks"];
    const legacy = { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "kube-pico-cd-state", namespace: ns, labels: { "app.kubernetes.io/managed-by": "kube-pico-cd", "app.kubernetes.io/component": "state" } }, data };
    expect((await kubectl(["create", "-f", "-"], { stdin: JSON.stringify(legacy) })).code).toBe(0);
    const recordBefore = (await configMapJson(ns, "kube-pico-cd-state"))!;
    const keepBefore = (await configMapJson(ns, "keep"))!;

    let listener = await startListener({ queueUrl: queue.url, namespace: ns, env: fast });
    try {
      await listener.waitForLog((l) => l.msg === "listening");
      await new Promise((r) => setTimeout(r, 3_000));
      // Started, idle: nothing written, nothing applied or pruned.
      expect((await configMapJson(ns, "kube-pico-cd-state"))?.metadata.resourceVersion).toBe(recordBefore.metadata.resourceVersion);
      expect((await configMapJson(ns, "keep"))?.metadata.resourceVersion).toBe(keepBefore.metadata.resourceVersion);
      await stopped(listener);

      // The status overview shows it as the default app, with its history.
      listener = await startListener({ queueUrl: queue.url, namespace: ns, env: fast });
      await sendBundle(queue.url, [configMap(ns, "keep", { v: "new" })], { timestampMs: 2_000, id: "new-1" });
      const after = await until("the default app's next build", async () => {
        const r = await recordOf(ns, "default");
        return r?.current?.build.id === "new-1" ? r : undefined;
      });
      expect(after.history.map((h) => h.buildId)).toEqual(["new-1", "old-1"]);
      expect(after.history[0]?.pruned?.map((p) => p.name)).toEqual(["drop"]);
      expect(await configMapJson(ns, "drop")).toBeUndefined();
      expect((await configMapJson(ns, "keep"))?.metadata.labels?.[APP_LABEL]).toBe("default");
      expect(after.unmarkedInventory).toBeUndefined();
    } finally {
      await stopped(listener);
    }
  }, 120_000);

  test("an app's record deleted by hand: the next build of that app prunes exactly what it owned, not another app's objects", async () => {
    const ns = await createNamespace("apps-lost");
    const queue = await createQueue();
    const listener = await startListener({ queueUrl: queue.url, namespace: ns, env: fast });
    try {
      await sendAppBundle(queue.url, "a", [configMap(ns, "a-1", { v: "1" }), configMap(ns, "a-2", { v: "1" })], { timestampMs: 1_000, id: "a1" });
      await sendAppBundle(queue.url, "b", [configMap(ns, "b-1", { v: "1" })], { timestampMs: 1_000, id: "b1" });
      await until("both applied", async () => (await recordOf(ns, "a"))?.current?.build.id === "a1" && (await recordOf(ns, "b"))?.current?.build.id === "b1");
      // Someone else's object, and one applied by hand: neither carries A's mark.
      expect((await kubectl(["create", "configmap", "by-hand", "-n", ns])).code).toBe(0);
      expect((await kubectl(["delete", "configmap", "kube-pico-cd-state-a", "-n", ns])).code).toBe(0);

      await sendAppBundle(queue.url, "a", [configMap(ns, "a-1", { v: "2" })], { timestampMs: 2_000, id: "a2" });
      const a = await until("A's next build", async () => {
        const r = await recordOf(ns, "a");
        return r?.current?.build.id === "a2" ? r : undefined;
      });
      expect(a.history[0]?.pruned?.map((p) => p.name)).toEqual(["a-2"]);
      expect(await configMapNames(ns)).toEqual(["a-1", "b-1", "by-hand"]);
      expect(a.inventory.map((o) => o.name)).toEqual(["a-1"]);
    } finally {
      await stopped(listener);
    }
  }, 120_000);

  test("rejections create no record: an unsigned body naming a new app is recorded in the default app's record, and the app's own record appears only with a build that passes every check", async () => {
    const ns = await createNamespace("apps-norecord");
    const queue = await createQueue();
    const listener = await startListener({ queueUrl: queue.url, namespace: ns, env: fast });
    try {
      const { sendRaw } = await import("../helpers/bundles.ts");
      for (const app of ["x1", "x2", "x3"]) await sendRaw(queue.url, JSON.stringify({ kind: "kube-pico-cd.bundle", version: 1, app }));
      const rejected = await until("three rejections in the default record", async () => {
        const r = await recordOf(ns, "default");
        return r !== undefined && r.history.filter((h) => h.result === "rejected").length === 3 ? r : undefined;
      });
      expect(rejected.history.map((h) => h.app).sort()).toEqual(["x1", "x2", "x3"]);
      for (const app of ["x1", "x2", "x3"]) expect(await recordOf(ns, app)).toBeUndefined();
      await sendAppBundle(queue.url, "x1", [configMap(ns, "x1", { v: "1" })], { timestampMs: 1_000, id: "x1-1" });
      await until("x1's first build", async () => (await recordOf(ns, "x1"))?.current?.build.id === "x1-1");
      await drained(queue.url);
    } finally {
      await stopped(listener);
    }
  }, 120_000);
});
