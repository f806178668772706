/** `listener record`: its options and the pure planning of a repair. */
import { describe, expect, test } from "bun:test";
import { ConfigError } from "../../lib/errors.ts";
import { formatBuildTime, futureNotes, parseRecordCommand, planRepair, runRecordCommand } from "../../lib/listener/record-command.ts";
import type { CurrentBuild, InFlightBuild, Outcome, VersionRecord } from "../../lib/kube/record.ts";

const NOW = Date.parse("2026-03-01T12:00:00.000Z");
const FUTURE = Date.parse("2286-11-20T17:46:40.000Z");
const noPod = () => undefined;

const problems = (argv: string[]): string[] => {
  try {
    parseRecordCommand(argv, { KUBE_PICO_CD_NAMESPACE: "ops" }, noPod);
  } catch (error) {
    if (error instanceof ConfigError) return [...error.problems];
    throw error;
  }
  return [];
};

describe("parseRecordCommand()", () => {
  test("parseRecordCommand() reads the action, the build id and the options shared with listener status", () => {
    expect(parseRecordCommand(["forget-build", "build-9", "--state-configmap", "s", "--kubeconfig", "/k", "--context", "c", "--dry-run"], { KUBE_PICO_CD_NAMESPACE: "ops" }, noPod)).toEqual({
      action: "forget-build",
      buildId: "build-9",
      future: false,
      skewMs: 300_000,
      dryRun: true,
      app: "default",
      namespace: "ops",
      stateConfigMap: "s",
      kubeconfig: "/k",
      context: "c",
      help: false,
    });
  });

  test("parseRecordCommand() takes --future and --skew-seconds for forget-build", () => {
    const options = parseRecordCommand(["forget-build", "--future", "--skew-seconds", "60", "--namespace", "n"], {}, noPod);
    expect([options.action, options.future, options.skewMs, options.namespace, options.stateConfigMap]).toEqual(["forget-build", true, 60_000, "n", "kube-pico-cd-state"]);
  });

  test("parseRecordCommand() takes --app for every action, after or before the action", () => {
    const env = { KUBE_PICO_CD_NAMESPACE: "ops" };
    expect(parseRecordCommand(["show", "--app", "shop"], env, noPod).app).toBe("shop");
    expect(parseRecordCommand(["--app=shop", "set-current", "b-1"], env, noPod)).toMatchObject({ action: "set-current", buildId: "b-1", app: "shop", stateConfigMap: "kube-pico-cd-state" });
    expect(parseRecordCommand(["forget-build", "--future", "--app", "web"], env, noPod)).toMatchObject({ action: "forget-build", future: true, app: "web" });
    expect(parseRecordCommand(["clear-inflight", "--app", "default"], env, noPod).app).toBe("default");
  });

  test("parseRecordCommand() rejects an --app that is not a DNS label, naming the rule", () => {
    expect(problems(["show", "--app", "Shop"])).toEqual([`--app: app name "Shop" is not a DNS label (lowercase letters, digits and '-', starting and ending with a letter or digit)`]);
    expect(problems(["show", "--app="])).toEqual(["--app: an app name must not be empty"]);
    expect(problems(["forget-build", "--app", "-x"])).toEqual(["--app: a value that starts with a dash must be attached with '=' (--app=VALUE): current value is \"-x\""]);
  });

  test("parseRecordCommand() names each problem: no action, unknown action, missing or extra arguments", () => {
    expect(problems([])).toEqual(["an action is required: show, forget-build, set-current, clear-inflight (see listener record --help)"]);
    expect(problems(["forget"])).toEqual(["forget: unknown action (use show, forget-build, set-current, clear-inflight)"]);
    expect(problems(["forget-build"])).toEqual(["forget-build: give a BUILD_ID or --future"]);
    expect(problems(["forget-build", "b", "--future"])).toEqual(["forget-build: give a BUILD_ID or --future, not both"]);
    expect(problems(["set-current"])).toEqual(["set-current: give the BUILD_ID of an applied build of the history"]);
    expect(problems(["show", "b"])).toEqual(["b: unexpected argument (show takes only options)"]);
    expect(problems(["clear-inflight", "--future"])).toEqual(["--future: only forget-build takes it"]);
    expect(problems(["show", "--bogus"])).toEqual(["--bogus: unknown option (see --help)"]);
  });

  test("parseRecordCommand() without a namespace outside a pod says how to give one", () => {
    expect(() => parseRecordCommand(["show"], {}, noPod)).toThrow(ConfigError);
  });

  test("runRecordCommand() prints its help, and exits 1 on bad options", async () => {
    let out = "";
    let err = "";
    const io = { stdout: (t: string) => void (out += t), stderr: (t: string) => void (err += t), readNamespaceFile: noPod };
    expect(await runRecordCommand(["--help"], {}, io)).toBe(0);
    expect(out).toStartWith("Usage: listener record ACTION [BUILD_ID] [--app NAME] [options]\n");
    expect(out).toContain("--dry-run");
    expect(out).toContain("      --app NAME\n");
    expect(await runRecordCommand(["forget-build"], { KUBE_PICO_CD_NAMESPACE: "ops" }, io)).toBe(1);
    expect(err).toBe("listener record: forget-build: give a BUILD_ID or --future\n");
  });
});

const applied = (id: string, timestampMs: number, digest = `sha256:${id}`): Outcome => ({ result: "applied", time: `t-${id}`, buildId: id, timestampMs, digest, messageId: `m-${id}`, commit: `c-${id}`, objects: 2 });
const currentOf = (id: string, timestampMs: number): CurrentBuild => ({ build: { id, timestampMs, commit: `c-${id}` }, digest: `sha256:${id}`, appliedAt: `t-${id}`, messageId: `m-${id}`, objectCount: 2 });
const inflightOf = (id: string, timestampMs: number): InFlightBuild => ({
  build: { id, timestampMs },
  digest: `sha256:${id}`,
  messageId: `m-${id}`,
  objectCount: 1,
  startedAt: "s",
  holder: "pod-a",
  inventory: [{ group: "", kind: "ConfigMap", namespace: "app", name: `from-${id}` }],
});
const inventory = [{ group: "", kind: "ConfigMap", namespace: "app", name: "evil" }];

/** A record bricked by a build stamped in 2286: genuine builds 1 and 2 were applied before it. */
const bricked: VersionRecord = {
  current: currentOf("evil", FUTURE),
  inflight: null,
  inventory,
  history: [{ result: "superseded", time: "t", buildId: "genuine-3", timestampMs: NOW - 1_000 }, applied("evil", FUTURE), applied("genuine-2", NOW - 60_000), { ...applied("genuine-1", NOW - 120_000) }, { result: "failed", time: "t", buildId: "genuine-0", timestampMs: NOW - 10 }],
};

describe("planRepair()", () => {
  test("planRepair() forget-future restores the newest sane applied build of the history and keeps the inventory", () => {
    const plan = planRepair(bricked, { kind: "forget-future", skewMs: 300_000 }, NOW);
    expect(plan).toEqual({
      record: { ...bricked, current: currentOf("genuine-2", NOW - 60_000) },
      changes: [`current build evil (built at 2286-11-20T17:46:40.000Z) forgotten; current is now genuine-2 (built at 2026-03-01T11:59:00.000Z) from the history, applied at t-genuine-2`],
    });
  });

  test("planRepair() forget-future also forgets an in-flight build from the future and merges its inventory", () => {
    const plan = planRepair({ ...bricked, current: currentOf("genuine-2", NOW - 60_000), inflight: inflightOf("evil", FUTURE) }, { kind: "forget-future", skewMs: 0 }, NOW);
    if ("problem" in plan) throw new Error(plan.problem);
    expect(plan.record.inflight).toBeNull();
    expect(plan.record.current?.build.id).toBe("genuine-2");
    expect(plan.record.inventory).toEqual([...inventory, { group: "", kind: "ConfigMap", namespace: "app", name: "from-evil" }]);
    expect(plan.changes).toEqual(["in-flight build evil (built at 2286-11-20T17:46:40.000Z) forgotten; its 1 objects stay in the inventory for prune"]);
  });

  test("planRepair() forget-future restores none when the history holds no sane applied build", () => {
    const plan = planRepair({ ...bricked, history: [applied("evil", FUTURE), applied("evil-2", FUTURE + 1)] }, { kind: "forget-future", skewMs: 300_000 }, NOW);
    if ("problem" in plan) throw new Error(plan.problem);
    expect(plan.record.current).toBeNull();
    expect(plan.changes[0]).toEndWith("current is now none (the history holds no other applied build): the next build is applied whatever its timestamp");
  });

  test("planRepair() forget-future within the skew changes nothing", () => {
    const fine = { ...bricked, current: currentOf("soon", NOW + 299_000) };
    expect(planRepair(fine, { kind: "forget-future", skewMs: 300_000 }, NOW)).toEqual({ record: fine, changes: [] });
  });

  test("planRepair() forget-build by id forgets it even when it is not in the future, and never restores a copy of it", () => {
    const record = { ...bricked, current: currentOf("genuine-2", NOW - 60_000) };
    const plan = planRepair(record, { kind: "forget-build", buildId: "genuine-2" }, NOW);
    if ("problem" in plan) throw new Error(plan.problem);
    // evil is not forgotten by id, and it is the newest other applied build of the history.
    expect(plan.record.current?.build.id).toBe("evil");
  });

  test("planRepair() forget-build of a build the record does not hold is a problem", () => {
    expect(planRepair(bricked, { kind: "forget-build", buildId: "nope" }, NOW)).toEqual({ problem: 'Neither the current nor the in-flight build is "nope": nothing changed' });
  });

  test("planRepair() set-current takes the applied build of the history", () => {
    const plan = planRepair(bricked, { kind: "set-current", buildId: "genuine-1" }, NOW);
    if ("problem" in plan) throw new Error(plan.problem);
    expect(plan.record).toEqual({ ...bricked, current: currentOf("genuine-1", NOW - 120_000) });
    expect(plan.changes).toEqual(["current build: evil (built at 2286-11-20T17:46:40.000Z) -> genuine-1 (built at 2026-03-01T11:58:00.000Z), applied at t-genuine-1"]);
  });

  test("planRepair() set-current of a build that was never applied, or is current already", () => {
    expect(planRepair(bricked, { kind: "set-current", buildId: "genuine-0" }, NOW)).toEqual({ problem: 'The history holds no applied build "genuine-0" (with its timestamp and digest): nothing changed' });
    expect(planRepair(bricked, { kind: "set-current", buildId: "evil" }, NOW)).toEqual({ record: bricked, changes: [] });
  });

  test("planRepair() clear-inflight drops the intent and keeps its objects in the inventory", () => {
    const plan = planRepair({ ...bricked, inflight: inflightOf("stuck", NOW) }, { kind: "clear-inflight" }, NOW);
    if ("problem" in plan) throw new Error(plan.problem);
    expect(plan.record.inflight).toBeNull();
    expect(plan.record.current).toEqual(bricked.current);
    expect(plan.record.inventory.map((o) => o.name)).toEqual(["evil", "from-stuck"]);
    expect(planRepair(bricked, { kind: "clear-inflight" }, NOW)).toEqual({ record: bricked, changes: [] });
  });
});

describe("futureNotes() and formatBuildTime()", () => {
  test("futureNotes() names a current build stamped in the future and says how to forget it", () => {
    expect(futureNotes(bricked, NOW, 300_000)).toEqual([
      "the current build evil (built at 2286-11-20T17:46:40.000Z) is stamped in the future; every genuine build is superseded until it is forgotten: listener record forget-build --future",
    ]);
    expect(futureNotes({ ...bricked, current: null }, NOW, 300_000)).toEqual([]);
  });

  test("formatBuildTime() shows a timestamp beyond what a Date holds as its number", () => {
    expect(formatBuildTime(9e15)).toBe("9000000000000000 ms");
    expect(formatBuildTime(0)).toBe("1970-01-01T00:00:00.000Z");
  });
});
