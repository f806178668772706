/**
 * `listener record`: shows and repairs an app's version record (lib/kube/record.ts), for an
 * operator, while the listener runs. `--app NAME` picks the app (default: the default app,
 * whose record is `--state-configmap` itself; app NAME's is `<state-configmap>-NAME`:
 * lib/listener/apps.ts); a write keeps the record's app label.
 *
 * - `show`: the record as JSON, with a note on stderr when its current or in-flight build is
 *   stamped in the future;
 * - `forget-build BUILD_ID` or `forget-build --future`: drops that current or in-flight build
 *   (a build stamped far ahead makes every genuine build "superseded") and restores, as the
 *   current build, the newest build of the history that was applied and is not forgotten
 *   (none if there is none: the next build deploys whatever its timestamp);
 * - `set-current BUILD_ID`: makes an applied build of the history the current one;
 * - `clear-inflight`: drops the in-flight intent of a deploy that will never be confirmed.
 *
 * Every change keeps the inventory complete: a forgotten build's objects stay in it, so the
 * next deploy prunes what that build created and the next bundle no longer holds. The record
 * says what was applied, never what runs: the next build newer than the current one is
 * applied over whatever the cluster holds. Writes are compare-and-swap on resourceVersion and
 * are planned again from a fresh read when the listener wrote first; `--dry-run` prints the
 * change and writes nothing. Nothing is added to the history (older listeners could not read
 * a new kind of outcome).
 *
 * Option parsing and {@link planRepair} are pure and exported for tests. Exit codes: 0 done
 * (or nothing to change, or no record of that app yet), 1 invalid options or app name, 2 the
 * record could not be read or written, 3 the named build is not in the record.
 *
 * Runs under Bun, Node and Deno: only `node:` built-ins.
 */
import { z } from "zod";
import { gatherOptions, optionsHelp, schemaProblems, type OptionTable } from "../cli-options.ts";
import { ConfigError, errorMessage, KubeConfigError, StateConflictError, StateReadError, StateWriteError } from "../errors.ts";
import { int, listenerOptionsSchema, NAMESPACE_MISSING_PROBLEM, resolveNamespace } from "./config.ts";
import { KubeApi } from "../kube/api.ts";
import { loadKubeConnection } from "../kube/kubeconfig.ts";
import { readRecord, updateRecord, type CurrentBuild, type Outcome, type StoredRecord, type VersionRecord } from "../kube/record.ts";
import { mergeInventories } from "./intent.ts";
import { appNameProblem, appObjectName, DEFAULT_APP } from "./apps.ts";
import { STATUS_OPTIONS, statusJson, type RecordLocation } from "./status.ts";
import { oneLine } from "../text.ts";

/** Default of `--skew-seconds`: how far ahead of this machine's clock a build counts as stamped in the future. */
export const DEFAULT_FUTURE_SKEW_SECONDS = 300;
/** Largest `--skew-seconds`: one year. */
export const MAX_FUTURE_SKEW_SECONDS = 365 * 24 * 3600;
/** Compare-and-swap attempts before a write that keeps losing to the listener gives up. */
export const RECORD_COMMAND_ATTEMPTS = 10;

export const RECORD_ACTIONS = ["show", "forget-build", "set-current", "clear-inflight"] as const;
export type RecordAction = (typeof RECORD_ACTIONS)[number];

export const RECORD_COMMAND_OPTIONS = {
  app: { type: "string", value: "NAME", defaultText: DEFAULT_APP, help: "The app whose record to show or change (its ConfigMap: --state-configmap for the default app, <state-configmap>-NAME for the others)." },
  namespace: STATUS_OPTIONS.namespace,
  "state-configmap": STATUS_OPTIONS["state-configmap"],
  kubeconfig: { ...STATUS_OPTIONS.kubeconfig, help: "Kubeconfig file to read and write the record with." },
  context: { ...STATUS_OPTIONS.context, help: "Kubeconfig context to read and write the record with." },
  future: { type: "boolean", defaultText: "false", help: "forget-build: forget the current and in-flight build if stamped more than --skew-seconds ahead of this machine's clock." },
  "skew-seconds": { type: "string", value: "N", defaultText: String(DEFAULT_FUTURE_SKEW_SECONDS), help: `How far ahead of this machine's clock a build timestamp counts as in the future (0-${MAX_FUTURE_SKEW_SECONDS}); also what the history may restore.` },
  "dry-run": { type: "boolean", defaultText: "false", help: "Print the change and write nothing." },
  help: { type: "boolean", short: "h", defaultText: "false", help: "Show this help." },
} as const satisfies OptionTable;

/** The settings of `listener record`. */
export interface RecordCommandOptions {
  action: RecordAction;
  /** forget-build and set-current: the build named. */
  buildId?: string;
  /** forget-build: forget builds stamped in the future. */
  future: boolean;
  /** Milliseconds ahead of the clock that count as the future. */
  skewMs: number;
  dryRun: boolean;
  /** The app whose record is shown or changed. */
  app: string;
  namespace: string;
  /** Base name of the records (lib/listener/apps.ts). */
  stateConfigMap: string;
  kubeconfig?: string;
  context?: string;
  help: boolean;
}

const schema = listenerOptionsSchema.pick({ namespace: true, "state-configmap": true, kubeconfig: true, context: true }).extend({
  future: z.boolean(),
  "skew-seconds": int(0, MAX_FUTURE_SKEW_SECONDS, DEFAULT_FUTURE_SKEW_SECONDS),
  "dry-run": z.boolean(),
  help: z.boolean(),
});

/**
 * Parses `argv` (after "record": the action, its argument, options) and `env`.
 * `readNamespaceFile` is injectable so tests need no pod.
 *
 * @throws {ConfigError} one line per problem, naming the flag, variable or argument.
 */
export function parseRecordCommand(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
  readNamespaceFile?: () => string | undefined,
): RecordCommandOptions {
  const { raw, origin, positionals, problems } = gatherOptions(RECORD_COMMAND_OPTIONS, argv, env, { allowPositionals: true });
  // A flag node:util could not parse leaves no positionals to check.
  if (problems.length > 0) throw new ConfigError(problems);
  const help = raw["help"] === true;
  const [actionText, buildId, ...extra] = positionals;
  const action = RECORD_ACTIONS.find((a) => a === actionText);
  if (actionText === undefined && !help) problems.push(`an action is required: ${RECORD_ACTIONS.join(", ")} (see listener record --help)`);
  else if (actionText !== undefined && action === undefined) problems.push(`${actionText}: unknown action (use ${RECORD_ACTIONS.join(", ")})`);
  for (const e of extra) problems.push(`${e}: unexpected argument (see listener record --help)`);
  if (action === "forget-build" && buildId === undefined && raw["future"] !== true) problems.push("forget-build: give a BUILD_ID or --future");
  if (action === "forget-build" && buildId !== undefined && raw["future"] === true) problems.push("forget-build: give a BUILD_ID or --future, not both");
  if (action === "set-current" && buildId === undefined) problems.push("set-current: give the BUILD_ID of an applied build of the history");
  if ((action === "show" || action === "clear-inflight") && buildId !== undefined) problems.push(`${buildId}: unexpected argument (${action} takes only options)`);
  if (raw["future"] === true && action !== undefined && action !== "forget-build") problems.push(`--future: only forget-build takes it`);
  const app = typeof raw["app"] === "string" ? raw["app"] : DEFAULT_APP;
  const appProblem = appNameProblem(app);
  if (appProblem !== undefined) problems.push(`--app: ${appProblem}`);
  if (problems.length > 0) throw new ConfigError(problems);
  const result = schema.safeParse(raw);
  if (!result.success) throw new ConfigError(schemaProblems(result.error, origin));
  const d = result.data;
  const namespace = d.help ? (d.namespace ?? "") : resolveNamespace(d.namespace, readNamespaceFile);
  if (namespace === undefined) throw new ConfigError([NAMESPACE_MISSING_PROBLEM]);
  const options: RecordCommandOptions = {
    action: action ?? "show",
    future: d.future,
    skewMs: d["skew-seconds"] * 1000,
    dryRun: d["dry-run"],
    app,
    namespace,
    stateConfigMap: d["state-configmap"],
    help: d.help,
  };
  if (buildId !== undefined) options.buildId = buildId;
  if (d.kubeconfig !== undefined) options.kubeconfig = d.kubeconfig;
  if (d.context !== undefined) options.context = d.context;
  return options;
}

/** What to change in the record. */
export type RepairAction =
  | { kind: "forget-build"; buildId: string }
  | { kind: "forget-future"; skewMs: number }
  | { kind: "set-current"; buildId: string }
  | { kind: "clear-inflight" };

/** The outcome of {@link planRepair}. */
export type RepairPlan =
  /** `changes` empty: the record already is as asked; nothing to write. */
  | { record: VersionRecord; changes: string[] }
  /** The record holds no build the action names. */
  | { problem: string };

/** A build timestamp for people; one too large for a Date is shown as its number. */
export function formatBuildTime(timestampMs: number): string {
  const date = new Date(timestampMs);
  return Number.isNaN(date.getTime()) ? `${timestampMs} ms` : date.toISOString();
}

const describe = (build: { id: string; timestampMs: number }) => `${oneLine(build.id, 80)} (built at ${formatBuildTime(build.timestampMs)})`;

/** An applied outcome of the history as a current build; undefined when it lacks what a current build needs. */
function currentFromOutcome(outcome: Outcome): CurrentBuild | undefined {
  if (outcome.result !== "applied" || outcome.buildId === undefined || outcome.timestampMs === undefined || outcome.digest === undefined) return undefined;
  return {
    build: { id: outcome.buildId, timestampMs: outcome.timestampMs, ...(outcome.commit === undefined ? {} : { commit: outcome.commit }) },
    digest: outcome.digest,
    appliedAt: outcome.time,
    messageId: outcome.messageId ?? "-",
    objectCount: outcome.objects ?? 0,
  };
}

/** Newest first by build order (timestamp, then digest), as newest-wins compares. */
function newer(a: CurrentBuild, b: CurrentBuild): boolean {
  return a.build.timestampMs !== b.build.timestampMs ? a.build.timestampMs > b.build.timestampMs : a.digest > b.digest;
}

/**
 * What `record` becomes under `action` at `nowMs`, and the change in words; pure.
 *
 * Forgetting a build drops it from `current` and `inflight` and keeps every object it may
 * have created in the inventory; a forgotten current build is replaced by the newest applied
 * build of the history that is neither forgotten nor itself stamped in the future (with
 * `forget-future`), or by none.
 */
export function planRepair(record: VersionRecord, action: RepairAction, nowMs: number): RepairPlan {
  if (action.kind === "set-current") {
    if (record.current?.build.id === action.buildId) return { record, changes: [] };
    const found = record.history
      .map(currentFromOutcome)
      .filter((c): c is CurrentBuild => c !== undefined && c.build.id === action.buildId)
      .reduce<CurrentBuild | undefined>((best, c) => (best === undefined || newer(c, best) ? c : best), undefined);
    if (found === undefined) return { problem: `The history holds no applied build ${JSON.stringify(action.buildId)} (with its timestamp and digest): nothing changed` };
    const was = record.current === null ? "none" : describe(record.current.build);
    return { record: { ...record, current: found }, changes: [`current build: ${was} -> ${describe(found.build)}, applied at ${found.appliedAt}`] };
  }
  if (action.kind === "clear-inflight") {
    if (record.inflight === null) return { record, changes: [] };
    const inflight = record.inflight;
    return {
      record: { ...record, inflight: null, inventory: mergeInventories(record.inventory, inflight.inventory) },
      changes: [`in-flight build ${describe(inflight.build)} cleared (started at ${inflight.startedAt} by ${inflight.holder}); its ${inflight.inventory.length} objects stay in the inventory for prune`],
    };
  }
  const forgotten =
    action.kind === "forget-build"
      ? (build: { id: string; timestampMs: number }) => build.id === action.buildId
      : (build: { id: string; timestampMs: number }) => build.timestampMs > nowMs + action.skewMs;
  const changes: string[] = [];
  let next: VersionRecord = record;
  if (record.inflight !== null && forgotten(record.inflight.build)) {
    const inflight = record.inflight;
    next = { ...next, inflight: null, inventory: mergeInventories(next.inventory, inflight.inventory) };
    changes.push(`in-flight build ${describe(inflight.build)} forgotten; its ${inflight.inventory.length} objects stay in the inventory for prune`);
  }
  if (record.current !== null && forgotten(record.current.build)) {
    const dropped = record.current;
    // Also never restore a copy of the forgotten build, nor (with --future) another build from the future.
    const sane = (c: CurrentBuild) => !forgotten(c.build) && c.build.timestampMs <= nowMs + (action.kind === "forget-future" ? action.skewMs : Number.MAX_SAFE_INTEGER) && !(c.build.timestampMs === dropped.build.timestampMs && c.digest === dropped.digest);
    const restored = record.history
      .map(currentFromOutcome)
      .filter((c): c is CurrentBuild => c !== undefined && sane(c))
      .reduce<CurrentBuild | null>((best, c) => (best === null || newer(c, best) ? c : best), null);
    next = { ...next, current: restored };
    changes.push(
      restored === null
        ? `current build ${describe(dropped.build)} forgotten; current is now none (the history holds no other applied build): the next build is applied whatever its timestamp`
        : `current build ${describe(dropped.build)} forgotten; current is now ${describe(restored.build)} from the history, applied at ${restored.appliedAt}`,
    );
  }
  if (changes.length === 0 && action.kind === "forget-build") {
    return { problem: `Neither the current nor the in-flight build is ${JSON.stringify(action.buildId)}: nothing changed` };
  }
  return { record: next, changes };
}

/** Notes on builds of `record` stamped more than `skewMs` ahead of `nowMs`, for `show`. */
export function futureNotes(record: VersionRecord, nowMs: number, skewMs: number): string[] {
  const notes: string[] = [];
  for (const [what, build] of [["current", record.current?.build], ["in-flight", record.inflight?.build]] as const) {
    if (build === undefined || build.timestampMs <= nowMs + skewMs) continue;
    notes.push(`the ${what} build ${describe(build)} is stamped in the future; every genuine build is superseded until it is forgotten: listener record forget-build --future`);
  }
  return notes;
}

export function recordHelpText(): string {
  return [
    "Usage: listener record ACTION [BUILD_ID] [--app NAME] [options]",
    "",
    "Shows and repairs the version record the listener keeps of an app (--app; listener status",
    "lists them), safely while it runs: each change is a compare-and-swap write, planned again",
    "when the listener wrote first.",
    "",
    "Actions:",
    "  show                       Print the record as JSON (a note on stderr for a build stamped in the future).",
    "  forget-build BUILD_ID      Forget that current or in-flight build; the newest other applied build of",
    "  forget-build --future      the history becomes current (none if there is none). --future: forget the",
    "                             current and in-flight build if stamped more than --skew-seconds ahead.",
    "  set-current BUILD_ID       Make that applied build of the history the current one.",
    "  clear-inflight             Drop the in-flight intent (a deploy that will never be confirmed).",
    "",
    "The inventory keeps every object a forgotten build may have created, so the next deploy prunes",
    "what left the bundle. The record changes, the cluster does not: the next build newer than the",
    "current one is applied. Nothing is written to the history.",
    "",
    "Options (flags win over environment variables):",
    ...optionsHelp(RECORD_COMMAND_OPTIONS),
    "",
    "Exit codes: 0 done (or nothing to change, or no record of that app yet); 1 invalid options or app",
    "name; 2 the record could not be read or written; 3 the named build is not in the record.",
  ].join("\n");
}

/** Where `listener record` writes; tests pass their own. */
export interface RecordCommandIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  readNamespaceFile?: () => string | undefined;
  now?: () => number;
  signal?: AbortSignal;
}

const processIo: RecordCommandIo = {
  stdout: (text) => void process.stdout.write(text),
  stderr: (text) => void process.stderr.write(text),
};

function repairAction(options: RecordCommandOptions): RepairAction {
  if (options.action === "set-current") return { kind: "set-current", buildId: options.buildId ?? "" };
  if (options.action === "clear-inflight") return { kind: "clear-inflight" };
  return options.future ? { kind: "forget-future", skewMs: options.skewMs } : { kind: "forget-build", buildId: options.buildId ?? "" };
}

/** Runs `listener record` with `argv` (after "record"); resolves with the exit code. */
export async function runRecordCommand(argv: readonly string[], env: Readonly<Record<string, string | undefined>>, io: RecordCommandIo = processIo): Promise<number> {
  const { now = Date.now } = io;
  let options: RecordCommandOptions;
  try {
    options = parseRecordCommand(argv, env, io.readNamespaceFile);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    for (const problem of error.problems) io.stderr(`listener record: ${problem}\n`);
    return 1;
  }
  if (options.help) {
    io.stdout(`${recordHelpText()}\n`);
    return 0;
  }
  const where: RecordLocation = { app: options.app, namespace: options.namespace, configMap: appObjectName(options.stateConfigMap, options.app) };
  const name = `${where.namespace}/${where.configMap}`;
  const fail = (message: string, code = 2) => {
    io.stderr(`listener record: ${oneLine(message, Number.MAX_SAFE_INTEGER)}\n`);
    return code;
  };
  let api: KubeApi;
  try {
    api = new KubeApi(await loadKubeConnection({ kubeconfig: options.kubeconfig, context: options.context, env, signal: io.signal }));
  } catch (error) {
    if (!(error instanceof KubeConfigError || error instanceof RangeError)) throw error;
    return fail(`Cannot read the version record ConfigMap ${name}: ${errorMessage(error)}`);
  }
  // The app goes with every write: a write replaces the ConfigMap, labels and all.
  const recordOptions = { api, namespace: options.namespace, name: where.configMap, app: options.app, attempts: RECORD_COMMAND_ATTEMPTS, ...(io.signal ? { signal: io.signal } : {}) };
  try {
    if (options.action === "show") {
      const record = await readRecord(recordOptions);
      io.stdout(statusJson(record, where));
      for (const note of futureNotes(record, now(), options.skewMs)) io.stderr(`listener record: ${note}\n`);
      return 0;
    }
    const action = repairAction(options);
    if (options.dryRun) {
      const record = await readRecord(recordOptions);
      if (record.resourceVersion === null) return fail(`No version record ${name} of app ${options.app} yet: nothing to change`, 0);
      const plan = planRepair(record, action, now());
      if ("problem" in plan) return fail(plan.problem, 3);
      report(io, plan.changes, `dry run: would change ${name} (resourceVersion ${record.resourceVersion}):`, name);
      return 0;
    }
    let plan: RepairPlan | undefined;
    let read: StoredRecord | undefined;
    // Planned again on each fresh read: the listener may have written in between.
    await updateRecord((record) => {
      read = record;
      if (record.resourceVersion === null) return null;
      plan = planRepair(record, action, now());
      return "problem" in plan || plan.changes.length === 0 ? null : plan.record;
    }, recordOptions);
    if (read?.resourceVersion === null || plan === undefined) return fail(`No version record ${name} of app ${options.app} yet: nothing to change`, 0);
    if ("problem" in plan) return fail(plan.problem, 3);
    report(io, plan.changes, `changed ${name}:`, name);
    return 0;
  } catch (error) {
    if (error instanceof StateReadError || error instanceof StateWriteError) return fail(error.message);
    if (error instanceof StateConflictError) return fail(`${error.message}, ${RECORD_COMMAND_ATTEMPTS} times: the listener keeps writing; try again`);
    throw error;
  } finally {
    api.close();
  }
}

function report(io: RecordCommandIo, changes: readonly string[], heading: string, name: string): void {
  if (changes.length === 0) {
    io.stdout(`Nothing to change in ${name}.\n`);
    return;
  }
  io.stdout(`${heading}\n${changes.map((c) => `  ${c}\n`).join("")}`);
}
