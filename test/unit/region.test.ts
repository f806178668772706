import { describe, expect, test } from "bun:test";
import type { SQSClient, SQSClientConfig } from "@aws-sdk/client-sqs";
import { createSqsClients, regionOfQueueUrl, signingRegion } from "../../lib/sqs/region.ts";

describe("regionOfQueueUrl()", () => {
  test("regionOfQueueUrl() reads the region of AWS queue URLs, the legacy form included", () => {
    expect(regionOfQueueUrl("https://sqs.eu-west-1.amazonaws.com/123456789012/deploy")).toBe("eu-west-1");
    expect(regionOfQueueUrl("https://eu-central-1.queue.amazonaws.com/123456789012/deploy")).toBe("eu-central-1");
    expect(regionOfQueueUrl("https://queue.amazonaws.com/123456789012/deploy")).toBe("us-east-1");
    expect(regionOfQueueUrl("https://sqs.cn-north-1.amazonaws.com.cn/123456789012/deploy")).toBe("cn-north-1");
    expect(regionOfQueueUrl("https://sqs-fips.us-gov-west-1.amazonaws.com/123456789012/deploy.fifo")).toBe("us-gov-west-1");
    expect(regionOfQueueUrl("https://sqs.ap-southeast-2.api.aws/123456789012/deploy")).toBe("ap-southeast-2");
    expect(regionOfQueueUrl("https://vpce-0a1b2c3d-ab12cd34.sqs.us-west-2.vpce.amazonaws.com/123456789012/deploy")).toBe("us-west-2");
  });

  test("regionOfQueueUrl() finds no region in other URLs and in names", () => {
    expect(regionOfQueueUrl("http://127.0.0.1:9324/000000000000/deploy")).toBeUndefined();
    expect(regionOfQueueUrl("http://localhost:4566/000000000000/deploy")).toBeUndefined();
    expect(regionOfQueueUrl("https://sqs.example.com/123456789012/deploy")).toBeUndefined();
    expect(regionOfQueueUrl("https://sqs.eu-west-1.amazonaws.com.evil.example/123456789012/deploy")).toBeUndefined();
    expect(regionOfQueueUrl("deploy")).toBeUndefined();
  });
});

describe("signingRegion()", () => {
  test("signingRegion() takes the URL's region over the configured one, and the configured one for names and other URLs", () => {
    expect(signingRegion("https://sqs.us-west-2.amazonaws.com/1/q", "eu-west-1")).toBe("us-west-2");
    expect(signingRegion("q", "eu-west-1")).toBe("eu-west-1");
    expect(signingRegion("http://127.0.0.1:9324/000000000000/q", "eu-west-1")).toBe("eu-west-1");
    expect(signingRegion(undefined, undefined)).toBeUndefined();
  });
});

describe("createSqsClients()", () => {
  function recording() {
    const made: SQSClientConfig[] = [];
    let destroyed = 0;
    const create = (config: SQSClientConfig) => {
      made.push(config);
      return { destroy: () => void destroyed++ } as unknown as SQSClient;
    };
    return { made, create, destroyed: () => destroyed };
  }

  test("createSqsClients() makes one client per signing region, each with the one endpoint", () => {
    const { made, create } = recording();
    const clients = createSqsClients({ region: "eu-west-1", endpoint: "http://127.0.0.1:9324", create });
    const west = clients.forQueue("https://sqs.us-west-2.amazonaws.com/1/a");
    expect(clients.forQueue("https://sqs.us-west-2.amazonaws.com/1/b")).toBe(west);
    const home = clients.forQueue("by-name");
    expect(clients.forQueue(undefined)).toBe(home);
    expect(clients.forQueue("https://sqs.eu-west-1.amazonaws.com/1/c")).toBe(home);
    expect(made).toEqual([
      { region: "us-west-2", endpoint: "http://127.0.0.1:9324" },
      { region: "eu-west-1", endpoint: "http://127.0.0.1:9324" },
    ]);
  });

  test("createSqsClients() leaves the region to the SDK when neither the URL nor the configuration names one", () => {
    const { made, create } = recording();
    createSqsClients({ create }).forQueue("deploy");
    expect(made).toEqual([{}]);
  });

  test("createSqsClients() destroys every client it made", () => {
    const rec = recording();
    const clients = createSqsClients({ create: rec.create });
    clients.forQueue("https://sqs.us-west-2.amazonaws.com/1/a");
    clients.forQueue("https://sqs.eu-west-1.amazonaws.com/1/a");
    clients.destroy();
    expect(rec.destroyed()).toBe(2);
  });
});
