import { describe, expect, test } from "bun:test";
import { eventMessage, eventReason, MAX_EVENT_MESSAGE_LENGTH, outcomeEvent } from "../../lib/kube/events.ts";
import type { Outcome } from "../../lib/kube/record.ts";

const applied: Outcome = {
  result: "applied",
  time: "2026-01-01T00:00:00.000Z",
  buildId: "b-42",
  timestampMs: 1_000,
  digest: "sha256:abc",
  messageId: "m-1",
  durationMs: 1_234,
  objects: 5,
  pruned: [{ group: "", kind: "ConfigMap", namespace: "app", name: "old" }],
  health: { status: "Healthy", durationMs: 3_000, checked: 1 },
};

describe("eventReason()", () => {
  test("eventReason() is Normal for healthy, superseded and duplicate outcomes, Warning for the rest", () => {
    expect(eventReason(applied)).toEqual({ type: "Normal", reason: "Applied" });
    expect(eventReason({ result: "applied" })).toEqual({ type: "Normal", reason: "Applied" });
    expect(eventReason({ result: "applied", health: { status: "Degraded", durationMs: 1, checked: 1 } })).toEqual({ type: "Warning", reason: "AppliedDegraded" });
    expect(eventReason({ result: "applied", health: { status: "Timeout", durationMs: 1, checked: 1 } })).toEqual({ type: "Warning", reason: "AppliedTimeout" });
    expect(eventReason({ result: "failed" })).toEqual({ type: "Warning", reason: "ApplyFailed" });
    expect(eventReason({ result: "rejected" })).toEqual({ type: "Warning", reason: "Rejected" });
    expect(eventReason({ result: "superseded" })).toEqual({ type: "Normal", reason: "Superseded" });
    expect(eventReason({ result: "duplicate" })).toEqual({ type: "Normal", reason: "Duplicate" });
  });
});

describe("eventMessage()", () => {
  test("eventMessage() says what was applied, pruned and how healthy it is", () => {
    expect(eventMessage(applied)).toBe("build b-42 applied: 5 objects in 1.2 s; 1 pruned; healthy after 3.0 s");
  });

  test("eventMessage() names the unhealthy object and reason", () => {
    const degraded: Outcome = { ...applied, pruned: [], health: { status: "Degraded", durationMs: 9, checked: 1, object: "apps/Deployment/app/web", reason: "ProgressDeadlineExceeded: x" } };
    expect(eventMessage(degraded)).toBe("build b-42 applied: 5 objects in 1.2 s; Degraded: apps/Deployment/app/web ProgressDeadlineExceeded: x");
  });

  test("eventMessage() of a rejected undecodable message, on one line, cut to 1 KiB", () => {
    expect(eventMessage({ result: "rejected", time: "t", error: "invalid-json: Unexpected token\nat 1" })).toBe("a message that could not be decoded rejected: invalid-json: Unexpected token at 1");
    const long = eventMessage({ result: "failed", time: "t", buildId: "b", error: "x".repeat(5_000) });
    expect(long.length).toBe(MAX_EVENT_MESSAGE_LENGTH);
    expect(long.endsWith("…")).toBe(true);
  });
});

describe("outcomeEvent()", () => {
  test("outcomeEvent() is a core/v1 Event on the record's ConfigMap", () => {
    const event = outcomeEvent({ ...applied, result: "failed", error: "boom" }, { namespace: "kube-pico-cd", name: "kube-pico-cd-state", uid: "u-1" }, { nowMs: Date.UTC(2026, 0, 2, 3, 4, 5, 678), instance: "pod-1" });
    expect(event).toEqual({
      apiVersion: "v1",
      kind: "Event",
      metadata: {
        generateName: "kube-pico-cd-state.",
        namespace: "kube-pico-cd",
        labels: { "app.kubernetes.io/managed-by": "kube-pico-cd" },
        annotations: { "kube-pico-cd.io/build-id": "b-42", "kube-pico-cd.io/message-id": "m-1" },
      },
      involvedObject: { apiVersion: "v1", kind: "ConfigMap", namespace: "kube-pico-cd", name: "kube-pico-cd-state", uid: "u-1" },
      type: "Warning",
      reason: "ApplyFailed",
      message: "build b-42 failed and will be retried: boom",
      firstTimestamp: "2026-01-02T03:04:05Z",
      lastTimestamp: "2026-01-02T03:04:05Z",
      count: 1,
      source: { component: "kube-pico-cd" },
      reportingComponent: "kube-pico-cd",
      reportingInstance: "pod-1",
    });
  });
});
