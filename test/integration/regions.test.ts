/**
 * Queues in several regions: every request is signed for the region of the queue it is for.
 * publish and the listener send through a local HTTP endpoint (--endpoint-url) in front of
 * ElasticMQ that records each request's SQS action, queue and the region of its
 * `Authorization` credential scope (`Credential=KEY/DATE/<region>/sqs/aws4_request`), then
 * hands the request on with the queue URL pointed at ElasticMQ (which checks no signatures).
 * The queues are named by AWS URLs of different regions, so a client of one region signing
 * for another queue's shows up as a wrong scope here, as it would as a refusal at AWS.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { SendMessageCommand } from "@aws-sdk/client-sqs";
import { main as publish } from "../../publish.ts";
import { createNamespace, createQueue, sqsClient, testEnv, type TestQueue } from "../env/testenv.ts";
import { bundleBody, configMap } from "../helpers/bundles.ts";
import { runListenerOnce } from "../helpers/listener-process.ts";
import { resolve } from "node:path";

const fixtures = resolve(import.meta.dir, "../fixtures");

/** One request the endpoint saw. */
interface SignedRequest {
  /** The SQS action, from X-Amz-Target (`AmazonSQS.SendMessage`: SendMessage). */
  action: string;
  /** The queue the request names (QueueUrl as sent, or QueueName). */
  queue: string;
  /** The region of the Authorization header's credential scope. */
  region: string;
}

let endpoint: Server | undefined;
let endpointUrl = "";
const seen: SignedRequest[] = [];

beforeAll(async () => {
  const { sqsEndpoint } = await testEnv();
  endpoint = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on("data", (chunk: Buffer) => chunks.push(chunk));
    request.on("end", () => {
      void (async () => {
        const body = JSON.parse(Buffer.concat(chunks).toString("utf8") || "{}") as { QueueUrl?: string; QueueName?: string };
        const scope = /Credential=[^/]+\/\d{8}\/([^/]+)\/sqs\/aws4_request/.exec(String(request.headers.authorization ?? ""));
        seen.push({ action: String(request.headers["x-amz-target"] ?? "").replace(/^AmazonSQS\./, ""), queue: body.QueueUrl ?? body.QueueName ?? "", region: scope?.[1] ?? "(unsigned)" });
        // ElasticMQ knows a queue by its path: /<account>/<name>.
        if (body.QueueUrl !== undefined) body.QueueUrl = `${sqsEndpoint}${new URL(body.QueueUrl).pathname}`;
        const headers = Object.fromEntries(
          Object.entries(request.headers).filter((entry): entry is [string, string] => typeof entry[1] === "string" && !["host", "content-length", "connection"].includes(entry[0])),
        );
        const answer = await fetch(`${sqsEndpoint}${request.url ?? "/"}`, { method: request.method ?? "POST", headers, body: JSON.stringify(body) });
        response.writeHead(answer.status, Object.fromEntries([...answer.headers].filter(([name]) => !["content-length", "content-encoding", "transfer-encoding"].includes(name))));
        response.end(Buffer.from(await answer.arrayBuffer()));
      })().catch((error: unknown) => {
        response.writeHead(502).end(String(error));
      });
    });
  });
  await new Promise<void>((ready) => endpoint!.listen(0, "127.0.0.1", ready));
  endpointUrl = `http://127.0.0.1:${(endpoint.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise((done) => endpoint?.close(done));
});

/** The same queue as an AWS queue URL in `region`: the legacy `<region>.queue.amazonaws.com` form with `legacy`. */
function inRegion(queue: TestQueue, region: string, legacy = false): string {
  const path = new URL(queue.url).pathname;
  return legacy ? `https://${region}.queue.amazonaws.com${path}` : `https://sqs.${region}.amazonaws.com${path}`;
}

/** The requests for `queue` (URL or name), each as "Action region". */
function signedFor(queue: string): string[] {
  return seen.filter((request) => request.queue === queue).map((request) => `${request.action} ${request.region}`);
}

describe("one client per region", () => {
  test("publish signs the request to each queue for the region its URL names, the legacy form included, and a queue by name for --region", async () => {
    const [a, b, c] = [await createQueue(), await createQueue(), await createQueue()];
    const [west, south] = [inRegion(a, "eu-west-1"), inRegion(b, "ap-southeast-2", true)];
    let stderr = "";
    const code = await publish(["repo-basic", "--ignore", "*.tmpl.yaml", "-q", west, "-q", south, "-q", c.name, "--region", "eu-central-1", "--endpoint-url", endpointUrl], {}, {
      cwd: fixtures,
      stdout: () => {},
      stderr: (text) => (stderr += text),
    });
    expect(stderr).toBe("");
    expect(code).toBe(0);
    expect(signedFor(west)).toEqual(["SendMessage eu-west-1"]);
    expect(signedFor(south)).toEqual(["SendMessage ap-southeast-2"]);
    // By name: resolved in --region's, and the URL ElasticMQ answers names none, so that region again.
    expect(signedFor(c.name)).toEqual(["GetQueueUrl eu-central-1"]);
    expect(signedFor(c.url)).toEqual(["SendMessage eu-central-1"]);
  });

  test("the listener signs for its deploy queue's region and sends the result signed for the result queue's, over the configured region", async () => {
    const namespace = await createNamespace("regions");
    const [deploy, results] = [await createQueue(), await createQueue()];
    const { body } = bundleBody([configMap(namespace, "regional", { region: "two" })], { id: "regions-1", timestampMs: Date.now() });
    await (await sqsClient()).send(new SendMessageCommand({ QueueUrl: deploy.url, MessageBody: body }));
    const [deployUrl, resultUrl] = [inRegion(deploy, "eu-west-1"), inRegion(results, "us-west-2")];
    const run = await runListenerOnce({
      queueUrl: deployUrl,
      namespace,
      // AWS_REGION stays us-east-1 (the test environment's): the URLs' regions must win over it.
      env: { KUBE_PICO_CD_ENDPOINT_URL: endpointUrl, KUBE_PICO_CD_RESULT_QUEUE: resultUrl },
    });
    expect(run.code).toBe(0);
    expect(run.lines.find((line) => line.msg === "listening")).toMatchObject({ queueUrl: deployUrl });
    const deployRequests = signedFor(deployUrl);
    expect(deployRequests).toContain("GetQueueAttributes eu-west-1");
    expect(deployRequests).toContain("ReceiveMessage eu-west-1");
    expect(deployRequests).toContain("DeleteMessageBatch eu-west-1");
    expect(deployRequests.filter((request) => !request.endsWith(" eu-west-1"))).toEqual([]);
    // Every result the listener sends (progress while it deploys, then the outcome) is one SendMessage.
    const resultRequests = signedFor(resultUrl);
    expect(resultRequests.length).toBeGreaterThan(0);
    expect([...new Set(resultRequests)]).toEqual(["SendMessage us-west-2"]);
  });
});
