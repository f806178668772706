/**
 * Plan requests against the real listener, API server and ElasticMQ: the plan names invalid
 * fields with their file, shows changed fields (of a Secret, only which keys changed) and
 * what prune would delete, and leaves the cluster and the record as they were.
 */
import { describe, expect, test } from "bun:test";
import { ReceiveMessageCommand, SendMessageCommand } from "@aws-sdk/client-sqs";
import { createNamespace, createQueue, kubectl, sqsClient } from "../env/testenv.ts";
import { configMap, sendAppBundle } from "../helpers/bundles.ts";
import { startListener, type ListenerProcess } from "../helpers/listener-process.ts";
import { readRecord } from "../helpers/record.ts";
import { until } from "../helpers/until.ts";
import { deployment } from "../helpers/workloads.ts";
import { encodeMessage, type KubeObject } from "../../lib/wire/message.ts";
import { decodeResult, type ResultMessage } from "../../lib/wire/result.ts";

async function stopped(listener: ListenerProcess | undefined): Promise<void> {
  if (listener === undefined || listener.child.exitCode !== null || listener.child.signalCode !== null) return;
  listener.kill("SIGTERM");
  await listener.exited;
}

async function sendPlan(queueUrl: string, app: string, objects: KubeObject[], sources: string[], id: string): Promise<string> {
  const { body } = encodeMessage({ app, build: { id, timestampMs: Date.now() }, objects, sources, mode: "plan" });
  const sqs = await sqsClient();
  return (await sqs.send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: body }))).MessageId!;
}

async function resultFor(resultQueueUrl: string, messageId: string): Promise<ResultMessage> {
  const sqs = await sqsClient();
  return await until(`the result of ${messageId}`, async () => {
    const got = await sqs.send(new ReceiveMessageCommand({ QueueUrl: resultQueueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1 }));
    return (got.Messages ?? []).map((m) => decodeResult(m.Body!)).find((r) => r.messageId === messageId);
  }, 60_000);
}

async function resourceVersion(ns: string, kind: string, name: string): Promise<string> {
  return (await kubectl(["get", kind, name, "-n", ns, "-o", "jsonpath={.metadata.resourceVersion}"])).stdout;
}

describe("plans", () => {
  test("a plan names a spec typo with its file and object, shows a changed field of a live Deployment, a new object and what prune would delete; the cluster and the record are unchanged", async () => {
    const ns = await createNamespace("plan");
    const queue = await createQueue();
    const results = await createQueue();
    const listener = await startListener({ queueUrl: queue.url, namespace: ns, env: { KUBE_PICO_CD_RESULT_QUEUE: results.url, KUBE_PICO_CD_VISIBILITY_TIMEOUT_SECONDS: "5", KUBE_PICO_CD_NO_WAIT_HEALTH: "true" } });
    try {
      await sendAppBundle(queue.url, "shop", [deployment(ns, "web", { replicas: 1 }), configMap(ns, "old-settings", { v: "1" })], { timestampMs: 1_000, id: "s1" });
      await until("s1 applied", async () => (await readRecord(ns, { name: "kube-pico-cd-state-shop" }))?.current?.build.id === "s1");
      const recordBefore = await resourceVersion(ns, "configmap", "kube-pico-cd-state-shop");
      const webBefore = await resourceVersion(ns, "deployment", "web");

      // A good plan: web scales to 3, settings is new, old-settings would be pruned.
      const good = await sendPlan(queue.url, "shop", [deployment(ns, "web", { replicas: 3 }), configMap(ns, "settings", { v: "2" })], ["k8s/web.yaml:1:1", "k8s/settings.yaml:1:1"], "p1");
      const planned = await resultFor(results.url, good);
      expect(planned.result).toBe("planned");
      expect(planned.app).toBe("shop");
      const plan = planned.plan!;
      expect(plan.ok).toBe(true);
      expect(plan.counts).toMatchObject({ create: 1, change: 1, error: 0, prune: 1 });
      const web = plan.objects.find((o) => o.object === `apps/Deployment ${ns}/web`)!;
      expect(web.action).toBe("change");
      expect(web.source).toBe("k8s/web.yaml:1:1");
      expect(web.lines).toContain("spec.replicas: 1 → 3");
      expect(plan.objects.find((o) => o.object === `ConfigMap ${ns}/settings`)?.action).toBe("create");
      expect(plan.prune).toEqual([`ConfigMap ${ns}/old-settings`]);

      // A typo under spec: the plan fails, naming the file, the object and the field.
      const typo = deployment(ns, "web", { replicas: 2 }) as KubeObject & { spec: Record<string, unknown> };
      typo.spec = { ...typo.spec, replica: 2 };
      const bad = await sendPlan(queue.url, "shop", [typo], ["k8s/web.yaml:1:1"], "p2");
      const failed = await resultFor(results.url, bad);
      expect(failed.result).toBe("planned");
      expect(failed.plan!.ok).toBe(false);
      const refused = failed.plan!.objects.find((o) => o.action === "error")!;
      expect(refused.object).toBe(`apps/Deployment ${ns}/web`);
      expect(refused.source).toBe("k8s/web.yaml:1:1");
      expect(refused.lines.join("\n")).toContain("replica");

      // Nothing changed: the record, the live objects, no new object, the queue empty.
      expect(await resourceVersion(ns, "configmap", "kube-pico-cd-state-shop")).toBe(recordBefore);
      expect(await resourceVersion(ns, "deployment", "web")).toBe(webBefore);
      expect((await kubectl(["get", "configmap", "settings", "-n", ns])).code).not.toBe(0);
      expect((await kubectl(["get", "configmap", "old-settings", "-n", ns])).code).toBe(0);
      const record = await readRecord(ns, { name: "kube-pico-cd-state-shop" });
      expect(record?.history.map((h) => h.buildId)).toEqual(["s1"]);
      expect(record?.inflight).toBeNull();
    } finally {
      await stopped(listener);
    }
  }, 120_000);

  test("a plan of a changed live Secret names the changed, added and removed keys and holds none of its values, live or new; a refused Secret's errors hold none either", async () => {
    const ns = await createNamespace("plan-secret");
    const queue = await createQueue();
    const results = await createQueue();
    const listener = await startListener({ queueUrl: queue.url, namespace: ns, env: { KUBE_PICO_CD_RESULT_QUEUE: results.url, KUBE_PICO_CD_VISIBILITY_TIMEOUT_SECONDS: "5", KUBE_PICO_CD_NO_WAIT_HEALTH: "true" } });
    const unique = Math.random().toString(36).slice(2, 10);
    const liveValue = `live-secret-${unique}`;
    const newValue = `new-secret-${unique}`;
    const removedValue = `removed-${unique}`;
    const pin = 31_415_926_535 + Math.floor(Math.random() * 1000);
    const badValue = `not~base64~${unique}`;
    const b64 = (text: string) => Buffer.from(text, "utf8").toString("base64");
    const secret = (name: string, fields: Record<string, unknown>) => ({ apiVersion: "v1", kind: "Secret", metadata: { name, namespace: ns }, type: "Opaque", ...fields }) as unknown as KubeObject;
    try {
      await sendAppBundle(queue.url, "shop", [secret("db", { data: { password: b64(liveValue), old: b64(removedValue), same: b64("same-value") } })], { timestampMs: 1_000, id: "s1" });
      await until("s1 applied", async () => (await readRecord(ns, { name: "kube-pico-cd-state-shop" }))?.current?.build.id === "s1");
      const secretBefore = await resourceVersion(ns, "secret", "db");

      // stringData in the bundle, data in the live object: the server merges one into the other.
      const changed = secret("db", { stringData: { password: newValue, token: "added-token", same: "same-value" } });
      const refused = [secret("bad-base64", { data: { key: badValue } }), secret("bad-pin", { stringData: { pin } })];
      const id = await sendPlan(queue.url, "shop", [changed, ...refused], ["k8s/db.yaml:1:1", "k8s/bad.yaml:1:1", "k8s/bad.yaml:9:1"], "p1");
      const planned = await resultFor(results.url, id);
      expect(planned.result).toBe("planned");
      const db = planned.plan!.objects.find((o) => o.object === `Secret ${ns}/db`)!;
      expect(db).toEqual({ object: `Secret ${ns}/db`, source: "k8s/db.yaml:1:1", action: "change", lines: ["data.old: (secret value removed)", "data.password: (secret value changed)", "data.token: (secret value added)"] });
      const errors = planned.plan!.objects.filter((o) => o.action === "error");
      expect(errors.map((o) => o.object)).toEqual([`Secret ${ns}/bad-base64`, `Secret ${ns}/bad-pin`]);
      // An unquoted number under stringData is echoed back by the API server; the plan cuts the echo.
      expect(errors[1]!.lines).toEqual([`failed to create typed patch object (${ns}/bad-pin; /v1, Kind=Secret): .stringData.pin: expected string, got [redacted]`]);
      expect(errors[0]!.lines[0]).toStartWith(`cannot dry-run it: Kubernetes API PATCH /api/v1/namespaces/${ns}/secrets/bad-base64 failed: 500:`);
      const json = JSON.stringify(planned);
      for (const value of [liveValue, newValue, removedValue, "added-token", "same-value", String(pin), badValue]) {
        expect(json).not.toContain(value);
        expect(json).not.toContain(b64(value));
      }
      expect(await resourceVersion(ns, "secret", "db")).toBe(secretBefore);
    } finally {
      await stopped(listener);
    }
  }, 120_000);

  test("a plan does not wait for the app's deploy in its health wait", async () => {
    const ns = await createNamespace("plan-busy");
    const queue = await createQueue();
    const results = await createQueue();
    const listener = await startListener({ queueUrl: queue.url, namespace: ns, env: { KUBE_PICO_CD_RESULT_QUEUE: results.url, KUBE_PICO_CD_VISIBILITY_TIMEOUT_SECONDS: "5", KUBE_PICO_CD_HEALTH_TIMEOUT_SECONDS: "120" } });
    try {
      await sendAppBundle(queue.url, "shop", [deployment(ns, "slow", { unschedulable: true })], { timestampMs: 1_000, id: "s1" });
      await listener.waitForLog((l) => l.msg === "build applied" && l["build"] === "s1", 30_000);
      const started = Date.now();
      const id = await sendPlan(queue.url, "shop", [deployment(ns, "slow", { unschedulable: true, replicas: 2 })], ["slow.yaml:1:1"], "p1");
      const planned = await resultFor(results.url, id);
      expect(Date.now() - started).toBeLessThan(20_000);
      expect(planned.plan?.objects[0]?.lines).toContain("spec.replicas: 1 → 2");
    } finally {
      await stopped(listener);
    }
  }, 120_000);

  test("a deploy the API server refuses names the object, its file and the field in the outcome", async () => {
    const ns = await createNamespace("plan-src");
    const queue = await createQueue();
    const listener = await startListener({ queueUrl: queue.url, namespace: ns, env: { KUBE_PICO_CD_VISIBILITY_TIMEOUT_SECONDS: "5", KUBE_PICO_CD_RETRY_BASE_SECONDS: "60", KUBE_PICO_CD_RETRY_MAX_SECONDS: "60" } });
    try {
      const typo = deployment(ns, "web") as KubeObject & { spec: Record<string, unknown> };
      typo.spec = { ...typo.spec, replica: 2 };
      const { body } = encodeMessage({ app: "shop", build: { id: "bad-1", timestampMs: 1_000 }, objects: [configMap(ns, "fine", { v: "1" }), typo], sources: ["k8s/fine.yaml:1:1", "k8s/web.yaml:5:1"] });
      const sqs = await sqsClient();
      await sqs.send(new SendMessageCommand({ QueueUrl: queue.url, MessageBody: body }));
      const failed = await until("the failure recorded", async () => (await readRecord(ns, { name: "kube-pico-cd-state-shop" }))?.history.find((h) => h.result === "failed"));
      expect(failed.error).toContain(`1 object refused by the API server: apps/Deployment ${ns}/web (k8s/web.yaml:5:1)`);
      expect(failed.error).toContain("replica");
      expect(failed.error).not.toContain("k8s/fine.yaml");
    } finally {
      await stopped(listener);
    }
  }, 120_000);

  test("a plan key signs plan requests only: its plan is answered, its deploy refused as unknown-key and not applied", async () => {
    const { generateSigningKeyPair, parseSigningKey, signFields } = await import("../../lib/wire/signature.ts");
    const keyOf = () => {
      const pair = generateSigningKeyPair();
      const key = parseSigningKey(pair.privateKeyPem);
      if ("problem" in key) throw new Error(key.problem);
      return { key, pem: pair.publicKeyPem };
    };
    const deployKey = keyOf();
    const planKey = keyOf();
    const ns = await createNamespace("plan-keys");
    const queue = await createQueue();
    const results = await createQueue();
    const listener = await startListener({
      queueUrl: queue.url,
      namespace: ns,
      env: { KUBE_PICO_CD_RESULT_QUEUE: results.url, KUBE_PICO_CD_VISIBILITY_TIMEOUT_SECONDS: "5", KUBE_PICO_CD_TRUSTED_KEYS: deployKey.pem, KUBE_PICO_CD_PLAN_KEYS: planKey.pem },
    });
    try {
      const sqs = await sqsClient();
      const send = async (mode: "plan" | undefined, id: string) => {
        const { body } = encodeMessage({ app: "shop", build: { id, timestampMs: Date.now() }, objects: [configMap(ns, "by-plan-key", { v: "1" })], ...(mode ? { mode } : {}), sign: (f) => signFields(f, planKey.key) });
        return (await sqs.send(new SendMessageCommand({ QueueUrl: queue.url, MessageBody: body }))).MessageId!;
      };
      const planned = await resultFor(results.url, await send("plan", "p1"));
      expect(planned.result).toBe("planned");
      expect(planned.plan?.ok).toBe(true);
      const deployId = await send(undefined, "d1");
      // Refused before its build is read, so it gets no result: the (default app's) record says why.
      const refused = await until("the deploy refused", async () => (await readRecord(ns))?.history.find((h) => h.messageId === deployId));
      expect(refused.result).toBe("rejected");
      expect(refused.error).toStartWith("unknown-key:");
      expect((await kubectl(["get", "configmap", "by-plan-key", "-n", ns])).code).not.toBe(0);
    } finally {
      await stopped(listener);
    }
  }, 120_000);
});
