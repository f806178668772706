/**
 * `listener status`: what the version records say, for an operator. Reads them through the
 * Kubernetes API (lib/kube/record.ts), connected the way the listener connects (a kubeconfig
 * and context, or the pod's service account: lib/kube/kubeconfig.ts). Changes nothing in the
 * cluster.
 *
 * - `listener status`: one line per app that has a record in the namespace
 *   (lib/listener/app-records.ts): its current build, commit, the result of its last outcome,
 *   the health of the current build, when it was applied and the build in flight; `--json`
 *   prints them as an array ({@link AppOverview}).
 * - `listener status APP`: that app's record (`--state-configmap` for the default app,
 *   `<state-configmap>-<APP>` for the others): the current build, an unfinished deploy if there
 *   is one, and the history as a table, or the record as JSON with `--json`.
 *
 * Option parsing and formatting are pure and exported for tests; {@link runStatus} is the
 * command itself. Exit codes: 0 shown (also when there is no record yet); 1 invalid options
 * or APP; 2 the record could not be read (in the overview: the records could not be listed,
 * or one of them does not decode; the others are still shown).
 *
 * Runs under Bun, Node and Deno: only `node:` built-ins.
 */
import { z } from "zod";
import { gatherOptions, optionsHelp, schemaProblems, type OptionTable } from "../cli-options.ts";
import { ConfigError, errorMessage, KubeConfigError, StateReadError } from "../errors.ts";
import { int, LISTENER_OPTIONS, listenerOptionsSchema, NAMESPACE_MISSING_PROBLEM, resolveNamespace } from "./config.ts";
import { KubeApi } from "../kube/api.ts";
import { loadKubeConnection } from "../kube/kubeconfig.ts";
import { prunedCountOf, readRecord, type CurrentBuild, type InFlightBuild, type Outcome, type StoredRecord } from "../kube/record.ts";
import { oneLine } from "../text.ts";
import { listRecords, type ListedRecord } from "./app-records.ts";
import { appNameProblem, appObjectName, DEFAULT_APP } from "./apps.ts";

/** Largest `--limit`; the listener keeps at most this many outcomes (--history-limit). */
export const MAX_STATUS_LIMIT = 1000;
/** Width of the MESSAGE column, in characters; longer text is cut with "…". */
export const STATUS_MESSAGE_WIDTH = 80;
/** Width of the BUILD column, in characters; longer build ids are cut with "…". */
export const STATUS_BUILD_WIDTH = 32;

// The options shared with the listener keep its flags, variables and defaults, so that in
// the listener's pod `listener status` reads the record the listener writes.
export const STATUS_OPTIONS = {
  namespace: { ...LISTENER_OPTIONS.namespace, help: "Namespace of the version records (the listener's)." },
  "state-configmap": {
    ...LISTENER_OPTIONS["state-configmap"],
    help: "Base name of the version records, as the listener's: the default app's record is this ConfigMap, app APP's is <name>-APP.",
  },
  // Status starts no kubectl: only the help differs from the listener's.
  kubeconfig: { ...LISTENER_OPTIONS.kubeconfig, help: "Kubeconfig file to read the records with." },
  context: { ...LISTENER_OPTIONS.context, help: "Kubeconfig context to read the records with." },
  json: {
    type: "boolean",
    defaultText: "false (a table)",
    help: "Print JSON. Without APP: an array, one object per app (app, configMap, resourceVersion, current, health, lastOutcome, inflight without its inventory, and error for a record that does not decode). With APP: the record (app, namespace, configMap, resourceVersion (null: no record yet), current, inflight, inventory, history).",
  },
  limit: { type: "string", value: "N", defaultText: "1000: all (the listener keeps 20 by default)", help: `With APP: history rows shown, newest first (1-${MAX_STATUS_LIMIT}); also cuts the JSON history.` },
  help: { type: "boolean", short: "h", defaultText: "false", help: "Show this help." },
} as const satisfies OptionTable;

/** The settings of `listener status`. */
export interface StatusOptions {
  /** Namespace of the records. */
  namespace: string;
  /** Base name of the records (see {@link appObjectName}). */
  stateConfigMap: string;
  /** The app whose record to show; absent: the overview of every app. */
  app?: string;
  kubeconfig?: string;
  /** Kubeconfig context; default its current-context. */
  context?: string;
  json: boolean;
  /** History rows shown, newest first. */
  limit: number;
  help: boolean;
}

const schema = listenerOptionsSchema.pick({ namespace: true, "state-configmap": true, kubeconfig: true, context: true }).extend({
  json: z.boolean(),
  // The listener keeps at most MAX_STATUS_LIMIT outcomes, so the default shows them all.
  limit: int(1, MAX_STATUS_LIMIT, MAX_STATUS_LIMIT),
  help: z.boolean(),
});

/**
 * Parses the options of `listener status` from `argv` (after "status") and `env`.
 * `readNamespaceFile` is injectable so tests need no pod.
 *
 * @throws {ConfigError} one line per problem, naming the flag or variable.
 */
export function parseStatusOptions(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
  readNamespaceFile?: () => string | undefined,
): StatusOptions {
  const { raw, origin, positionals, problems } = gatherOptions(STATUS_OPTIONS, argv, env, { allowPositionals: true });
  const [app, ...extra] = positionals;
  if (app !== undefined) {
    const problem = appNameProblem(app);
    if (problem !== undefined) problems.push(`APP: ${problem}`);
  }
  for (const e of extra) problems.push(`${e}: unexpected argument (listener status takes one APP at most; see listener status --help)`);
  // The overview shows no history: a --limit there would be silently ignored.
  if (app === undefined && raw["limit"] !== undefined) problems.push("--limit: cuts one app's history: give the APP (listener status APP --limit N)");
  if (problems.length > 0) throw new ConfigError(problems);
  const result = schema.safeParse(raw);
  if (!result.success) throw new ConfigError(schemaProblems(result.error, origin));
  const d = result.data;
  const namespace = d.help ? (d.namespace ?? "") : resolveNamespace(d.namespace, readNamespaceFile);
  if (namespace === undefined) throw new ConfigError([NAMESPACE_MISSING_PROBLEM]);
  const options: StatusOptions = { namespace, stateConfigMap: d["state-configmap"], json: d.json, limit: d.limit, help: d.help };
  if (app !== undefined) options.app = app;
  if (d.kubeconfig !== undefined) options.kubeconfig = d.kubeconfig;
  if (d.context !== undefined) options.context = d.context;
  return options;
}

/** A duration for people: "850ms", "1.2s", "3m04s", "1h02m"; "-" when unknown. */
export function formatDuration(ms: number | undefined): string {
  if (ms === undefined || !Number.isFinite(ms) || ms < 0) return "-";
  if (Math.round(ms) < 1000) return `${Math.round(ms)}ms`;
  const tenths = Math.round(ms / 100);
  if (tenths < 600) return `${(tenths / 10).toFixed(1)}s`;
  const seconds = Math.round(ms / 1000);
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m${String(seconds % 60).padStart(2, "0")}s`;
  const minutes = Math.round(ms / 60_000);
  return `${Math.floor(minutes / 60)}h${String(minutes % 60).padStart(2, "0")}m`;
}

/** The first 12 hex digits of a digest (with its "sha256:" prefix, if any); other text cut to 19 characters. */
export function shortDigest(digest: string): string {
  const match = /^((?:sha256:)?)([0-9a-f]+)$/.exec(digest);
  if (match !== null) return match[2]!.length > 12 ? `${match[1]}${match[2]!.slice(0, 12)}…` : digest;
  return oneLine(digest, 19);
}

/** An ISO time to the second ("2026-11-25T21:40:01Z"); text that is not a time is kept. */
function shortTime(iso: string): string {
  const ms = Date.parse(iso);
  return Number.isNaN(ms) ? iso : `${new Date(ms).toISOString().slice(0, 19)}Z`;
}

/** What went wrong or deserves a look: the error, an unhealthy verdict, then the warnings. */
function outcomeMessage(outcome: Outcome): string {
  const parts: string[] = [];
  // The kubectl command line fills the column; what kubectl said is the part that helps.
  // kubectl's stderr lines arrive joined by " | ", and the API server lists causes as "* …".
  if (outcome.error !== undefined) {
    parts.push(
      outcome.error
        .replace(/^Cannot run `[^`]*`: (?:exit code \d+: )?/, "kubectl: ")
        .replace(/:\s+\|\s+\*\s+/g, ": ")
        .replace(/\s+\|\s+\*\s+/g, "; "),
    );
  }
  const health = outcome.health;
  if (health !== undefined && health.status !== "Healthy") {
    parts.push(`health ${health.status}${health.object === undefined ? "" : ` ${health.object}`}${health.reason === undefined ? "" : `: ${health.reason}`}`);
  }
  parts.push(...(outcome.warnings ?? []));
  return parts.join("; ");
}

interface Column {
  title: string;
  right?: boolean;
}

/** Rows under a header, columns two spaces apart, the last one unpadded, no trailing spaces. */
function table(columns: readonly Column[], rows: readonly (readonly string[])[]): string[] {
  const widths = columns.map((c, i) => Math.max(c.title.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: readonly string[]) =>
    columns
      .map((c, i) => {
        const cell = cells[i] ?? "";
        if (i === columns.length - 1) return cell;
        return c.right ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!);
      })
      .join("  ")
      .trimEnd();
  return [line(columns.map((c) => c.title)), ...rows.map(line)];
}

const HISTORY_COLUMNS: readonly Column[] = [
  { title: "TIME" },
  { title: "BUILD" },
  { title: "COMMIT" },
  { title: "RESULT" },
  { title: "HEALTH" },
  { title: "DURATION", right: true },
  { title: "APPLIED", right: true },
  { title: "PRUNED", right: true },
  { title: "MESSAGE" },
];

/**
 * The history as a table, newest first. An outcome written before outcomes carried the
 * commit takes the current build's commit when it is that build; "-" marks what is unknown.
 */
export function formatHistory(history: readonly Outcome[], current: CurrentBuild | null, options: { messageWidth?: number } = {}): string[] {
  const { messageWidth = STATUS_MESSAGE_WIDTH } = options;
  const rows = history.map((o) => {
    const commit = o.commit ?? (current !== null && o.buildId === current.build.id ? current.build.commit : undefined);
    return [
      shortTime(o.time),
      o.buildId === undefined ? "-" : oneLine(o.buildId, STATUS_BUILD_WIDTH),
      commit === undefined ? "-" : commit.slice(0, 7),
      o.result,
      o.health?.status ?? "-",
      formatDuration(o.durationMs),
      o.objects === undefined ? "-" : String(o.objects),
      // The record keeps a sample of what was pruned, and the count when it is only a sample.
      prunedCountOf(o) === undefined ? "-" : String(prunedCountOf(o)),
      oneLine(outcomeMessage(o), messageWidth),
    ];
  });
  return table(HISTORY_COLUMNS, rows);
}

/** The current build as labelled lines; "-" marks what the build did not say. */
export function formatCurrent(current: CurrentBuild | null): string[] {
  if (current === null) return ["Current build: none (no build applied yet)"];
  const { build } = current;
  const fields: [string, string][] = [
    ["commit", build.commit ?? "-"],
    ["ref", build.ref ?? "-"],
    ["repository", build.repository ?? "-"],
    ["run", build.url ?? "-"],
    ["built at", new Date(build.timestampMs).toISOString()],
    ["applied at", current.appliedAt],
    ["objects", String(current.objectCount)],
    ["digest", shortDigest(current.digest)],
  ];
  return [`Current build: ${build.id}`, ...fields.map(([label, value]) => `  ${`${label}:`.padEnd(12)}${value}`)];
}

/**
 * A deploy that started and was not confirmed, as labelled lines: still applying, or
 * interrupted (the next deploy settles it). Nothing when there is none.
 */
export function formatInflight(inflight: InFlightBuild | null): string[] {
  if (inflight === null) return [];
  const fields: [string, string][] = [
    ["commit", inflight.build.commit ?? "-"],
    ["started at", inflight.startedAt],
    ["holder", inflight.holder],
    ["objects", String(inflight.objectCount)],
    ["digest", shortDigest(inflight.digest)],
  ];
  return [`In-flight deploy: ${inflight.build.id} (started, not confirmed: still applying, or interrupted and settled by the next deploy)`, ...fields.map(([label, value]) => `  ${`${label}:`.padEnd(12)}${value}`)];
}

/** Where the record lives, for headings and JSON. */
export interface RecordLocation {
  /** The app whose record it is. */
  app: string;
  namespace: string;
  configMap: string;
}

/** The text `listener status APP` prints, ending with a newline. */
export function formatStatus(record: StoredRecord, where: RecordLocation, options: { limit?: number; messageWidth?: number } = {}): string {
  const name = `${where.namespace}/${where.configMap}`;
  if (record.resourceVersion === null) {
    return `No version record ${name} of app ${where.app} yet: the listener has not recorded any outcome of this app (listener status lists the apps that have one).\n`;
  }
  const shown = options.limit === undefined ? record.history : record.history.slice(0, options.limit);
  const inflight = formatInflight(record.inflight);
  const lines = [`Version record ${name} of app ${where.app}`, "", ...formatCurrent(record.current), "", ...inflight, ...(inflight.length === 0 ? [] : [""])];
  if (record.history.length === 0) lines.push("History: empty");
  else {
    lines.push(`History, newest first (${shown.length} of ${record.history.length}):`);
    lines.push(...formatHistory(shown, record.current, options.messageWidth === undefined ? {} : { messageWidth: options.messageWidth }));
  }
  return `${lines.join("\n")}\n`;
}

/** The record as `listener status APP --json` (and `listener record show`) prints it, ending with a newline. */
export function statusJson(record: StoredRecord, where: RecordLocation, options: { limit?: number } = {}): string {
  const history = options.limit === undefined ? record.history : record.history.slice(0, options.limit);
  const out = {
    app: where.app,
    namespace: where.namespace,
    configMap: where.configMap,
    resourceVersion: record.resourceVersion,
    current: record.current,
    inflight: record.inflight,
    inventory: record.inventory,
    history,
  };
  return `${JSON.stringify(out, null, 2)}\n`;
}

/** A health verdict as the record keeps it. */
export type HealthStatus = NonNullable<Outcome["health"]>["status"];

/**
 * One app of the overview: what `listener status --json` prints for it, in an array sorted
 * by app. Every key is always present; the record's fields as it holds them.
 */
export interface AppOverview {
  app: string;
  /** Name of its record's ConfigMap. */
  configMap: string;
  /** resourceVersion of the record; null when it could not be read. */
  resourceVersion: string | null;
  /** The build the app runs, as recorded; null when none was applied (or the record could not be read). */
  current: CurrentBuild | null;
  /** The health verdict recorded when the current build was applied; null when not recorded (or no longer in the history). */
  health: HealthStatus | null;
  /** The newest outcome of the history (its `result` is the table's RESULT); null when the history is empty. */
  lastOutcome: Outcome | null;
  /** The deploy that started and was not confirmed, without its inventory; null when none. */
  inflight: Omit<InFlightBuild, "inventory"> | null;
  /** Why the record could not be read; null when it was. */
  error: string | null;
}

/**
 * The health of `record`'s current build: the verdict of the newest "applied" outcome of that
 * build in the history, or null.
 */
export function currentHealth(record: Pick<StoredRecord, "current" | "history">): HealthStatus | null {
  const current = record.current;
  if (current === null) return null;
  const applied = record.history.find((o) => o.result === "applied" && o.buildId === current.build.id && (o.digest === undefined || o.digest === current.digest));
  return applied?.health?.status ?? null;
}

/** The overview entry of one listed record; pure. */
export function appOverview(listed: ListedRecord): AppOverview {
  const none = { resourceVersion: null, current: null, health: null, lastOutcome: null, inflight: null };
  if ("error" in listed) return { app: listed.app, configMap: listed.name, ...none, error: listed.error };
  const { record } = listed;
  let inflight: AppOverview["inflight"] = null;
  if (record.inflight !== null) {
    const { inventory: _inventory, ...rest } = record.inflight;
    inflight = rest;
  }
  return {
    app: listed.app,
    configMap: listed.name,
    resourceVersion: record.resourceVersion,
    current: record.current,
    health: currentHealth(record),
    lastOutcome: record.history[0] ?? null,
    inflight,
    error: null,
  };
}

const OVERVIEW_COLUMNS: readonly Column[] = [
  { title: "APP" },
  { title: "CURRENT" },
  { title: "COMMIT" },
  { title: "RESULT" },
  { title: "HEALTH" },
  { title: "APPLIED AT" },
  { title: "IN FLIGHT" },
];

/**
 * The text `listener status` prints, ending with a newline: a heading and one row per app
 * (current build, its commit, the result of the last outcome, the current build's health, when
 * it was applied, the build in flight); "-" marks what is unknown or absent, "none" an app
 * with no build applied yet, "unreadable" a record that does not decode.
 */
export function formatOverview(apps: readonly AppOverview[], namespace: string): string {
  if (apps.length === 0) return `No version records in namespace ${namespace} yet: the listener has not recorded any outcome there.\n`;
  const rows = apps.map((a) => {
    if (a.error !== null) return [a.app, "unreadable", "-", "-", "-", "-", "-"];
    const commit = a.current?.build.commit;
    return [
      a.app,
      a.current === null ? "none" : oneLine(a.current.build.id, STATUS_BUILD_WIDTH),
      commit === undefined ? "-" : commit.slice(0, 7),
      a.lastOutcome?.result ?? "-",
      a.health ?? "-",
      a.current === null ? "-" : shortTime(a.current.appliedAt),
      a.inflight === null ? "-" : oneLine(a.inflight.build.id, STATUS_BUILD_WIDTH),
    ];
  });
  const heading = `Version records in namespace ${namespace}: ${apps.length} ${apps.length === 1 ? "app" : "apps"} (listener status APP shows one)`;
  return `${[heading, "", ...table(OVERVIEW_COLUMNS, rows)].join("\n")}\n`;
}

/** The overview as `listener status --json` prints it: an array of {@link AppOverview}, ending with a newline. */
export function overviewJson(apps: readonly AppOverview[]): string {
  return `${JSON.stringify(apps, null, 2)}\n`;
}

export function statusHelpText(): string {
  return [
    "Usage: listener status [APP] [options]",
    "",
    "Without APP: one line per app that has a version record in the namespace: its current",
    "build, commit, the result of its last outcome, the current build's health, when it was",
    "applied, and a build in flight.",
    "",
    "With APP: that app's version record (the ConfigMap --state-configmap for the app",
    `"${DEFAULT_APP}", <state-configmap>-APP for the others): the build it runs and the last`,
    "outcomes, newest first (time, build, commit, result, health, duration, objects applied,",
    "objects pruned, error or warnings), and a deploy that started and was not confirmed.",
    "",
    "Reads the ConfigMaps through the Kubernetes API, with the kubeconfig (or the pod's",
    "service account) the listener would use; changes nothing. The overview lists ConfigMaps",
    "(RBAC 'list'); APP reads one ('get').",
    "",
    "Options (flags win over environment variables):",
    ...optionsHelp(STATUS_OPTIONS),
    "",
    "Exit codes: 0 shown (also when there is no record yet); 1 invalid options or APP; 2 a record",
    "could not be read (without APP: the records could not be listed, or one does not decode and",
    "the others are shown).",
  ].join("\n");
}

/** Where `listener status` writes; tests pass their own. */
export interface StatusIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  readNamespaceFile?: () => string | undefined;
  signal?: AbortSignal;
}

const processIo: StatusIo = {
  stdout: (text) => void process.stdout.write(text),
  stderr: (text) => void process.stderr.write(text),
};

/** Runs `listener status` with `argv` (after "status"); resolves with the exit code. */
export async function runStatus(argv: readonly string[], env: Readonly<Record<string, string | undefined>>, io: StatusIo = processIo): Promise<number> {
  let options: StatusOptions;
  try {
    options = parseStatusOptions(argv, env, io.readNamespaceFile);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    for (const problem of error.problems) io.stderr(`listener status: ${problem}\n`);
    return 1;
  }
  if (options.help) {
    io.stdout(`${statusHelpText()}\n`);
    return 0;
  }
  const { namespace, app } = options;
  const what = app === undefined ? `the version records in namespace ${namespace}` : `the version record ConfigMap ${namespace}/${appObjectName(options.stateConfigMap, app)}`;
  const cannotRead = (message: string) => {
    io.stderr(`listener status: ${oneLine(message, Number.MAX_SAFE_INTEGER)}\n`);
    return 2;
  };
  let api: KubeApi;
  try {
    api = new KubeApi(await loadKubeConnection({ kubeconfig: options.kubeconfig, context: options.context, env, signal: io.signal }));
  } catch (error) {
    if (!(error instanceof KubeConfigError || error instanceof RangeError)) throw error;
    return cannotRead(`Cannot read ${what}: ${errorMessage(error)}`);
  }
  try {
    if (app === undefined) {
      const listing = await listRecords({ api, namespace, base: options.stateConfigMap, signal: io.signal });
      const apps = listing.records.map(appOverview);
      io.stdout(options.json ? overviewJson(apps) : formatOverview(apps, namespace));
      for (const note of listing.notes) io.stderr(`listener status: note: ${oneLine(note, Number.MAX_SAFE_INTEGER)}\n`);
      const unreadable = apps.filter((a) => a.error !== null);
      for (const a of unreadable) cannotRead(`app ${a.app}: ${a.error}`);
      return unreadable.length === 0 ? 0 : 2;
    }
    const where: RecordLocation = { app, namespace, configMap: appObjectName(options.stateConfigMap, app) };
    const record = await readRecord({ api, namespace, name: where.configMap, signal: io.signal });
    io.stdout(options.json ? statusJson(record, where, { limit: options.limit }) : formatStatus(record, where, { limit: options.limit }));
    return 0;
  } catch (error) {
    if (!(error instanceof StateReadError)) throw error;
    return cannotRead(error.message);
  } finally {
    api.close();
  }
}
