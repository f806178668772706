/** The consumer against a real ElasticMQ: its heartbeat, its lanes, its limit on messages in hand, and `once`. */
import { describe, expect, test } from "bun:test";
import { DeleteMessageCommand } from "@aws-sdk/client-sqs";
import { createLogger } from "../../lib/log.ts";
import { Consumer, type Disposition, type ReceivedMessage } from "../../lib/sqs/consumer.ts";
import { createQueue, sqsClient } from "../env/testenv.ts";
import { queueDepth, sendRaw } from "../helpers/bundles.ts";
import { until } from "../helpers/until.ts";

describe("Consumer heartbeat", () => {
  test("a heartbeat entry SQS refuses (the message was deleted meanwhile) is logged with the message id and counted", async () => {
    const sqs = await sqsClient();
    const queue = await createQueue();
    const { messageId } = await sendRaw(queue.url, "held");
    const lines: Record<string, unknown>[] = [];
    const errors: string[] = [];
    let consumer: Consumer | undefined;
    consumer = new Consumer({
      sqs,
      queueUrl: queue.url,
      logger: createLogger({ write: (line) => void lines.push(JSON.parse(line) as Record<string, unknown>) }),
      waitTimeSeconds: 1,
      visibilityTimeoutSeconds: 3,
      onSqsError: (operation) => void errors.push(operation),
      handler: async (batch: readonly ReceivedMessage[]) => {
        // Someone deletes the message while it is held: its receipt handle is no longer valid.
        await sqs.send(new DeleteMessageCommand({ QueueUrl: queue.url, ReceiptHandle: batch[0]!.receiptHandle }));
        // Long enough for two heartbeats (every third of the 3 s timeout).
        await new Promise((r) => setTimeout(r, 2_500));
        void consumer?.stop();
        return new Map<string, Disposition>([[batch[0]!.messageId, { action: "retry", delaySeconds: 0 }]]);
      },
    });
    await consumer.start();
    const failed = lines.filter((l) => l["msg"] === "changing the visibility of a message failed; it may be received again before its deploy is recorded");
    expect(failed.length).toBeGreaterThanOrEqual(1);
    expect(failed[0]?.["messageId"]).toBe(messageId);
    expect(errors.filter((e) => e === "ChangeMessageVisibilityBatch").length).toBe(failed.length);
  }, 30_000);
});

/** One call of a test handler: which lane, which messages, and when it ran (ms since the epoch). */
interface HandlerCall {
  lane: string;
  bodies: string[];
  receiveCounts: number[];
  startedAt: number;
  endedAt?: number;
}

/** The lane of a test message: the part of its body before ":". */
const laneOfBody = (message: ReceivedMessage) => message.body.split(":")[0]!;

const deleteAll = (batch: readonly ReceivedMessage[]) => new Map<string, Disposition>(batch.map((m) => [m.messageId, { action: "delete" }]));

/** Messages of `queueUrl` visible and received-not-deleted, as SQS counts them. */
async function counts(queueUrl: string): Promise<{ visible: number; notVisible: number }> {
  const d = await queueDepth(queueUrl);
  return { visible: d.visible + d.delayed, notVisible: d.inFlight };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("Consumer lanes", () => {
  test("lane a blocked for 20 s: lane b's batches are handled and deleted meanwhile, and a's messages (one in the handler, one waiting) stay invisible the whole time with a 6 s visibility timeout", async () => {
    const sqs = await sqsClient();
    const queue = await createQueue({ visibilityTimeoutSeconds: 6 });
    const calls: HandlerCall[] = [];
    let blockEndsAt = 0;
    const consumer = new Consumer({
      sqs,
      queueUrl: queue.url,
      logger: createLogger({ write: () => {} }),
      waitTimeSeconds: 1,
      visibilityTimeoutSeconds: 6,
      laneOf: laneOfBody,
      handler: async (batch) => {
        const call: HandlerCall = { lane: laneOfBody(batch[0]!), bodies: batch.map((m) => m.body), receiveCounts: batch.map((m) => m.receiveCount), startedAt: Date.now() };
        calls.push(call);
        if (call.bodies.includes("a:1")) {
          blockEndsAt = Date.now() + 20_000;
          await sleep(20_000);
        }
        call.endedAt = Date.now();
        return deleteAll(batch);
      },
    });
    await sendRaw(queue.url, "a:1");
    const running = consumer.start();
    const samples: { visible: number; notVisible: number; at: number }[] = [];
    try {
      await until("a:1 in the handler", async () => blockEndsAt > 0, 10_000);
      // One more message of the blocked lane: it waits in the consumer, not in the queue.
      await sendRaw(queue.url, "a:2");
      await sleep(1_500);
      await sendRaw(queue.url, "b:1");
      await until("b:1 handled", async () => calls.some((c) => c.bodies.includes("b:1") && c.endedAt !== undefined), 10_000);
      await sendRaw(queue.url, "b:2");
      await sendRaw(queue.url, "b:3");
      await until("b:2 and b:3 handled", async () => ["b:2", "b:3"].every((b) => calls.some((c) => c.bodies.includes(b) && c.endedAt !== undefined)), 10_000);
      await until("b's messages deleted", async () => (await counts(queue.url)).notVisible === 2, 5_000);
      // Until the block ends, every 500 ms: a:1 and a:2 invisible, b's deleted.
      while (Date.now() < blockEndsAt - 700) {
        samples.push({ ...(await counts(queue.url)), at: Date.now() });
        await sleep(500);
      }
      await until("a:2 handled after the block", async () => calls.some((c) => c.bodies.includes("a:2") && c.endedAt !== undefined), 15_000);
      await until("the queue empty", async () => {
        const c = await counts(queue.url);
        return c.visible + c.notVisible === 0;
      }, 10_000);
    } finally {
      await consumer.stop();
      await running;
    }
    // The block outlasted the visibility timeout three times over, and the samples covered it.
    expect(samples.length).toBeGreaterThanOrEqual(20);
    expect(samples.every((s) => s.visible === 0 && s.notVisible === 2)).toBe(true);
    const a1 = calls.filter((c) => c.bodies.includes("a:1"));
    const a2 = calls.filter((c) => c.bodies.includes("a:2"));
    // Each of a's messages was handed over once, on its first receive: never visible to anyone else.
    expect(a1.map((c) => [c.bodies, c.receiveCounts])).toEqual([[["a:1"], [1]]]);
    expect(a2.map((c) => [c.bodies, c.receiveCounts])).toEqual([[["a:2"], [1]]]);
    // a:2 waited for its lane: handed over only once a:1's batch was done, 18 s after it arrived.
    expect(a2[0]!.startedAt).toBeGreaterThanOrEqual(a1[0]!.endedAt!);
    // Lane b ran beside the blocked lane: all of its batches ended before a's block did.
    const b = calls.filter((c) => c.lane === "b");
    expect(b.flatMap((c) => c.bodies).sort()).toEqual(["b:1", "b:2", "b:3"]);
    expect(b.length).toBeGreaterThanOrEqual(2);
    expect(b.every((c) => c.endedAt! < a1[0]!.endedAt!)).toBe(true);
    expect(b.flatMap((c) => c.receiveCounts)).toEqual([1, 1, 1]);
  }, 60_000);

  test("maxInHand 3 with eight messages of eight lanes: never more than 3 received and not yet disposed, in SQS's count and in the handler; all eight handled once", async () => {
    const sqs = await sqsClient();
    const queue = await createQueue({ visibilityTimeoutSeconds: 6 });
    for (let i = 0; i < 8; i++) await sendRaw(queue.url, `lane${i}:1`);
    const calls: HandlerCall[] = [];
    let inHandler = 0;
    let mostInHandler = 0;
    const consumer = new Consumer({
      sqs,
      queueUrl: queue.url,
      logger: createLogger({ write: () => {} }),
      waitTimeSeconds: 1,
      visibilityTimeoutSeconds: 6,
      maxInHand: 3,
      laneOf: laneOfBody,
      handler: async (batch) => {
        const call: HandlerCall = { lane: laneOfBody(batch[0]!), bodies: batch.map((m) => m.body), receiveCounts: batch.map((m) => m.receiveCount), startedAt: Date.now() };
        calls.push(call);
        inHandler += batch.length;
        mostInHandler = Math.max(mostInHandler, inHandler);
        await sleep(1_500);
        inHandler -= batch.length;
        call.endedAt = Date.now();
        return deleteAll(batch);
      },
    });
    const running = consumer.start();
    const notVisible: number[] = [];
    try {
      const deadline = Date.now() + 30_000;
      while (calls.filter((c) => c.endedAt !== undefined).flatMap((c) => c.bodies).length < 8) {
        if (Date.now() > deadline) throw new Error(`not all eight handled within 30 s: ${JSON.stringify(calls)}`);
        notVisible.push((await counts(queue.url)).notVisible);
        await sleep(150);
      }
    } finally {
      await consumer.stop();
      await running;
    }
    expect(calls.flatMap((c) => c.bodies).sort()).toEqual(Array.from({ length: 8 }, (_, i) => `lane${i}:1`));
    expect(calls.flatMap((c) => c.receiveCounts)).toEqual([1, 1, 1, 1, 1, 1, 1, 1]);
    // The limit is what held it back: three at once, and never a fourth.
    expect(mostInHandler).toBe(3);
    expect(Math.max(...notVisible)).toBeLessThanOrEqual(3);
    expect(notVisible.filter((n) => n === 3).length).toBeGreaterThan(0);
    expect(await counts(queue.url)).toEqual({ visible: 0, notVisible: 0 });
  }, 60_000);

  test("once: start() resolves only when the queue is empty and every lane is idle, a message that arrived while a lane worked included", async () => {
    const sqs = await sqsClient();
    const queue = await createQueue({ visibilityTimeoutSeconds: 6 });
    await sendRaw(queue.url, "a:1");
    await sendRaw(queue.url, "b:1");
    const calls: HandlerCall[] = [];
    const consumer = new Consumer({
      sqs,
      queueUrl: queue.url,
      logger: createLogger({ write: () => {} }),
      waitTimeSeconds: 1,
      visibilityTimeoutSeconds: 6,
      once: true,
      laneOf: laneOfBody,
      handler: async (batch) => {
        const call: HandlerCall = { lane: laneOfBody(batch[0]!), bodies: batch.map((m) => m.body), receiveCounts: batch.map((m) => m.receiveCount), startedAt: Date.now() };
        calls.push(call);
        await sleep(call.bodies.includes("a:1") ? 4_000 : 300);
        call.endedAt = Date.now();
        return deleteAll(batch);
      },
    });
    const started = Date.now();
    let resolvedAt: number | undefined;
    const running = consumer.start().then(() => (resolvedAt = Date.now()));
    try {
      await until("a:1 in the handler", async () => calls.some((c) => c.bodies.includes("a:1")), 10_000);
      await until("b:1 handled", async () => calls.some((c) => c.bodies.includes("b:1") && c.endedAt !== undefined), 10_000);
      // Lane b is idle and a receive has come back empty, but lane a still works: not done yet.
      await sleep(1_500);
      expect(resolvedAt).toBeUndefined();
      await sendRaw(queue.url, "a:2");
      await running;
    } finally {
      await consumer.stop();
    }
    expect(calls.flatMap((c) => c.bodies).sort()).toEqual(["a:1", "a:2", "b:1"]);
    expect(calls.every((c) => c.endedAt !== undefined && c.endedAt <= resolvedAt!)).toBe(true);
    // a:2 waited for a:1's batch in its lane, then was handled before start() resolved.
    const a2 = calls.find((c) => c.bodies.includes("a:2"))!;
    expect(a2.startedAt).toBeGreaterThanOrEqual(calls.find((c) => c.bodies.includes("a:1"))!.endedAt!);
    expect(await counts(queue.url)).toEqual({ visible: 0, notVisible: 0 });
    // Bounded: the last batch's end plus at most two empty receives of 1 s each, and the deletes.
    console.log(`measured: once resolved ${resolvedAt! - a2.endedAt!} ms after the last batch, ${resolvedAt! - started} ms after start`);
    expect(resolvedAt! - a2.endedAt!).toBeLessThan(3_000);
  }, 60_000);
});
