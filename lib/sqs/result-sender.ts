/**
 * The listener's side of the result queue: an outcome listener (lib/listener/operations.ts) that sends
 * a `kube-pico-cd.result` (lib/wire/result.ts) for every outcome that names a build, so that
 * `publish --wait` learns how its deploy went.
 *
 * A result is a courtesy to CI, never part of the deploy: the outcome is already recorded and
 * the message deleted or scheduled for a retry when the result is sent. So a send that fails
 * is retried a few times with backoff, each attempt with its own timeout, and then logged and
 * dropped; the whole effort is bounded (under 15 s with the defaults) so that a shutdown, which waits
 * for pending results, is not held up for long.
 */
import type { SQSClient } from "@aws-sdk/client-sqs";
import { backoffDelayMs, delay } from "../backoff.ts";
import type { ReceivedMessage } from "./consumer.ts";
import type { Logger } from "../log.ts";
import { sha256Hex } from "../wire/message.ts";
import type { OutcomeListener } from "../listener/operations.ts";
import { encodeResult, progressResult, resultFromOutcome, type ResultMessage } from "../wire/result.ts";
import type { DeployProgress } from "../listener/deployer.ts";
import type { DecodedMessage } from "../wire/message.ts";
import { isFifoQueue, messageGroupIdProblem, parseQueueRef, resolveQueueUrl, sendBody, type QueueRef } from "./send.ts";
import type { Outcome } from "../kube/record.ts";

/** Options of {@link createResultSender}. */
export interface ResultSenderOptions {
  sqs: SQSClient;
  /** The result queue, by URL or name (a name is resolved with GetQueueUrl on first use). */
  resultQueue: string;
  /** The deploy queue, by URL or name: its name goes into every result. */
  deployQueue: string;
  /** The listener's namespace. */
  namespace: string;
  /**
   * The listener's own target (--target): every result names it instead of the message's, so
   * that a publisher waiting for a fleet (one message through a topic) knows who answered.
   * Absent: a result names the message's single target, if any.
   */
  target?: string | undefined;
  /** The deploy queue's redrive maxReceiveCount, once known (read at start-up). */
  maxReceiveCount?: () => number | undefined;
  logger: Logger;
  /** Sends per result, the first included. Default 4. */
  attempts?: number;
  /** Timeout of one attempt (resolving the queue and sending), in ms. Default 2500. */
  attemptTimeoutMs?: number;
  /** Cap of the first backoff, in ms; doubles per attempt. Default 500. */
  backoffBaseMs?: number;
}

/**
 * An outcome listener that sends results to the result queue.
 *
 * @throws {Error} when `resultQueue` is neither a queue URL nor a queue name (checked now).
 */
export function createResultSender(options: ResultSenderOptions): OutcomeListener {
  return createResultChannel(options).onOutcome;
}

/** What the listener sends on the result queue: outcomes, the progress of deploys, plans. */
export interface ResultChannel {
  /** The outcome listener: the final result of a deploy message. */
  onOutcome: OutcomeListener;
  /** The deployer's `onProgress`: a progress result, sent in the background, before the message's final result. */
  onProgress: (progress: DeployProgress, decoded: DecodedMessage, message: ReceivedMessage) => void;
  /** Sends one result (a plan's); false when it could not be sent. */
  send: (result: ResultMessage, message: ReceivedMessage | undefined) => Promise<boolean>;
}

/**
 * The result queue's sender. Results of one message go out one after another (progress in the
 * order of the steps, the outcome last), so that a publisher sees them in that order.
 */
export function createResultChannel(options: ResultSenderOptions): ResultChannel {
  const { deployQueue, namespace, maxReceiveCount, target } = options;
  const sink = createResultSink(options);
  const send = target === undefined ? sink : (result: ResultMessage, message: ReceivedMessage | undefined) => sink({ ...result, target }, message);
  const deployQueueName = queueName(deployQueue);
  const chains = new Map<string, Promise<unknown>>();
  const inOrder = (messageId: string, task: () => Promise<unknown>): Promise<unknown> => {
    const next = (chains.get(messageId) ?? Promise.resolve()).then(task, task);
    chains.set(messageId, next);
    void next.finally(() => {
      if (chains.get(messageId) === next) chains.delete(messageId);
    });
    return next;
  };
  return {
    send,
    onProgress: (progress, decoded, message) => {
      const result = progressResult(
        progress,
        { app: decoded.app, id: decoded.build.id, timestampMs: decoded.build.timestampMs, commit: decoded.build.commit, digest: decoded.digest, target: decoded.target, messageId: message.messageId },
        { queue: deployQueueName, namespace },
        new Date().toISOString(),
      );
      void inOrder(message.messageId, () => send(result, message));
    },
    onOutcome: async (outcome: Outcome, message: ReceivedMessage | undefined) => {
      const result = resultFromOutcome(outcome, {
        queue: deployQueueName,
        namespace,
        receiveCount: message?.receiveCount,
        maxReceiveCount: maxReceiveCount?.(),
      });
      if (result === undefined) return;
      await inOrder(result.messageId, () => send(result, message));
    },
  };
}

/**
 * Sends one result message (an outcome's, a plan's) to the result queue, retried a few times
 * (see the module comment); resolves true once sent, false when every attempt failed (logged).
 *
 * @throws {Error} when `resultQueue` is neither a queue URL nor a queue name (checked now).
 */
export function createResultSink(options: ResultSenderOptions): (result: ResultMessage, message: ReceivedMessage | undefined) => Promise<boolean> {
  const { sqs, resultQueue, logger, attempts = 4, attemptTimeoutMs = 2_500, backoffBaseMs = 500 } = options;
  const ref = parseQueueRef(resultQueue);
  if ("problem" in ref) throw new Error(`Cannot send results to the result queue: ${ref.problem}`);
  const queue: QueueRef = ref;
  let resolvedUrl: string | undefined;

  return async (result: ResultMessage, message: ReceivedMessage | undefined) => {
    const body = encodeResult(result);
    const fifo = isFifoQueue(queue)
      ? {
          // One group per build: results of different builds never wait behind each other,
          // and a publisher holding one build's results does not block another's.
          messageGroupId: messageGroupIdProblem(result.build.id) === undefined ? result.build.id : sha256Hex(result.build.id),
          // The same delivery's result sent twice (a retry after a lost answer) arrives once.
          messageDeduplicationId: sha256Hex(`${result.messageId}\n${message?.receiveCount ?? 0}\n${result.result}${result.progress ? `\n${result.progress.phase}\n${result.progress.elapsedMs}` : ""}`),
        }
      : undefined;
    const fields = { build: result.build.id, messageId: result.messageId, result: result.result };
    for (let attempt = 1; ; attempt++) {
      const signal = AbortSignal.timeout(attemptTimeoutMs);
      try {
        resolvedUrl ??= await resolveQueueUrl(sqs, queue, { signal });
        const sent = await sendBody(sqs, resolvedUrl, body, { signal, ...(fifo ? { fifo } : {}) });
        logger.debug("result sent", { ...fields, resultQueueUrl: resolvedUrl, resultMessageId: sent.messageId });
        return true;
      } catch (error) {
        if (attempt >= attempts) {
          logger.warn("sending the result failed; CI waiting for it will time out, the deploy stands", { ...fields, resultQueue, attempts, error: error as Error });
          return false;
        }
        const waitMs = backoffDelayMs(attempt - 1, { baseMs: backoffBaseMs, maxMs: backoffBaseMs * 8 });
        logger.debug("sending the result failed; retrying", { ...fields, resultQueue, attempt, retryInMs: waitMs, error: error as Error });
        await delay(waitMs);
      }
    }
  };
}

/** The name of a queue given by URL or name. */
function queueName(queue: string): string {
  const ref = parseQueueRef(queue);
  return "problem" in ref ? queue : ref.name;
}
