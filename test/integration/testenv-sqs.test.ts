/**
 * Proves the SQS side of the test environment is a real SQS server with the behaviour
 * kube-pico-cd depends on: long polling, FIFO group blocking and dead-letter redrive.
 */
import { describe, expect, test } from "bun:test";
import { ChangeMessageVisibilityCommand, ReceiveMessageCommand, SendMessageCommand } from "@aws-sdk/client-sqs";
import { createQueue, sqsClient } from "../env/testenv.ts";

describe("test environment: ElasticMQ", () => {
  test("a message sent while a long-poll receive waits is received in under 200 ms", async () => {
    const sqs = await sqsClient();
    const queue = await createQueue();
    const receiving = sqs.send(new ReceiveMessageCommand({ QueueUrl: queue.url, WaitTimeSeconds: 10, MaxNumberOfMessages: 1 }));
    await new Promise((r) => setTimeout(r, 500)); // The receive is now waiting on the server.
    await sqs.send(new SendMessageCommand({ QueueUrl: queue.url, MessageBody: "wake up" }));
    const sent = performance.now();
    const received = await receiving;
    const latencyMs = performance.now() - sent;
    expect(received.Messages?.map((m) => m.Body)).toEqual(["wake up"]);
    expect(latencyMs).toBeLessThan(200);
  });

  test("a FIFO message group stays blocked while its message is in flight", async () => {
    const sqs = await sqsClient();
    const queue = await createQueue({ fifo: true, visibilityTimeoutSeconds: 30 });
    for (const body of ["first", "second"]) {
      await sqs.send(new SendMessageCommand({ QueueUrl: queue.url, MessageBody: body, MessageGroupId: "g", MessageDeduplicationId: body }));
    }
    const first = await sqs.send(new ReceiveMessageCommand({ QueueUrl: queue.url, MaxNumberOfMessages: 1, WaitTimeSeconds: 1 }));
    expect(first.Messages?.map((m) => m.Body)).toEqual(["first"]);
    const blocked = await sqs.send(new ReceiveMessageCommand({ QueueUrl: queue.url, MaxNumberOfMessages: 10, WaitTimeSeconds: 1 }));
    expect(blocked.Messages ?? []).toEqual([]);
    // Once the in-flight message becomes visible again, the group continues in order.
    await sqs.send(new ChangeMessageVisibilityCommand({ QueueUrl: queue.url, ReceiptHandle: first.Messages![0]!.ReceiptHandle!, VisibilityTimeout: 0 }));
    const again = await sqs.send(new ReceiveMessageCommand({ QueueUrl: queue.url, MaxNumberOfMessages: 1, WaitTimeSeconds: 1 }));
    expect(again.Messages?.map((m) => m.Body)).toEqual(["first"]);
  });

  test("a message moves to the dead-letter queue after maxReceiveCount receives", async () => {
    const sqs = await sqsClient();
    const queue = await createQueue({ deadLetter: { maxReceiveCount: 2 }, visibilityTimeoutSeconds: 1 });
    await sqs.send(new SendMessageCommand({ QueueUrl: queue.url, MessageBody: "poison" }));
    for (let i = 0; i < 2; i++) {
      const got = await sqs.send(new ReceiveMessageCommand({ QueueUrl: queue.url, MaxNumberOfMessages: 1, WaitTimeSeconds: 5, VisibilityTimeout: 0 }));
      expect(got.Messages?.map((m) => m.Body)).toEqual(["poison"]);
    }
    const third = await sqs.send(new ReceiveMessageCommand({ QueueUrl: queue.url, MaxNumberOfMessages: 1, WaitTimeSeconds: 1 }));
    expect(third.Messages ?? []).toEqual([]);
    const dead = await sqs.send(new ReceiveMessageCommand({ QueueUrl: queue.deadLetterUrl!, MaxNumberOfMessages: 1, WaitTimeSeconds: 5 }));
    expect(dead.Messages?.map((m) => m.Body)).toEqual(["poison"]);
  });
});
