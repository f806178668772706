import { describe, expect, test } from "bun:test";
import { notReadyReason, startHealthServer } from "../../lib/listener/health-server.ts";

describe("notReadyReason()", () => {
  const now = 1_000_000;
  test("notReadyReason() is undefined when SQS answered recently and the API server is reachable", () => {
    expect(notReadyReason({ lastSqsOkMs: now - 1_000, apiReachable: true, lastApiCheckMs: now - 5_000 }, 60_000, now)).toBeUndefined();
  });
  test("notReadyReason() names what is missing", () => {
    expect(notReadyReason({ lastSqsOkMs: 0, apiReachable: true, lastApiCheckMs: now }, 60_000, now)).toBe("SQS not reached yet");
    expect(notReadyReason({ lastSqsOkMs: now - 90_000, apiReachable: true, lastApiCheckMs: now }, 60_000, now)).toBe("SQS last reached 90 s ago");
    expect(notReadyReason({ lastSqsOkMs: now, apiReachable: false, lastApiCheckMs: 0 }, 60_000, now)).toBe("Kubernetes API server not reached yet");
    expect(notReadyReason({ lastSqsOkMs: now, apiReachable: false, lastApiCheckMs: now }, 60_000, now)).toBe("Kubernetes API server unreachable at the last check");
  });
});

describe("startHealthServer()", () => {
  test("startHealthServer() answers /healthz, /readyz with the reason, and 404 elsewhere", async () => {
    const readiness = { lastSqsOkMs: 0, apiReachable: false, lastApiCheckMs: 0 };
    const server = await startHealthServer({ host: "127.0.0.1", port: 0, readiness: () => readiness, sqsStaleMs: 60_000 });
    try {
      const base = `http://127.0.0.1:${server.port}`;
      expect((await fetch(`${base}/healthz`)).status).toBe(200);
      const notReady = await fetch(`${base}/readyz`);
      expect([notReady.status, await notReady.text()]).toEqual([503, "not ready: SQS not reached yet\n"]);
      Object.assign(readiness, { lastSqsOkMs: Date.now(), apiReachable: true, lastApiCheckMs: Date.now() });
      const ready = await fetch(`${base}/readyz`);
      expect([ready.status, await ready.text()]).toEqual([200, "ok\n"]);
      expect((await fetch(`${base}/nope`)).status).toBe(404);
    } finally {
      await server.close();
    }
  });
});

describe("startHealthServer() /metrics", () => {
  test("startHealthServer() serves /metrics in the text format when given metrics, and 404 without", async () => {
    const readiness = { lastSqsOkMs: 0, apiReachable: false, lastApiCheckMs: 0 };
    const withMetrics = await startHealthServer({ host: "127.0.0.1", port: 0, readiness: () => readiness, sqsStaleMs: 60_000, metrics: () => "# TYPE a gauge\na 1\n" });
    const without = await startHealthServer({ host: "127.0.0.1", port: 0, readiness: () => readiness, sqsStaleMs: 60_000 });
    try {
      const res = await fetch(`http://127.0.0.1:${withMetrics.port}/metrics`);
      expect([res.status, res.headers.get("content-type"), await res.text()]).toEqual([200, "text/plain; version=0.0.4; charset=utf-8", "# TYPE a gauge\na 1\n"]);
      expect((await fetch(`http://127.0.0.1:${without.port}/metrics`)).status).toBe(404);
    } finally {
      await withMetrics.close();
      await without.close();
    }
  });
});
