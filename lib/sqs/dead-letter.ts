/**
 * Moving a message to its queue's dead-letter queue at once, instead of waiting for SQS to
 * move it after `maxReceiveCount` receives: the listener keeps a rejection that a change of
 * its configuration could cure (lib/listener/rejections.ts) there for redrive.
 *
 * The dead-letter queue is the one the queue's RedrivePolicy names (`deadLetterTargetArn`),
 * resolved with GetQueueUrl from the ARN's name and account. The move sends a copy (same
 * body and message attributes, plus the reason and the original message id when there is
 * room; on a FIFO queue the same message group, deduplicated by the original message id, so
 * a copy sent twice is kept once) and only then lets the caller delete the original: a crash
 * in between leaves the original, which is moved again. Needs sqs:GetQueueAttributes on the
 * queue, and sqs:GetQueueUrl and sqs:SendMessage on the dead-letter queue.
 */
import { GetQueueAttributesCommand, GetQueueUrlCommand, SendMessageCommand, type MessageAttributeValue, type SQSClient } from "@aws-sdk/client-sqs";
import { namedErrorMessage } from "../errors.ts";

/** Message attribute of a moved copy naming the rejection reason. */
export const REJECTION_REASON_ATTRIBUTE = "kube-pico-cd-rejected";
/** Message attribute of a moved copy naming the message id it had in the queue. */
export const ORIGINAL_MESSAGE_ID_ATTRIBUTE = "kube-pico-cd-message-id";

/** SQS allows at most 10 message attributes per message. */
const MAX_MESSAGE_ATTRIBUTES = 10;

/** What a move needs of a received message. */
export interface MovableMessage {
  messageId: string;
  body: string;
  /** The message group of a FIFO queue's message. */
  messageGroupId?: string;
  messageAttributes?: Record<string, MessageAttributeValue>;
}

/** A dead-letter queue as a RedrivePolicy names it. */
export interface DeadLetterTarget {
  arn: string;
  /** The queue's name (the ARN's last part). */
  name: string;
  /** The owning AWS account id (the ARN's fifth part). */
  account: string;
}

/** The dead-letter queue of a RedrivePolicy attribute (JSON), or undefined when it names none or not as an SQS ARN. */
export function deadLetterTargetOf(redrivePolicy: string | undefined): DeadLetterTarget | undefined {
  if (redrivePolicy === undefined || redrivePolicy === "") return undefined;
  let arn: unknown;
  try {
    arn = (JSON.parse(redrivePolicy) as { deadLetterTargetArn?: unknown }).deadLetterTargetArn;
  } catch {
    return undefined;
  }
  if (typeof arn !== "string") return undefined;
  // arn:partition:sqs:region:account:name
  const parts = arn.split(":");
  if (parts.length !== 6 || parts[0] !== "arn" || parts[2] !== "sqs" || parts[5] === "") return undefined;
  return { arn, name: parts[5]!, account: parts[4]! };
}

/** Moves a message to the dead-letter queue; resolves what happened, never throws. */
export type DeadLetterMover = (message: MovableMessage, reason: string, signal?: AbortSignal) => Promise<{ moved: true; deadLetterUrl: string } | { moved: false; why: string }>;

/**
 * Creates the mover for `queueUrl`. The dead-letter queue is looked up on the first move and
 * remembered once found; a lookup that fails is tried again on the next move.
 */
export function createDeadLetterMover(options: { sqs: SQSClient; queueUrl: string }): DeadLetterMover {
  const { sqs, queueUrl } = options;
  const fifo = queueUrl.endsWith(".fifo");
  let resolved: string | undefined;

  const resolve = async (signal?: AbortSignal): Promise<{ url: string } | { why: string }> => {
    if (resolved !== undefined) return { url: resolved };
    const call = signal ? { abortSignal: signal } : {};
    let policy: string | undefined;
    try {
      const { Attributes = {} } = await sqs.send(new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: ["RedrivePolicy"] }), call);
      policy = Attributes.RedrivePolicy;
    } catch (error) {
      return { why: `cannot read the queue's redrive policy (sqs:GetQueueAttributes): ${namedErrorMessage(error)}` };
    }
    const target = deadLetterTargetOf(policy);
    if (target === undefined) return { why: policy === undefined || policy === "" ? "the queue has no redrive policy, so no dead-letter queue" : `the queue's redrive policy names no SQS dead-letter queue: ${policy}` };
    try {
      const { QueueUrl } = await sqs.send(new GetQueueUrlCommand({ QueueName: target.name, QueueOwnerAWSAccountId: target.account }), call);
      if (!QueueUrl) return { why: `GetQueueUrl gave no URL for the dead-letter queue ${target.arn}` };
      resolved = QueueUrl;
      return { url: QueueUrl };
    } catch (error) {
      return { why: `cannot resolve the dead-letter queue ${target.arn} (sqs:GetQueueUrl): ${namedErrorMessage(error)}` };
    }
  };

  return async (message, reason, signal) => {
    const found = await resolve(signal);
    if ("why" in found) return { moved: false, why: found.why };
    const attributes: Record<string, MessageAttributeValue> = {};
    for (const [name, value] of Object.entries(message.messageAttributes ?? {})) {
      if (name === REJECTION_REASON_ATTRIBUTE || name === ORIGINAL_MESSAGE_ID_ATTRIBUTE || value.DataType === undefined) continue;
      attributes[name] = { DataType: value.DataType, ...(value.StringValue === undefined ? {} : { StringValue: value.StringValue }), ...(value.BinaryValue === undefined ? {} : { BinaryValue: value.BinaryValue }) };
    }
    // The publisher's attributes first; ours only where SQS leaves room.
    if (Object.keys(attributes).length <= MAX_MESSAGE_ATTRIBUTES - 2) {
      attributes[REJECTION_REASON_ATTRIBUTE] = { DataType: "String", StringValue: reason };
      attributes[ORIGINAL_MESSAGE_ID_ATTRIBUTE] = { DataType: "String", StringValue: message.messageId };
    }
    try {
      await sqs.send(
        new SendMessageCommand({
          QueueUrl: found.url,
          MessageBody: message.body,
          ...(Object.keys(attributes).length === 0 ? {} : { MessageAttributes: attributes }),
          // A FIFO queue's dead-letter queue is FIFO too. The original id deduplicates: a copy
          // sent again (the delete of the original failed) is the same message.
          ...(fifo ? { MessageGroupId: message.messageGroupId ?? "kube-pico-cd", MessageDeduplicationId: message.messageId.slice(0, 128) } : {}),
        }),
        signal ? { abortSignal: signal } : {},
      );
    } catch (error) {
      return { moved: false, why: `cannot send the message to the dead-letter queue ${found.url} (sqs:SendMessage): ${namedErrorMessage(error)}` };
    }
    return { moved: true, deadLetterUrl: found.url };
  };
}
