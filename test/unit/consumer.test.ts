import { describe, expect, test } from "bun:test";
import { maxReceiveCountOf } from "../../lib/sqs/consumer.ts";

describe("maxReceiveCountOf()", () => {
  test("maxReceiveCountOf() reads the count of a RedrivePolicy, as a number or a string", () => {
    expect(maxReceiveCountOf('{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:1:dlq","maxReceiveCount":5}')).toBe(5);
    expect(maxReceiveCountOf('{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:1:dlq","maxReceiveCount":"3"}')).toBe(3);
  });

  test("maxReceiveCountOf() is undefined without a policy or with one it cannot read", () => {
    expect([maxReceiveCountOf(undefined), maxReceiveCountOf(""), maxReceiveCountOf("not json"), maxReceiveCountOf('{"maxReceiveCount":0}')]).toEqual([undefined, undefined, undefined, undefined]);
  });
});
