/**
 * The SQS side of the listener: long-poll, hand each batch to a handler, then do with each
 * message what the handler decided, and only that. A message is deleted only when the
 * handler says so (after its outcome is recorded); everything else stays in the queue.
 *
 * - While the handler works, a heartbeat keeps the batch hidden (ChangeMessageVisibility),
 *   so a deploy longer than the visibility timeout is not handed to another replica.
 * - SQS errors (network, credentials, throttling) back off with jitter; the loop never dies
 *   of them and never spins.
 * - A handler that throws is a bug: its messages are left for retry and the loop goes on.
 * - `stop()` stops receiving at once (an open long poll is aborted), lets the batches in hand
 *   finish, and resolves when they have.
 * - Lanes: each message goes to the lane `laneOf` names (the listener's: its app). A lane
 *   hands its messages to the handler one batch at a time, in order; different lanes run side
 *   by side, so one app's long health wait or held batch never delays another app's deploy.
 *   Receiving goes on while lanes work, up to `maxInHand` messages held at once; messages that
 *   arrive for a busy lane wait for it, kept invisible by the heartbeat like the rest.
 */
import {
  ChangeMessageVisibilityBatchCommand,
  DeleteMessageBatchCommand,
  GetQueueAttributesCommand,
  ReceiveMessageCommand,
  type Message,
  type MessageAttributeValue,
  type SQSClient,
} from "@aws-sdk/client-sqs";
import { createBackoff, delay } from "../backoff.ts";
import { createDeadLetterMover, type DeadLetterMover } from "./dead-letter.ts";
import type { Logger } from "../log.ts";

/** A received message, with what the handler needs to know of it. */
export interface ReceivedMessage {
  messageId: string;
  receiptHandle: string;
  body: string;
  /** ApproximateReceiveCount: 1 on first delivery. */
  receiveCount: number;
  /** SentTimestamp in ms since the epoch, when SQS gave it. */
  sentTimestampMs?: number;
  /** When this process received it (ms since the epoch). */
  receivedAtMs: number;
  /** The message group, on a FIFO queue (kept when the message is moved to the dead-letter queue). */
  messageGroupId?: string;
  /** The sender's message attributes (kept when the message is moved to the dead-letter queue). */
  messageAttributes?: Record<string, MessageAttributeValue>;
}

/**
 * What to do with a message after the handler:
 * - `delete`: its outcome is recorded; remove it from the queue;
 * - `retry`: leave it; it becomes visible again after `delaySeconds` (0..43200);
 * - `dead-letter`: its outcome is recorded; move it to the queue's dead-letter queue at once
 *   (lib/sqs/dead-letter.ts) to be redriven later. When it cannot be moved (no redrive
 *   policy, no permission) it is logged as an error and left for retry after the longest
 *   delay SQS allows (12 hours), so it is never lost.
 */
export type Disposition = { action: "delete" } | { action: "retry"; delaySeconds: number } | { action: "dead-letter"; reason: string };

/** Decides the fate of every message of a batch; messages it leaves out are retried. */
export type BatchHandler = (messages: readonly ReceivedMessage[], signal: AbortSignal) => Promise<ReadonlyMap<string, Disposition>>;

export interface ConsumerOptions {
  sqs: SQSClient;
  queueUrl: string;
  handler: BatchHandler;
  logger: Logger;
  /** Long-poll wait per receive, in seconds (0..20). Default 20. */
  waitTimeSeconds?: number;
  /** Messages per receive (1..10). Default 10. */
  maxMessages?: number;
  /** Visibility timeout requested on receive and renewed by the heartbeat, in seconds. Default 60. */
  visibilityTimeoutSeconds?: number;
  /** Delay for messages of a handler that threw, in seconds. Default 30. */
  crashRetrySeconds?: number;
  /** Stop after the first receive that returns no message (for scripts and tests). Default false. */
  once?: boolean;
  /** Called after every successful receive (for readiness). */
  onReceive?: () => void;
  /** Called for every failed SQS call, receive included, by its operation name (metrics). */
  onSqsError?: (operation: "ReceiveMessage" | "DeleteMessageBatch" | "ChangeMessageVisibilityBatch" | "SendMessage", error: unknown) => void;
  /** Backoff after failed receives, in milliseconds. Defaults 1000 and 60000. */
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  /** The lane of a message; messages of one lane are handled one batch at a time. Default: one lane. */
  laneOf?: (message: ReceivedMessage) => string;
  /** Most messages held at once, over all lanes (received and not yet disposed). Default 100. */
  maxInHand?: number;
}

interface Lane {
  /** Received, waiting for the lane's next batch. */
  pending: ReceivedMessage[];
  /** The lane's work while it runs. */
  running: Promise<void> | undefined;
}

const MAX_VISIBILITY_SECONDS = 43_200;

export class Consumer {
  readonly #options: Required<Omit<ConsumerOptions, "onReceive" | "onSqsError">> & Pick<ConsumerOptions, "onReceive" | "onSqsError">;
  readonly #lanes = new Map<string, Lane>();
  /** Every message received and not yet disposed, by receipt handle: the heartbeat renews them all. */
  readonly #inHand = new Map<string, ReceivedMessage>();
  /** Resolved (and replaced) whenever a lane finishes a batch: a full consumer waits on it. */
  #progress = Promise.withResolvers<void>();
  readonly #deadLetter: DeadLetterMover;
  /** Aborts receives and sleeps: receiving stops. */
  readonly #stopReceiving = new AbortController();
  /** Aborts the handler (kills kubectl): only when the grace period ran out. */
  readonly #abortHandler = new AbortController();
  #running: Promise<void> | undefined;

  constructor(options: ConsumerOptions) {
    const {
      waitTimeSeconds = 20,
      maxMessages = 10,
      visibilityTimeoutSeconds = 60,
      crashRetrySeconds = 30,
      once = false,
      backoffBaseMs = 1_000,
      backoffMaxMs = 60_000,
      laneOf = () => "",
      maxInHand = 100,
    } = options;
    if (!Number.isInteger(waitTimeSeconds) || waitTimeSeconds < 0 || waitTimeSeconds > 20) {
      throw new RangeError(`Cannot create the consumer as 'waitTimeSeconds' must be an integer from 0 to 20: current value is ${waitTimeSeconds}`);
    }
    if (!Number.isInteger(maxMessages) || maxMessages < 1 || maxMessages > 10) {
      throw new RangeError(`Cannot create the consumer as 'maxMessages' must be an integer from 1 to 10: current value is ${maxMessages}`);
    }
    if (!Number.isInteger(visibilityTimeoutSeconds) || visibilityTimeoutSeconds < 3 || visibilityTimeoutSeconds > MAX_VISIBILITY_SECONDS) {
      throw new RangeError(`Cannot create the consumer as 'visibilityTimeoutSeconds' must be an integer from 3 to ${MAX_VISIBILITY_SECONDS}: current value is ${visibilityTimeoutSeconds}`);
    }
    if (!Number.isInteger(maxInHand) || maxInHand < 1) {
      throw new RangeError(`Cannot create the consumer as 'maxInHand' must be a positive integer: current value is ${maxInHand}`);
    }
    this.#options = { ...options, waitTimeSeconds, maxMessages, visibilityTimeoutSeconds, crashRetrySeconds, once, backoffBaseMs, backoffMaxMs, laneOf, maxInHand };
    this.#deadLetter = createDeadLetterMover({ sqs: options.sqs, queueUrl: options.queueUrl });
  }

  /** Starts the loop; the promise resolves when it has stopped (by `stop()` or `once`) and every lane is done. */
  start(): Promise<void> {
    this.#running ??= (async () => {
      const heartbeat = this.#heartbeat();
      try {
        await this.#loop();
        // Receiving has ended: the lanes finish what they hold.
        while (this.#lanes.size > 0) await Promise.all([...this.#lanes.values()].map((lane) => lane.running));
      } finally {
        heartbeat.stop();
        await heartbeat.done;
      }
    })();
    return this.#running;
  }

  /**
   * Stops receiving and waits for the batch in hand. After `graceMs` (default: no limit) the
   * handler is aborted; its messages then stay in the queue for a later retry.
   */
  async stop(graceMs?: number): Promise<void> {
    this.#stopReceiving.abort(new Error("consumer stopping"));
    if (!this.#running) return;
    const timer = graceMs === undefined ? undefined : setTimeout(() => this.#abortHandler.abort(new Error("shutdown grace period over")), graceMs);
    try {
      await this.#running;
    } finally {
      clearTimeout(timer);
    }
  }

  get stopping(): boolean {
    return this.#stopReceiving.signal.aborted;
  }

  async #loop(): Promise<void> {
    const { sqs, queueUrl, logger, waitTimeSeconds, maxMessages, visibilityTimeoutSeconds, once } = this.#options;
    const backoff = createBackoff({ baseMs: this.#options.backoffBaseMs, maxMs: this.#options.backoffMaxMs });
    const stop = this.#stopReceiving.signal;
    while (!stop.aborted) {
      const room = this.#options.maxInHand - this.#inHand.size;
      if (room <= 0) {
        // Full: receive again once a lane has disposed of a batch (or on stop).
        await Promise.race([this.#progress.promise, new Promise<void>((resolve) => stop.addEventListener("abort", () => resolve(), { once: true }))]);
        continue;
      }
      let messages: Message[];
      try {
        const response = await sqs.send(
          new ReceiveMessageCommand({
            QueueUrl: queueUrl,
            MaxNumberOfMessages: Math.min(maxMessages, room),
            WaitTimeSeconds: once ? Math.min(waitTimeSeconds, 1) : waitTimeSeconds,
            VisibilityTimeout: visibilityTimeoutSeconds,
            MessageSystemAttributeNames: ["ApproximateReceiveCount", "SentTimestamp", "MessageGroupId"],
            // Kept on a copy moved to the dead-letter queue.
            MessageAttributeNames: ["All"],
          }),
          { abortSignal: stop },
        );
        messages = response.Messages ?? [];
        backoff.reset();
        this.#options.onReceive?.();
      } catch (error) {
        if (stop.aborted) break;
        this.#options.onSqsError?.("ReceiveMessage", error);
        const waitMs = backoff.next();
        logger.warn("receiving from SQS failed; backing off", { queueUrl, error: error as Error, attempt: backoff.attempt, retryInMs: waitMs });
        await delay(waitMs, { signal: stop }).catch(() => {});
        continue;
      }
      if (messages.length === 0) {
        // With --once: done once the queue has nothing more for us and the lanes are idle.
        if (once && this.#lanes.size === 0) break;
        if (once) await Promise.race([this.#progress.promise, new Promise<void>((resolve) => stop.addEventListener("abort", () => resolve(), { once: true }))]);
        continue;
      }
      // The whole receive into the lanes first, so that each lane's next batch holds all of it.
      const touched = new Set(messages.map(toReceived).map((message) => this.#enqueue(message)));
      for (const name of touched) this.#startLane(name);
    }
  }

  /** Puts a received message into its lane; returns the lane's name. */
  #enqueue(message: ReceivedMessage): string {
    this.#inHand.set(message.receiptHandle, message);
    const name = this.#options.laneOf(message);
    let lane = this.#lanes.get(name);
    if (lane === undefined) {
      lane = { pending: [], running: undefined };
      this.#lanes.set(name, lane);
    }
    lane.pending.push(message);
    return name;
  }

  /** Starts the lane `name` when it is idle: it hands what it holds to the handler, batch after batch, until it holds nothing. */
  #startLane(name: string): void {
    const run = this.#lanes.get(name);
    if (run === undefined || run.running !== undefined) return;
    run.running = (async () => {
      try {
        while (run.pending.length > 0) await this.#handle(run.pending.splice(0));
      } finally {
        this.#lanes.delete(name);
        this.#signalProgress();
      }
    })();
  }

  #signalProgress(): void {
    const done = this.#progress;
    this.#progress = Promise.withResolvers<void>();
    done.resolve();
  }

  async #handle(batch: ReceivedMessage[]): Promise<void> {
    try {
      await this.#handleBatch(batch);
    } finally {
      for (const m of batch) this.#inHand.delete(m.receiptHandle);
      this.#signalProgress();
    }
  }

  async #handleBatch(batch: ReceivedMessage[]): Promise<void> {
    const { handler, logger, crashRetrySeconds } = this.#options;
    let decisions: ReadonlyMap<string, Disposition>;
    try {
      decisions = await handler(batch, this.#abortHandler.signal);
    } catch (error) {
      logger.error("the batch handler failed; its messages stay in the queue", { error: error as Error, messageIds: batch.map((m) => m.messageId) });
      decisions = new Map();
    }
    // Decided: the heartbeat must not renew them over the delay or delete that follows.
    for (const m of batch) this.#inHand.delete(m.receiptHandle);
    const moved = await this.#moveToDeadLetter(batch, decisions);
    const toDelete = batch.filter((m) => decisions.get(m.messageId)?.action === "delete" || moved.has(m.messageId));
    const toRetry = batch
      .filter((m) => decisions.get(m.messageId)?.action !== "delete" && !moved.has(m.messageId))
      .map((m) => {
        const d = decisions.get(m.messageId);
        return { message: m, delaySeconds: d?.action === "retry" ? d.delaySeconds : d?.action === "dead-letter" ? MAX_VISIBILITY_SECONDS : crashRetrySeconds };
      });
    await Promise.all([this.#delete(toDelete), this.#changeVisibility(toRetry)]);
  }

  /** Copies the messages the handler sent to the dead-letter queue there; returns the ids of those copied (to delete). */
  async #moveToDeadLetter(batch: readonly ReceivedMessage[], decisions: ReadonlyMap<string, Disposition>): Promise<Set<string>> {
    const { logger, queueUrl } = this.#options;
    const moved = new Set<string>();
    for (const message of batch) {
      const d = decisions.get(message.messageId);
      if (d?.action !== "dead-letter") continue;
      const result = await this.#deadLetter(message, d.reason, this.#abortHandler.signal);
      if (result.moved) {
        moved.add(message.messageId);
        logger.info("rejected message moved to the dead-letter queue for redrive", { messageId: message.messageId, reason: d.reason, deadLetterUrl: result.deadLetterUrl });
        continue;
      }
      this.#options.onSqsError?.("SendMessage", new Error(result.why));
      logger.error("a rejected message that a configuration change could cure cannot be moved to the dead-letter queue; it stays in the queue and comes back in 12 hours (give the queue a dead-letter queue and the listener sqs:SendMessage on it)", {
        messageId: message.messageId,
        reason: d.reason,
        queueUrl,
        why: result.why,
        retryInSeconds: MAX_VISIBILITY_SECONDS,
      });
    }
    return moved;
  }

  /** Renews the visibility of every message in hand every third of the timeout until stopped. */
  #heartbeat(): { stop(): void; done: Promise<void> } {
    const { visibilityTimeoutSeconds } = this.#options;
    const stopped = new AbortController();
    const done = (async () => {
      const everyMs = (visibilityTimeoutSeconds * 1000) / 3;
      while (!stopped.signal.aborted) {
        try {
          await delay(everyMs, { signal: stopped.signal });
        } catch {
          return;
        }
        await this.#changeVisibility([...this.#inHand.values()].map((message) => ({ message, delaySeconds: visibilityTimeoutSeconds })));
      }
    })();
    return { stop: () => stopped.abort(), done };
  }

  async #delete(messages: readonly ReceivedMessage[]): Promise<void> {
    const { sqs, queueUrl, logger } = this.#options;
    for (let i = 0; i < messages.length; i += 10) {
      const chunk = messages.slice(i, i + 10);
      try {
        const result = await sqs.send(
          new DeleteMessageBatchCommand({ QueueUrl: queueUrl, Entries: chunk.map((m, n) => ({ Id: String(n), ReceiptHandle: m.receiptHandle })) }),
        );
        for (const failed of result.Failed ?? []) {
          const message = chunk[Number(failed.Id)];
          this.#options.onSqsError?.("DeleteMessageBatch", failed);
          // Its outcome is recorded, so a redelivery is recognised as a duplicate.
          logger.warn("deleting a message failed; it will be redelivered and recognised as already handled", { messageId: message?.messageId, code: failed.Code, reason: failed.Message });
        }
      } catch (error) {
        this.#options.onSqsError?.("DeleteMessageBatch", error);
        logger.warn("deleting messages failed; they will be redelivered and recognised as already handled", { error: error as Error, messageIds: chunk.map((m) => m.messageId) });
      }
    }
  }

  async #changeVisibility(entries: readonly { message: ReceivedMessage; delaySeconds: number }[]): Promise<void> {
    const { sqs, queueUrl, logger } = this.#options;
    for (let i = 0; i < entries.length; i += 10) {
      const chunk = entries.slice(i, i + 10);
      try {
        const result = await sqs.send(
          new ChangeMessageVisibilityBatchCommand({
            QueueUrl: queueUrl,
            Entries: chunk.map((e, n) => ({
              Id: String(n),
              ReceiptHandle: e.message.receiptHandle,
              VisibilityTimeout: Math.max(0, Math.min(MAX_VISIBILITY_SECONDS, Math.round(e.delaySeconds))),
            })),
          }),
        );
        // A batch call succeeds as a whole while single entries fail (a receipt handle that
        // expired, a message deleted by hand): such a message may be handed to another
        // receiver, so each one is logged and counted.
        for (const failed of result.Failed ?? []) {
          const entry = chunk[Number(failed.Id)];
          this.#options.onSqsError?.("ChangeMessageVisibilityBatch", failed);
          logger.warn("changing the visibility of a message failed; it may be received again before its deploy is recorded", {
            messageId: entry?.message.messageId,
            code: failed.Code,
            reason: failed.Message,
          });
        }
      } catch (error) {
        // The message keeps its current timeout and comes back when it runs out.
        this.#options.onSqsError?.("ChangeMessageVisibilityBatch", error);
        logger.warn("changing message visibility failed", { error: error as Error, messageIds: chunk.map((e) => e.message.messageId) });
      }
    }
  }
}

function toReceived(message: Message): ReceivedMessage {
  const receiveCount = Number(message.Attributes?.ApproximateReceiveCount ?? "1");
  const sent = Number(message.Attributes?.SentTimestamp);
  const received: ReceivedMessage = {
    messageId: message.MessageId ?? "(no id)",
    receiptHandle: message.ReceiptHandle ?? "",
    body: message.Body ?? "",
    receiveCount: Number.isFinite(receiveCount) && receiveCount > 0 ? receiveCount : 1,
    receivedAtMs: Date.now(),
  };
  if (Number.isFinite(sent)) received.sentTimestampMs = sent;
  const group = message.Attributes?.MessageGroupId;
  if (group !== undefined) received.messageGroupId = group;
  if (message.MessageAttributes !== undefined && Object.keys(message.MessageAttributes).length > 0) received.messageAttributes = message.MessageAttributes;
  return received;
}

/**
 * The queue's redrive `maxReceiveCount`: after that many receives SQS moves a message to the
 * dead-letter queue. Undefined when the queue has no redrive policy (a failing message then
 * comes back until the queue's retention period ends).
 *
 * @throws the SDK's error when the attributes cannot be read (e.g. no sqs:GetQueueAttributes).
 */
export async function readMaxReceiveCount(sqs: SQSClient, queueUrl: string, signal?: AbortSignal): Promise<number | undefined> {
  const { Attributes = {} } = await sqs.send(new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: ["RedrivePolicy"] }), signal ? { abortSignal: signal } : {});
  return maxReceiveCountOf(Attributes.RedrivePolicy);
}

/** `maxReceiveCount` of a RedrivePolicy attribute (JSON; the count may be a string). */
export function maxReceiveCountOf(redrivePolicy: string | undefined): number | undefined {
  if (redrivePolicy === undefined || redrivePolicy === "") return undefined;
  try {
    const count = Number((JSON.parse(redrivePolicy) as { maxReceiveCount?: unknown }).maxReceiveCount);
    return Number.isInteger(count) && count > 0 ? count : undefined;
  } catch {
    return undefined;
  }
}
