/**
 * publish's side of the result queue: wait for the results (lib/wire/result.ts) of the messages
 * this publish sent, by the SQS MessageId that SendMessage returned, one per deploy queue; and
 * for a topic publish, by its build and each answering listener's target (lib/sqs/target-tally.ts).
 *
 * Several publishers (other CI runs, other clusters) may wait on one result queue at once,
 * so a result that is not ours is made visible again at once (ChangeMessageVisibility 0)
 * for whoever waits for it, and only ours are deleted. A receive that brought only others'
 * results is followed by a short pause, so that two waiting publishers do not hand the same
 * messages back and forth as fast as SQS answers.
 */
import {
  ChangeMessageVisibilityBatchCommand,
  DeleteMessageCommand,
  ReceiveMessageCommand,
  type Message,
  type SQSClient,
} from "@aws-sdk/client-sqs";
import { backoffDelayMs, delay } from "../backoff.ts";
import { namedErrorMessage } from "../errors.ts";
import { decodeResult, ResultRejectedError, type ResultMessage } from "../wire/result.ts";
import { answersBuild, TargetTally, type AwaitedBuild } from "./target-tally.ts";

/** A deploy message whose result is awaited. */
export interface AwaitedMessage {
  /** The deploy queue, as given (URL or name). */
  queue: string;
  queueUrl: string;
  /** What SendMessage returned. */
  messageId: string;
}

/** A result, with the deploy message it answers (undefined: it answers the topic publish). */
export interface ReceivedResult {
  sent: AwaitedMessage | undefined;
  result: ResultMessage;
}

/** Options of {@link waitForResults}. */
export interface WaitForResultsOptions {
  client: SQSClient;
  resultQueueUrl: string;
  awaited: readonly AwaitedMessage[];
  /** A topic publish: its build, whose results are awaited by target. */
  fleet?: AwaitedBuild | undefined;
  /** Told about each final result of the topic publish's build from a target not expected (it does not count). */
  onUnexpected?: (result: ResultMessage) => void;
  /** How long to wait in all, in ms. */
  timeoutMs: number;
  /** Told about each result as it arrives (to print it). */
  onResult?: (received: ReceivedResult) => void;
  /** Told about each progress result of an awaited deploy still running, in step order (one out of order is dropped). */
  onProgress?: (received: ReceivedResult) => void;
  /** Told about problems that do not end the wait (a failed receive, an unreadable message). */
  onWarning?: (text: string) => void;
  /** Pause after a receive that brought only others' results, in ms (jittered up to twice). Default 500. */
  othersPauseMs?: number;
  /** How long a received message stays hidden before it is deleted or handed back, in s. Default 30. */
  visibilityTimeoutSeconds?: number;
  signal?: AbortSignal;
  now?: () => number;
}

/** What {@link waitForResults} found. */
export interface WaitForResultsOutcome {
  /** In the order they arrived. */
  results: ReceivedResult[];
  /** The awaited messages without a result when the time ran out. */
  missing: AwaitedMessage[];
  /** A topic publish: the expected targets without a final result (none named when a count was expected). */
  missingTargets: string[];
  /** A topic publish: how many expected targets gave no final result. */
  missingTargetCount: number;
}

/**
 * Long-polls the result queue until every awaited message has a result or `timeoutMs` has
 * passed. Receive errors are retried with backoff until then; they never end the wait early.
 *
 * @throws the signal's reason when `signal` aborts.
 */
export async function waitForResults(options: WaitForResultsOptions): Promise<WaitForResultsOutcome> {
  const { client, resultQueueUrl, awaited, fleet, onUnexpected, timeoutMs, onResult, onProgress, onWarning, othersPauseMs = 500, visibilityTimeoutSeconds = 30, signal, now = Date.now } = options;
  const tally = fleet === undefined ? undefined : new TargetTally(fleet.expect);
  /** The latest step seen per awaited message, by its elapsed time. */
  const latestStep = new Map<string, number>();
  const deadline = now() + timeoutMs;
  const pending = new Map(awaited.map((sent) => [sent.messageId, sent]));
  const ours = new Set(awaited.map((sent) => sent.messageId));
  const results: ReceivedResult[] = [];
  const warnedUnreadable = new Set<string>();
  let failures = 0;

  while (pending.size > 0 || (tally !== undefined && !tally.done())) {
    const remainingMs = deadline - now();
    if (remainingMs <= 0) break;
    let messages: Message[];
    try {
      // The last poll ends with the deadline; the timeout guards a connection that hangs.
      const limit = AbortSignal.timeout(remainingMs + 5_000);
      const output = await client.send(
        new ReceiveMessageCommand({
          QueueUrl: resultQueueUrl,
          MaxNumberOfMessages: 10,
          WaitTimeSeconds: Math.min(20, Math.max(1, Math.ceil(remainingMs / 1000))),
          VisibilityTimeout: visibilityTimeoutSeconds,
        }),
        { abortSignal: signal ? AbortSignal.any([signal, limit]) : limit },
      );
      messages = output.Messages ?? [];
      failures = 0;
    } catch (error) {
      if (signal?.aborted) throw signal.reason;
      const waitMs = Math.min(backoffDelayMs(Math.min(failures, 20), { baseMs: 1_000, maxMs: 10_000 }), Math.max(0, deadline - now()));
      failures++;
      onWarning?.(`cannot receive from the result queue ${resultQueueUrl} (${namedErrorMessage(error)}); retrying in ${waitMs} ms`);
      await delay(waitMs, { signal });
      continue;
    }

    const others: Message[] = [];
    let mine = 0;
    for (const message of messages) {
      let result: ResultMessage;
      try {
        result = decodeResult(message.Body ?? "");
      } catch (error) {
        if (!(error instanceof ResultRejectedError)) throw error;
        // Maybe a newer listener's format, read by a newer publisher: leave it for others.
        const id = message.MessageId ?? "";
        if (!warnedUnreadable.has(id)) {
          warnedUnreadable.add(id);
          const answersOurs = ours.has(messageIdIn(message.Body));
          onWarning?.(
            `message ${id} on the result queue is not a result this publish can read (${error.message})` +
              (answersOurs ? "; it answers a message of this publish: is the listener newer than publish?" : "; left for other readers"),
          );
        }
        others.push(message);
        continue;
      }
      const byId = ours.has(result.messageId);
      if (!byId && (fleet === undefined || tally === undefined || !answersBuild(result, fleet))) {
        others.push(message);
        continue;
      }
      mine++;
      const sent = pending.get(result.messageId);
      if (!byId && tally !== undefined) {
        const verdict = tally.receive(result);
        const elapsed = result.progress?.elapsedMs ?? 0;
        // In order per target: the clusters' messages may share one id (SNS envelopes carry the topic's).
        const step = `target:${result.target ?? ""}`;
        if (verdict === "progress" && elapsed >= (latestStep.get(step) ?? -1)) {
          latestStep.set(step, elapsed);
          onProgress?.({ sent: undefined, result });
        } else if (verdict === "counted") {
          const received = { sent: undefined, result };
          results.push(received);
          onResult?.(received);
        } else if (verdict === "unexpected" && result.result !== "progress") {
          onUnexpected?.(result);
        }
      } else if (result.result === "progress") {
        // Not an end: told (when still awaited and in order), deleted, and the wait goes on.
        const elapsed = result.progress?.elapsedMs ?? 0;
        if (sent !== undefined && elapsed >= (latestStep.get(result.messageId) ?? -1)) {
          latestStep.set(result.messageId, elapsed);
          onProgress?.({ sent, result });
        }
      } else if (sent !== undefined) {
        // A second result for one of ours (the listener retried a failed deploy) is dropped too.
        pending.delete(result.messageId);
        const received = { sent, result };
        results.push(received);
        onResult?.(received);
      }
      await deleteResult(client, resultQueueUrl, message, signal).catch((error: unknown) => {
        if (signal?.aborted) throw signal.reason;
        onWarning?.(`cannot delete result ${message.MessageId} from ${resultQueueUrl} (${namedErrorMessage(error)}); it expires with the queue's retention`);
      });
    }
    if (others.length > 0) {
      await handBack(client, resultQueueUrl, others, signal).catch((error: unknown) => {
        if (signal?.aborted) throw signal.reason;
        onWarning?.(`cannot hand ${others.length} result(s) of other publishers back to ${resultQueueUrl} (${namedErrorMessage(error)}); they reappear after ${visibilityTimeoutSeconds} s`);
      });
      if (mine === 0 && (pending.size > 0 || (tally !== undefined && !tally.done()))) {
        const pauseMs = Math.min(othersPauseMs + Math.round(Math.random() * othersPauseMs), Math.max(0, deadline - now()));
        await delay(pauseMs, { signal });
      }
    }
  }
  return { results, missing: [...pending.values()], missingTargets: tally?.missingNames() ?? [], missingTargetCount: tally?.missingCount() ?? 0 };
}

async function deleteResult(client: SQSClient, queueUrl: string, message: Message, signal: AbortSignal | undefined): Promise<void> {
  await client.send(new DeleteMessageCommand({ QueueUrl: queueUrl, ReceiptHandle: message.ReceiptHandle }), signal ? { abortSignal: signal } : {});
}

/** Makes others' results visible again at once. */
async function handBack(client: SQSClient, queueUrl: string, messages: readonly Message[], signal: AbortSignal | undefined): Promise<void> {
  const output = await client.send(
    new ChangeMessageVisibilityBatchCommand({
      QueueUrl: queueUrl,
      Entries: messages.map((message, index) => ({ Id: String(index), ReceiptHandle: message.ReceiptHandle, VisibilityTimeout: 0 })),
    }),
    signal ? { abortSignal: signal } : {},
  );
  const failed = output.Failed ?? [];
  if (failed.length > 0) throw new Error(`${failed.length} of ${messages.length} refused: ${failed[0]?.Code ?? "unknown"} ${failed[0]?.Message ?? ""}`.trim());
}

/** The `messageId` field of a JSON body, or "" (for the warning about unreadable results). */
function messageIdIn(body: string | undefined): string {
  try {
    const parsed: unknown = JSON.parse(body ?? "");
    if (typeof parsed === "object" && parsed !== null && "messageId" in parsed && typeof parsed.messageId === "string") return parsed.messageId;
  } catch {
    // Not JSON: not ours as far as can be told.
  }
  return "";
}
