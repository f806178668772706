import { describe, expect, test } from "bun:test";
import { Counter, createListenerMetrics, formatValue, Gauge, Histogram, observeCurrentBuild, observeOutcome, Registry, rejectionReason } from "../../lib/listener/metrics.ts";

describe("Registry", () => {
  test("render() writes HELP, TYPE and samples, escaping label values and help text", () => {
    const registry = new Registry();
    const c = registry.register(new Counter("x_total", "Counts\\things\nhere.", ["reason"]));
    c.inc({ reason: 'a"b\\c\nd' }, 2);
    registry.register(new Gauge("g", "A gauge.")).set(1.5);
    expect(registry.render()).toBe(
      ['# HELP x_total Counts\\\\things\\nhere.', "# TYPE x_total counter", 'x_total{reason="a\\"b\\\\c\\nd"} 2', "# HELP g A gauge.", "# TYPE g gauge", "g 1.5", ""].join("\n"),
    );
  });

  test("register() refuses a second metric of the same name", () => {
    const registry = new Registry();
    registry.register(new Gauge("g", "A gauge."));
    expect(() => registry.register(new Gauge("g", "Again."))).toThrow("Cannot register metric g twice");
  });
});

describe("Histogram", () => {
  test("observe() fills cumulative buckets ending in +Inf, with sum and count", () => {
    const h = new Histogram("d_seconds", "Durations.", [1, 5]);
    h.observe(0.5);
    h.observe(3);
    h.observe(10);
    expect(h.render()).toEqual([
      "# HELP d_seconds Durations.",
      "# TYPE d_seconds histogram",
      'd_seconds_bucket{le="1"} 1',
      'd_seconds_bucket{le="5"} 2',
      'd_seconds_bucket{le="+Inf"} 3',
      "d_seconds_sum 13.5",
      "d_seconds_count 3",
    ]);
  });

  test("new Histogram() refuses buckets that do not increase", () => {
    expect(() => new Histogram("h", "x", [1, 1])).toThrow("Cannot create histogram h as its buckets must be finite and increasing: current value is [1, 1]");
  });
});

describe("Counter", () => {
  test("inc() refuses a negative step and labels it was not declared with", () => {
    const c = new Counter("c_total", "x", ["result"]);
    expect(() => c.inc({ result: "a" }, -1)).toThrow("Cannot increase c_total as 'by' must be a non-negative finite number: current value is -1");
    expect(() => c.inc({ result: "a", other: "b" })).toThrow("Cannot record c_total as its labels are result: current labels are result, other");
    expect(() => c.inc({})).toThrow("Cannot record c_total as label result is missing");
  });
});

describe("formatValue()", () => {
  test("formatValue() writes infinities and NaN as Prometheus does", () => {
    expect([formatValue(Infinity), formatValue(-Infinity), formatValue(NaN), formatValue(0.25)]).toEqual(["+Inf", "-Inf", "NaN", "0.25"]);
  });
});

describe("rejectionReason()", () => {
  test("rejectionReason() is the word before the colon, or unknown", () => {
    expect(rejectionReason("policy: 2 objects violate the policy")).toBe("policy");
    expect(rejectionReason("empty-bundle: The bundle holds no objects")).toBe("empty-bundle");
    expect(rejectionReason("no reason given")).toBe("unknown");
    expect(rejectionReason(undefined)).toBe("unknown");
  });
});

describe("observeOutcome()", () => {
  test("observeOutcome() counts each result, durations, pickup, health, pruned objects and rejections, by app", () => {
    const m = createListenerMetrics();
    observeOutcome(m, { result: "applied", app: "shop", timestampMs: 1_700_000_000_000, durationMs: 1_500, pickupMs: 400, pruned: [{}, {}], health: { status: "Healthy", durationMs: 2_000 } }, 1_700_000_100_000);
    observeOutcome(m, { result: "failed", app: "shop", durationMs: 700 });
    observeOutcome(m, { result: "rejected", app: "shop", error: "signature: unknown key id" });
    observeOutcome(m, { result: "superseded", app: "shop" });
    // An outcome from before apps is the default app's.
    observeOutcome(m, { result: "applied", timestampMs: 1_600_000_000_000 }, 1_600_000_100_000);
    const app = "shop";
    expect(["applied", "failed", "rejected", "superseded", "duplicate"].map((result) => m.deploys.get({ app, result }))).toEqual([1, 1, 1, 1, 0]);
    expect(m.deploys.get({ app: "default", result: "applied" })).toBe(1);
    expect(m.deployDuration.count({ app, result: "applied" })).toBe(1);
    expect(m.deployDuration.count({ app, result: "failed" })).toBe(1);
    expect(m.pickupLatency.count({ app })).toBe(1);
    expect(m.health.get({ app, status: "Healthy" })).toBe(1);
    expect(m.pruned.get({ app })).toBe(2);
    expect(m.rejected.get({ app, reason: "signature" })).toBe(1);
    const text = m.registry.render();
    expect(text).toContain('kube_pico_cd_deploy_duration_seconds_sum{app="shop",result="applied"} 3.5\n');
    expect(text).toContain('kube_pico_cd_last_applied_build_timestamp_seconds{app="shop"} 1700000000\n');
    expect(text).toContain('kube_pico_cd_last_applied_time_seconds{app="shop"} 1700000100\n');
    expect(text).toContain('kube_pico_cd_last_applied_build_timestamp_seconds{app="default"} 1600000000\n');
  });

  test("createListenerMetrics() starts every known series of the default app at 0, and of each app when first seen", () => {
    const m = createListenerMetrics();
    const text = m.registry.render();
    for (const line of [
      'kube_pico_cd_deploys_total{app="default",result="duplicate"} 0',
      'kube_pico_cd_deploy_health_total{app="default",status="Timeout"} 0',
      'kube_pico_cd_sqs_errors_total{operation="ReceiveMessage"} 0',
      'kube_pico_cd_drift_passes_total{app="default",result="skipped"} 0',
      'kube_pico_cd_pruned_objects_total{app="default"} 0',
    ]) {
      expect(text).toContain(`${line}\n`);
    }
    observeOutcome(m, { result: "duplicate", app: "blog" });
    expect(m.registry.render()).toContain('kube_pico_cd_deploys_total{app="blog",result="failed"} 0\n');
  });
});

describe("observeCurrentBuild()", () => {
  test("observeCurrentBuild() sets the last-applied gauges of the app from its record's current build, and nothing without one", () => {
    const m = createListenerMetrics();
    observeCurrentBuild(m, null);
    expect(m.registry.render()).not.toMatch(/^kube_pico_cd_last_applied_build_timestamp_seconds/m);
    observeCurrentBuild(m, { build: { timestampMs: 1_700_000_000_500 }, appliedAt: "2023-11-14T22:13:30.000Z" }, "shop");
    const text = m.registry.render();
    expect(text).toContain('kube_pico_cd_last_applied_build_timestamp_seconds{app="shop"} 1700000000.5\n');
    expect(text).toContain('kube_pico_cd_last_applied_time_seconds{app="shop"} 1700000010\n');
  });
});

describe("app labels", () => {
  test("past MAX_APP_LABELS apps, outcomes are counted under (other), so app names cannot grow the series without bound", async () => {
    const { MAX_APP_LABELS, OTHER_APPS_LABEL } = await import("../../lib/listener/metrics.ts");
    const m = createListenerMetrics();
    for (let i = 0; i < MAX_APP_LABELS + 50; i++) observeOutcome(m, { result: "rejected", app: `app-${i}`, error: "unknown-app: no" });
    const apps = new Set([...m.registry.render().matchAll(/kube_pico_cd_deploys_total\{app="([^"]*)"/g)].map((x) => x[1]));
    expect(apps.size).toBe(MAX_APP_LABELS + 1);
    expect(apps.has(OTHER_APPS_LABEL)).toBe(true);
    expect(m.deploys.get({ app: OTHER_APPS_LABEL, result: "rejected" })).toBe(50 + 1);
  });
});
