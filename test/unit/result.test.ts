import { describe, expect, test } from "bun:test";
import { decodeResult, encodeResult, resultFromOutcome, ResultRejectedError, resultSucceeded, type ResultMessage } from "../../lib/wire/result.ts";
import type { Outcome } from "../../lib/kube/record.ts";
import { thrown } from "../helpers/thrown.ts";

const applied: ResultMessage = {
  kind: "kube-pico-cd.result",
  version: 1,
  messageId: "5fea7756-0ea4-451a-a703-a558b933e274",
  build: { id: "0123abcd-987-1", timestampMs: 1_700_000_000_123, commit: "0123abcd" },
  digest: "25c553da43e1d7c12d4544f82c4ca4a25ff3f90000798cdb16567d17607411b0",
  target: "prod",
  queue: "kube-pico-cd",
  namespace: "kube-pico-cd",
  result: "applied",
  health: { status: "Healthy" },
  message: "applied 6 objects, pruned 1",
  durations: { pickupMs: 370, applyMs: 1_680, healthMs: 2_100 },
  time: "2026-11-25T21:00:00.000Z",
};

const rejection = (body: string) => thrown(() => decodeResult(body), ResultRejectedError);

describe("encodeResult() and decodeResult()", () => {
  test("decodeResult() returns what encodeResult() wrote", () => {
    expect(decodeResult(encodeResult(applied))).toEqual(applied);
  });

  test("encodeResult() writes the documented keys in order", () => {
    expect(Object.keys(JSON.parse(encodeResult(applied)))).toEqual([
      "kind", "version", "messageId", "build", "digest", "target", "queue", "namespace", "result", "health", "message", "durations", "time",
    ]);
  });

  test("encodeResult() writes app after messageId, and decodeResult() reads it", () => {
    const withApp: ResultMessage = { ...applied, app: "shop-api" };
    expect(Object.keys(JSON.parse(encodeResult(withApp))).slice(0, 5)).toEqual(["kind", "version", "messageId", "app", "build"]);
    expect(decodeResult(encodeResult(withApp))).toEqual(withApp);
  });

  test("decodeResult() rejects an app that is no app name, naming the rule", () => {
    expect(rejection(JSON.stringify({ ...applied, app: "Shop" })).message).toBe(
      'Cannot read the result: app: app name "Shop" is not a DNS label (lowercase letters, digits and \'-\', starting and ending with a letter or digit)',
    );
  });

  test("decodeResult() accepts a failed result with receiveCount and willRetry", () => {
    const failed: ResultMessage = { ...applied, result: "failed", message: "kubectl apply failed", receiveCount: 2, willRetry: true };
    delete failed.health;
    expect(decodeResult(JSON.stringify(failed))).toEqual(failed);
  });

  test("decodeResult() rejects a body that is not JSON", () => {
    const error = rejection("nope");
    expect(error.reason).toBe("invalid-json");
    expect(error.message).toStartWith("Cannot read the result: the body is not JSON (");
  });

  test("decodeResult() rejects a body that is not an object", () => {
    expect(rejection("[]").message).toBe("Cannot read the result: the body is an array, not a JSON object");
    expect(rejection("null").message).toBe("Cannot read the result: the body is null, not a JSON object");
  });

  test("decodeResult() rejects another kind, naming it", () => {
    const error = rejection(JSON.stringify({ ...applied, kind: "kube-pico-cd.bundle" }));
    expect(error.reason).toBe("unsupported-kind");
    expect(error.message).toBe('Cannot read the result: kind must be "kube-pico-cd.result": current value is "kube-pico-cd.bundle"');
    const { kind: _, ...withoutKind } = applied;
    expect(rejection(JSON.stringify(withoutKind)).message).toBe('Cannot read the result: kind must be "kube-pico-cd.result": current value is absent');
  });

  test("decodeResult() rejects another version, naming it", () => {
    const error = rejection(JSON.stringify({ ...applied, version: 2 }));
    expect(error.reason).toBe("unsupported-version");
    expect(error.message).toBe("Cannot read the result: version must be 1: current value is 2");
  });

  test("decodeResult() rejects unknown keys, at the top and inside objects", () => {
    const top = rejection(JSON.stringify({ ...applied, rollback: true }));
    expect(top.reason).toBe("schema");
    expect(top.message).toBe('Cannot read the result: body: unknown keys "rollback"');
    expect(rejection(JSON.stringify({ ...applied, build: { ...applied.build, pipeline: "x" } })).message).toBe('Cannot read the result: build: unknown keys "pipeline"');
    expect(rejection(JSON.stringify({ ...applied, durations: { totalMs: 1 } })).message).toBe('Cannot read the result: durations: unknown keys "totalMs"');
  });

  test("decodeResult() rejects malformed fields: an unknown result, a missing message id, a bad time, a negative duration", () => {
    expect(rejection(JSON.stringify({ ...applied, result: "rolled-back" })).message).toStartWith("Cannot read the result: result: ");
    const { messageId: _, ...withoutId } = applied;
    expect(rejection(JSON.stringify(withoutId)).message).toStartWith("Cannot read the result: messageId: ");
    expect(rejection(JSON.stringify({ ...applied, time: "yesterday" })).message).toStartWith("Cannot read the result: time: ");
    expect(rejection(JSON.stringify({ ...applied, durations: { applyMs: -1 } })).message).toStartWith("Cannot read the result: durations.applyMs: ");
    expect(rejection(JSON.stringify({ ...applied, health: { status: "Fine" } })).message).toStartWith("Cannot read the result: health.status: ");
  });
});

describe("resultFromOutcome()", () => {
  const context = { queue: "kube-pico-cd", namespace: "kube-pico-cd", receiveCount: 3 };
  const base: Outcome = {
    result: "applied",
    time: "2026-11-25T21:00:00.000Z",
    buildId: "0123abcd-987-1",
    timestampMs: 1_700_000_000_123,
    commit: "0123abcd",
    target: "prod",
    digest: applied.digest,
    messageId: applied.messageId,
  };

  test("resultFromOutcome() of an applied outcome sums up objects, prune and health, and carries the durations", () => {
    const outcome: Outcome = {
      ...base,
      durationMs: 1_680.4,
      objects: 6,
      pickupMs: 370,
      pruned: [{ group: "", kind: "ConfigMap", namespace: "web", name: "old" }],
      health: { status: "Healthy", durationMs: 2_100, checked: 2 },
    };
    expect(resultFromOutcome(outcome, context)).toEqual({ ...applied, pruned: ["ConfigMap web/old"] });
  });

  test("progressResult() is a step of a deploy still running, which publish waits past", async () => {
    const { progressResult, resultSucceeded } = await import("../../lib/wire/result.ts");
    const result = progressResult({ phase: "health", text: "waiting for health: 1 of 2 healthy", elapsedMs: 1_234.6 }, { app: "shop", id: "b1", timestampMs: 1, digest: "d", messageId: "m" }, { queue: "q", namespace: "ns" }, "2026-11-25T21:00:00.000Z");
    expect(decodeResult(encodeResult(result))).toEqual(result);
    expect(result).toMatchObject({ result: "progress", app: "shop", progress: { phase: "health", elapsedMs: 1_235 }, message: "waiting for health: 1 of 2 healthy" });
    expect(resultSucceeded(result)).toBe(true);
  });

  test("resultFromOutcome() names the unhealthy object in the message", () => {
    const outcome: Outcome = { ...base, objects: 1, health: { status: "Degraded", durationMs: 5, checked: 1, object: "apps/Deployment/web/api", reason: "ProgressDeadlineExceeded" } };
    const result = resultFromOutcome(outcome, context)!;
    expect(result.health).toEqual({ status: "Degraded", object: "apps/Deployment/web/api", reason: "ProgressDeadlineExceeded" });
    expect(result.message).toBe("applied 1 object, health Degraded at apps/Deployment/web/api: ProgressDeadlineExceeded");
  });

  test("resultFromOutcome() of a failed outcome says the receive count and that the listener retries, on one line", () => {
    const result = resultFromOutcome({ ...base, result: "failed", error: "kubectl apply failed:\n  missing field", durationMs: 90 }, context)!;
    expect(result).toMatchObject({ result: "failed", message: "kubectl apply failed: missing field", receiveCount: 3, willRetry: true, durations: { applyMs: 90 } });
  });

  test("resultFromOutcome() of a failed outcome on the last receive the redrive policy allows says it will not be retried", () => {
    const failed = { ...base, result: "failed" as const, error: "boom" };
    expect(resultFromOutcome(failed, { ...context, receiveCount: 3, maxReceiveCount: 3 })?.willRetry).toBe(false);
    expect(resultFromOutcome(failed, { ...context, receiveCount: 2, maxReceiveCount: 3 })?.willRetry).toBe(true);
  });

  test("resultFromOutcome() cuts a long error to 1000 characters", () => {
    const result = resultFromOutcome({ ...base, result: "rejected", error: "x".repeat(5_000) }, context)!;
    expect(result.message).toHaveLength(1_000);
    expect(result.message.endsWith("…")).toBe(true);
    expect(result.receiveCount).toBeUndefined();
  });

  test("resultFromOutcome() says what superseded and duplicate mean", () => {
    expect(resultFromOutcome({ ...base, result: "superseded" }, context)!.message).toBe("not applied: a newer build was already recorded or arrived in the same batch");
    expect(resultFromOutcome({ ...base, result: "duplicate" }, context)!.message).toBe("not applied again: this build is already the recorded one");
  });

  test("resultFromOutcome() copies the outcome's app, and writes none when the outcome has none", () => {
    expect(resultFromOutcome({ ...base, app: "shop-api" }, context)?.app).toBe("shop-api");
    expect(resultFromOutcome({ ...base, app: "default" }, context)?.app).toBe("default");
    expect(resultFromOutcome(base, context)).not.toHaveProperty("app");
  });

  test("resultFromOutcome() leaves out an outcome's app that is no app name, which encodeResult() would refuse", () => {
    const result = resultFromOutcome({ ...base, app: "Not An App" }, context)!;
    expect(result).not.toHaveProperty("app");
    expect(() => encodeResult(result)).not.toThrow();
  });

  test("resultFromOutcome() returns undefined for an outcome without a build (a message that did not decode)", () => {
    expect(resultFromOutcome({ result: "rejected", time: base.time, messageId: "m", error: "invalid-json: …" }, context)).toBeUndefined();
  });
});

describe("resultSucceeded()", () => {
  test("resultSucceeded() is true for applied and Healthy or unchecked, duplicate and superseded", () => {
    expect(resultSucceeded({ result: "applied", health: { status: "Healthy" } })).toBe(true);
    expect(resultSucceeded({ result: "applied" })).toBe(true);
    expect(resultSucceeded({ result: "duplicate" })).toBe(true);
    expect(resultSucceeded({ result: "superseded" })).toBe(true);
  });

  test("resultSucceeded() is false for failed, rejected, and applied but Degraded or Timeout", () => {
    expect(resultSucceeded({ result: "failed" })).toBe(false);
    expect(resultSucceeded({ result: "rejected" })).toBe(false);
    expect(resultSucceeded({ result: "applied", health: { status: "Degraded" } })).toBe(false);
    expect(resultSucceeded({ result: "applied", health: { status: "Timeout" } })).toBe(false);
  });
});
