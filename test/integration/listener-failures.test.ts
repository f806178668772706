/**
 * The listener under failure, against ElasticMQ and the real API server: each defect of the
 * original implementation (ORIGINAL-BEHAVIOUR.md, 1-6) as a test, bad deploys and the
 * dead-letter queue, crashes, shutdown during a deploy, two replicas, and an API outage.
 */
import { describe, expect, test } from "bun:test";
import { gzipSync } from "node:zlib";
import { ReceiveMessageCommand } from "@aws-sdk/client-sqs";
import { createNamespace, createQueue, kubectl, sqsClient, startDedicatedControlPlane, testEnv } from "../env/testenv.ts";
import { bundleBody, configMap, queueDepth, sendBundle, sendRaw } from "../helpers/bundles.ts";
import { runListenerOnce, startListener } from "../helpers/listener-process.ts";
import { readRecord } from "../helpers/record.ts";
import { until } from "../helpers/until.ts";
import { brokenDeployment } from "../helpers/workloads.ts";

const cmValue = async (ns: string, name: string, key: string) => (await kubectl(["get", "configmap", name, "-n", ns, "-o", `jsonpath={.data.${key}}`])).stdout;

describe("listener: the original's defects", () => {
  test("defect 1: a failed apply is not lost: the message stays, the history shows the failure, the dead-letter queue takes it after maxReceiveCount, and newer builds still deploy", async () => {
    const ns = await createNamespace("d1");
    const queue = await createQueue({ deadLetter: { maxReceiveCount: 3 } });
    const bad = await sendBundle(queue.url, [brokenDeployment(ns)], { timestampMs: 1_000 });
    const listener = await startListener({ queueUrl: queue.url, namespace: ns });
    try {
      const record = await until("three failures recorded", async () => {
        const r = await readRecord(ns);
        return r && r.history.filter((h) => h.result === "failed").length >= 3 ? r : undefined;
      });
      expect(record.current).toBeNull();
      expect(record.history[0]?.buildId).toBe(bad.build.id);
      expect(record.history[0]?.error).toContain(`missing required field "selector"`);
      const dead = await until("the message in the dead-letter queue", async () => {
        const got = await (await sqsClient()).send(new ReceiveMessageCommand({ QueueUrl: queue.deadLetterUrl!, WaitTimeSeconds: 1, VisibilityTimeout: 1 }));
        return got.Messages?.[0];
      });
      expect(dead.MessageId).toBe(bad.messageId);
      const good = await sendBundle(queue.url, [configMap(ns, "app", { v: "2" })], { timestampMs: 2_000 });
      await until("the newer build recorded", async () => (await readRecord(ns))?.current?.build.id === good.build.id);
      expect(await cmValue(ns, "app", "v")).toBe("2");
    } finally {
      listener.kill("SIGTERM");
      expect(await listener.exited).toBe(0);
    }
  }, 120_000);

  test("defect 2: when the record cannot be read (forbidden), nothing is applied and the message stays", async () => {
    const ns = await createNamespace("d2");
    const env = await testEnv();
    // The listener's user may use the lock but not read ConfigMaps.
    const rbac = {
      apiVersion: "v1",
      kind: "List",
      items: [
        { apiVersion: "rbac.authorization.k8s.io/v1", kind: "Role", metadata: { name: "lease-only", namespace: ns }, rules: [{ apiGroups: ["coordination.k8s.io"], resources: ["leases"], verbs: ["get", "create", "update"] }] },
        { apiVersion: "rbac.authorization.k8s.io/v1", kind: "RoleBinding", metadata: { name: "lease-only", namespace: ns }, roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: "lease-only" }, subjects: [{ kind: "User", name: "nobody", apiGroup: "rbac.authorization.k8s.io" }] },
      ],
    };
    expect((await kubectl(["apply", "-f", "-"], { stdin: JSON.stringify(rbac) })).code).toBe(0);
    const queue = await createQueue();
    await sendBundle(queue.url, [configMap(ns, "app", { v: "stale" })], { timestampMs: 1 });
    const run = await runListenerOnce({ queueUrl: queue.url, namespace: ns, kubeconfig: env.unprivilegedKubeconfig, env: { KUBE_PICO_CD_VISIBILITY_TIMEOUT_SECONDS: "30" } });
    expect(run.code).toBe(0);
    expect(run.lines.filter((l) => l.msg === "applying build")).toHaveLength(0);
    const warning = run.lines.find((l) => l.msg === "cannot deploy now; the batch goes back to the queue");
    expect(JSON.stringify(warning?.error)).toContain("Cannot read the version record");
    expect(JSON.stringify(warning?.error)).toContain("Forbidden");
    expect((await kubectl(["get", "configmap", "app", "-n", ns])).code).not.toBe(0);
    expect(await queueDepth(queue.url)).toEqual({ visible: 0, inFlight: 1, delayed: 0 });
  });

  test("defect 4: bodies that are not JSON or lack fields never stop the listener", async () => {
    const ns = await createNamespace("d4");
    const queue = await createQueue();
    const listener = await startListener({ queueUrl: queue.url, namespace: ns });
    try {
      await sendRaw(queue.url, "not json at all");
      await sendRaw(queue.url, JSON.stringify({ kind: "kube-pico-cd.bundle", version: 1 }));
      await sendRaw(queue.url, JSON.stringify({ data: { BUILD_TIMESTAMP: "12" } }));
      await sendRaw(queue.url, "[]");
      await until("four rejections recorded", async () => ((await readRecord(ns))?.history.filter((h) => h.result === "rejected").length ?? 0) >= 4);
      const good = await sendBundle(queue.url, [configMap(ns, "app", { v: "ok" })], { timestampMs: 5 });
      await listener.waitForLog((l) => l.msg === "build applied" && l.build === good.build.id);
      expect(listener.child.exitCode).toBeNull();
      const reasons = (await readRecord(ns))!.history.filter((h) => h.result === "rejected").map((h) => h.error!.split(":")[0]).sort();
      expect(reasons).toEqual(["invalid-json", "schema", "schema", "schema"]);
    } finally {
      listener.kill("SIGTERM");
      expect(await listener.exited).toBe(0);
    }
  });

  test("defect 5: malformed YAML in a legacy message is rejected before kubectl runs", async () => {
    const ns = await createNamespace("d5");
    const queue = await createQueue();
    const legacy = { data: { BUILD_TIMESTAMP: "1700000000", COMMIT_HASH: "abc" }, manifests: `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  namespace: ${ns}\ndata: [unclosed\n` };
    const sent = await sendRaw(queue.url, JSON.stringify(legacy));
    const run = await runListenerOnce({ queueUrl: queue.url, namespace: ns });
    expect(run.lines.filter((l) => l.msg === "applying build")).toHaveLength(0);
    const record = await readRecord(ns);
    expect(record?.history.map((h) => [h.result, h.messageId])).toEqual([["rejected", sent.messageId]]);
    expect(record?.history[0]?.error).toMatch(/^invalid-manifests: .*manifests:\d+:\d+: /);
    expect(await queueDepth(queue.url)).toEqual({ visible: 0, inFlight: 0, delayed: 0 });
  });

  test("defect 6: when an apply half-fails, the record keeps the build that was really applied", async () => {
    const ns = await createNamespace("d6");
    const queue = await createQueue();
    const v1 = await sendBundle(queue.url, [configMap(ns, "app", { v: "1" })], { timestampMs: 1_000 });
    await runListenerOnce({ queueUrl: queue.url, namespace: ns });
    const v2 = await sendBundle(queue.url, [configMap(ns, "app", { v: "2" }), brokenDeployment(ns)], { timestampMs: 2_000 });
    await runListenerOnce({ queueUrl: queue.url, namespace: ns, env: { KUBE_PICO_CD_RETRY_BASE_SECONDS: "60", KUBE_PICO_CD_RETRY_MAX_SECONDS: "60" } });
    const record = await readRecord(ns);
    expect(record?.current?.build.id).toBe(v1.build.id);
    expect(record?.history.map((h) => [h.result, h.buildId])).toEqual([
      ["failed", v2.build.id],
      ["applied", v1.build.id],
    ]);
    expect(await queueDepth(queue.url)).toMatchObject({ visible: 0, inFlight: 1 });
  });

  test("a bundle may not overwrite the listener's own record or lock", async () => {
    const ns = await createNamespace("own");
    const queue = await createQueue();
    await sendBundle(queue.url, [configMap(ns, "app", { v: "1" })], { timestampMs: 1_000 });
    await runListenerOnce({ queueUrl: queue.url, namespace: ns });
    const forged = await sendBundle(queue.url, [configMap(ns, "kube-pico-cd-state", { current: "{}" })], { timestampMs: 2_000 });
    await runListenerOnce({ queueUrl: queue.url, namespace: ns });
    const record = await readRecord(ns);
    expect(record?.current?.build.timestampMs).toBe(1_000);
    expect(record?.history[0]).toMatchObject({ result: "rejected", messageId: forged.messageId });
    expect(record?.history[0]?.error).toStartWith("protected-object: ");
  });
});

describe("listener: other message formats", () => {
  test("a legacy message is applied, seconds become milliseconds, and its build-info ConfigMap is an ordinary object", async () => {
    const ns = await createNamespace("legacy");
    const queue = await createQueue();
    const manifests = [
      `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\n  namespace: ${ns}\ndata:\n  v: legacy`,
      `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: kube-pico-cd-build-info\n  namespace: ${ns}\ndata:\n  BUILD_TIMESTAMP: "1700000000"`,
    ].join("\n---\n");
    await sendRaw(queue.url, JSON.stringify({ data: { BUILD_TIMESTAMP: "1700000000", buildTimestamp: "1700000000", COMMIT_HASH: "0123abcd", BRANCH_NAME: "main", TAG_NAME: "undefined" }, manifests }));
    const run = await runListenerOnce({ queueUrl: queue.url, namespace: ns });
    expect(run.code).toBe(0);
    expect(await cmValue(ns, "app", "v")).toBe("legacy");
    expect(await cmValue(ns, "kube-pico-cd-build-info", "BUILD_TIMESTAMP")).toBe("1700000000");
    const record = await readRecord(ns);
    expect(record?.current?.build.timestampMs).toBe(1_700_000_000_000);
    expect(record?.current?.build.id).toBe("0123abcd");
  });

  test("an SNS envelope is unwrapped transparently", async () => {
    const ns = await createNamespace("sns");
    const queue = await createQueue();
    const inner = bundleBody([configMap(ns, "app", { v: "via-sns" })], { timestampMs: 3_000 });
    await sendRaw(queue.url, JSON.stringify({ Type: "Notification", MessageId: "m-1", TopicArn: "arn:aws:sns:us-east-1:000000000000:deploys", Message: inner.body, Timestamp: new Date().toISOString() }));
    await runListenerOnce({ queueUrl: queue.url, namespace: ns });
    expect(await cmValue(ns, "app", "v")).toBe("via-sns");
    expect((await readRecord(ns))?.current?.digest).toBe(inner.digest);
  });

  test("a message for another target is rejected and nothing of it is applied", async () => {
    const ns = await createNamespace("target");
    const queue = await createQueue();
    const sent = await sendBundle(queue.url, [configMap(ns, "app", { v: "x" })], { timestampMs: 3_000, commit: "c0ffee" }, "staging");
    await runListenerOnce({ queueUrl: queue.url, namespace: ns, env: { KUBE_PICO_CD_TARGET: "production" } });
    expect((await kubectl(["get", "configmap", "app", "-n", ns])).code).not.toBe(0);
    const record = await readRecord(ns);
    expect(record?.history[0]?.result).toBe("rejected");
    // The history names the build and the target it was meant for.
    expect(record?.history[0]).toMatchObject({ buildId: sent.build.id, commit: "c0ffee", target: "staging", digest: sent.digest });
    expect(record?.history[0]?.error).toBe('target: The message is for target "staging" but this listener has target "production" (the message goes to the dead-letter queue for redrive)');
  });

  test("a gzip bomb is rejected without inflating it", async () => {
    const ns = await createNamespace("bomb");
    const queue = await createQueue();
    const valid = JSON.parse(bundleBody([configMap(ns, "x", {})], { timestampMs: 1 }).body) as { manifests: { data: string; bytes: number } };
    valid.manifests.data = gzipSync(Buffer.alloc(64 * 1024 * 1024, 0x20)).toString("base64");
    // Honest about its size: refused by the limit before inflating. (One that lies about it is
    // refused as `decode` one byte past what it declared: test/unit/message.test.ts.)
    valid.manifests.bytes = 64 * 1024 * 1024;
    await sendRaw(queue.url, JSON.stringify(valid));
    const run = await runListenerOnce({ queueUrl: queue.url, namespace: ns, env: { KUBE_PICO_CD_MAX_DECOMPRESSED_BYTES: "1048576" } });
    expect(run.code).toBe(0);
    expect((await readRecord(ns))?.history[0]?.error).toStartWith("too-large: ");
  });
});
