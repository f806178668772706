/** `listener status`: its options, the overview of every app, and the text and JSON it prints for one record. */
import { describe, expect, test } from "bun:test";
import type { CurrentBuild, InFlightBuild, Outcome, StoredRecord } from "../../lib/kube/record.ts";
import type { ListedRecord } from "../../lib/listener/app-records.ts";
import {
  appOverview,
  currentHealth,
  formatDuration,
  formatHistory,
  formatOverview,
  formatStatus,
  overviewJson,
  parseStatusOptions,
  runStatus,
  shortDigest,
  statusHelpText,
  statusJson,
} from "../../lib/listener/status.ts";
import { configProblems } from "../helpers/thrown.ts";

const where = { app: "default", namespace: "kube-pico-cd", configMap: "kube-pico-cd-state" };
const noFile = () => undefined;
const commitA = "0a1b2c3d4e5f60718293a4b5c6d7e8f901234567";

const record: StoredRecord = {
  resourceVersion: "812",
  inflight: null,
  current: {
    build: { id: "rollback-0a1b2c3", timestampMs: 1_764_102_000_000, commit: commitA, ref: "refs/heads/main", repository: "example/shop", url: "https://github.com/example/shop/actions/runs/42/attempts/1" },
    digest: "ab".repeat(32),
    appliedAt: "2025-11-25T20:26:41.250Z",
    messageId: "m-4",
    objectCount: 3,
  },
  inventory: [{ group: "", kind: "ConfigMap", namespace: "shop", name: "app" }],
  history: [
    {
      result: "applied",
      time: "2025-11-25T20:26:41.250Z",
      buildId: "rollback-0a1b2c3",
      commit: commitA,
      durationMs: 1234,
      objects: 3,
      pruned: [{ group: "", kind: "ConfigMap", namespace: "shop", name: "flags" }],
      health: { status: "Healthy", durationMs: 2000, checked: 1 },
    },
    {
      result: "failed",
      time: "2025-11-25T20:20:05.900Z",
      buildId: "build-103",
      commit: "f00dbabe99999999",
      durationMs: 184_000,
      error: 'Cannot run `kubectl apply --server-side -f -`: exit code 1: The Deployment "web" is invalid:\n  spec.selector: Required value, and a very long tail that goes on and on',
    },
    {
      result: "applied",
      time: "2025-11-25T20:10:00.000Z",
      buildId: "build-102",
      commit: "c0ffee0000",
      durationMs: 850,
      objects: 4,
      pruned: [],
      health: { status: "Degraded", durationMs: 9000, checked: 2, object: "apps/Deployment/shop/web", reason: "ProgressDeadlineExceeded" },
      warnings: ["prune of ConfigMap shop/old failed"],
    },
    { result: "rejected", time: "2025-11-25T20:00:00.000Z", error: "invalid-json: The body is not JSON" },
  ],
};

const problems = (argv: string[], env: Record<string, string> = {}, ns: () => string | undefined = noFile) => configProblems(() => parseStatusOptions(argv, env, ns));

describe("formatStatus()", () => {
  test("formatStatus() prints the current build and an aligned history, newest first, with durations, counts and one-line messages", () => {
    expect(formatStatus(record, where)).toBe(
      [
        "Version record kube-pico-cd/kube-pico-cd-state of app default",
        "",
        "Current build: rollback-0a1b2c3",
        `  commit:     ${commitA}`,
        "  ref:        refs/heads/main",
        "  repository: example/shop",
        "  run:        https://github.com/example/shop/actions/runs/42/attempts/1",
        "  built at:   2025-11-25T20:20:00.000Z",
        "  applied at: 2025-11-25T20:26:41.250Z",
        "  objects:    3",
        "  digest:     abababababab…",
        "",
        "History, newest first (4 of 4):",
        "TIME                  BUILD             COMMIT   RESULT    HEALTH    DURATION  APPLIED  PRUNED  MESSAGE",
        "2025-11-25T20:26:41Z  rollback-0a1b2c3  0a1b2c3  applied   Healthy       1.2s        3       1",
        '2025-11-25T20:20:05Z  build-103         f00dbab  failed    -            3m04s        -       -  kubectl: The Deployment "web" is invalid: spec.selector: Required value, and a …',
        "2025-11-25T20:10:00Z  build-102         c0ffee0  applied   Degraded     850ms        4       0  health Degraded apps/Deployment/shop/web: ProgressDeadlineExceeded; prune of Co…",
        "2025-11-25T20:00:00Z  -                 -        rejected  -                -        -       -  invalid-json: The body is not JSON",
        "",
      ].join("\n"),
    );
  });

  test("formatStatus() with a limit shows the newest rows and says how many there are", () => {
    const lines = formatStatus(record, where, { limit: 2 }).split("\n");
    expect(lines[12]).toBe("History, newest first (2 of 4):");
    expect(lines.slice(14, 17).map((l) => l.slice(22, 40).trimEnd())).toEqual(["rollback-0a1b2c3", "build-103", ""]);
  });

  test("formatStatus() says so when the ConfigMap does not exist yet, naming the app and where the apps are listed", () => {
    expect(formatStatus({ current: null, inflight: null, inventory: [], history: [], resourceVersion: null }, { app: "shop", namespace: "kube-pico-cd", configMap: "kube-pico-cd-state-shop" })).toBe(
      "No version record kube-pico-cd/kube-pico-cd-state-shop of app shop yet: the listener has not recorded any outcome of this app (listener status lists the apps that have one).\n",
    );
  });

  test("formatStatus() shows 'none' and the failures when no build was ever applied", () => {
    const failedOnly: StoredRecord = { current: null, inflight: null, inventory: [], history: [{ result: "failed", time: "2025-01-02T03:04:05.000Z", buildId: "b1", durationMs: 59_960, error: "boom" }], resourceVersion: "5" };
    expect(formatStatus(failedOnly, where)).toBe(
      [
        "Version record kube-pico-cd/kube-pico-cd-state of app default",
        "",
        "Current build: none (no build applied yet)",
        "",
        "History, newest first (1 of 1):",
        "TIME                  BUILD  COMMIT  RESULT  HEALTH  DURATION  APPLIED  PRUNED  MESSAGE",
        "2025-01-02T03:04:05Z  b1     -       failed  -          1m00s        -       -  boom",
        "",
      ].join("\n"),
    );
  });

  test("formatStatus() marks the current build's missing fields with '-' and says when the history is empty", () => {
    const bare: StoredRecord = {
      current: { build: { id: "b7", timestampMs: 0 }, digest: "md5:0123456789abcdef0123456789", appliedAt: "2025-01-01T00:00:00.000Z", messageId: "m", objectCount: 0 },
      inflight: null,
      inventory: [],
      history: [],
      resourceVersion: "9",
    };
    expect(formatStatus(bare, where).split("\n").slice(2)).toEqual([
      "Current build: b7",
      "  commit:     -",
      "  ref:        -",
      "  repository: -",
      "  run:        -",
      "  built at:   1970-01-01T00:00:00.000Z",
      "  applied at: 2025-01-01T00:00:00.000Z",
      "  objects:    0",
      "  digest:     md5:0123456789abcd…",
      "",
      "History: empty",
      "",
    ]);
  });

  test("formatStatus() shows a deploy that started and was not confirmed, between the current build and the history", () => {
    const inflight: StoredRecord["inflight"] = {
      build: { id: "build-104", timestampMs: 1_764_102_100_000, commit: "d00d00d00d00d00d" },
      digest: "cd".repeat(32),
      messageId: "m-5",
      objectCount: 4,
      startedAt: "2025-11-25T20:30:00.000Z",
      holder: "kube-pico-cd-7f9c-abcde",
      inventory: [],
    };
    const lines = formatStatus({ ...record, inflight }, where, { limit: 1 }).split("\n");
    expect(lines.slice(11, 19)).toEqual([
      "",
      "In-flight deploy: build-104 (started, not confirmed: still applying, or interrupted and settled by the next deploy)",
      "  commit:     d00d00d00d00d00d",
      "  started at: 2025-11-25T20:30:00.000Z",
      "  holder:     kube-pico-cd-7f9c-abcde",
      "  objects:    4",
      "  digest:     cdcdcdcdcdcd…",
      "",
    ]);
    expect(lines[19]).toBe("History, newest first (1 of 4):");
  });
});

describe("formatHistory()", () => {
  test("formatHistory() takes the current build's commit for an outcome recorded without one, and cuts long build ids", () => {
    const current = record.current!;
    const longId = `build-${"x".repeat(40)}`;
    const lines = formatHistory(
      [
        { result: "applied", time: "2025-11-25T20:26:41.250Z", buildId: current.build.id, objects: 1 },
        { result: "superseded", time: "not a time", buildId: longId },
      ],
      current,
    );
    expect(lines).toEqual([
      "TIME                  BUILD                             COMMIT   RESULT      HEALTH  DURATION  APPLIED  PRUNED  MESSAGE",
      "2025-11-25T20:26:41Z  rollback-0a1b2c3                  0a1b2c3  applied     -              -        1       -",
      `not a time            build-${"x".repeat(25)}…  -        superseded  -              -        -       -`,
    ]);
  });

  test("formatHistory() shows what kubectl said instead of its command line", () => {
    const error = 'Cannot run `kubectl --kubeconfig=/k apply --server-side -f -`: exit code 1: The Service "web" is invalid:  | * spec.ports[0].port: Invalid value | * spec.type: bad';
    const [, row] = formatHistory([{ result: "failed", time: "2025-01-01T00:00:00Z", error }], null, { messageWidth: 120 });
    expect(row).toEndWith('  kubectl: The Service "web" is invalid: spec.ports[0].port: Invalid value; spec.type: bad');
  });

  test("formatHistory() cuts the message to the given width", () => {
    const [, row] = formatHistory([{ result: "failed", time: "2025-01-01T00:00:00Z", error: "a\nb  c d e f" }], null, { messageWidth: 6 });
    expect(row).toEndWith("  a b c…");
  });
});

describe("formatDuration() and shortDigest()", () => {
  test("formatDuration() uses ms below a second, tenths below a minute, then m/s and h/m", () => {
    const cases: [number | undefined, string][] = [
      [undefined, "-"],
      [-1, "-"],
      [0, "0ms"],
      [999.4, "999ms"],
      [999.6, "1.0s"],
      [1234, "1.2s"],
      [59_949, "59.9s"],
      [59_950, "1m00s"],
      [184_000, "3m04s"],
      [3_599_499, "59m59s"],
      [3_599_500, "1h00m"],
      [3_720_000, "1h02m"],
    ];
    expect(cases.map(([ms]) => formatDuration(ms))).toEqual(cases.map(([, text]) => text));
  });

  test("shortDigest() keeps 12 hex digits of a digest, with its sha256: prefix if any", () => {
    expect(shortDigest("0123456789abcdef".repeat(4))).toBe("0123456789ab…");
    expect(shortDigest(`sha256:${"0".repeat(64)}`)).toBe("sha256:000000000000…");
    expect(shortDigest("sha256:abc")).toBe("sha256:abc");
  });
});

describe("statusJson()", () => {
  test("statusJson() prints where the record is and the record, the history cut to the limit", () => {
    expect(JSON.parse(statusJson(record, where, { limit: 1 }))).toEqual({
      app: "default",
      namespace: "kube-pico-cd",
      configMap: "kube-pico-cd-state",
      resourceVersion: "812",
      current: record.current,
      inflight: null,
      inventory: record.inventory,
      history: [record.history[0]],
    });
  });

  test("statusJson() gives resourceVersion null and an empty record when there is none", () => {
    expect(statusJson({ current: null, inflight: null, inventory: [], history: [], resourceVersion: null }, where)).toBe(
      '{\n  "app": "default",\n  "namespace": "kube-pico-cd",\n  "configMap": "kube-pico-cd-state",\n  "resourceVersion": null,\n  "current": null,\n  "inflight": null,\n  "inventory": [],\n  "history": []\n}\n',
    );
  });
});

describe("parseStatusOptions()", () => {
  test("parseStatusOptions() without APP asks for the overview, with the pod's namespace and the listener's defaults", () => {
    expect(parseStatusOptions([], {}, () => "kube-pico-cd\n")).toEqual({ namespace: "kube-pico-cd", stateConfigMap: "kube-pico-cd-state", json: false, help: false, limit: 1000 });
  });

  test("parseStatusOptions() takes the APP before, between or after the options", () => {
    const env = { KUBE_PICO_CD_NAMESPACE: "ops" };
    expect(parseStatusOptions(["shop"], env, noFile).app).toBe("shop");
    expect(parseStatusOptions(["--json", "shop", "--limit", "3"], env, noFile)).toEqual({ app: "shop", namespace: "ops", stateConfigMap: "kube-pico-cd-state", json: true, help: false, limit: 3 });
    expect(parseStatusOptions(["--state-configmap", "records", "default"], env, noFile)).toMatchObject({ app: "default", stateConfigMap: "records" });
  });

  test("parseStatusOptions() reads the listener's variables, and flags win over them", () => {
    const env = { KUBE_PICO_CD_NAMESPACE: "from-env", KUBE_PICO_CD_STATE_CONFIGMAP: "rec", KUBE_PICO_CD_KUBECTL: "/bin/kubectl", KUBE_PICO_CD_KUBECONFIG: "/k.yaml", KUBE_PICO_CD_CONTEXT: "env-ctx", KUBE_PICO_CD_QUEUE: "ignored" };
    expect(parseStatusOptions(["web", "--namespace", "from-flag", "--json", "--limit", "5", "--context", "prod"], env, noFile)).toEqual({
      app: "web",
      namespace: "from-flag",
      stateConfigMap: "rec",
      kubeconfig: "/k.yaml",
      context: "prod",
      json: true,
      limit: 5,
      help: false,
    });
  });

  test("parseStatusOptions() names the flag when no namespace is given outside a pod", () => {
    expect(problems([])).toEqual([
      "--namespace: not given and /var/run/secrets/kubernetes.io/serviceaccount/namespace is not readable (set KUBE_PICO_CD_NAMESPACE when running outside a pod)",
    ]);
  });

  test("parseStatusOptions() reports bad values one line each, naming the flag or variable", () => {
    expect(problems(["shop", "--limit", "0"], { KUBE_PICO_CD_NAMESPACE: "Bad_Name" })).toEqual(["KUBE_PICO_CD_NAMESPACE: must be a namespace name (lower-case letters, digits and '-'): current value is \"Bad_Name\"", "--limit: must be at least 1"]);
    expect(problems(["shop", "--namespace", "ns", "--limit", "ten"])).toEqual(['--limit: must be a whole number: current value is "ten"']);
    expect(problems(["shop", "--namespace", "ns", "--limit", "1001"])).toEqual(["--limit: must be at most 1000"]);
  });

  test("parseStatusOptions() rejects an APP that is not a DNS label, naming the rule", () => {
    const env = { KUBE_PICO_CD_NAMESPACE: "ns" };
    expect(problems(["Shop"], env)).toEqual([`APP: app name "Shop" is not a DNS label (lowercase letters, digits and '-', starting and ending with a letter or digit)`]);
    expect(problems(["shop-"], env)).toEqual([`APP: app name "shop-" is not a DNS label (lowercase letters, digits and '-', starting and ending with a letter or digit)`]);
    expect(problems(["a".repeat(64)], env)).toEqual([`APP: app name "${"a".repeat(64)}" is longer than 63 characters`]);
  });

  test("parseStatusOptions() takes --limit only with an APP: the overview shows no history", () => {
    expect(problems(["--limit", "5"], { KUBE_PICO_CD_NAMESPACE: "ns" })).toEqual(["--limit: cuts one app's history: give the APP (listener status APP --limit N)"]);
  });

  test("parseStatusOptions() rejects unknown flags and a second argument", () => {
    expect(problems(["--queue", "q"])).toEqual(["--queue: unknown option (see --help)"]);
    expect(problems(["shop", "history"], { KUBE_PICO_CD_NAMESPACE: "ns" })).toEqual(["history: unexpected argument (listener status takes one APP at most; see listener status --help)"]);
  });

  test("parseStatusOptions() needs no namespace for --help", () => {
    expect(parseStatusOptions(["--help"], {}, noFile).help).toBe(true);
  });
});

const shopCurrent: CurrentBuild = {
  build: { id: "shop-1234567-42-1", timestampMs: 1_764_102_000_000, commit: "f00dfeedbeef0000" },
  digest: "cd".repeat(32),
  appliedAt: "2025-11-25T21:00:00.123Z",
  messageId: "m-7",
  objectCount: 5,
};

describe("currentHealth()", () => {
  test("currentHealth() is the verdict of the newest applied outcome of the current build, past later outcomes of other builds", () => {
    const history: Outcome[] = [
      { result: "failed", time: "2025-11-25T21:05:00Z", buildId: "shop-next", error: "boom" },
      { result: "duplicate", time: "2025-11-25T21:01:00Z", buildId: shopCurrent.build.id },
      { result: "applied", time: "2025-11-25T21:00:00Z", buildId: shopCurrent.build.id, digest: shopCurrent.digest, health: { status: "Degraded", durationMs: 1, checked: 1 } },
      { result: "applied", time: "2025-11-25T20:00:00Z", buildId: shopCurrent.build.id, digest: shopCurrent.digest, health: { status: "Healthy", durationMs: 1, checked: 1 } },
    ];
    expect(currentHealth({ current: shopCurrent, history })).toBe("Degraded");
  });

  test("currentHealth() is null with no current build, no recorded verdict, or an applied outcome of another digest only", () => {
    expect(currentHealth({ current: null, history: record.history })).toBeNull();
    expect(currentHealth({ current: shopCurrent, history: [{ result: "applied", time: "t", buildId: shopCurrent.build.id }] })).toBeNull();
    expect(currentHealth({ current: shopCurrent, history: [{ result: "applied", time: "t", buildId: shopCurrent.build.id, digest: "other", health: { status: "Healthy", durationMs: 1, checked: 1 } }] })).toBeNull();
  });
});

describe("appOverview(), formatOverview() and overviewJson()", () => {
  const inflight: InFlightBuild = {
    build: { id: "shop-next", timestampMs: 1_764_102_100_000 },
    digest: "ef".repeat(32),
    messageId: "m-8",
    objectCount: 6,
    startedAt: "2025-11-25T21:05:00.000Z",
    holder: "kube-pico-cd-7f9c-abcde",
    inventory: [{ group: "apps", kind: "Deployment", namespace: "shop", name: "web" }],
  };
  const shopRecord: StoredRecord = {
    resourceVersion: "930",
    current: shopCurrent,
    inflight,
    inventory: [],
    history: [
      { result: "failed", time: "2025-11-25T21:05:00Z", buildId: "shop-next", error: "boom" },
      { result: "applied", time: "2025-11-25T21:00:00Z", buildId: shopCurrent.build.id, digest: shopCurrent.digest, health: { status: "Healthy", durationMs: 1, checked: 1 } },
    ],
  };
  const listed: ListedRecord[] = [
    { app: "default", name: "kube-pico-cd-state", record },
    { app: "empty", name: "kube-pico-cd-state-empty", record: { current: null, inflight: null, inventory: [], history: [], resourceVersion: "3" } },
    { app: "shop", name: "kube-pico-cd-state-shop", record: shopRecord },
    { app: "zz", name: "kube-pico-cd-state-zz", error: "Cannot read the version record ConfigMap kube-pico-cd/kube-pico-cd-state-zz: Cannot decode the version record as it has no 'format' key: its keys are x" },
  ];

  test("formatOverview() prints one aligned row per app: current build, short commit, last result, health, applied time, build in flight", () => {
    expect(formatOverview(listed.map(appOverview), "kube-pico-cd")).toBe(
      [
        "Version records in namespace kube-pico-cd: 4 apps (listener status APP shows one)",
        "",
        "APP      CURRENT            COMMIT   RESULT   HEALTH   APPLIED AT            IN FLIGHT",
        "default  rollback-0a1b2c3   0a1b2c3  applied  Healthy  2025-11-25T20:26:41Z  -",
        "empty    none               -        -        -        -                     -",
        "shop     shop-1234567-42-1  f00dfee  failed   Healthy  2025-11-25T21:00:00Z  shop-next",
        "zz       unreadable         -        -        -        -                     -",
        "",
      ].join("\n"),
    );
  });

  test("formatOverview() cuts long build ids and says when there is no record at all", () => {
    const long = `build-${"y".repeat(40)}`;
    const lines = formatOverview([appOverview({ app: "a", name: "s-a", record: { ...record, current: { ...record.current!, build: { id: long, timestampMs: 0 } }, history: [] } })], "ns").split("\n");
    expect(lines[0]).toBe("Version records in namespace ns: 1 app (listener status APP shows one)");
    expect(lines[3]).toBe(`a    build-${"y".repeat(25)}…  -       -       -       2025-11-25T20:26:41Z  -`);
    expect(formatOverview([], "ns")).toBe("No version records in namespace ns yet: the listener has not recorded any outcome there.\n");
  });

  test("overviewJson() prints an array with every field of each app, the in-flight build without its inventory", () => {
    const [, , shop, zz] = JSON.parse(overviewJson(listed.map(appOverview))) as unknown[];
    const { inventory: _dropped, ...inflightShown } = inflight;
    expect(shop).toEqual({
      app: "shop",
      configMap: "kube-pico-cd-state-shop",
      resourceVersion: "930",
      current: shopCurrent,
      health: "Healthy",
      lastOutcome: shopRecord.history[0],
      inflight: inflightShown,
      error: null,
    });
    expect(zz).toEqual({ app: "zz", configMap: "kube-pico-cd-state-zz", resourceVersion: null, current: null, health: null, lastOutcome: null, inflight: null, error: (listed[3] as { error: string }).error });
    expect(overviewJson([])).toBe("[]\n");
  });
});

describe("runStatus()", () => {
  const run = async (argv: string[]) => {
    const out: string[] = [];
    const err: string[] = [];
    const code = await runStatus(argv, {}, { stdout: (t) => out.push(t), stderr: (t) => err.push(t), readNamespaceFile: noFile });
    return { code, out: out.join(""), err: err.join("") };
  };

  test("runStatus() exits 1 with one line per problem on bad options", async () => {
    expect(await run(["shop", "--namespace", "ns", "--limit=-3", "--state-configmap", "A"])).toEqual({
      code: 1,
      out: "",
      err: "listener status: --state-configmap: must be a Kubernetes object name (lowercase letters, digits, '-', '.')\nlistener status: --limit: must be at least 1\n",
    });
  });

  test("runStatus() exits 1 on an APP that is not a DNS label", async () => {
    expect(await run(["My_App", "--namespace", "ns"])).toEqual({
      code: 1,
      out: "",
      err: `listener status: APP: app name "My_App" is not a DNS label (lowercase letters, digits and '-', starting and ending with a letter or digit)\n`,
    });
  });

  test("runStatus() puts a problem that spans lines on one line", async () => {
    expect(await run(["shop", "--namespace", "ns", "--limit", "-3"])).toEqual({
      code: 1,
      out: "",
      err: "listener status: --limit: a value that starts with a dash must be attached with '=' (--limit=VALUE): current value is \"-3\"\n",
    });
  });

  test("runStatus() exits 2 naming what it reads and the reason when the kubeconfig cannot be read", async () => {
    const overview = await run(["--namespace", "ns", "--kubeconfig", "/nonexistent/kubeconfig"]);
    expect(overview.code).toBe(2);
    expect(overview.out).toBe("");
    expect(overview.err).toStartWith("listener status: Cannot read the version records in namespace ns: ");
    expect(overview.err).toContain("/nonexistent/kubeconfig");
    expect(overview.err.trimEnd().split("\n")).toHaveLength(1);
    const one = await run(["shop", "--namespace", "ns", "--kubeconfig", "/nonexistent/kubeconfig"]);
    expect(one.code).toBe(2);
    expect(one.err).toStartWith("listener status: Cannot read the version record ConfigMap ns/kube-pico-cd-state-shop: ");
  });

  test("runStatus() prints the help with every option and the exit codes", async () => {
    const result = await run(["--help"]);
    expect(result.code).toBe(0);
    expect(result.out).toBe(`${statusHelpText()}\n`);
    expect(result.out).toStartWith("Usage: listener status [APP] [options]\n");
    for (const flag of ["--namespace", "--state-configmap", "--kubeconfig", "--context", "--json", "--limit", "--help"]) expect(result.out).toContain(flag);
    expect(result.out).toContain("Exit codes: 0 shown (also when there is no record yet); 1 invalid options or APP; 2 a record");
    expect(result.out).not.toContain("--kubectl");
  });
});
