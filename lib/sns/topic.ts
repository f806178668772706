/**
 * SNS topics as publish sees them: given by ARN (`arn:aws:sns:REGION:ACCOUNT:NAME`), which
 * names the region its requests must be signed for, as an AWS queue URL does
 * (lib/sqs/region.ts). Pure: publish's configuration checks topics with this module before the
 * AWS SDK is loaded.
 */

/** SNS's largest message: 256 KiB. A bundle published to a topic may be no larger. */
export const SNS_MAX_MESSAGE_BYTES = 262_144;

/** A topic, parsed from its ARN. */
export interface TopicRef {
  arn: string;
  /** The partition: `aws`, `aws-cn`, `aws-us-gov`. */
  partition: string;
  region: string;
  account: string;
  name: string;
}

const TOPIC_ARN = /^arn:(aws(?:-[a-z]+)*):sns:([a-z]{2}(?:-[a-z]+)+-\d+):(\d{12}):([A-Za-z0-9_-]{1,256}|[A-Za-z0-9_-]{1,251}\.fifo)$/;

/** What a topic ARN looks like, for error messages. */
const TOPIC_HINT = "expected a topic ARN such as arn:aws:sns:eu-west-1:123456789012:deploy (names of up to 256 letters, digits, - and _; FIFO names end in .fifo)";

/** Parses a topic ARN; returns a problem phrase instead when it is none (checked before anything is sent). */
export function parseTopicArn(value: string): TopicRef | { problem: string } {
  const match = TOPIC_ARN.exec(value);
  if (match === null) return { problem: `"${value}" is not an SNS topic ARN (${TOPIC_HINT})` };
  return { arn: value, partition: match[1]!, region: match[2]!, account: match[3]!, name: match[4]! };
}

/** The region a topic ARN names, or undefined when `value` is no topic ARN. */
export function regionOfTopicArn(value: string): string | undefined {
  const parsed = parseTopicArn(value);
  return "problem" in parsed ? undefined : parsed.region;
}

/** True for a FIFO topic (its name ends in `.fifo`): it needs a message group and a deduplication id. */
export function isFifoTopic(topic: TopicRef): boolean {
  return topic.name.endsWith(".fifo");
}
