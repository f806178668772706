/** The consumer's heartbeat against a real ElasticMQ. */
import { describe, expect, test } from "bun:test";
import { DeleteMessageCommand } from "@aws-sdk/client-sqs";
import { createLogger } from "../../lib/log.ts";
import { Consumer, type Disposition, type ReceivedMessage } from "../../lib/sqs/consumer.ts";
import { createQueue, sqsClient } from "../env/testenv.ts";
import { sendRaw } from "../helpers/bundles.ts";

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
