/**
 * /metrics and Events against the real environment: a listener does an applied deploy, a
 * rejected message and a failing build (retried until its dead-letter queue takes it); its
 * /metrics output is parsed by the reference Prometheus client's parser (scripts/
 * prometheus-parse.sh) and every deploy counter equals what the version record shows; each
 * outcome left a Kubernetes Event on the record's ConfigMap.
 */
import { spawnSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, test } from "bun:test";
import { createNamespace, createQueue, kubectl } from "../env/testenv.ts";
import { configMap, queueDepth, sendBundle, sendRaw } from "../helpers/bundles.ts";
import { runListenerOnce, startListener, type StartListenerOptions } from "../helpers/listener-process.ts";
import { readRecord } from "../helpers/record.ts";
import { closedPort, kubeconfigFor } from "../helpers/unreachable.ts";
import { until } from "../helpers/until.ts";
import { brokenDeployment } from "../helpers/workloads.ts";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

interface Sample {
  family: string;
  type: string;
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses exposition text with prometheus_client's parser; fails the test on any format error. */
function parsePrometheus(text: string): Sample[] {
  const run = spawnSync("bash", [join(root, "scripts", "prometheus-parse.sh")], { input: text, encoding: "utf8", timeout: 300_000 });
  if (run.status !== 0) throw new Error(`the Prometheus parser refused /metrics (exit ${run.status}):\n${run.stderr}\n--- /metrics ---\n${text}`);
  return JSON.parse(run.stdout) as Sample[];
}

const value = (samples: Sample[], name: string, labels: Record<string, string> = {}) =>
  samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;

/**
 * Runs `check` against a listener serving /metrics on 127.0.0.1, then stops it with SIGTERM
 * and expects exit 0. `scrape()` fetches and parses /metrics; `response()` is the raw answer.
 */
async function withMetricsListener(
  options: StartListenerOptions,
  check: (metrics: { scrape: () => Promise<Sample[]>; response: () => Promise<Response> }) => Promise<void>,
): Promise<void> {
  const listener = await startListener({ ...options, env: { KUBE_PICO_CD_HTTP_PORT: "0", KUBE_PICO_CD_HTTP_HOST: "127.0.0.1", ...options.env } });
  try {
    // The server is up before the listener has found its queue (which an unreachable SQS delays).
    const port = Number((await listener.waitForLog((l) => l.msg === "serving /healthz, /readyz and /metrics")).httpPort);
    const response = () => fetch(`http://127.0.0.1:${port}/metrics`);
    await check({ response, scrape: async () => parsePrometheus(await (await response()).text()) });
  } finally {
    listener.kill("SIGTERM");
    expect(await listener.exited).toBe(0);
  }
}

describe("metrics and events", () => {
  test("/metrics parses as Prometheus text and its counters match the record; each outcome has an Event on the record", async () => {
    // The parser's virtualenv is built before the listener starts, so its install time is not in the test.
    parsePrometheus("# TYPE warm gauge\nwarm 1\n");
    const ns = await createNamespace("metrics");
    const queue = await createQueue({ deadLetter: { maxReceiveCount: 2 } });
    const env = { KUBE_PICO_CD_RETRY_BASE_SECONDS: "0", KUBE_PICO_CD_RETRY_MAX_SECONDS: "0" };
    await withMetricsListener({ queueUrl: queue.url, namespace: ns, env }, async ({ scrape, response: metricsResponse }) => {
      const applied = await sendBundle(queue.url, [configMap(ns, "app", { v: "1" })], { timestampMs: 1_000 });
      await until("the build applied", async () => (await readRecord(ns))?.current?.build.id === applied.build.id);
      await sendRaw(queue.url, "this is { not json");
      await sendBundle(queue.url, [brokenDeployment(ns)], { timestampMs: 2_000 });
      // Two failed receives, then the dead-letter queue has it: nothing left to change the counts.
      const record = await until("a rejection and two failures recorded, the queue empty", async () => {
        const r = await readRecord(ns);
        const depth = await queueDepth(queue.url);
        const count = (result: string) => r?.history.filter((h) => h.result === result).length ?? 0;
        return count("rejected") === 1 && count("failed") === 2 && depth.visible + depth.inFlight + depth.delayed === 0 ? r : undefined;
      });
      // Outcome listeners run after the record is written: give them a moment to count.
      await until("the metrics count four outcomes", async () => {
        const s = await scrape();
        const total = ["applied", "failed", "rejected", "superseded", "duplicate"].reduce((n, result) => n + (value(s, "kube_pico_cd_deploys_total", { result }) ?? 0), 0);
        return total === 4;
      });

      const response = await metricsResponse();
      expect(response.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
      const samples = parsePrometheus(await response.text());
      for (const result of ["applied", "failed", "rejected", "superseded", "duplicate"]) {
        expect({ result, count: value(samples, "kube_pico_cd_deploys_total", { result }) }).toEqual({ result, count: record.history.filter((h) => h.result === result).length });
      }
      expect(value(samples, "kube_pico_cd_rejected_messages_total", { reason: "invalid-json" })).toBe(1);
      expect(value(samples, "kube_pico_cd_deploy_duration_seconds_count", { result: "applied" })).toBe(1);
      expect(value(samples, "kube_pico_cd_deploy_duration_seconds_count", { result: "failed" })).toBe(2);
      expect(value(samples, "kube_pico_cd_deploy_duration_seconds_bucket", { result: "applied", le: "+Inf" })).toBe(1);
      expect(value(samples, "kube_pico_cd_pickup_latency_seconds_count")).toBe(3);
      expect(value(samples, "kube_pico_cd_last_applied_build_timestamp_seconds")).toBe(1);
      expect(samples.find((s) => s.name === "kube_pico_cd_deploy_health_total")?.type).toBe("counter");
      expect(samples.find((s) => s.name === "kube_pico_cd_sqs_errors_total" && s.labels["operation"] === "ReceiveMessage")?.value).toBe(0);

      const events = await until("four Events on the record", async () => {
        const got = await kubectl(["get", "events", "-n", ns, "--field-selector", "involvedObject.kind=ConfigMap,involvedObject.name=kube-pico-cd-state", "-o", "json"]);
        const items = (JSON.parse(got.stdout) as { items: { type: string; reason: string; message: string; involvedObject: { uid?: string } }[] }).items;
        return items.length >= 4 ? items : undefined;
      });
      expect(events.map((e) => `${e.type} ${e.reason}`).sort()).toEqual(["Normal Applied", "Warning ApplyFailed", "Warning ApplyFailed", "Warning Rejected"]);
      expect(events.find((e) => e.reason === "Applied")?.message).toBe(`build ${applied.build.id} applied: 1 objects in ${(record.history.find((h) => h.result === "applied")!.durationMs! / 1000).toFixed(1)} s`);
      expect(events.find((e) => e.reason === "ApplyFailed")?.message).toContain(`missing required field "selector"`);
      const uid = (await kubectl(["get", "configmap", "kube-pico-cd-state", "-n", ns, "-o", "jsonpath={.metadata.uid}"])).stdout;
      expect(events.every((e) => e.involvedObject.uid === uid)).toBe(true);
      // kubectl describe finds them through the uid, as an operator would look.
      const described = await kubectl(["describe", "configmap", "kube-pico-cd-state", "-n", ns]);
      expect(described.stdout).toContain("ApplyFailed");
    });
  });

  test("after a restart the last-applied gauges come from the version record", async () => {
    const ns = await createNamespace("metrics-restart");
    const queue = await createQueue();
    await sendBundle(queue.url, [configMap(ns, "a", {})], { timestampMs: 5_000 });
    expect((await runListenerOnce({ queueUrl: queue.url, namespace: ns })).code).toBe(0);
    const appliedAt = Date.parse((await readRecord(ns))!.current!.appliedAt) / 1000;
    await withMetricsListener({ queueUrl: queue.url, namespace: ns }, async ({ scrape }) => {
      const samples = await until("the gauges set from the record", async () => {
        const s = await scrape();
        return value(s, "kube_pico_cd_last_applied_build_timestamp_seconds") === undefined ? undefined : s;
      });
      expect(value(samples, "kube_pico_cd_last_applied_build_timestamp_seconds")).toBe(5);
      expect(value(samples, "kube_pico_cd_last_applied_time_seconds")).toBe(appliedAt);
      expect(value(samples, "kube_pico_cd_deploys_total", { result: "applied" })).toBe(0);
    });
  });

  test("failed SQS calls and an unreachable API server are counted by operation", async () => {
    const ns = await createNamespace("metrics-errors");
    const queue = await createQueue();
    // Nothing listens on either port: the queue check at start and every API probe fail.
    const env = { KUBE_PICO_CD_ENDPOINT_URL: `http://127.0.0.1:${await closedPort()}` };
    await withMetricsListener({ queueUrl: queue.url, namespace: ns, kubeconfig: kubeconfigFor(await closedPort()), env }, async ({ scrape }) => {
      const samples = await until("a failed queue check and a failed API probe counted", async () => {
        const s = await scrape();
        const receive = value(s, "kube_pico_cd_sqs_errors_total", { operation: "GetQueueAttributes" }) ?? 0;
        const readyz = value(s, "kube_pico_cd_api_errors_total", { operation: "readyz" }) ?? 0;
        return receive >= 1 && readyz >= 1 ? s : undefined;
      });
      expect(value(samples, "kube_pico_cd_deploys_total", { result: "applied" })).toBe(0);
    });
  });

  test("--no-events creates no Event", async () => {
    const ns = await createNamespace("no-events");
    const queue = await createQueue();
    await sendBundle(queue.url, [configMap(ns, "a", {})], { timestampMs: 1_000 });
    expect((await runListenerOnce({ queueUrl: queue.url, namespace: ns, args: ["--no-events"] })).code).toBe(0);
    expect((await readRecord(ns))?.history[0]?.result).toBe("applied");
    const got = await kubectl(["get", "events", "-n", ns, "--field-selector", "involvedObject.name=kube-pico-cd-state", "-o", "name"]);
    expect(got.stdout.trim()).toBe("");
  });
});
