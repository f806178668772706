/**
 * Publishing one message body to SNS topics: one client per region a topic's ARN names (its
 * requests are signed for it), and one Publish per topic, with the FIFO ids on a FIFO topic.
 *
 * The AWS SDK's SNS client is loaded by the first publish: publish's configuration and a dry
 * run never need it, and the listener never imports this module.
 */
import type { PublishCommandInput, SNSClient, SNSClientConfig } from "@aws-sdk/client-sns";
import { namedErrorMessage, QueueSendError } from "../errors.ts";
import type { TopicRef } from "./topic.ts";

/** What {@link publishToTopic} published. */
export interface PublishedMessage {
  topicArn: string;
  /** The SNS MessageId (a raw delivery hides it from the subscribed queues' listeners). */
  messageId: string;
  /** FIFO topics only. */
  sequenceNumber?: string;
}

/** Options of {@link createSnsClients}. */
export interface SnsClientsOptions {
  /** The endpoint of every client (a local server such as moto's); absent: AWS's of each region. */
  endpoint?: string | undefined;
  /** Makes one client. Default `new SNSClient(config)`. */
  create?: (config: SNSClientConfig) => SNSClient;
}

/** One SNS client per region, made on first use. */
export interface SnsClients {
  /** The client for `topic`'s region. */
  forTopic(topic: TopicRef): Promise<SNSClient>;
  /** Destroys every client made so far. */
  destroy(): void;
}

/** The SNS clients of one publish run. */
export function createSnsClients(options: SnsClientsOptions = {}): SnsClients {
  const { endpoint, create } = options;
  const clients = new Map<string, SNSClient>();
  return {
    async forTopic(topic) {
      let client = clients.get(topic.region);
      if (client === undefined) {
        const config: SNSClientConfig = { region: topic.region, ...(endpoint === undefined ? {} : { endpoint }) };
        client = create === undefined ? new (await import("@aws-sdk/client-sns")).SNSClient(config) : create(config);
        clients.set(topic.region, client);
      }
      return client;
    },
    destroy() {
      for (const client of clients.values()) client.destroy();
      clients.clear();
    },
  };
}

/** Options of {@link publishToTopic}. */
export interface PublishToTopicOptions {
  /** For FIFO topics; omit for standard topics. */
  fifo?: { messageGroupId: string; messageDeduplicationId: string };
  signal?: AbortSignal;
}

/**
 * Publishes one message body to a topic.
 *
 * @throws {QueueSendError} when SNS does not accept it (its `queue` names the topic ARN).
 */
export async function publishToTopic(client: SNSClient, topic: TopicRef, body: string, options: PublishToTopicOptions = {}): Promise<PublishedMessage> {
  const { fifo, signal } = options;
  try {
    const { PublishCommand } = await import("@aws-sdk/client-sns");
    const input: PublishCommandInput = {
      TopicArn: topic.arn,
      Message: body,
      ...(fifo ? { MessageGroupId: fifo.messageGroupId, MessageDeduplicationId: fifo.messageDeduplicationId } : {}),
    };
    const output = await client.send(new PublishCommand(input), signal ? { abortSignal: signal } : {});
    if (output.MessageId === undefined) throw new Error("Publish returned no MessageId");
    return { topicArn: topic.arn, messageId: output.MessageId, ...(output.SequenceNumber === undefined ? {} : { sequenceNumber: output.SequenceNumber }) };
  } catch (error) {
    throw new QueueSendError(`Cannot publish to topic ${topic.arn}: ${namedErrorMessage(error)}`, topic.arn, { cause: error });
  }
}
