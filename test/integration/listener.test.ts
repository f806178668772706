/**
 * The listener end to end, against ElasticMQ and the real API server: what gets applied,
 * what gets recorded, and which messages leave the queue.
 */
import { describe, expect, test } from "bun:test";
import { createNamespace, createQueue, kubectl } from "../env/testenv.ts";
import { configMap, queueDepth, sendBundle, sendRaw } from "../helpers/bundles.ts";
import { runListenerOnce } from "../helpers/listener-process.ts";
import { readRecord } from "../helpers/record.ts";

describe("listener", () => {
  test("applies a published bundle, records the build, and deletes the message", async () => {
    const ns = await createNamespace("deploy");
    const queue = await createQueue();
    const sent = await sendBundle(queue.url, [configMap(ns, "app-config", { color: "blue" })], { timestampMs: 1_700_000_000_000, commit: "abc123" });

    const run = await runListenerOnce({ queueUrl: queue.url, namespace: ns });

    expect(run.code).toBe(0);
    const cm = await kubectl(["get", "configmap", "app-config", "-n", ns, "-o", "jsonpath={.data.color}"]);
    expect(cm.stdout).toBe("blue");
    const record = await readRecord(ns);
    expect(record?.current?.build).toEqual(sent.build);
    expect(record?.current?.digest).toBe(sent.digest);
    expect(record?.current?.messageId).toBe(sent.messageId);
    expect(record?.current?.objectCount).toBe(1);
    expect(record?.inventory).toEqual([{ group: "", kind: "ConfigMap", namespace: ns, name: "app-config" }]);
    expect(record?.history.map((h) => [h.result, h.buildId])).toEqual([["applied", sent.build.id]]);
    expect(await queueDepth(queue.url)).toEqual({ visible: 0, inFlight: 0, delayed: 0 });
  });

  test("a message that is not JSON is recorded as rejected and deleted, and the listener goes on", async () => {
    const ns = await createNamespace("reject");
    const queue = await createQueue();
    const bad = await sendRaw(queue.url, "this is { not json");
    const run = await runListenerOnce({ queueUrl: queue.url, namespace: ns });
    expect(run.code).toBe(0);
    const record = await readRecord(ns);
    expect(record?.current).toBeNull();
    expect(record?.history).toHaveLength(1);
    expect(record?.history[0]?.result).toBe("rejected");
    expect(record?.history[0]?.messageId).toBe(bad.messageId);
    expect(record?.history[0]?.error).toStartWith("invalid-json: ");
    expect(await queueDepth(queue.url)).toEqual({ visible: 0, inFlight: 0, delayed: 0 });
  });
});

describe("listener: newest wins", () => {
  test("out-of-order delivery (newer first, then older) never applies the older build", async () => {
    const ns = await createNamespace("order");
    const queue = await createQueue();
    const newer = await sendBundle(queue.url, [configMap(ns, "app", { version: "2" })], { timestampMs: 2_000 });
    expect((await runListenerOnce({ queueUrl: queue.url, namespace: ns })).code).toBe(0);
    const older = await sendBundle(queue.url, [configMap(ns, "app", { version: "1" }), configMap(ns, "only-in-v1", { a: "b" })], { timestampMs: 1_000 });
    expect((await runListenerOnce({ queueUrl: queue.url, namespace: ns })).code).toBe(0);

    expect((await kubectl(["get", "configmap", "app", "-n", ns, "-o", "jsonpath={.data.version}"])).stdout).toBe("2");
    expect((await kubectl(["get", "configmap", "only-in-v1", "-n", ns])).code).not.toBe(0);
    const record = await readRecord(ns);
    expect(record?.current?.build.id).toBe(newer.build.id);
    expect(record?.history.map((h) => [h.result, h.buildId])).toEqual([
      ["superseded", older.build.id],
      ["applied", newer.build.id],
    ]);
    expect(await queueDepth(queue.url)).toEqual({ visible: 0, inFlight: 0, delayed: 0 });
  });

  test("a batch of five builds applies only the newest; the others are recorded as superseded", async () => {
    const ns = await createNamespace("batch");
    const queue = await createQueue();
    const sent = [];
    for (const ts of [3_000, 5_000, 1_000, 4_000, 2_000]) {
      sent.push(await sendBundle(queue.url, [configMap(ns, "app", { version: String(ts) }), configMap(ns, `only-${ts}`, {})], { timestampMs: ts }));
    }
    const run = await runListenerOnce({ queueUrl: queue.url, namespace: ns });
    expect(run.code).toBe(0);
    expect(run.lines.filter((l) => l.msg === "applying build")).toHaveLength(1);
    expect((await kubectl(["get", "configmap", "app", "-n", ns, "-o", "jsonpath={.data.version}"])).stdout).toBe("5000");
    const others = await kubectl(["get", "configmap", "-n", ns, "-o", "name"]);
    expect(others.stdout.split("\n").filter((n) => n.startsWith("configmap/only-")).sort()).toEqual(["configmap/only-5000"]);
    const record = await readRecord(ns);
    expect(record?.current?.build.timestampMs).toBe(5_000);
    const results = record!.history.map((h) => `${h.result}:${h.timestampMs}`).sort();
    expect(results).toEqual(["applied:5000", "superseded:1000", "superseded:2000", "superseded:3000", "superseded:4000"]);
    expect(await queueDepth(queue.url)).toEqual({ visible: 0, inFlight: 0, delayed: 0 });
  });

  test("the same build delivered again is a duplicate: deleted without applying", async () => {
    const ns = await createNamespace("dup");
    const queue = await createQueue();
    const first = await sendBundle(queue.url, [configMap(ns, "app", { v: "1" })], { timestampMs: 7_000, id: "build-7" });
    await runListenerOnce({ queueUrl: queue.url, namespace: ns });
    // Someone changes the object by hand; a re-applied duplicate would revert it.
    await kubectl(["patch", "configmap", "app", "-n", ns, "--type=merge", "-p", '{"data":{"v":"by-hand"}}']);
    const again = await sendRaw(queue.url, first.body);
    const run = await runListenerOnce({ queueUrl: queue.url, namespace: ns });
    expect(run.lines.filter((l) => l.msg === "applying build")).toHaveLength(0);
    expect((await kubectl(["get", "configmap", "app", "-n", ns, "-o", "jsonpath={.data.v}"])).stdout).toBe("by-hand");
    const record = await readRecord(ns);
    expect(record?.history.map((h) => [h.result, h.messageId])).toEqual([
      ["duplicate", again.messageId],
      ["applied", first.messageId],
    ]);
    expect(await queueDepth(queue.url)).toEqual({ visible: 0, inFlight: 0, delayed: 0 });
  });

  test("two different builds with the same timestamp are ordered by digest, not applied twice (defect 3)", async () => {
    const ns = await createNamespace("sametime");
    const queue = await createQueue();
    const a = await sendBundle(queue.url, [configMap(ns, "app", { v: "a" })], { timestampMs: 9_000 });
    await runListenerOnce({ queueUrl: queue.url, namespace: ns });
    const b = await sendBundle(queue.url, [configMap(ns, "app", { v: "b" })], { timestampMs: 9_000 });
    await runListenerOnce({ queueUrl: queue.url, namespace: ns });
    const bWins = b.digest > a.digest;
    const record = await readRecord(ns);
    expect(record?.current?.digest).toBe(bWins ? b.digest : a.digest);
    expect((await kubectl(["get", "configmap", "app", "-n", ns, "-o", "jsonpath={.data.v}"])).stdout).toBe(bWins ? "b" : "a");
    expect(record?.history.map((h) => [h.result, h.messageId])).toEqual([
      [bWins ? "applied" : "superseded", b.messageId],
      ["applied", a.messageId],
    ]);
  });
});

describe("listener: ordering inside a bundle", () => {
  test("a CRD and a custom resource of that CRD in one bundle deploy in one go", async () => {
    const ns = await createNamespace("crd");
    const queue = await createQueue();
    const group = `${ns}.example.com`;
    const crd = {
      apiVersion: "apiextensions.k8s.io/v1",
      kind: "CustomResourceDefinition",
      metadata: { name: `widgets.${group}` },
      spec: {
        group,
        names: { kind: "Widget", plural: "widgets", singular: "widget" },
        scope: "Namespaced",
        versions: [{ name: "v1", served: true, storage: true, schema: { openAPIV3Schema: { type: "object", properties: { spec: { type: "object", properties: { size: { type: "integer" } } } } } } }],
      },
    };
    const widget = { apiVersion: `${group}/v1`, kind: "Widget", metadata: { name: "w1", namespace: ns }, spec: { size: 3 } };
    // The custom resource comes first in the bundle on purpose.
    await sendBundle(queue.url, [widget, crd] as never, { timestampMs: 1_000 });
    const run = await runListenerOnce({ queueUrl: queue.url, namespace: ns });
    expect(run.code).toBe(0);
    expect((await kubectl(["get", `widgets.${group}`, "w1", "-n", ns, "-o", "jsonpath={.spec.size}"])).stdout).toBe("3");
    expect((await readRecord(ns))?.current?.objectCount).toBe(2);
    await kubectl(["delete", "crd", `widgets.${group}`, "--wait=false"]);
  });

  test("a CRD larger than 262,144 bytes deploys (server-side apply, no last-applied annotation)", async () => {
    const ns = await createNamespace("bigcrd");
    const queue = await createQueue({ attributes: { MaximumMessageSize: "1048576" } });
    const group = `${ns}.example.com`;
    const properties: Record<string, unknown> = {};
    for (let i = 0; properties && i < 2_000; i++) properties[`field${i}`] = { type: "string", description: `Field number ${i} `.repeat(8) };
    const crd = {
      apiVersion: "apiextensions.k8s.io/v1",
      kind: "CustomResourceDefinition",
      metadata: { name: `bigs.${group}` },
      spec: {
        group,
        names: { kind: "Big", plural: "bigs" },
        scope: "Namespaced",
        versions: [{ name: "v1", served: true, storage: true, schema: { openAPIV3Schema: { type: "object", properties: { spec: { type: "object", properties } } } } }],
      },
    };
    expect(JSON.stringify(crd).length).toBeGreaterThan(262_144);
    await sendBundle(queue.url, [crd] as never, { timestampMs: 1_000 });
    const run = await runListenerOnce({ queueUrl: queue.url, namespace: ns });
    expect(run.code).toBe(0);
    expect((await kubectl(["get", "crd", `bigs.${group}`, "-o", "jsonpath={.status.conditions[?(@.type==\"Established\")].status}"])).stdout).toBe("True");
    const record = await readRecord(ns);
    if (!record?.current) {
      // Seen once under heavy load: the CRD applied, yet no current build. Show why.
      throw new Error(`no current build recorded; history ${JSON.stringify(record?.history)}; listener log:\n${run.lines.filter((l) => l.level !== "debug").map((l) => JSON.stringify(l)).join("\n")}\n${run.other.join("")}`);
    }
    expect(record.current.objectCount).toBe(1);
    await kubectl(["delete", "crd", `bigs.${group}`, "--wait=false"]);
  });
});

describe("listener under Deno", () => {
  test("deno run listener.ts --once applies a bundle", async () => {
    const { spawn } = await import("node:child_process");
    const { join } = await import("node:path");
    const { listenerEnv } = await import("../helpers/listener-process.ts");
    const ns = await createNamespace("deno");
    const queue = await createQueue();
    const sent = await sendBundle(queue.url, [configMap(ns, "app", { runtime: "deno" })], { timestampMs: 42 });
    const root = join(import.meta.dir, "..", "..");
    const env = { ...(await listenerEnv({ queueUrl: queue.url, namespace: ns })), KUBE_PICO_CD_ONCE: "true", DENO_NO_UPDATE_CHECK: "1" };
    const code = await new Promise<number | null>((resolve) => {
      const child = spawn(join(root, "node_modules", ".bin", "deno"), ["run", "-A", join(root, "listener.ts")], { env, cwd: root, stdio: "ignore" });
      child.once("exit", resolve);
    });
    expect(code).toBe(0);
    expect((await kubectl(["get", "configmap", "app", "-n", ns, "-o", "jsonpath={.data.runtime}"])).stdout).toBe("deno");
    expect((await readRecord(ns))?.current?.build.id).toBe(sent.build.id);
  });
});
