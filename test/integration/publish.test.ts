/**
 * publish against the real ElasticMQ of the test environment: what it sends is received
 * with the SDK and decoded; what it rejects never reaches the queue.
 */
import { beforeAll, describe, expect, test } from "bun:test";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { gunzipSync } from "node:zlib";
import { createHash } from "node:crypto";
import { GetQueueAttributesCommand, ReceiveMessageCommand, type Message } from "@aws-sdk/client-sqs";
import { collectBundle } from "../../lib/manifests/bundle.ts";
import { decodeMessage } from "../../lib/wire/message.ts";
import { fifoDeduplicationId } from "../../lib/sqs/send.ts";
import { main } from "../../publish.ts";
import { createQueue, sqsClient, testEnv } from "../env/testenv.ts";

const root = resolve(import.meta.dir, "../..");
const fixtures = resolve(root, "test/fixtures");
const basic = ["repo-basic", "--ignore", "*.tmpl.yaml"];

let endpoint = "";

beforeAll(async () => {
  endpoint = (await testEnv()).sqsEndpoint;
}, 900_000);

/** Runs publish's main() in the fixtures directory against the test ElasticMQ. */
async function publish(argv: string[], env: Record<string, string> = {}) {
  let stdout = "";
  let stderr = "";
  const code = await main(argv, { KUBE_PICO_CD_ENDPOINT_URL: endpoint, ...env }, {
    cwd: fixtures,
    stdout: (text) => (stdout += text),
    stderr: (text) => (stderr += text),
  });
  return { code, stdout, stderr };
}

/** Receives every message currently in the queue (and keeps them invisible for the test). */
async function receiveAll(queueUrl: string): Promise<Message[]> {
  const sqs = await sqsClient();
  const messages: Message[] = [];
  for (;;) {
    const output = await sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: queueUrl,
        MaxNumberOfMessages: 10,
        WaitTimeSeconds: 1,
        MessageSystemAttributeNames: ["All"],
      }),
    );
    if (!output.Messages || output.Messages.length === 0) return messages;
    messages.push(...output.Messages);
  }
}

async function messagesIn(queueUrl: string): Promise<number> {
  const sqs = await sqsClient();
  const output = await sqs.send(
    new GetQueueAttributesCommand({
      QueueUrl: queueUrl,
      AttributeNames: ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    }),
  );
  return (
    Number(output.Attributes?.ApproximateNumberOfMessages ?? "NaN") +
    Number(output.Attributes?.ApproximateNumberOfMessagesNotVisible ?? "NaN")
  );
}

/** Runs publish.ts under Deno, as people copying the script do. */
function runDeno(args: string[], env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(join(root, "node_modules/.bin/deno"), ["run", "-A", join(root, "publish.ts"), ...args], {
      cwd: fixtures,
      env: { ...process.env, NO_COLOR: "1", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    child.on("error", reject);
    child.on("close", (code) => resolvePromise({ code, stdout, stderr }));
  });
}

describe("publish to ElasticMQ", () => {
  test("a published fixture repository is received and decodes to the same objects with a matching digest", async () => {
    const queue = await createQueue();
    const { code, stdout, stderr } = await publish([
      ...basic,
      "--queue",
      queue.url,
      "--target",
      "prod",
      "--json",
      "--build-timestamp-ms",
      "1700000000123",
    ], { GITHUB_SHA: "0123abcd", GITHUB_RUN_ID: "987", GITHUB_RUN_ATTEMPT: "1", GITHUB_REPOSITORY: "acme/shop", GITHUB_SERVER_URL: "https://github.com" });
    expect(stderr).toBe("");
    expect(code).toBe(0);
    const result = JSON.parse(stdout);

    const messages = await receiveAll(queue.url);
    expect(messages.length).toBe(1);
    const message = messages[0]!;
    expect(result.sent).toEqual([{ queue: queue.url, queueUrl: queue.url, messageId: message.MessageId }]);

    const decoded = decodeMessage(message.Body!);
    const expected = await collectBundle(["repo-basic"], { cwd: fixtures, ignore: ["*.tmpl.yaml"] });
    expect(decoded.format).toBe("v1");
    expect(decoded.objects).toEqual(expected.objects);
    expect(decoded.objects[4]).toMatchObject({
      kind: "Deployment",
      spec: { template: { spec: { volumes: [{ configMap: { defaultMode: 0o644 } }] } } },
    });
    expect(decoded.target).toBe("prod");
    expect(decoded.build).toEqual({
      id: "0123abcd-987-1",
      timestampMs: 1_700_000_000_123,
      commit: "0123abcd",
      repository: "acme/shop",
      runId: "987",
      runAttempt: "1",
      url: "https://github.com/acme/shop/actions/runs/987/attempts/1",
    });
    const payload = gunzipSync(Buffer.from(JSON.parse(message.Body!).manifests.data, "base64"));
    expect(decoded.digest).toBe(createHash("sha256").update(payload).digest("hex"));
    expect(decoded.digest).toBe(result.digest);
    expect(JSON.parse(payload.toString())).toEqual(expected.objects);
  });

  test("a queue given by name is resolved with GetQueueUrl", async () => {
    const queue = await createQueue();
    const { code, stdout } = await publish([...basic, "--queue", queue.name, "--build-id", "by-name"]);
    expect(code).toBe(0);
    expect(stdout).toStartWith("Published build by-name (");
    expect(stdout).toContain(`  queue      ${queue.url} (message id `);
    const messages = await receiveAll(queue.url);
    expect(messages.map((m) => decodeMessage(m.Body!).build.id)).toEqual(["by-name"]);
  });

  test("a FIFO queue gets the message group id and a deduplication id from build id and digest", async () => {
    const queue = await createQueue({ fifo: true });
    const argv = [...basic, "--queue", queue.url, "--build-id", "fifo-1", "--message-group-id", "shop", "--json"];
    const first = await publish(argv);
    expect(first.code).toBe(0);
    const second = await publish(argv); // the same build again: deduplicated by SQS
    expect(second.code).toBe(0);
    const messages = await receiveAll(queue.url);
    expect(messages.length).toBe(1);
    const digest = JSON.parse(first.stdout).digest as string;
    expect(messages[0]!.Attributes?.MessageGroupId).toBe("shop");
    expect(messages[0]!.Attributes?.MessageDeduplicationId).toBe(fifoDeduplicationId("fifo-1", digest));
    expect(JSON.parse(first.stdout).sent[0].sequenceNumber).toMatch(/^\d+$/);
  });

  test("a FIFO queue's message group is the app, and the default app without --message-group-id or an app", async () => {
    const queue = await createQueue({ fifo: true });
    const shop = await publish([...basic, "--queue", queue.url, "--build-id", "fifo-app", "--json"], { GITHUB_REPOSITORY: "acme/Shop" });
    const none = await publish([...basic, "--queue", queue.url, "--build-id", "fifo-none", "--json"]);
    expect([shop.code, none.code]).toEqual([0, 0]);
    const messages = await receiveAll(queue.url);
    const groups = Object.fromEntries(messages.map((m) => [decodeMessage(m.Body!).build.id, [m.Attributes?.MessageGroupId, decodeMessage(m.Body!).app]]));
    expect(groups).toEqual({ "fifo-app": ["shop", "shop"], "fifo-none": ["default", "default"] });
  });

  test("a FIFO queue delivers one build id and digest published by two apps twice, and by one app once", async () => {
    const queue = await createQueue({ fifo: true });
    const argv = [...basic, "--queue", queue.url, "--build-id", "shared-1", "--json"];
    const runs = [await publish([...argv, "--app", "shop"]), await publish([...argv, "--app", "web"]), await publish([...argv, "--app", "shop"])];
    expect(runs.map((run) => run.code)).toEqual([0, 0, 0]);
    const digest = JSON.parse(runs[0]!.stdout).digest as string;
    const messages = await receiveAll(queue.url);
    expect(messages.map((m) => decodeMessage(m.Body!).app).sort()).toEqual(["shop", "web"]);
    const ids = Object.fromEntries(messages.map((m) => [decodeMessage(m.Body!).app, m.Attributes?.MessageDeduplicationId]));
    expect(ids).toEqual({ shop: fifoDeduplicationId("shared-1", digest, "shop"), web: fifoDeduplicationId("shared-1", digest, "web") });
  });

  test("two queues each receive the same message", async () => {
    const a = await createQueue();
    const b = await createQueue({ fifo: true });
    const { code, stdout } = await publish([...basic, "-q", a.url, "-q", b.name, "--json"]);
    expect(code).toBe(0);
    const result = JSON.parse(stdout);
    expect(result.sent.map((sent: { queueUrl: string }) => sent.queueUrl)).toEqual([a.url, b.url]);
    const [fromA] = await receiveAll(a.url);
    const [fromB] = await receiveAll(b.url);
    expect(fromA?.Body).toBe(fromB?.Body!);
    expect(decodeMessage(fromA!.Body!).digest).toBe(result.digest);
  });

  test("an unknown queue name fails with exit code 2 and nothing is sent to the other queue", async () => {
    const good = await createQueue();
    const { code, stderr } = await publish([...basic, "-q", good.url, "-q", "no-such-queue-kpcd"]);
    expect(code).toBe(2);
    expect(stderr).toStartWith('publish: Cannot resolve queue "no-such-queue-kpcd": ');
    expect(await messagesIn(good.url)).toBe(0);
  });

  test("--wait 2s takes 2s as its timeout, not as a path, and times out with exit code 4", async () => {
    const [queue, results] = [await createQueue(), await createQueue()];
    const { code, stderr } = await publish([...basic, "-q", queue.url, "--result-queue", results.url, "--wait", "2s"]);
    expect(stderr).toContain(`publish: timed out waiting 2 s for the result from ${queue.url}`);
    expect(code).toBe(4);
    expect(await messagesIn(queue.url)).toBe(1);
  });

  test("a deprecated variable still sends, with one warning line naming the current one", async () => {
    const queue = await createQueue();
    const { code, stderr } = await publish([...basic, "-q", queue.url], { KUBE_PICO_CD_ENDPOINT_URL: "", KUBE_PICO_CD_SQS_ENDPOINT: endpoint });
    expect(stderr).toBe("publish: warning: KUBE_PICO_CD_SQS_ENDPOINT is deprecated: use KUBE_PICO_CD_ENDPOINT_URL\n");
    expect(code).toBe(0);
    expect(await messagesIn(queue.url)).toBe(1);
  });

  describe("invalid input exits 1 with its own message and the queue stays empty", () => {
    const cases: [string, () => string[], (stderr: string) => void][] = [
      [
        "broken YAML",
        () => ["invalid/broken-yaml"],
        (stderr) =>
          expect(stderr).toBe(
            "publish: Cannot bundle the manifests: invalid/broken-yaml/app.yaml:7:1: Flow sequence in block collection must be sufficiently indented and end with a ]\n",
          ),
      ],
      [
        "missing kind",
        () => ["invalid/missing-kind"],
        (stderr) =>
          expect(stderr).toBe('publish: Cannot bundle the manifests: invalid/missing-kind/app.yaml:6:1: object "no-kind" has no kind\n'),
      ],
      [
        "duplicate object",
        () => ["invalid/duplicate"],
        (stderr) =>
          expect(stderr).toBe(
            "publish: Cannot bundle the manifests: invalid/duplicate/b.yaml:2:1: duplicate object apps/Deployment/web/api (first defined at invalid/duplicate/a.yaml:1:1)\n",
          ),
      ],
      [
        "empty bundle",
        () => ["invalid/empty"],
        (stderr) =>
          expect(stderr).toBe(
            "publish: Cannot bundle the manifests: no objects found in invalid/empty (pass --allow-empty-bundle to publish an empty bundle)\n",
          ),
      ],
      [
        "oversized bundle",
        () => {
          // 300 KB of random (incompressible) data: over 262144 bytes even gzipped.
          const dir = mkdtempSync(join(tmpdir(), "publish-oversized-"));
          const data = randomBytes(300_000).toString("base64");
          writeFileSync(join(dir, "big.yaml"), `apiVersion: v1\nkind: ConfigMap\nmetadata: {name: big}\ndata: {blob: ${data}}\n`);
          return [dir];
        },
        (stderr) =>
          expect(stderr).toMatch(
            /^publish: Cannot publish: the encoded message is \d{6} bytes, over the limit of 262144 bytes \(--max-message-bytes; \d+ bytes of manifests gzip to \d+\)\. Raise the queue's limit \(aws sqs set-queue-attributes --queue-url URL --attributes MaximumMessageSize=1048576\) and pass --max-message-bytes 1048576, or publish fewer manifests\.\n$/,
          ),
      ],
      [
        "unknown flag",
        () => [...basic, "--frobnicate"],
        (stderr) => expect(stderr).toBe("publish: Invalid configuration:\n  - --frobnicate: unknown option (see --help)\n"),
      ],
    ];
    for (const [name, argv, check] of cases) {
      test(name, async () => {
        const queue = await createQueue();
        const { code, stdout, stderr } = await publish([...argv(), "--queue", queue.url]);
        check(stderr);
        expect(code).toBe(1);
        expect(stdout).toBe("");
        expect(await messagesIn(queue.url)).toBe(0);
      });
    }

    test("malformed queue URL", async () => {
      const queue = await createQueue();
      const malformed = `${endpoint}/${queue.name}`; // the account segment is missing
      const { code, stdout, stderr } = await publish([...basic, "--queue", queue.url, "--queue", malformed]);
      expect(stderr).toBe(
        `publish: Invalid configuration:\n  - --queue: "${malformed}" is not a queue URL (expected a queue URL such as https://sqs.eu-west-1.amazonaws.com/123456789012/deploy, or a queue name of up to 80 letters, digits, - and _ (FIFO names end in .fifo))\n`,
      );
      expect(code).toBe(1);
      expect(stdout).toBe("");
      expect(await messagesIn(queue.url)).toBe(0);
    });
  });

  describe("under Deno", () => {
    test("deno run publish.ts --dry-run prints the summary", async () => {
      const { code, stdout, stderr } = await runDeno([...basic, "--dry-run", "--build-id", "deno-dry"], {});
      expect(stderr).toBe("");
      expect(code).toBe(0);
      expect(stdout).toStartWith("Dry run: build deno-dry (");
      expect(stdout).toContain("  objects    6 from 4 inputs\n");
    }, 120_000);

    test("deno run publish.ts sends a message that decodes to the fixture's objects", async () => {
      const queue = await createQueue();
      const { code, stdout, stderr } = await runDeno([...basic, "--queue", queue.url, "--build-id", "deno-1", "--json"], {
        KUBE_PICO_CD_ENDPOINT_URL: endpoint,
      });
      expect(stderr).toBe("");
      expect(code).toBe(0);
      const messages = await receiveAll(queue.url);
      expect(messages.length).toBe(1);
      const decoded = decodeMessage(messages[0]!.Body!);
      expect(decoded.build.id).toBe("deno-1");
      expect(decoded.digest).toBe(JSON.parse(stdout).digest);
      expect(decoded.objects).toEqual((await collectBundle(["repo-basic"], { cwd: fixtures, ignore: ["*.tmpl.yaml"] })).objects);
    }, 120_000);

    test("deno run publish.ts exits 1 for invalid manifests", async () => {
      const { code, stderr } = await runDeno(["invalid/duplicate", "--dry-run"], {});
      expect(code).toBe(1);
      expect(stderr).toBe(
        "publish: Cannot bundle the manifests: invalid/duplicate/b.yaml:2:1: duplicate object apps/Deployment/web/api (first defined at invalid/duplicate/a.yaml:1:1)\n",
      );
    }, 120_000);
  });
});
