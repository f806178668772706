/**
 * `listener status` against the real API server: the history of a deploy sequence with a
 * failed build and a rollback, in order, the current build, the JSON form, an unfinished
 * deploy, a namespace without a record, a kubeconfig context, and an API server that cannot
 * be reached.
 */
import { describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parse, stringify } from "yaml";
import type { KubeObject } from "../../lib/manifests/bundle.ts";
import { emptyRecord, writeRecord, type InFlightBuild } from "../../lib/kube/record.ts";
import { createNamespace, createQueue, testEnv } from "../env/testenv.ts";
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

    const shown = await status(["--namespace", ns, "--kubeconfig", env.kubeconfig]);
    expect(shown.stderr).toBe("");
    expect(shown.code).toBe(0);
    const lines = shown.stdout.split("\n");
    expect(lines.slice(0, 7)).toEqual([
      `Version record ${ns}/kube-pico-cd-state`,
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
    expect(rows[1]?.[8]).toStartWith('kubectl: The Service "web" is invalid: spec.ports[0].port: Invalid value: 70000');
    expect(rows[1]?.[8]?.length).toBeLessThanOrEqual(80);

    const limited = await status(["--namespace", ns, "--kubeconfig", env.kubeconfig, "--limit", "2"]);
    expect(historyRows(limited.stdout).map((r) => r[1])).toEqual([`rollback-${commitA.slice(0, 7)}`, "build-c"]);

    const json = await status(["--namespace", ns, "--kubeconfig", env.kubeconfig, "--json"]);
    expect(json.code).toBe(0);
    const parsed = JSON.parse(json.stdout) as { namespace: string; configMap: string; resourceVersion: string | null; current: unknown; inflight: unknown; inventory: unknown; history: unknown };
    expect(parsed).toEqual({ namespace: ns, configMap: "kube-pico-cd-state", resourceVersion: expect.any(String), current: record!.current, inflight: null, inventory: record!.inventory, history: record!.history });
    expect(record?.history.map((h) => h.commit)).toEqual([commitA, commitC, commitB, commitA]);
  }, 120_000);

  test("status of a namespace without a record says so and exits 0", async () => {
    const env = await testEnv();
    const ns = await createNamespace("status-none");
    const { code, stdout, stderr } = await status(["--namespace", ns, "--kubeconfig", env.kubeconfig]);
    expect({ code, stdout, stderr }).toEqual({ code: 0, stdout: `No version record ${ns}/kube-pico-cd-state yet: the listener has not recorded any outcome in this namespace.\n`, stderr: "" });
    const json = await status(["--namespace", ns, "--kubeconfig", env.kubeconfig, "--json"]);
    expect(JSON.parse(json.stdout)).toEqual({ namespace: ns, configMap: "kube-pico-cd-state", resourceVersion: null, current: null, inflight: null, inventory: [], history: [] });
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

    const shown = await status(["--namespace", ns, "--kubeconfig", env.kubeconfig]);
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
    const json = await status(["--namespace", ns, "--kubeconfig", env.kubeconfig, "--json"]);
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
    expect({ code: shown.code, stdout: shown.stdout, stderr: shown.stderr }).toEqual({ code: 0, stdout: `No version record ${ns}/kube-pico-cd-state yet: the listener has not recorded any outcome in this namespace.\n`, stderr: "" });
  });

  test("status against an API server that cannot be reached exits 2 naming the record and the server", async () => {
    const env = await testEnv();
    const port = await closedPort();
    const kubeconfig = kubeconfigFor(port);
    const shown = await status(["--namespace", "kube-pico-cd", "--kubeconfig", kubeconfig]);
    expect(shown.code).toBe(2);
    expect(shown.stdout).toBe("");
    expect(shown.stderr).toStartWith("listener status: Cannot read the version record ConfigMap kube-pico-cd/kube-pico-cd-state: Cannot reach the Kubernetes API server for GET /api/v1/namespaces/kube-pico-cd/configmaps/kube-pico-cd-state: ");
    expect(shown.stderr).toContain(`127.0.0.1:${port}`);
    expect(shown.stderr).toContain("ECONNREFUSED");
    expect(shown.stderr.trimEnd().split("\n")).toHaveLength(1);
  });
});
