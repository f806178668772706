import { describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { main } from "../../publish.ts";
import { parsePublishConfig } from "../../lib/publish/config.ts";
import { isFifoTopic, parseTopicArn, regionOfTopicArn, SNS_MAX_MESSAGE_BYTES } from "../../lib/sns/topic.ts";
import { ConfigError } from "../../lib/errors.ts";

const ARN = "arn:aws:sns:eu-west-1:123456789012:deploys";

function problems(argv: string[], env: Record<string, string> = {}): string[] {
  try {
    parsePublishConfig(argv, env);
  } catch (error) {
    if (error instanceof ConfigError) return [...error.problems];
    throw error;
  }
  return [];
}

describe("parseTopicArn()", () => {
  test("parseTopicArn() reads partition, region, account and name", () => {
    expect(parseTopicArn(ARN)).toEqual({ arn: ARN, partition: "aws", region: "eu-west-1", account: "123456789012", name: "deploys" });
    expect(parseTopicArn("arn:aws-cn:sns:cn-north-1:123456789012:d")).toMatchObject({ partition: "aws-cn", region: "cn-north-1" });
    expect(parseTopicArn("arn:aws-us-gov:sns:us-gov-west-1:123456789012:d")).toMatchObject({ region: "us-gov-west-1" });
  });

  test("regionOfTopicArn() is the ARN's region, undefined for anything else", () => {
    expect(regionOfTopicArn("arn:aws:sns:ap-southeast-2:123456789012:fleet.fifo")).toBe("ap-southeast-2");
    expect(regionOfTopicArn("https://sqs.eu-west-1.amazonaws.com/123456789012/q")).toBeUndefined();
  });

  test("parseTopicArn() names what is wrong: a queue ARN, no region, a bad name", () => {
    for (const value of ["arn:aws:sqs:eu-west-1:123456789012:q", "arn:aws:sns::123456789012:t", "arn:aws:sns:eu-west-1:123456789012:a b", "arn:aws:sns:eu-west-1:12345:t"]) {
      expect(parseTopicArn(value)).toEqual({ problem: `"${value}" is not an SNS topic ARN (expected a topic ARN such as arn:aws:sns:eu-west-1:123456789012:deploy (names of up to 256 letters, digits, - and _; FIFO names end in .fifo))` });
    }
  });

  test("isFifoTopic() is true for a name ending in .fifo", () => {
    const fifo = parseTopicArn("arn:aws:sns:eu-west-1:123456789012:deploys.fifo");
    const standard = parseTopicArn(ARN);
    if ("problem" in fifo || "problem" in standard) throw new Error("unexpected problem");
    expect([isFifoTopic(fifo), isFifoTopic(standard)]).toEqual([true, false]);
  });
});

describe("parsePublishConfig() with topics", () => {
  test("parsePublishConfig() reads --topic (repeatable, and the variable's list) and --target lists", () => {
    const config = parsePublishConfig(["k8s", "--topic", ARN, "--target", "b,a"], { KUBE_PICO_CD_TOPIC: "ignored-because-the-flag-wins" });
    expect(config.topics.map((topic) => topic.region)).toEqual(["eu-west-1"]);
    expect(config.targets).toEqual(["a", "b"]);
    expect(config.target).toBeUndefined();
    expect(parsePublishConfig(["k8s"], { KUBE_PICO_CD_TOPIC: `${ARN},arn:aws:sns:us-east-1:123456789012:x` }).topics).toHaveLength(2);
  });

  test("parsePublishConfig() makes the --target names what a topic --wait expects, unless --expect-targets says otherwise", () => {
    const wait = ["k8s", "--topic", ARN, "--result-queue", "results", "--wait", "60"];
    expect(parsePublishConfig([...wait, "--target", "b,a"], {}).expectTargets).toEqual({ names: ["a", "b"] });
    expect(parsePublishConfig([...wait, "--target", "b,a", "--expect-targets", "a,b,c"], {}).expectTargets).toEqual({ names: ["a", "b", "c"] });
    expect(parsePublishConfig([...wait, "--expect-targets", "10"], {}).expectTargets).toEqual({ count: 10 });
  });

  test("parsePublishConfig() refuses a topic --wait that cannot tell how many clusters answer, in one line", () => {
    expect(problems(["k8s", "--topic", ARN, "--result-queue", "results", "--wait", "60"])).toEqual([
      "--wait: a --topic publish cannot tell how many clusters answer: pass --expect-targets NAME,... or a count (or --target NAME,... to address them)",
    ]);
  });

  test("parsePublishConfig() names a bad topic, target list or expectation", () => {
    expect(problems(["k8s", "--topic", "deploys"])).toEqual(['--topic: "deploys" is not an SNS topic ARN (expected a topic ARN such as arn:aws:sns:eu-west-1:123456789012:deploy (names of up to 256 letters, digits, - and _; FIFO names end in .fifo))']);
    expect(problems(["k8s", "--topic", ARN, "--target", "a,a"])).toEqual(['--target: names target "a" twice']);
    expect(problems(["k8s", "--topic", ARN, "--result-queue", "r", "--wait", "--expect-targets", "0"])).toEqual(['--expect-targets: a count must be 1 to 10000: current value is "0"']);
    expect(problems(["k8s", "--queue", "q", "--result-queue", "r", "--wait", "--expect-targets", "a,b"])).toEqual([
      "--expect-targets: only a --topic publish waits for targets (a queue's result is awaited by its message id)",
    ]);
  });

  test("parsePublishConfig() sends SNS to --endpoint-url, but not to AWS_ENDPOINT_URL_SQS", () => {
    expect(parsePublishConfig(["k8s", "--topic", ARN, "--endpoint-url", "http://127.0.0.1:5000"], {}).snsEndpointUrl).toBe("http://127.0.0.1:5000");
    expect(parsePublishConfig(["k8s", "--topic", ARN], { AWS_ENDPOINT_URL_SQS: "https://sqs.vpce.example" }).snsEndpointUrl).toBeUndefined();
    expect(parsePublishConfig(["k8s", "--topic", ARN, "--endpoint-url", "http://a:1", "--sns-endpoint-url", "http://b:2"], {}).snsEndpointUrl).toBe("http://b:2");
  });
});

describe("SNS's 256 KiB limit", () => {
  test("main() exits 1 before sending a body over 256 KiB to a topic, naming the limit, though the queues' limit allows it", async () => {
    const dir = mkdtempSync(join(tmpdir(), "kpcd-topic-limit-"));
    // Random text does not compress: the body is larger than 256 KiB and smaller than 1 MiB.
    writeFileSync(join(dir, "big.yaml"), `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: big\n  namespace: web\ndata:\n  blob: ${randomBytes(220_000).toString("base64")}\n`);
    let stderr = "";
    const code = await main([dir, "--topic", ARN, "--max-message-bytes", "1048576"], { AWS_REGION: "eu-west-1" }, { stdout: () => {}, stderr: (text) => (stderr += text) });
    expect(code).toBe(1);
    expect(stderr).toMatch(new RegExp(`^publish: Cannot publish to a topic: the encoded message is \\d+ bytes, over SNS's limit of ${SNS_MAX_MESSAGE_BYTES} bytes \\(256 KiB\\)`));
    expect(stderr.split("\n").filter((line) => line !== "")).toHaveLength(1);
  });
});
