import { describe, expect, test } from "bun:test";
import { QueueDoesNotExist, SQSServiceException, type SQSClient } from "@aws-sdk/client-sqs";
import { findQueue, queueErrorKind } from "../../lib/sqs/find-queue.ts";
import { createLogger } from "../../lib/log.ts";

const metadata = { $metadata: {} };

describe("queueErrorKind()", () => {
  test("queueErrorKind() knows a queue that does not exist by the error's name or query code", () => {
    expect(queueErrorKind(new QueueDoesNotExist({ message: "The specified queue does not exist.", ...metadata }))).toBe("missing");
    expect(queueErrorKind(Object.assign(new Error("gone"), { name: "AWS.SimpleQueueService.NonExistentQueue" }))).toBe("missing");
    expect(queueErrorKind(Object.assign(new Error("gone"), { name: "SQSServiceException", Code: "AWS.SimpleQueueService.NonExistentQueue" }))).toBe("missing");
  });

  test("queueErrorKind() goes on unchecked when asking is denied", () => {
    expect(queueErrorKind(new SQSServiceException({ name: "AccessDenied", $fault: "client", message: "no", ...metadata }))).toBe("unchecked");
  });

  test("queueErrorKind() retries everything else, an unreachable SQS and a message that merely says 'does not exist' included", () => {
    expect(queueErrorKind(Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:9"), { code: "ECONNREFUSED" }))).toBe("retry");
    expect(queueErrorKind(new Error("The specified queue does not exist."))).toBe("retry");
    expect(queueErrorKind(Object.assign(new Error("slow down"), { name: "ThrottlingException" }))).toBe("retry");
    expect(queueErrorKind("text")).toBe("retry");
  });
});

describe("findQueue()", () => {
  const silent = createLogger({ write: () => {} });

  /** An SQS client whose send answers from `answers` in turn (an Error is thrown). */
  function scripted(answers: unknown[]): { sqs: SQSClient; commands: string[] } {
    const commands: string[] = [];
    const sqs = {
      send: async (command: { constructor: { name: string } }) => {
        commands.push(command.constructor.name);
        const answer = answers.shift();
        if (answer instanceof Error) throw answer;
        return answer;
      },
    } as unknown as SQSClient;
    return { sqs, commands };
  }

  test("findQueue() checks a URL with GetQueueAttributes, retrying an unreachable SQS until it answers", async () => {
    const { sqs, commands } = scripted([Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" }), { Attributes: { QueueArn: "arn" } }]);
    const url = "https://sqs.eu-west-1.amazonaws.com/123456789012/deploy";
    const failed: string[] = [];
    expect(await findQueue(url, { sqs, logger: silent, signal: new AbortController().signal, baseBackoffMs: 1, onError: (operation) => failed.push(operation) })).toEqual({ url });
    expect(commands).toEqual(["GetQueueAttributesCommand", "GetQueueAttributesCommand"]);
    expect(failed).toEqual(["GetQueueAttributes"]);
  });

  test("findQueue() says a queue does not exist in one line, without retrying", async () => {
    const gone = new QueueDoesNotExist({ message: "The specified queue does not exist.", ...metadata });
    const url = "https://sqs.eu-west-1.amazonaws.com/123456789012/deploy";
    const byUrl = scripted([gone]);
    expect(await findQueue(url, { sqs: byUrl.sqs, logger: silent, signal: new AbortController().signal })).toEqual({
      missing: `queue ${url} does not exist: check KUBE_PICO_CD_QUEUE (its account, name and region)`,
    });
    const byName = scripted([gone]);
    expect(await findQueue("deploy", { sqs: byName.sqs, logger: silent, signal: new AbortController().signal })).toEqual({
      missing: 'queue "deploy" does not exist in this region: check KUBE_PICO_CD_QUEUE and the region',
    });
    expect([byUrl.commands, byName.commands]).toEqual([["GetQueueAttributesCommand"], ["GetQueueUrlCommand"]]);
  });

  test("findQueue() resolves a name with GetQueueUrl", async () => {
    const { sqs } = scripted([{ QueueUrl: "http://127.0.0.1:9324/000000000000/deploy" }]);
    expect(await findQueue("deploy", { sqs, logger: silent, signal: new AbortController().signal })).toEqual({ url: "http://127.0.0.1:9324/000000000000/deploy" });
  });

  test("findQueue() goes on with a URL it may not check", async () => {
    const { sqs } = scripted([new SQSServiceException({ name: "AccessDenied", $fault: "client", message: "no", ...metadata })]);
    expect(await findQueue("http://127.0.0.1:9324/000000000000/q", { sqs, logger: silent, signal: new AbortController().signal })).toEqual({ url: "http://127.0.0.1:9324/000000000000/q" });
  });

  test("findQueue() resolves undefined when stopped while retrying", async () => {
    const controller = new AbortController();
    const { sqs } = scripted([new Error("down"), new Error("down"), new Error("down")]);
    const found = findQueue("deploy", { sqs, logger: silent, signal: controller.signal, baseBackoffMs: 10_000 });
    setTimeout(() => controller.abort(new Error("stop")), 20);
    expect(await found).toBeUndefined();
  });
});
