/**
 * The listener's deploy queue at start: a name is resolved with GetQueueUrl, a URL is checked
 * with GetQueueAttributes. A queue that does not exist is a configuration error that no wait
 * cures, so the listener stops at once; SQS that cannot be reached (network, throttling,
 * credentials not yet mounted) is waited out with backoff, as it often is at a pod's start.
 */
import { GetQueueAttributesCommand, GetQueueUrlCommand, type SQSClient } from "@aws-sdk/client-sqs";
import { createBackoff, delay } from "../backoff.ts";
import type { Logger } from "../log.ts";

/**
 * What a failed GetQueueUrl or GetQueueAttributes says about the queue:
 * - `missing`: it does not exist (in this region, for this account);
 * - `unchecked`: the caller may not ask (sqs:GetQueueAttributes denied), which says nothing
 *   about the queue: receiving may still be allowed;
 * - `retry`: anything else, SQS unreachable included.
 */
export type QueueErrorKind = "missing" | "unchecked" | "retry";

/** Error names of a queue that does not exist: the JSON protocol's, and the query protocol's code. */
const MISSING = new Set(["QueueDoesNotExist", "AWS.SimpleQueueService.NonExistentQueue", "NonExistentQueue"]);
const DENIED = new Set(["AccessDenied", "AccessDeniedException"]);

/** Sorts an SDK error by its name and code (never its message): see {@link QueueErrorKind}. */
export function queueErrorKind(error: unknown): QueueErrorKind {
  if (typeof error !== "object" || error === null) return "retry";
  const { name, Code } = error as { name?: unknown; Code?: unknown };
  const names = [name, Code].filter((value): value is string => typeof value === "string");
  if (names.some((value) => MISSING.has(value))) return "missing";
  if (names.some((value) => DENIED.has(value))) return "unchecked";
  return "retry";
}

/** Options of {@link findQueue}. */
export interface FindQueueOptions {
  /** The client for `queue` (lib/sqs/region.ts: its URL's region, or the configured one for a name). */
  sqs: SQSClient;
  logger: Logger;
  signal: AbortSignal;
  /** Told of each failed call, by SQS operation (GetQueueAttributes, GetQueueUrl), e.g. for a metric. */
  onError?: (operation: "GetQueueAttributes" | "GetQueueUrl") => void;
  /** First backoff in ms, doubling to `maxBackoffMs`. Defaults 1000 and 60000. */
  baseBackoffMs?: number;
  maxBackoffMs?: number;
}

/** What {@link findQueue} found: the queue's URL, or the one line saying it does not exist. */
export type FoundQueue = { url: string } | { missing: string };

/**
 * Finds the queue `queue` (a URL or a name), retrying with backoff while SQS cannot be
 * reached. Resolves undefined only when `signal` aborts first.
 */
export async function findQueue(queue: string, options: FindQueueOptions): Promise<FoundQueue | undefined> {
  const { sqs, logger, signal, onError, baseBackoffMs = 1_000, maxBackoffMs = 60_000 } = options;
  const byUrl = /^https?:\/\//.test(queue);
  const backoff = createBackoff({ baseMs: baseBackoffMs, maxMs: maxBackoffMs });
  while (!signal.aborted) {
    try {
      if (byUrl) {
        await sqs.send(new GetQueueAttributesCommand({ QueueUrl: queue, AttributeNames: ["QueueArn"] }), { abortSignal: signal });
        return { url: queue };
      }
      const { QueueUrl } = await sqs.send(new GetQueueUrlCommand({ QueueName: queue }), { abortSignal: signal });
      if (QueueUrl) return { url: QueueUrl };
      throw new Error("GetQueueUrl returned no QueueUrl");
    } catch (error) {
      if (signal.aborted) break;
      onError?.(byUrl ? "GetQueueAttributes" : "GetQueueUrl");
      const kind = queueErrorKind(error);
      if (kind === "missing") {
        return {
          missing: byUrl
            ? `queue ${queue} does not exist: check KUBE_PICO_CD_QUEUE (its account, name and region)`
            : `queue "${queue}" does not exist in this region: check KUBE_PICO_CD_QUEUE and the region`,
        };
      }
      if (kind === "unchecked" && byUrl) {
        logger.warn("cannot check that the queue exists (sqs:GetQueueAttributes is denied); going on", { queueUrl: queue, error: error as Error });
        return { url: queue };
      }
      const waitMs = backoff.next();
      logger.warn(byUrl ? "checking the queue failed; backing off" : "resolving the queue URL failed; backing off", { queue, attempt: backoff.attempt, error: error as Error, retryInMs: waitMs });
      await delay(waitMs, { signal }).catch(() => {});
    }
  }
  return undefined;
}
