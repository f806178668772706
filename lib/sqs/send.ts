/**
 * Queues as publish sees them: a queue given by URL or by name, resolved to a URL with
 * GetQueueUrl, and one message sent to it (with FIFO ids when the queue is FIFO).
 *
 * The AWS SDK is loaded by the functions that send, when they first run: publish's
 * configuration checks the queues with this module, and loading the SDK costs 50 to 90 ms
 * of CPU, which a dry run never needs.
 */
import { createHash } from "node:crypto";
import type { SQSClient } from "@aws-sdk/client-sqs";
import { namedErrorMessage, QueueSendError } from "../errors.ts";
import { DEFAULT_APP } from "../wire/app.ts";

/** A queue as given: by URL (`https://sqs.<region>.amazonaws.com/<account>/<name>`) or by name. */
export type QueueRef = { url: string; name: string } | { url?: undefined; name: string };

const QUEUE_NAME = /^(?:[A-Za-z0-9_-]{1,80}|[A-Za-z0-9_-]{1,75}\.fifo)$/;
const MESSAGE_GROUP_ID = /^[\x21-\x7e]{1,128}$/;

/** What a queue name may look like, for error messages. */
const QUEUE_HINT =
  "expected a queue URL such as https://sqs.eu-west-1.amazonaws.com/123456789012/deploy, " +
  "or a queue name of up to 80 letters, digits, - and _ (FIFO names end in .fifo)";

/**
 * Parses a queue given by URL or name; returns a problem phrase instead when it is neither
 * (checked before anything is sent).
 */
export function parseQueueRef(value: string): QueueRef | { problem: string } {
  if (/^[a-z][a-z0-9+.-]*:/i.test(value)) {
    let url: URL;
    try {
      url = new URL(value);
    } catch {
      return { problem: `"${value}" is not a valid URL (${QUEUE_HINT})` };
    }
    const segments = url.pathname.split("/").filter((segment) => segment !== "");
    const name = segments[1];
    if (
      (url.protocol !== "https:" && url.protocol !== "http:") ||
      url.hostname === "" ||
      segments.length !== 2 ||
      name === undefined ||
      !QUEUE_NAME.test(name) ||
      url.search !== "" ||
      url.hash !== ""
    ) {
      return { problem: `"${value}" is not a queue URL (${QUEUE_HINT})` };
    }
    return { url: value, name };
  }
  if (!QUEUE_NAME.test(value)) return { problem: `"${value}" is neither a queue URL nor a queue name (${QUEUE_HINT})` };
  return { name: value };
}

/** Returns a problem phrase when `id` is not a valid FIFO MessageGroupId (1–128 printable ASCII characters). */
export function messageGroupIdProblem(id: string): string | undefined {
  return MESSAGE_GROUP_ID.test(id)
    ? undefined
    : `"${id}" is not a valid message group id (1 to 128 printable ASCII characters without spaces)`;
}

/** True for a FIFO queue (its name ends in `.fifo`). */
export function isFifoQueue(queue: QueueRef): boolean {
  return queue.name.endsWith(".fifo");
}

/**
 * The FIFO MessageGroupId of a bundle of `app` (default {@link DEFAULT_APP}) when none is
 * given: the app itself. Each app's bundles stay in order, and a bundle that fails and is
 * retried holds back only its own app's, never another's. An app name is a valid group id.
 */
export function defaultMessageGroupId(app: string | undefined): string {
  return app ?? DEFAULT_APP;
}

/**
 * The FIFO MessageDeduplicationId of a bundle: lowercase hex SHA-256 of
 * `<build id>\n<digest>`, or of `<app>\n<build id>\n<digest>` for an app other than
 * {@link DEFAULT_APP} (64 characters, within SQS's 128), so publishing the same build twice
 * within SQS's 5-minute window is delivered once, while two apps that publish the same build
 * id and digest (one repository, two apps) are both delivered. An app name holds no line
 * feed, so the prefix cannot run into the build id.
 */
export function fifoDeduplicationId(buildId: string, digest: string, app?: string): string {
  const text = app === undefined || app === DEFAULT_APP ? `${buildId}\n${digest}` : `${app}\n${buildId}\n${digest}`;
  return createHash("sha256").update(text, "utf8").digest("hex");
}

/**
 * Returns the queue's URL: as given, or from GetQueueUrl for a name.
 *
 * @throws {QueueSendError} when the name cannot be resolved (no such queue, no access, no credentials).
 */
export async function resolveQueueUrl(
  client: SQSClient,
  queue: QueueRef,
  options: { signal?: AbortSignal } = {},
): Promise<string> {
  if (queue.url !== undefined) return queue.url;
  try {
    const { GetQueueUrlCommand } = await import("@aws-sdk/client-sqs");
    const output = await client.send(
      new GetQueueUrlCommand({ QueueName: queue.name }),
      options.signal ? { abortSignal: options.signal } : {},
    );
    if (output.QueueUrl === undefined) throw new Error("GetQueueUrl returned no QueueUrl");
    return output.QueueUrl;
  } catch (error) {
    throw new QueueSendError(`Cannot resolve queue "${queue.name}": ${namedErrorMessage(error)}`, queue.name, { cause: error });
  }
}

/** What {@link sendBody} sent. */
export interface SentMessage {
  queueUrl: string;
  messageId: string;
  /** FIFO queues only. */
  sequenceNumber?: string;
}

/** Options of {@link sendBody}. */
export interface SendBodyOptions {
  /** For FIFO queues; omit for standard queues. */
  fifo?: { messageGroupId: string; messageDeduplicationId: string };
  signal?: AbortSignal;
}

/**
 * Sends one message body to a queue URL.
 *
 * @throws {QueueSendError} when SQS does not accept it.
 */
export async function sendBody(
  client: SQSClient,
  queueUrl: string,
  body: string,
  options: SendBodyOptions = {},
): Promise<SentMessage> {
  const { fifo, signal } = options;
  try {
    const { SendMessageCommand } = await import("@aws-sdk/client-sqs");
    const output = await client.send(
      new SendMessageCommand({
        QueueUrl: queueUrl,
        MessageBody: body,
        ...(fifo ? { MessageGroupId: fifo.messageGroupId, MessageDeduplicationId: fifo.messageDeduplicationId } : {}),
      }),
      signal ? { abortSignal: signal } : {},
    );
    if (output.MessageId === undefined) throw new Error("SendMessage returned no MessageId");
    return {
      queueUrl,
      messageId: output.MessageId,
      ...(output.SequenceNumber === undefined ? {} : { sequenceNumber: output.SequenceNumber }),
    };
  } catch (error) {
    throw new QueueSendError(`Cannot send to queue ${queueUrl}: ${namedErrorMessage(error)}`, queueUrl, { cause: error });
  }
}
