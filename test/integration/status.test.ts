/**
 * `listener status` against the real API server: the overview of several apps' records (one
 * written before apps existed), a record that does not decode beside good ones, the history of
 * a deploy sequence with a failed build and a rollback, in order, the current build, the JSON
 * form, an unfinished deploy, a namespace without a record, a kubeconfig context, a user who
 * may not list, and an API server that cannot be reached.
 */
import { describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parse, stringify } from "yaml";
import type { KubeObject } from "../../lib/manifests/bundle.ts";
import { emptyRecord, recordApplied, recordOutcome, writeRecord, type InFlightBuild, type VersionRecord } from "../../lib/kube/record.ts";
import { RECORD_APP_LABEL, RECORD_LABELS } from "../../lib/listener/apps.ts";
import { createNamespace, createQueue, kubectl, testEnv } from "../env/testenv.ts";
import { configMap, sendBundle } from "../helpers/bundles.ts";
import { testKubeApi } from "../helpers/kube-api.ts";
import { runListenerOnce } from "../helpers/listener-process.ts";
import { readRecord } from "../helpers/record.ts";
import { runProcess, type ProcessRun } from "../helpers/run.ts";
import { closedPort, kubeconfigFor } from "../helpers/unreachable.ts";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

/** Passes the bundle's checks and kubectl's schema, and is rejected by the API server: no port 70000. */
const invalidService = (ns: string): KubeObject =>
  ({ apiVersion: "v1", kind: "Service", metadata: { name: "web", namespace: ns }, spec: { selector: { app: "web" }, ports: [{ port: 70_000 }] } }) as unknown as KubeObject;

const commitA = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678";
const commitB = "b2c3d4e5f60718293a4b5c6d7e8f9012345678a1";
const commitC = "c3d4e5f60718293a4b5c6d7e8f9012345678a1b2";

/** Runs `listener.ts status ARGS` with a clean environment, as an operator would. */
function status(args: readonly string[]): Promise<ProcessRun> {
  return runProcess([process.execPath, join(root, "listener.ts"), "status", ...args], { env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: process.env.HOME ?? "/tmp" } });
}

/** The cells of each history row: columns are two or more spaces apart, cells never are. */
function historyRows(text: string): string[][] {
  const lines = text.split("\n");
  const header = lines.findIndex((l) => l.startsWith("TIME  "));
  expect(header).toBeGreaterThan(0);
  return lines.slice(header + 1).filter((l) => l !== "").map((l) => l.split(/ {2,}/));
}

describe("listener status", () => {
  test("after A, B, a failed C and a rollback to A's commit, status shows the rollback as current and every outcome newest first", async () => {
    const env = await testEnv();
    const ns = await createNamespace("status");
    const queue = await createQueue();
    const build = (id: string, commit: string) => ({ id, timestampMs: Date.now(), commit, ref: "refs/heads/main", repository: "example/shop", url: `https://github.com/example/shop/actions/runs/${id}` });
    const deploy = async (objects: KubeObject[], info: ReturnType<typeof build>, extraEnv: Record<string, string> = {}) => {
      const sent = await sendBundle(queue.url, objects, info);
      expect((await runListenerOnce({ queueUrl: queue.url, namespace: ns, env: extraEnv })).code).toBe(0);
      return sent;
    };
    const appA = [configMap(ns, "app", { version: "A" })];
    await deploy(appA, build("build-a", commitA));
    await deploy([configMap(ns, "app", { version: "B" }), configMap(ns, "flags", { beta: "on" })], build("build-b", commitB));
    // The failed message waits in the queue long enough not to come back during this test.
    await deploy([configMap(ns, "app", { version: "C" }), invalidService(ns)], build("build-c", commitC), { KUBE_PICO_CD_RETRY_BASE_SECONDS: "600", KUBE_PICO_CD_RETRY_MAX_SECONDS: "600" });
    // The rollback: A's commit and objects again, as a new build with a newer timestamp.
    const rollback = await deploy(appA, build(`rollback-${commitA.slice(0, 7)}`, commitA));

    const record = await readRecord(ns);
    expect(record?.history.map((h) => [h.result, h.buildId])).toEqual([
      ["applied", rollback.build.id],
      ["failed", "build-c"],
      ["applied", "build-b"],
      ["applied", "build-a"],
    ]);

    const shown = await status(["default", "--namespace", ns, "--kubeconfig", env.kubeconfig]);
    expect(shown.stderr).toBe("");
    expect(shown.code).toBe(0);
    const lines = shown.stdout.split("\n");
    expect(lines.slice(0, 7)).toEqual([
      `Version record ${ns}/kube-pico-cd-state of app default`,
      "",
      `Current build: rollback-${commitA.slice(0, 7)}`,
      `  commit:     ${commitA}`,
      "  ref:        refs/heads/main",
      "  repository: example/shop",
      `  run:        https://github.com/example/shop/actions/runs/rollback-${commitA.slice(0, 7)}`,
    ]);
    expect(lines).toContain("  objects:    1");
    expect(lines).toContain(`  digest:     ${rollback.digest.slice(0, 12)}…`);
    expect(lines).toContain("History, newest first (4 of 4):");
    expect(lines.find((l) => l.startsWith("TIME"))).toBe("TIME                  BUILD             COMMIT   RESULT   HEALTH   DURATION  APPLIED  PRUNED  MESSAGE");

    const rows = historyRows(shown.stdout);
    const duration = /^(\d+ms|\d+\.\ds|\dm\d\ds)$/;
    for (const row of rows) {
      expect(row[0]).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
      expect(row[5]).toMatch(duration);
    }
    // BUILD, COMMIT, RESULT, APPLIED, PRUNED: the rollback prunes what B added.
    expect(rows.map((r) => [r[1], r[2], r[3], r[6], r[7]])).toEqual([
      [`rollback-${commitA.slice(0, 7)}`, commitA.slice(0, 7), "applied", "1", "1"],
      ["build-c", commitC.slice(0, 7), "failed", "-", "-"],
      ["build-b", commitB.slice(0, 7), "applied", "2", "0"],
      ["build-a", commitA.slice(0, 7), "applied", "1", "0"],
    ]);
    // A failed apply names the object the API server refuses first, then kubectl's text.
    expect(rows[1]?.[8]).toStartWith(`1 object refused by the API server: Service ${ns}/web: spec.ports[0`);
    expect(rows[1]?.[8]?.length).toBeLessThanOrEqual(80);

    const limited = await status(["default", "--namespace", ns, "--kubeconfig", env.kubeconfig, "--limit", "2"]);
    expect(historyRows(limited.stdout).map((r) => r[1])).toEqual([`rollback-${commitA.slice(0, 7)}`, "build-c"]);

    const json = await status(["default", "--namespace", ns, "--kubeconfig", env.kubeconfig, "--json"]);
    expect(json.code).toBe(0);
    const parsed = JSON.parse(json.stdout) as { app: string; namespace: string; configMap: string; resourceVersion: string | null; current: unknown; inflight: unknown; inventory: unknown; history: unknown };
    expect(parsed).toEqual({ app: "default", namespace: ns, configMap: "kube-pico-cd-state", resourceVersion: expect.any(String), current: record!.current, inflight: null, inventory: record!.inventory, history: record!.history });
    expect(record?.history.map((h) => h.commit)).toEqual([commitA, commitC, commitB, commitA]);

    // The record the listener wrote is the default app's in the overview.
    const overview = await status(["--namespace", ns, "--kubeconfig", env.kubeconfig]);
    expect(overview.code).toBe(0);
    expect(overview.stdout.split("\n").slice(3, 5).map((l) => l.split(/ {2,}/).slice(0, 4))).toEqual([["default", `rollback-${commitA.slice(0, 7)}`, commitA.slice(0, 7), "applied"], [""]]);
  }, 120_000);

  test("status of a namespace without a record says so and exits 0, for every app and for one", async () => {
    const env = await testEnv();
    const ns = await createNamespace("status-none");
    const overview = await status(["--namespace", ns, "--kubeconfig", env.kubeconfig]);
    expect({ code: overview.code, stdout: overview.stdout, stderr: overview.stderr }).toEqual({ code: 0, stdout: `No version records in namespace ${ns} yet: the listener has not recorded any outcome there.\n`, stderr: "" });
    expect((await status(["--namespace", ns, "--kubeconfig", env.kubeconfig, "--json"])).stdout).toBe("[]\n");
    const { code, stdout, stderr } = await status(["shop", "--namespace", ns, "--kubeconfig", env.kubeconfig]);
    expect({ code, stdout, stderr }).toEqual({
      code: 0,
      stdout: `No version record ${ns}/kube-pico-cd-state-shop of app shop yet: the listener has not recorded any outcome of this app (listener status lists the apps that have one).\n`,
      stderr: "",
    });
    const json = await status(["default", "--namespace", ns, "--kubeconfig", env.kubeconfig, "--json"]);
    expect(JSON.parse(json.stdout)).toEqual({ app: "default", namespace: ns, configMap: "kube-pico-cd-state", resourceVersion: null, current: null, inflight: null, inventory: [], history: [] });
  });

  test("status shows a deploy that started and was not confirmed, in the table and in the JSON", async () => {
    const env = await testEnv();
    const ns = await createNamespace("status-inflight");
    const api = await testKubeApi();
    const inflight: InFlightBuild = {
      build: { id: "build-9", timestampMs: 1_764_102_100_000, commit: commitB },
      digest: "cd".repeat(32),
      messageId: "m-9",
      objectCount: 2,
      startedAt: "2025-11-25T20:30:00.000Z",
      holder: "kube-pico-cd-7f9c-abcde",
      inventory: [{ group: "", kind: "ConfigMap", namespace: ns, name: "app" }],
    };
    await writeRecord({ ...emptyRecord(), inflight }, null, { api, namespace: ns });
    api.close();

    const shown = await status(["default", "--namespace", ns, "--kubeconfig", env.kubeconfig]);
    expect(shown.code).toBe(0);
    expect(shown.stdout.split("\n").slice(2, 11)).toEqual([
      "Current build: none (no build applied yet)",
      "",
      "In-flight deploy: build-9 (started, not confirmed: still applying, or interrupted and settled by the next deploy)",
      `  commit:     ${commitB}`,
      "  started at: 2025-11-25T20:30:00.000Z",
      "  holder:     kube-pico-cd-7f9c-abcde",
      "  objects:    2",
      "  digest:     cdcdcdcdcdcd…",
      "",
    ]);
    const json = await status(["default", "--namespace", ns, "--kubeconfig", env.kubeconfig, "--json"]);
    expect((JSON.parse(json.stdout) as { inflight: unknown }).inflight).toEqual(inflight);
  });

  test("status --context reads through the named context instead of the current one", async () => {
    const env = await testEnv();
    const ns = await createNamespace("status-context");
    // The current context points where nothing listens; the "test" context is the real server.
    const config = parse(readFileSync(env.kubeconfig, "utf8")) as { clusters: { name: string; cluster: Record<string, unknown> }[]; contexts: { name: string; context: Record<string, unknown> }[]; "current-context": string };
    config.clusters.push({ name: "closed", cluster: { server: `https://127.0.0.1:${await closedPort()}`, "insecure-skip-tls-verify": true } });
    config.contexts.push({ name: "closed", context: { ...config.contexts[0]!.context, cluster: "closed" } });
    config["current-context"] = "closed";
    const kubeconfig = join(mkdtempSync(join(tmpdir(), "kpcd-status-")), "kubeconfig");
    writeFileSync(kubeconfig, stringify(config));

    expect((await status(["--namespace", ns, "--kubeconfig", kubeconfig])).code).toBe(2);
    const shown = await status(["--namespace", ns, "--kubeconfig", kubeconfig, "--context", config.contexts[0]!.name]);
    expect({ code: shown.code, stdout: shown.stdout, stderr: shown.stderr }).toEqual({ code: 0, stdout: `No version records in namespace ${ns} yet: the listener has not recorded any outcome there.\n`, stderr: "" });
  });

  test("status against an API server that cannot be reached exits 2 naming the record and the server", async () => {
    const env = await testEnv();
    const port = await closedPort();
    const kubeconfig = kubeconfigFor(port);
    const shown = await status(["default", "--namespace", "kube-pico-cd", "--kubeconfig", kubeconfig]);
    expect(shown.code).toBe(2);
    expect(shown.stdout).toBe("");
    expect(shown.stderr).toStartWith("listener status: Cannot read the version record ConfigMap kube-pico-cd/kube-pico-cd-state: Cannot reach the Kubernetes API server for GET /api/v1/namespaces/kube-pico-cd/configmaps/kube-pico-cd-state: ");
    expect(shown.stderr).toContain(`127.0.0.1:${port}`);
    expect(shown.stderr).toContain("ECONNREFUSED");
    expect(shown.stderr.trimEnd().split("\n")).toHaveLength(1);
    const overview = await status(["--namespace", "kube-pico-cd", "--kubeconfig", kubeconfig]);
    expect({ code: overview.code, stdout: overview.stdout }).toEqual({ code: 2, stdout: "" });
    expect(overview.stderr).toStartWith(
      "listener status: Cannot list the version records in namespace kube-pico-cd (ConfigMaps labelled app.kubernetes.io/managed-by=kube-pico-cd,app.kubernetes.io/component=state): Cannot reach the Kubernetes API server for GET /api/v1/namespaces/kube-pico-cd/configmaps",
    );
    expect(overview.stderr.trimEnd().split("\n")).toHaveLength(1);
  });

  test("status without APP shows one row per app, the record written before apps as the default app's, and skips another base's ConfigMap with a note", async () => {
    const env = await testEnv();
    const ns = await createNamespace("status-apps");
    const api = await testKubeApi();
    const applied = (id: string, commit: string, health: "Healthy" | "Degraded", record: VersionRecord = emptyRecord()): VersionRecord =>
      recordApplied(record, {
        current: { build: { id, timestampMs: 1_764_102_000_000, commit }, digest: `sha256:${id}`, appliedAt: "2025-11-25T20:26:41.250Z", messageId: `m-${id}`, objectCount: 2 },
        inventory: [],
        outcome: { result: "applied", time: "2025-11-25T20:26:41.250Z", buildId: id, commit, digest: `sha256:${id}`, objects: 2, health: { status: health, durationMs: 10, checked: 1 } },
      });
    const inflight: InFlightBuild = {
      build: { id: "web-2", timestampMs: 1_764_102_100_000 },
      digest: "sha256:web-2",
      messageId: "m-web-2",
      objectCount: 3,
      startedAt: "2025-11-25T20:40:00.000Z",
      holder: "kube-pico-cd-7f9c-abcde",
      inventory: [{ group: "", kind: "ConfigMap", namespace: "web", name: "app" }],
    };
    const web = { ...recordOutcome(applied("web-1", commitB, "Degraded"), { result: "failed", time: "2025-11-25T20:30:00.000Z", buildId: "web-bad", error: "boom" }), inflight };
    try {
      // Written as a listener serving one app wrote it: the record labels, no app label.
      await writeRecord(applied("legacy-1", commitA, "Healthy"), null, { api, namespace: ns });
      await writeRecord(applied("shop-1", commitC, "Healthy"), null, { api, namespace: ns, name: "kube-pico-cd-state-shop", app: "shop" });
      await writeRecord(web, null, { api, namespace: ns, name: "kube-pico-cd-state-web", app: "web" });
      // Another listener in the same namespace, with another base name.
      await writeRecord(applied("other-1", commitA, "Healthy"), null, { api, namespace: ns, name: "other-state" });
    } finally {
      api.close();
    }
    const appLabel = async (name: string) => {
      const got = await kubectl(["get", "configmap", name, "-n", ns, "-o", "json"]);
      return (JSON.parse(got.stdout) as { metadata: { labels?: Record<string, string> } }).metadata.labels?.[RECORD_APP_LABEL];
    };
    expect([await appLabel("kube-pico-cd-state"), await appLabel("kube-pico-cd-state-shop"), await appLabel("kube-pico-cd-state-web")]).toEqual([undefined, "shop", "web"]);

    const shown = await status(["--namespace", ns, "--kubeconfig", env.kubeconfig]);
    expect(shown.code).toBe(0);
    expect(shown.stdout).toBe(
      [
        `Version records in namespace ${ns}: 3 apps (listener status APP shows one)`,
        "",
        "APP      CURRENT   COMMIT   RESULT   HEALTH    APPLIED AT            IN FLIGHT",
        `default  legacy-1  ${commitA.slice(0, 7)}  applied  Healthy   2025-11-25T20:26:41Z  -`,
        `shop     shop-1    ${commitC.slice(0, 7)}  applied  Healthy   2025-11-25T20:26:41Z  -`,
        `web      web-1     ${commitB.slice(0, 7)}  failed   Degraded  2025-11-25T20:26:41Z  web-2`,
        "",
      ].join("\n"),
    );
    expect(shown.stderr).toBe(
      `listener status: note: ConfigMap ${ns}/other-state carries the version record labels but is no record of base name kube-pico-cd-state (neither kube-pico-cd-state nor kube-pico-cd-state-<app>, and no valid ${RECORD_APP_LABEL} label): skipped; another listener's? (--state-configmap names the base)\n`,
    );

    const json = await status(["--namespace", ns, "--kubeconfig", env.kubeconfig, "--json"]);
    expect(json.code).toBe(0);
    const apps = JSON.parse(json.stdout) as Record<string, unknown>[];
    expect(apps.map((a) => [a["app"], a["configMap"], (a["current"] as { build: { id: string } }).build.id, a["health"], (a["lastOutcome"] as { result: string }).result, a["error"]])).toEqual([
      ["default", "kube-pico-cd-state", "legacy-1", "Healthy", "applied", null],
      ["shop", "kube-pico-cd-state-shop", "shop-1", "Healthy", "applied", null],
      ["web", "kube-pico-cd-state-web", "web-1", "Degraded", "failed", null],
    ]);
    const { inventory: _inventory, ...inflightShown } = inflight;
    expect(apps[2]).toEqual({ app: "web", configMap: "kube-pico-cd-state-web", resourceVersion: expect.any(String), current: web.current, health: "Degraded", lastOutcome: web.history[0], inflight: inflightShown, error: null });

    // The other base's listener sees its own record, and nothing of this one's.
    const other = await status(["--namespace", ns, "--kubeconfig", env.kubeconfig, "--state-configmap", "other-state", "--json"]);
    expect((JSON.parse(other.stdout) as { app: string; configMap: string }[]).map((a) => [a.app, a.configMap])).toEqual([["default", "other-state"]]);

    // One app at a time: its own record.
    const one = await status(["web", "--namespace", ns, "--kubeconfig", env.kubeconfig]);
    expect(one.code).toBe(0);
    expect(one.stdout.split("\n").slice(0, 3)).toEqual([`Version record ${ns}/kube-pico-cd-state-web of app web`, "", "Current build: web-1"]);
    expect(historyRows(one.stdout).map((r) => [r[1], r[3]])).toEqual([
      ["web-bad", "failed"],
      ["web-1", "applied"],
    ]);
  });

  test("status without APP shows every app beside a record that does not decode, and exits 2 naming it", async () => {
    const env = await testEnv();
    const ns = await createNamespace("status-broken");
    const api = await testKubeApi();
    try {
      await writeRecord(recordOutcome(emptyRecord(), { result: "rejected", time: "2025-11-25T20:00:00.000Z", error: "invalid-json: no" }), null, { api, namespace: ns, name: "kube-pico-cd-state-shop", app: "shop" });
      await api.request({
        method: "POST",
        path: `/api/v1/namespaces/${ns}/configmaps`,
        body: { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "kube-pico-cd-state-broken", labels: { ...RECORD_LABELS, [RECORD_APP_LABEL]: "broken" } }, data: { current: "{" } },
      });
    } finally {
      api.close();
    }
    const shown = await status(["--namespace", ns, "--kubeconfig", env.kubeconfig]);
    expect(shown.code).toBe(2);
    expect(shown.stdout.split("\n").slice(2)).toEqual([
      "APP     CURRENT     COMMIT  RESULT    HEALTH  APPLIED AT  IN FLIGHT",
      "broken  unreadable  -       -         -       -           -",
      "shop    none        -       rejected  -       -           -",
      "",
    ]);
    expect(shown.stderr).toBe(
      `listener status: app broken: Cannot read the version record ConfigMap ${ns}/kube-pico-cd-state-broken: Cannot decode the version record as it has no 'format' key: its keys are current\n`,
    );
    const json = await status(["--namespace", ns, "--kubeconfig", env.kubeconfig, "--json"]);
    expect(json.code).toBe(2);
    expect((JSON.parse(json.stdout) as { app: string; error: string | null }[]).map((a) => [a.app, a.error === null])).toEqual([
      ["broken", false],
      ["shop", true],
    ]);
  });

  test("status without APP by a user who may not list ConfigMaps exits 2 and says what the overview needs", async () => {
    const env = await testEnv();
    const ns = await createNamespace("status-forbidden");
    const shown = await status(["--namespace", ns, "--kubeconfig", env.unprivilegedKubeconfig]);
    expect({ code: shown.code, stdout: shown.stdout }).toEqual({ code: 2, stdout: "" });
    expect(shown.stderr).toStartWith(`listener status: Cannot list the version records in namespace ${ns} (ConfigMaps labelled app.kubernetes.io/managed-by=kube-pico-cd,app.kubernetes.io/component=state): `);
    expect(shown.stderr).toContain("403");
    expect(shown.stderr).toEndWith(`(the overview needs 'list' on ConfigMaps in ${ns}; listener status APP reads one record with 'get' only)\n`);
  });
});
