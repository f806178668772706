/**
 * Hostile bundles against the policy, the target and the dispositions, end to end with the
 * real listener, ElasticMQ and the API server: list-shaped smuggling, the replay of a bundle
 * signed for no target, and a bundle signed by a key the listener does not trust yet, which is
 * kept in the dead-letter queue and deploys once the key is added and the message redriven.
 * Each case checks that nothing was applied, that the listener ran on, that the outcome is
 * recorded with its reason, where the message went, and that a genuine build deploys next.
 */
import { describe, expect, test } from "bun:test";
import { DeleteMessageCommand, ReceiveMessageCommand, SendMessageCommand } from "@aws-sdk/client-sqs";
import type { KubeObject } from "../../lib/manifests/bundle.ts";
import { ORIGINAL_MESSAGE_ID_ATTRIBUTE, REJECTION_REASON_ATTRIBUTE } from "../../lib/sqs/dead-letter.ts";
import { encodeMessage, type BuildInfo } from "../../lib/wire/message.ts";
import { generateSigningKeyPair, parseSigningKey, signFields, type SigningKey } from "../../lib/wire/signature.ts";
import { createNamespace, createQueue, kubectl, sqsClient } from "../env/testenv.ts";
import { configMap, queueDepth, sendRaw } from "../helpers/bundles.ts";
import { runListenerOnce } from "../helpers/listener-process.ts";
import { readRecord } from "../helpers/record.ts";

function keyPair(): { key: SigningKey; publicKeyPem: string } {
  const pair = generateSigningKeyPair();
  const key = parseSigningKey(pair.privateKeyPem);
  if ("problem" in key) throw new Error(key.problem);
  return { key, publicKeyPem: pair.publicKeyPem };
}

const ci = keyPair();
const newKey = keyPair();

function signed(objects: readonly KubeObject[], build: BuildInfo, options: { key?: SigningKey; target?: string } = {}): string {
  const { key = ci.key, target } = options;
  return encodeMessage({ build, objects, ...(target === undefined ? {} : { target }), sign: (fields) => signFields(fields, key) }).body;
}

async function configMapData(ns: string, name: string): Promise<string | undefined> {
  const got = await kubectl(["get", "configmap", name, "-n", ns, "-o", "jsonpath={.data.color}"]);
  if (got.code !== 0 && got.stderr.includes("NotFound")) return undefined;
  if (got.code !== 0) throw new Error(got.stderr);
  return got.stdout;
}

/** Every message now in `queueUrl`, received (and so hidden) for a minute. */
async function receiveAll(queueUrl: string) {
  const sqs = await sqsClient();
  const got = await sqs.send(new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1, VisibilityTimeout: 60, MessageAttributeNames: ["All"] }));
  return got.Messages ?? [];
}

const empty = { visible: 0, inFlight: 0, delayed: 0 };

describe("list-shaped objects", () => {
  test("a ConfigMap named innocent whose items hold a ConfigMap in kube-system is rejected as list-object and deleted; nothing reaches kube-system; the next genuine build deploys", async () => {
    const ns = await createNamespace("hostile");
    const queue = await createQueue({ deadLetter: { maxReceiveCount: 3 } });
    const planted = `planted-${ns}`;
    const innocent = { ...configMap(ns, "innocent", { color: "blue" }), items: [configMap("kube-system", planted, { color: "evil" })] } as KubeObject;
    const sent = await sendRaw(queue.url, signed([innocent], { id: "smuggle", timestampMs: 1_700_000_000_000 }));
    const run = await runListenerOnce({ queueUrl: queue.url, namespace: ns, env: { KUBE_PICO_CD_TRUSTED_KEYS: ci.publicKeyPem } });
    expect(run.code).toBe(0);
    expect(await configMapData("kube-system", planted)).toBeUndefined();
    expect(await configMapData(ns, "innocent")).toBeUndefined();
    const record = await readRecord(ns);
    expect(record?.current).toBeNull();
    expect(record?.history.map((h) => [h.result, h.messageId, h.buildId])).toEqual([["rejected", sent.messageId, "smuggle"]]);
    expect(record?.history[0]?.error).toBe(
      `list-object: Rejected message: 1 of 1 objects are list-shaped, and kubectl would apply their items past the listener's checks, so nothing is applied (send the items as objects of their own): ConfigMap ${ns}/innocent (an items array of 1) (the message is deleted)`,
    );
    expect(run.lines.find((l) => l.msg === "message rejected")).toMatchObject({ reason: "list-object", disposition: "delete" });
    expect(await queueDepth(queue.url)).toEqual(empty);
    expect(await queueDepth(queue.deadLetterUrl!)).toEqual(empty);

    await sendRaw(queue.url, signed([configMap(ns, "app", { color: "green" })], { id: "genuine", timestampMs: 1_700_000_060_000 }));
    expect((await runListenerOnce({ queueUrl: queue.url, namespace: ns, env: { KUBE_PICO_CD_TRUSTED_KEYS: ci.publicKeyPem } })).code).toBe(0);
    expect(await configMapData(ns, "app")).toBe("green");
    expect((await readRecord(ns))?.current?.build.id).toBe("genuine");
  });

  test("a kind ending in List is rejected as list-object even without items", async () => {
    const ns = await createNamespace("hostile");
    const queue = await createQueue();
    const list = { apiVersion: "v1", kind: "ConfigMapList", metadata: { name: "wrapper", namespace: ns } } as KubeObject;
    await sendRaw(queue.url, encodeMessage({ build: { id: "l1", timestampMs: 1_700_000_000_000 }, objects: [list] }).body);
    const run = await runListenerOnce({ queueUrl: queue.url, namespace: ns });
    expect(run.code).toBe(0);
    expect((await readRecord(ns))?.history[0]?.error).toStartWith("list-object: Rejected message: 1 of 1 objects are list-shaped");
    expect(await queueDepth(queue.url)).toEqual(empty);
  });
});

describe("replay across targets", () => {
  test("a signed bundle that names no target, replayed to a listener with a target and trusted keys, is rejected as require-target and kept in the dead-letter queue; a bundle for its target deploys", async () => {
    const ns = await createNamespace("replay");
    const queue = await createQueue({ deadLetter: { maxReceiveCount: 3 } });
    const env = { KUBE_PICO_CD_TRUSTED_KEYS: ci.publicKeyPem, KUBE_PICO_CD_TARGET: "prod" };
    const replayed = await sendRaw(queue.url, signed([configMap(ns, "app", { color: "staging" })], { id: "for-any", timestampMs: 1_700_000_000_000 }));
    const run = await runListenerOnce({ queueUrl: queue.url, namespace: ns, env });
    expect(run.code).toBe(0);
    expect(run.lines.find((l) => l.msg === "listening")?.["requireTarget"]).toBe(true);
    expect(await configMapData(ns, "app")).toBeUndefined();
    const record = await readRecord(ns);
    expect(record?.current).toBeNull();
    expect(record?.history.map((h) => [h.result, h.messageId])).toEqual([["rejected", replayed.messageId]]);
    expect(record?.history[0]?.error).toStartWith(`require-target: The message names no target, and this listener (target "prod") applies only bundles made for it`);
    expect(record?.history[0]?.error).toEndWith("(the message goes to the dead-letter queue for redrive)");
    expect(await queueDepth(queue.url)).toEqual(empty);
    const kept = await receiveAll(queue.deadLetterUrl!);
    expect(kept.map((m) => [m.MessageAttributes?.[REJECTION_REASON_ATTRIBUTE]?.StringValue, m.MessageAttributes?.[ORIGINAL_MESSAGE_ID_ATTRIBUTE]?.StringValue])).toEqual([["require-target", replayed.messageId]]);

    await sendRaw(queue.url, signed([configMap(ns, "app", { color: "prod" })], { id: "for-prod", timestampMs: 1_700_000_060_000 }, { target: "prod" }));
    expect((await runListenerOnce({ queueUrl: queue.url, namespace: ns, env })).code).toBe(0);
    expect(await configMapData(ns, "app")).toBe("prod");
    expect((await readRecord(ns))?.current?.build.id).toBe("for-prod");
  });

  test("with KUBE_PICO_CD_REQUIRE_TARGET=false the same listener applies a signed bundle that names no target", async () => {
    const ns = await createNamespace("replay");
    const queue = await createQueue();
    await sendRaw(queue.url, signed([configMap(ns, "app", { color: "any" })], { id: "for-any", timestampMs: 1_700_000_000_000 }));
    const run = await runListenerOnce({ queueUrl: queue.url, namespace: ns, env: { KUBE_PICO_CD_TRUSTED_KEYS: ci.publicKeyPem, KUBE_PICO_CD_TARGET: "prod", KUBE_PICO_CD_REQUIRE_TARGET: "false" } });
    expect(run.code).toBe(0);
    expect(await configMapData(ns, "app")).toBe("any");
  });
});

describe("dispositions", () => {
  test("a bundle signed by a key the listener does not trust yet lands in the dead-letter queue and, once the key is added and the message redriven, deploys", async () => {
    const ns = await createNamespace("dlq");
    const queue = await createQueue({ deadLetter: { maxReceiveCount: 5 } });
    const body = signed([configMap(ns, "app", { color: "rotated" })], { id: "new-key", timestampMs: 1_700_000_000_000 }, { key: newKey.key });
    const sent = await sendRaw(queue.url, body);
    const stale = await runListenerOnce({ queueUrl: queue.url, namespace: ns, env: { KUBE_PICO_CD_TRUSTED_KEYS: ci.publicKeyPem } });
    expect(stale.code).toBe(0);
    expect(await configMapData(ns, "app")).toBeUndefined();
    let record = await readRecord(ns);
    expect(record?.current).toBeNull();
    expect(record?.history.map((h) => [h.result, h.messageId])).toEqual([["rejected", sent.messageId]]);
    expect(record?.history[0]?.error).toStartWith("unknown-key: Rejected message: ");
    expect(record?.history[0]?.error).toContain(`signed by key ${newKey.key.keyId}`);
    expect(record?.history[0]?.error).toEndWith("(the message goes to the dead-letter queue for redrive)");
    expect(stale.lines.find((l) => l.msg === "message rejected")).toMatchObject({ reason: "unknown-key", disposition: "dead-letter" });
    expect(stale.lines.find((l) => l.msg === "rejected message moved to the dead-letter queue for redrive")).toMatchObject({ messageId: sent.messageId, reason: "unknown-key" });
    expect(await queueDepth(queue.url)).toEqual(empty);

    // Redrive, as an operator would: copy it back to the queue, then delete it from the dead-letter queue.
    const sqs = await sqsClient();
    const kept = await receiveAll(queue.deadLetterUrl!);
    expect(kept.map((m) => m.Body)).toEqual([body]);
    const redriven = await sqs.send(new SendMessageCommand({ QueueUrl: queue.url, MessageBody: kept[0]!.Body! }));
    await sqs.send(new DeleteMessageCommand({ QueueUrl: queue.deadLetterUrl!, ReceiptHandle: kept[0]!.ReceiptHandle! }));

    // The restarted listener trusts both keys (rotation).
    const rotated = await runListenerOnce({ queueUrl: queue.url, namespace: ns, env: { KUBE_PICO_CD_TRUSTED_KEYS: `${ci.publicKeyPem},${newKey.publicKeyPem}` } });
    expect(rotated.code).toBe(0);
    expect(await configMapData(ns, "app")).toBe("rotated");
    record = await readRecord(ns);
    expect(record?.current?.build.id).toBe("new-key");
    expect(record?.history[0]).toMatchObject({ result: "applied", messageId: redriven.MessageId! });
    expect(await queueDepth(queue.url)).toEqual(empty);
    expect(await queueDepth(queue.deadLetterUrl!)).toEqual(empty);
  });

  test("a policy violation on a queue without a dead-letter queue stays in the queue for 12 hours, logged as an error; a genuine build deploys meanwhile", async () => {
    const ns = await createNamespace("nodlq");
    const queue = await createQueue();
    const env = { KUBE_PICO_CD_DENY_KINDS: "Secret" };
    const secret = { apiVersion: "v1", kind: "Secret", metadata: { name: "db", namespace: ns }, stringData: { password: "hunter2-long" } } as KubeObject;
    const sent = await sendRaw(queue.url, encodeMessage({ build: { id: "denied", timestampMs: 1_700_000_000_000 }, objects: [secret] }).body);
    const run = await runListenerOnce({ queueUrl: queue.url, namespace: ns, env });
    expect(run.code).toBe(0);
    const record = await readRecord(ns);
    expect(record?.history.map((h) => [h.result, h.messageId])).toEqual([["rejected", sent.messageId]]);
    expect(record?.history[0]?.error).toStartWith("policy: Rejected message: 1 of 1 objects break the listener's policy");
    const loud = run.lines.find((l) => l.level === "error" && String(l.msg).startsWith("a rejected message that a configuration change could cure cannot be moved"));
    expect(loud).toMatchObject({ messageId: sent.messageId, reason: "policy", why: "the queue has no redrive policy, so no dead-letter queue", retryInSeconds: 43_200 });
    expect(await queueDepth(queue.url)).toEqual({ visible: 0, inFlight: 1, delayed: 0 });

    await sendRaw(queue.url, encodeMessage({ build: { id: "genuine", timestampMs: 1_700_000_060_000 }, objects: [configMap(ns, "app", { color: "ok" })] }).body);
    expect((await runListenerOnce({ queueUrl: queue.url, namespace: ns, env })).code).toBe(0);
    expect(await configMapData(ns, "app")).toBe("ok");
    expect((await readRecord(ns))?.current?.build.id).toBe("genuine");
  });

  test("on a FIFO queue a curable rejection is moved to the FIFO dead-letter queue with its message group", async () => {
    const ns = await createNamespace("fifo");
    const queue = await createQueue({ fifo: true, deadLetter: { maxReceiveCount: 5 } });
    const sqs = await sqsClient();
    const body = encodeMessage({ build: { id: "other", timestampMs: 1_700_000_000_000 }, target: "staging", objects: [configMap(ns, "app", { color: "x" })] }).body;
    await sqs.send(new SendMessageCommand({ QueueUrl: queue.url, MessageBody: body, MessageGroupId: "deploys", MessageDeduplicationId: "other-1" }));
    const run = await runListenerOnce({ queueUrl: queue.url, namespace: ns, env: { KUBE_PICO_CD_TARGET: "prod" } });
    expect(run.code).toBe(0);
    expect((await readRecord(ns))?.history[0]?.error).toStartWith(`target: The message is for target "staging" but this listener has target "prod"`);
    expect(await queueDepth(queue.url)).toEqual(empty);
    const got = await sqs.send(new ReceiveMessageCommand({ QueueUrl: queue.deadLetterUrl!, MaxNumberOfMessages: 10, WaitTimeSeconds: 1, MessageSystemAttributeNames: ["MessageGroupId"] }));
    expect((got.Messages ?? []).map((m) => [m.Body, m.Attributes?.MessageGroupId])).toEqual([[body, "deploys"]]);
  });
});
