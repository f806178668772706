import { describe, expect, test } from "bun:test";
import { defaultMessageGroupId, fifoDeduplicationId, isFifoQueue, messageGroupIdProblem, parseQueueRef } from "../../lib/sqs/send.ts";

describe("parseQueueRef()", () => {
  test("parseQueueRef() takes the name from a queue URL", () => {
    const url = "https://sqs.eu-west-1.amazonaws.com/123456789012/deploy-prod.fifo";
    expect(parseQueueRef(url)).toEqual({ url, name: "deploy-prod.fifo" });
    expect(parseQueueRef("http://127.0.0.1:9324/000000000000/q1")).toEqual({
      url: "http://127.0.0.1:9324/000000000000/q1",
      name: "q1",
    });
  });

  test("parseQueueRef() accepts a bare queue name", () => {
    expect(parseQueueRef("deploy_prod-1")).toEqual({ name: "deploy_prod-1" });
  });

  test("parseQueueRef() rejects a malformed URL", () => {
    const hint =
      "expected a queue URL such as https://sqs.eu-west-1.amazonaws.com/123456789012/deploy, or a queue name of up to 80 letters, digits, - and _ (FIFO names end in .fifo)";
    expect(parseQueueRef("https://sqs.eu-west-1.amazonaws.com/deploy")).toEqual({
      problem: `"https://sqs.eu-west-1.amazonaws.com/deploy" is not a queue URL (${hint})`,
    });
    expect(parseQueueRef("ftp://host/1/q")).toEqual({ problem: `"ftp://host/1/q" is not a queue URL (${hint})` });
    expect(parseQueueRef("https://")).toEqual({ problem: `"https://" is not a valid URL (${hint})` });
    expect(parseQueueRef("my queue")).toEqual({ problem: `"my queue" is neither a queue URL nor a queue name (${hint})` });
    expect(parseQueueRef("x".repeat(81))).toHaveProperty("problem");
  });
});

describe("isFifoQueue()", () => {
  test("isFifoQueue() is true when the name ends in .fifo", () => {
    expect(isFifoQueue({ name: "a.fifo" })).toBe(true);
    expect(isFifoQueue({ name: "a" })).toBe(false);
  });
});

describe("fifoDeduplicationId()", () => {
  test("fifoDeduplicationId() is the SHA-256 hex of build id, newline, digest", () => {
    // printf 'b-1\nabc' | sha256sum
    expect(fifoDeduplicationId("b-1", "abc")).toBe("5cff128634e96a3130df91fc7bfaff6dc754dfd5ca51652f52591248383c5ad2");
    expect(fifoDeduplicationId("b-1", "abc")).not.toBe(fifoDeduplicationId("b-2", "abc"));
  });

  test("fifoDeduplicationId() puts an app and a newline first, so two apps' identical builds are both delivered", () => {
    // printf 'shop\nb-1\nabc' | sha256sum
    expect(fifoDeduplicationId("b-1", "abc", "shop")).toBe("89551eb2891fa013e222ecc7439458ba2974846582ea304076d99061666ae04b");
    expect(fifoDeduplicationId("b-1", "abc", "shop")).not.toBe(fifoDeduplicationId("b-1", "abc", "payments"));
    expect(fifoDeduplicationId("b-1", "abc", "shop")).not.toBe(fifoDeduplicationId("b-1", "abc"));
  });

  test("fifoDeduplicationId() of the default app is the id of a bundle without one, as before apps", () => {
    expect(fifoDeduplicationId("b-1", "abc", "default")).toBe("5cff128634e96a3130df91fc7bfaff6dc754dfd5ca51652f52591248383c5ad2");
    expect(fifoDeduplicationId("b-1", "abc", undefined)).toBe("5cff128634e96a3130df91fc7bfaff6dc754dfd5ca51652f52591248383c5ad2");
  });
});

describe("defaultMessageGroupId()", () => {
  test("defaultMessageGroupId() is the app, and the default app without one", () => {
    expect(defaultMessageGroupId("shop-api")).toBe("shop-api");
    expect(defaultMessageGroupId(undefined)).toBe("default");
    expect(messageGroupIdProblem(defaultMessageGroupId("a".repeat(63)))).toBeUndefined();
  });
});

describe("messageGroupIdProblem()", () => {
  test("messageGroupIdProblem() accepts 1 to 128 printable ASCII characters", () => {
    expect(messageGroupIdProblem("kube-pico-cd")).toBeUndefined();
    expect(messageGroupIdProblem("has space")).toBe(
      '"has space" is not a valid message group id (1 to 128 printable ASCII characters without spaces)',
    );
  });
});
