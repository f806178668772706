/**
 * What publish prints about a run: the human summary, the Markdown for GitHub's job summary
 * (`GITHUB_STEP_SUMMARY`), and with --wait each listener's result and the verdict. The JSON
 * output is {@link PublishResult} itself.
 */
import { renderPlan } from "../wire/plan.ts";
import type { PublishedMessage } from "../sns/publish.ts";
import type { SentMessage } from "../sqs/send.ts";
import type { BuildInfo } from "../wire/message.ts";
import type { ResultMessage } from "../wire/result.ts";
import { EXIT_DEPLOY_FAILED, EXIT_SENT } from "./exit-codes.ts";

/** What a run did: printed as the human summary, as JSON, and into GITHUB_STEP_SUMMARY. */
export interface PublishResult {
  dryRun: boolean;
  /** A plan request was sent (--plan), not a deploy. */
  plan?: boolean;
  /** The app the bundle belongs to ("default" when none was named). */
  app: string;
  /** Where the app's name came from: `--app`, `KUBE_PICO_CD_APP` or `GITHUB_REPOSITORY`; absent for the default app by default. */
  appFrom?: string;
  build: BuildInfo;
  target?: string;
  /** Several targets (`targets` in the body), sorted. */
  targets?: string[];
  digest: string;
  objects: number;
  rawBytes: number;
  compressedBytes: number;
  bodyBytes: number;
  maxMessageBytes: number;
  byKindAndNamespace: { kind: string; namespace: string; count: number }[];
  inputs: string[];
  /** Sent messages (empty for a dry run). */
  sent: (SentMessage & { queue: string })[];
  /** Queues as given, for a dry run. */
  queues: string[];
  /** Messages published to topics (empty for a dry run and without --topic). */
  published: PublishedMessage[];
  /** Topic ARNs as given, for a dry run. */
  topics: string[];
  /** Key id of the signing key, when the bundle is signed. */
  signedBy?: string;
  /** With --wait: the results. */
  wait?: WaitReport;
}

/** What --wait found: printed, in the JSON output and in the job summary. */
export interface WaitReport {
  resultQueueUrl: string;
  timeoutSeconds: number;
  /**
   * In the order they arrived. A result of a topic publish names the deploy queue its listener
   * read (`queue`, `queueUrl`: the queue's name), its SQS message id there, and its `target`.
   */
  results: { queue: string; queueUrl: string; messageId: string; target?: string; receivedAfterMs: number; result: ResultMessage }[];
  /** Queues without a result when the time ran out. */
  missing: { queue: string; queueUrl: string; messageId: string }[];
  /** A topic publish: what each expected target answered. */
  targets?: TargetsReport;
  exitCode: number;
}

/** The targets of a topic publish: one row per expected target, as printed and in the job summary. */
export interface TargetsReport {
  /** The targets expected by name, or how many were. */
  expected: string[] | number;
  /** Answered targets in the order they answered, then the missing ones (by name) in the order expected. */
  rows: TargetRow[];
  /** Targets that answered without being expected (their results do not count). */
  unexpected: string[];
  /** How many expected targets gave no final result. */
  missingCount: number;
}

/** One target's line of the table: `result` is "no result" for a target that never answered. */
export interface TargetRow {
  target: string;
  result: string;
  build: string;
  health: string;
  /** Time from publish to the result, in ms; absent without one. */
  afterMs?: number;
}

/** The table of a topic publish's targets, printed at the end of --wait. */
export function formatTargetsTable(report: TargetsReport): string {
  const rows = [["TARGET", "RESULT", "BUILD", "HEALTH", "AFTER PUBLISH"]];
  for (const row of report.rows) rows.push([row.target, row.result, row.build, row.health, row.afterMs === undefined ? "-" : formatDuration(row.afterMs)]);
  const expected = typeof report.expected === "number" ? `${report.expected} expected` : `${report.expected.length} expected`;
  const answered = report.rows.filter((row) => row.afterMs !== undefined).length;
  const lines = [`Targets: ${answered} of ${expected} answered${report.unexpected.length > 0 ? `; unexpected: ${report.unexpected.join(", ")}` : ""}`];
  lines.push(...table(rows).map((line) => `  ${line}`));
  if (typeof report.expected === "number" && report.missingCount > 0) lines.push(`  (${report.missingCount} more expected, not named: --expect-targets gave a count)`);
  return `${lines.join("\n")}\n`;
}

/** What {@link countByKindAndNamespace} counts of an object. */
export interface ObjectKind {
  kind: string;
  namespace?: string | undefined;
}

/** Objects counted by kind and namespace, sorted by kind then namespace (`""` for none). */
export function countByKindAndNamespace(objects: readonly ObjectKind[]): { kind: string; namespace: string; count: number }[] {
  const counts = new Map<string, { kind: string; namespace: string; count: number }>();
  for (const object of objects) {
    const namespace = object.namespace ?? "";
    const key = `${object.kind}\u0000${namespace}`;
    const entry = counts.get(key) ?? { kind: object.kind, namespace, count: 0 };
    entry.count++;
    counts.set(key, entry);
  }
  return [...counts.values()].sort((a, b) =>
    a.kind === b.kind ? (a.namespace < b.namespace ? -1 : a.namespace > b.namespace ? 1 : 0) : a.kind < b.kind ? -1 : 1,
  );
}

/** Rows as aligned columns, two spaces apart, without trailing spaces. */
function table(rows: string[][]): string[] {
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
  return rows.map((row) => row.map((cell, column) => cell.padEnd(widths[column]!)).join("  ").trimEnd());
}

/** The human summary. */
export function formatSummary(result: PublishResult): string {
  const { build } = result;
  const when = new Date(build.timestampMs).toISOString();
  const lines = [
    result.dryRun
      ? `Dry run: build ${build.id} (${when}) is valid; nothing was sent`
      : `${result.plan ? "Asked for a plan of" : "Published"} build ${build.id} (${when}) ${result.plan ? "on" : "to"} ${result.sent.length} queue${result.sent.length === 1 ? "" : "s"}${result.plan ? " (nothing is applied)" : ""}`,
  ];
  const facts: string[][] = [["app", `${result.app} (${result.appFrom === undefined ? "no --app given, no GITHUB_REPOSITORY" : `from ${result.appFrom}`})`]];
  if (result.target !== undefined) facts.push(["target", result.target]);
  if (result.targets !== undefined) facts.push(["targets", result.targets.join(", ")]);
  facts.push(["signature", result.signedBy === undefined ? "none (unsigned)" : `ed25519, key id ${result.signedBy}`]);
  if (build.commit !== undefined) facts.push(["commit", build.commit]);
  if (build.url !== undefined) facts.push(["run", build.url]);
  facts.push(["objects", `${result.objects} from ${result.inputs.length} input${result.inputs.length === 1 ? "" : "s"}`]);
  facts.push(["digest", `sha256:${result.digest}`]);
  facts.push([
    "size",
    `${result.rawBytes} bytes raw, ${result.compressedBytes} gzipped, message ${result.bodyBytes} of ${result.maxMessageBytes} bytes allowed`,
  ]);
  for (const sent of result.sent) {
    facts.push(["queue", `${sent.queueUrl} (message id ${sent.messageId})`]);
  }
  for (const published of result.published) facts.push(["topic", `${published.topicArn} (message id ${published.messageId})`]);
  if (result.dryRun) for (const queue of [...result.queues, ...result.topics]) facts.push(["would send to", queue]);
  lines.push(...table(facts).map((line) => `  ${line}`));
  if (result.byKindAndNamespace.length > 0) {
    lines.push("");
    const rows = [["KIND", "NAMESPACE", "OBJECTS"]];
    for (const entry of result.byKindAndNamespace) rows.push([entry.kind, entry.namespace || "-", String(entry.count)]);
    lines.push(...table(rows).map((line) => `  ${line}`));
  }
  return `${lines.join("\n")}\n`;
}

function markdownCell(text: string): string {
  return text.replace(/\\/g, "\\\\").replace(/\|/g, "\\|").replace(/\n/g, " ");
}

/** The Markdown appended to `GITHUB_STEP_SUMMARY`. */
export function formatStepSummary(result: PublishResult): string {
  const { build } = result;
  const lines = [
    `### kube-pico-cd: ${result.dryRun ? "dry run of" : result.plan ? "plan of" : "published"} build \`${markdownCell(build.id)}\``,
    "",
    "| App | Target | Timestamp | Objects | Raw bytes | Gzipped bytes | Message bytes | Digest |",
    "|---|---|---|---:|---:|---:|---:|---|",
    `| ${markdownCell(result.app)} | ${markdownCell(result.target ?? result.targets?.join(", ") ?? "-")} | ${new Date(build.timestampMs).toISOString()} (${build.timestampMs}) | ${result.objects} | ${result.rawBytes} | ${result.compressedBytes} | ${result.bodyBytes} | \`${result.digest}\` |`,
    "",
    "| Kind | Namespace | Objects |",
    "|---|---|---:|",
    ...result.byKindAndNamespace.map(
      (entry) => `| ${markdownCell(entry.kind)} | ${markdownCell(entry.namespace || "-")} | ${entry.count} |`,
    ),
  ];
  if (result.sent.length > 0) {
    lines.push("", "| Queue | Message id |", "|---|---|");
    for (const sent of result.sent) lines.push(`| ${markdownCell(sent.queueUrl)} | \`${markdownCell(sent.messageId)}\` |`);
  }
  if (result.published.length > 0) {
    lines.push("", "| Topic | Message id |", "|---|---|");
    for (const published of result.published) lines.push(`| ${markdownCell(published.topicArn)} | \`${markdownCell(published.messageId)}\` |`);
  }
  return `${lines.join("\n")}\n\n`;
}

/** "applied, Healthy: applied 3 objects, pruned 0" and the like (the message names an unhealthy object). */
export function verdictText(result: ResultMessage): string {
  return `${result.result}${result.health === undefined ? "" : `, ${result.health.status}`}: ${result.message}`;
}

/** 850 ms, 1.2 s, 4 min 10 s. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${Number((ms / 1000).toFixed(1))} s`;
  const seconds = Math.round(ms / 1000);
  return seconds % 60 === 0 ? `${seconds / 60} min` : `${Math.floor(seconds / 60)} min ${seconds % 60} s`;
}

function durationsText(result: ResultMessage): string {
  const { pickupMs, applyMs, healthMs } = result.durations;
  const parts: string[] = [];
  if (pickupMs !== undefined) parts.push(`pickup ${formatDuration(pickupMs)}`);
  if (applyMs !== undefined) parts.push(`apply ${formatDuration(applyMs)}`);
  if (healthMs !== undefined) parts.push(`health ${formatDuration(healthMs)}`);
  return parts.join(", ");
}

/** One result, as printed when it arrives. */
export function formatResult(entry: WaitReport["results"][number]): string {
  const { result } = entry;
  const from = entry.target === undefined ? entry.queueUrl : `target ${entry.target}`;
  const lines = [`Result from ${from} after ${formatDuration(entry.receivedAfterMs)}: ${verdictText(result)}`];
  const facts: string[][] = [
    ["listener", `namespace ${result.namespace}, queue ${result.queue}${result.app === undefined ? "" : `, app ${result.app}`}${result.target === undefined ? "" : `, target ${result.target}`}`],
  ];
  const durations = durationsText(result);
  if (durations !== "") facts.push(["took", durations]);
  if (result.result === "failed") {
    facts.push([
      "retry",
      result.willRetry === false
        ? `attempt ${result.receiveCount ?? 1} failed and was the last: the message goes to the queue's dead-letter queue`
        : `attempt ${result.receiveCount ?? 1} failed; the listener retries it until the queue's dead-letter queue takes it`,
    ]);
  }
  if (result.result === "superseded") facts.push(["note", "a newer build replaced this one; nothing left to do"]);
  if (result.pruned !== undefined) facts.push(["pruned", result.pruned.join(", ")]);
  lines.push(...table(facts).map((line) => `  ${line}`));
  if (result.plan !== undefined) lines.push(...renderPlan(result.plan).map((line) => `  ${line}`));
  return `${lines.join("\n")}\n`;
}

/** A plan line with the sign GitHub's `diff` highlighting colours: + create, - prune and refusals, ! change. */
function planLineAsDiff(line: string): string {
  const safe = line.replaceAll("```", "` ` `");
  if (safe.startsWith("~ ")) return `! ${safe.slice(2)}`;
  if (safe.startsWith("! ")) return `- ${safe.slice(2)}`;
  return safe;
}

/** The Markdown of the results appended to `GITHUB_STEP_SUMMARY`. */
export function formatResultsStepSummary(report: WaitReport): string {
  const verdict =
    report.exitCode === EXIT_SENT ? "deploy succeeded" : report.exitCode === EXIT_DEPLOY_FAILED ? "deploy failed" : "timed out waiting";
  const lines = [
    `#### kube-pico-cd: ${verdict}`,
    "",
    "| Queue | Namespace | App | Result | Health | Message | Pickup | Apply | Health wait |",
    "|---|---|---|---|---|---|---:|---:|---:|",
  ];
  const ms = (value: number | undefined) => (value === undefined ? "-" : formatDuration(value));
  for (const { queueUrl, result } of report.results) {
    const health = result.health === undefined ? "-" : `${result.health.status}${result.health.object ? ` (${result.health.object})` : ""}`;
    lines.push(
      `| ${markdownCell(queueUrl)} | ${markdownCell(result.namespace)} | ${markdownCell(result.app ?? "-")} | ${result.result} | ${markdownCell(health)} | ${markdownCell(result.message)} | ${ms(result.durations.pickupMs)} | ${ms(result.durations.applyMs)} | ${ms(result.durations.healthMs)} |`,
    );
  }
  // A plan in full below the table, as text: its lines are what a reviewer reads.
  for (const { queueUrl, result } of report.results) {
    if (result.plan === undefined) continue;
    lines.push("", `##### Plan of app ${markdownCell(result.app ?? "default")} on ${markdownCell(queueUrl)}`, "", "```diff", ...renderPlan(result.plan).map(planLineAsDiff), "```");
  }
  for (const missing of report.missing) {
    lines.push(`| ${markdownCell(missing.queueUrl)} | - | - | no result within ${formatDuration(report.timeoutSeconds * 1000)} | - | - | - | - | - |`);
  }
  if (report.targets !== undefined) {
    lines.push("", "| Target | Result | Build | Health | After publish |", "|---|---|---|---|---:|");
    for (const row of report.targets.rows) {
      lines.push(`| ${markdownCell(row.target)} | ${markdownCell(row.result)} | ${markdownCell(row.build)} | ${markdownCell(row.health)} | ${row.afterMs === undefined ? "-" : formatDuration(row.afterMs)} |`);
    }
    if (typeof report.targets.expected === "number" && report.targets.missingCount > 0) lines.push(`| (${report.targets.missingCount} more expected) | no result | - | - | - |`);
    if (report.targets.unexpected.length > 0) lines.push("", `Unexpected targets (not counted): ${report.targets.unexpected.map(markdownCell).join(", ")}`);
  }
  return `${lines.join("\n")}\n\n`;
}
