/**
 * Metrics in the Prometheus text exposition format (version 0.0.4), without a dependency:
 * counters, gauges and histograms with fixed buckets, and the listener's own set of them,
 * served on `/metrics` by lib/listener/health-server.ts.
 *
 * The format, as this module writes it: for each metric a `# HELP` and a `# TYPE` line, then
 * its samples `name{label="value",…} number`, one per line; label values escape `\`, `"` and
 * newlines; histograms give cumulative `_bucket{le="…"}` samples ending in `le="+Inf"`, then
 * `_sum` and `_count`.
 */

import { VERSION } from "../version.ts";
import { DEFAULT_APP } from "./apps.ts";

type Labels = Readonly<Record<string, string>>;

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

function escapeHelp(text: string): string {
  return text.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

/** A sample value as Prometheus writes it: `+Inf`, `-Inf`, `NaN` or a decimal number. */
export function formatValue(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Number.POSITIVE_INFINITY) return "+Inf";
  if (value === Number.NEGATIVE_INFINITY) return "-Inf";
  return String(value);
}

function labelText(labels: Labels): string {
  const entries = Object.entries(labels);
  if (entries.length === 0) return "";
  return `{${entries.map(([k, v]) => `${k}="${escapeLabelValue(v)}"`).join(",")}}`;
}

/** One series key per distinct label set, in the metric's label order. */
function seriesKey(labelNames: readonly string[], labels: Labels): string {
  return JSON.stringify(labelNames.map((name) => labels[name] ?? ""));
}

abstract class Metric {
  readonly name: string;
  readonly help: string;
  readonly labelNames: readonly string[];
  abstract readonly type: "counter" | "gauge" | "histogram";

  constructor(name: string, help: string, labelNames: readonly string[] = []) {
    if (!METRIC_NAME.test(name)) throw new RangeError(`Cannot create metric as its name is not valid: current value is ${JSON.stringify(name)}`);
    for (const label of labelNames) {
      if (!LABEL_NAME.test(label) || label.startsWith("__") || label === "le") {
        throw new RangeError(`Cannot create metric ${name} as label name ${JSON.stringify(label)} is not allowed`);
      }
    }
    this.name = name;
    this.help = help;
    this.labelNames = labelNames;
  }

  protected checked(labels: Labels): Labels {
    const out: Record<string, string> = {};
    for (const name of this.labelNames) {
      const value = labels[name];
      if (value === undefined) throw new RangeError(`Cannot record ${this.name} as label ${name} is missing`);
      out[name] = value;
    }
    if (Object.keys(labels).length !== this.labelNames.length) {
      throw new RangeError(`Cannot record ${this.name} as its labels are ${this.labelNames.join(", ") || "none"}: current labels are ${Object.keys(labels).join(", ")}`);
    }
    return out;
  }

  /** The metric's lines, without a trailing newline; none when it has no sample. */
  abstract render(): string[];

  protected header(): string[] {
    return [`# HELP ${this.name} ${escapeHelp(this.help)}`, `# TYPE ${this.name} ${this.type}`];
  }
}

/** One number per label set: what counters and gauges have in common. */
abstract class ValueMetric extends Metric {
  protected readonly values = new Map<string, { labels: Labels; value: number }>();

  render(): string[] {
    return [...this.header(), ...[...this.values.values()].map((e) => `${this.name}${labelText(e.labels)} ${formatValue(e.value)}`)];
  }
}

/** A value that only goes up. */
export class Counter extends ValueMetric {
  readonly type = "counter" as const;

  /** Adds `by` (default 1, never negative) to the series of `labels`. */
  inc(labels: Labels = {}, by = 1): void {
    if (!(Number.isFinite(by) && by >= 0)) throw new RangeError(`Cannot increase ${this.name} as 'by' must be a non-negative finite number: current value is ${by}`);
    const l = this.checked(labels);
    const key = seriesKey(this.labelNames, l);
    const entry = this.values.get(key) ?? { labels: l, value: 0 };
    entry.value += by;
    this.values.set(key, entry);
  }

  /** The current value of a series (0 when never increased). */
  get(labels: Labels = {}): number {
    return this.values.get(seriesKey(this.labelNames, this.checked(labels)))?.value ?? 0;
  }
}

/** A value that goes up and down; a series appears once it is set. */
export class Gauge extends ValueMetric {
  readonly type = "gauge" as const;

  set(value: number, labels: Labels = {}): void {
    const l = this.checked(labels);
    this.values.set(seriesKey(this.labelNames, l), { labels: l, value });
  }
}

/** Observations counted in fixed buckets (upper bounds, inclusive), with their sum and count. */
export class Histogram extends Metric {
  readonly type = "histogram" as const;
  readonly buckets: readonly number[];
  readonly #series = new Map<string, { labels: Labels; counts: number[]; sum: number; count: number }>();

  constructor(name: string, help: string, buckets: readonly number[], labelNames: readonly string[] = []) {
    super(name, help, labelNames);
    if (buckets.length === 0 || buckets.some((b, i) => !Number.isFinite(b) || (i > 0 && b <= buckets[i - 1]!))) {
      throw new RangeError(`Cannot create histogram ${name} as its buckets must be finite and increasing: current value is [${buckets.join(", ")}]`);
    }
    this.buckets = buckets;
  }

  observe(value: number, labels: Labels = {}): void {
    const l = this.checked(labels);
    const key = seriesKey(this.labelNames, l);
    const entry = this.#series.get(key) ?? { labels: l, counts: this.buckets.map(() => 0), sum: 0, count: 0 };
    this.buckets.forEach((bound, i) => {
      if (value <= bound) entry.counts[i]!++;
    });
    entry.sum += value;
    entry.count++;
    this.#series.set(key, entry);
  }

  /** How many observations a series has. */
  count(labels: Labels = {}): number {
    return this.#series.get(seriesKey(this.labelNames, this.checked(labels)))?.count ?? 0;
  }

  render(): string[] {
    const lines = this.header();
    for (const e of this.#series.values()) {
      this.buckets.forEach((bound, i) => lines.push(`${this.name}_bucket${labelText({ ...e.labels, le: formatValue(bound) })} ${e.counts[i]}`));
      lines.push(`${this.name}_bucket${labelText({ ...e.labels, le: "+Inf" })} ${e.count}`);
      lines.push(`${this.name}_sum${labelText(e.labels)} ${formatValue(e.sum)}`);
      lines.push(`${this.name}_count${labelText(e.labels)} ${e.count}`);
    }
    return lines;
  }
}

/** Metrics rendered together; names must be unique. */
export class Registry {
  readonly #metrics = new Map<string, Metric>();

  register<M extends Metric>(metric: M): M {
    if (this.#metrics.has(metric.name)) throw new RangeError(`Cannot register metric ${metric.name} twice`);
    this.#metrics.set(metric.name, metric);
    return metric;
  }

  /** The exposition text, ending in a newline. */
  render(): string {
    return `${[...this.#metrics.values()].flatMap((m) => m.render()).join("\n")}\n`;
  }
}

/** The Content-Type of {@link Registry.render}'s output. */
export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** Deploy duration buckets, in seconds: half a second to half an hour. */
export const DURATION_BUCKETS_SECONDS = [0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800] as const;
/** Pickup latency buckets, in seconds: half a second to an hour. */
export const PICKUP_BUCKETS_SECONDS = [0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600] as const;

/** Every outcome result, so each counter series exists (at 0) from the start. */
const RESULTS = ["applied", "failed", "rejected", "superseded", "duplicate"] as const;

/** The listener's metrics. */
export interface ListenerMetrics {
  registry: Registry;
  deploys: Counter;
  deployDuration: Histogram;
  pickupLatency: Histogram;
  health: Counter;
  lastAppliedBuildTimestamp: Gauge;
  lastAppliedTime: Gauge;
  rejected: Counter;
  pruned: Counter;
  sqsErrors: Counter;
  apiErrors: Counter;
  driftPasses: Counter;
  /** Outcomes dropped because no retry could record them (lib/kube/record.ts isPermanentWriteFailure). */
  unrecordedOutcomes: Counter;
  /** Always 1, with the listener's version (lib/version.ts) as its label. */
  buildInfo: Gauge;
}

/** Creates the listener's metric set (see the README's metric table). */
export function createListenerMetrics(): ListenerMetrics {
  const registry = new Registry();
  // Per app (lib/listener/apps.ts): one app's failures stand out from another's successes.
  const deploys = registry.register(new Counter("kube_pico_cd_deploys_total", "Builds handled, by app and outcome: applied, failed, rejected, superseded, duplicate.", ["app", "result"]));
  const metrics: ListenerMetrics = {
    registry,
    deploys,
    deployDuration: registry.register(
      new Histogram("kube_pico_cd_deploy_duration_seconds", "Apply plus health wait of each applied or failed build, by app and result, in seconds.", DURATION_BUCKETS_SECONDS, ["app", "result"]),
    ),
    pickupLatency: registry.register(
      new Histogram("kube_pico_cd_pickup_latency_seconds", "From the message's SQS SentTimestamp to the start of its apply, by app, in seconds.", PICKUP_BUCKETS_SECONDS, ["app"]),
    ),
    health: registry.register(new Counter("kube_pico_cd_deploy_health_total", "Health verdicts after applies, by app: Healthy, Degraded, Timeout.", ["app", "status"])),
    lastAppliedBuildTimestamp: registry.register(
      new Gauge("kube_pico_cd_last_applied_build_timestamp_seconds", "Build timestamp (build.timestampMs / 1000) of each app's current build: read from its version record at start-up, then each build applied.", ["app"]),
    ),
    lastAppliedTime: registry.register(new Gauge("kube_pico_cd_last_applied_time_seconds", "When each app's current build was applied, in seconds since the epoch (from its version record at start-up).", ["app"])),
    rejected: registry.register(new Counter("kube_pico_cd_rejected_messages_total", "Messages rejected, by app and reason (invalid-json, schema, empty-bundle, policy, ownership-conflict, …).", ["app", "reason"])),
    pruned: registry.register(new Counter("kube_pico_cd_pruned_objects_total", "Objects deleted because they left their app's bundle, by app.", ["app"])),
    sqsErrors: registry.register(new Counter("kube_pico_cd_sqs_errors_total", "Failed SQS calls, by operation.", ["operation"])),
    apiErrors: registry.register(new Counter("kube_pico_cd_api_errors_total", "Failed Kubernetes API calls (through kubectl), by operation.", ["operation"])),
    driftPasses: registry.register(new Counter("kube_pico_cd_drift_passes_total", "Drift correction passes, by app and result: applied, failed, skipped.", ["app", "result"])),
    unrecordedOutcomes: registry.register(
      new Counter("kube_pico_cd_unrecorded_outcomes_total", "Outcomes that could not be written to the version record and were dropped (the record refused them for good), by outcome.", ["result"]),
    ),
    buildInfo: registry.register(new Gauge("kube_pico_cd_build_info", "The listener's version as a label; always 1 (join on it to see which version each replica runs).", ["version"])),
  };
  metrics.buildInfo.set(1, { version: VERSION });
  // Every known series exists from the start, so a rate() sees its first increase.
  observeApp(metrics, DEFAULT_APP);
  for (const operation of ["GetQueueAttributes", "GetQueueUrl", "ReceiveMessage", "DeleteMessageBatch", "ChangeMessageVisibilityBatch"]) metrics.sqsErrors.inc({ operation }, 0);
  for (const result of RESULTS) metrics.unrecordedOutcomes.inc({ result }, 0);
  return metrics;
}

const seenApps = new WeakMap<ListenerMetrics, Set<string>>();

/**
 * Most distinct `app` label values; the outcomes of apps past them are counted under
 * {@link OTHER_APPS_LABEL}. Without an apps configuration any sender may name any app, and
 * each name must not cost a dozen series forever.
 */
export const MAX_APP_LABELS = 500;
/** The `app` label of apps past {@link MAX_APP_LABELS}. */
export const OTHER_APPS_LABEL = "(other)";

/**
 * The `app` label of `app`: the app itself, with its series created at 0 the first time it
 * is seen (so that a rate() sees its first increase), or {@link OTHER_APPS_LABEL} past
 * {@link MAX_APP_LABELS} apps.
 */
export function observeApp(metrics: ListenerMetrics, app: string): string {
  const seen = seenApps.get(metrics) ?? new Set<string>();
  seenApps.set(metrics, seen);
  if (seen.has(app)) return app;
  // The limit counts the apps themselves; (other) is the one label past it.
  if (seen.size >= MAX_APP_LABELS && app !== OTHER_APPS_LABEL) return observeApp(metrics, OTHER_APPS_LABEL);
  seen.add(app);
  for (const result of RESULTS) metrics.deploys.inc({ app, result }, 0);
  metrics.pruned.inc({ app }, 0);
  for (const status of ["Healthy", "Degraded", "Timeout"]) metrics.health.inc({ app, status }, 0);
  for (const result of ["applied", "failed", "skipped"]) metrics.driftPasses.inc({ app, result }, 0);
  return app;
}

/**
 * The reason of a rejected outcome: its error text starts with it (`policy: …`,
 * `empty-bundle: …`), as lib/listener/deployer.ts writes it. "unknown" when it does not.
 */
export function rejectionReason(error: string | undefined): string {
  const reason = /^([a-z][a-z0-9-]{0,40}):/.exec(error ?? "")?.[1];
  return reason ?? "unknown";
}

/** Outcome fields the metrics read (lib/kube/record.ts `Outcome`). */
export interface ObservedOutcome {
  result: (typeof RESULTS)[number];
  /** Absent in outcomes from before apps: the default app's. */
  app?: string | undefined;
  timestampMs?: number | undefined;
  durationMs?: number | undefined;
  pickupMs?: number | undefined;
  error?: string | undefined;
  pruned?: readonly unknown[] | undefined;
  health?: { status: "Healthy" | "Degraded" | "Timeout"; durationMs: number } | undefined;
}

/** Counts one recorded outcome into the listener's metrics. */
export function observeOutcome(metrics: ListenerMetrics, outcome: ObservedOutcome, nowMs: number = Date.now()): void {
  const app = observeApp(metrics, outcome.app ?? DEFAULT_APP);
  metrics.deploys.inc({ app, result: outcome.result });
  if (outcome.result === "applied" || outcome.result === "failed") {
    // The apply plus the health wait: how long the cluster took to take the build.
    const ms = (outcome.durationMs ?? 0) + (outcome.health?.durationMs ?? 0);
    metrics.deployDuration.observe(ms / 1000, { app, result: outcome.result });
    if (outcome.pickupMs !== undefined) metrics.pickupLatency.observe(outcome.pickupMs / 1000, { app });
  }
  if (outcome.result === "applied") {
    if (outcome.timestampMs !== undefined) metrics.lastAppliedBuildTimestamp.set(outcome.timestampMs / 1000, { app });
    metrics.lastAppliedTime.set(nowMs / 1000, { app });
    if (outcome.health) metrics.health.inc({ app, status: outcome.health.status });
    if (outcome.pruned) metrics.pruned.inc({ app }, outcome.pruned.length);
  }
  if (outcome.result === "rejected") metrics.rejected.inc({ app, reason: rejectionReason(outcome.error) });
}

/**
 * Sets the "last applied" gauges from the version record's current build, so that they
 * describe the cluster after a restart too, not only what this process applied.
 */
export function observeCurrentBuild(metrics: ListenerMetrics, current: { build: { timestampMs: number }; appliedAt: string } | null, app: string = DEFAULT_APP): void {
  if (current === null) return;
  const label = observeApp(metrics, app);
  metrics.lastAppliedBuildTimestamp.set(current.build.timestampMs / 1000, { app: label });
  const appliedMs = Date.parse(current.appliedAt);
  if (Number.isFinite(appliedMs)) metrics.lastAppliedTime.set(appliedMs / 1000, { app: label });
}
