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
