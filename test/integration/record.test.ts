/** The version record against the real kube-apiserver. */
import { beforeAll, describe, expect, test } from "bun:test";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { KubeApiError, KubeUnreachableError, StateConflictError, StateReadError } from "../../lib/errors.ts";
import { KubeApi } from "../../lib/kube/api.ts";
import { emptyRecord, readRecord, recordApplied, recordDataBytes, RECORD_LIMITS, recordOutcome, updateRecord, writeRecord, type VersionRecord } from "../../lib/kube/record.ts";
import { RECORD_APP_LABEL, RECORD_LABELS } from "../../lib/listener/apps.ts";
import { createNamespace, createQueue, kubectl, testEnv } from "../env/testenv.ts";
import { configMap, sendBundle } from "../helpers/bundles.ts";
import { startListener } from "../helpers/listener-process.ts";
import { readRecord as readRecordAsOperator } from "../helpers/record.ts";
import { runProcess, type ProcessRun } from "../helpers/run.ts";
import { until } from "../helpers/until.ts";
import { connectionOf } from "../helpers/kube-api.ts";
import { closedPort } from "../helpers/unreachable.ts";

let admin: KubeApi;
let nobody: KubeApi;

beforeAll(async () => {
  const env = await testEnv();
  admin = new KubeApi(connectionOf(env.kubeconfig));
  nobody = new KubeApi(connectionOf(env.unprivilegedKubeconfig));
}, 300_000);

const applied = (n: number, record: VersionRecord = emptyRecord()): VersionRecord =>
  recordApplied(record, {
    current: {
      build: { id: `build-${n}`, timestampMs: 1_700_000_000_000 + n, commit: "0123abcd" },
      digest: `sha256:${n}`,
      appliedAt: "2024-05-01T12:00:00.000Z",
      messageId: `m-${n}`,
      objectCount: 1,
    },
    inventory: [{ group: "", kind: "ConfigMap", namespace: "app", name: `cm-${n}` }],
    outcome: { result: "applied", time: "2024-05-01T12:00:00.000Z", buildId: `build-${n}`, durationMs: 10 },
  });

describe("readRecord() and writeRecord() against kube-apiserver", () => {
  test("readRecord() of a namespace without the ConfigMap is the empty record with no resourceVersion", async () => {
    const namespace = await createNamespace("state");
    expect(await readRecord({ api: admin, namespace })).toEqual({ ...emptyRecord(), resourceVersion: null });
  });

  test("writeRecord() creates the ConfigMap and readRecord() returns the same record", async () => {
    const namespace = await createNamespace("state");
    const record = applied(1);
    const rv = await writeRecord(record, null, { api: admin, namespace });
    const read = await readRecord({ api: admin, namespace });
    expect(read).toEqual({ ...record, resourceVersion: rv });
    const keys = await kubectl(["get", "configmap", "kube-pico-cd-state", "-n", namespace, "-o", "jsonpath={.data}"]);
    expect(Object.keys(JSON.parse(keys.stdout)).sort()).toEqual(["current", "format", "history", "inventory", "marks"]);
  });

  test("writeRecord() with the resourceVersion read replaces the record", async () => {
    const namespace = await createNamespace("state");
    const options = { api: admin, namespace, name: "custom-name" };
    await writeRecord(applied(1), null, options);
    const first = await readRecord(options);
    const second = applied(2, first);
    const rv = await writeRecord(second, first.resourceVersion, options);
    expect(await readRecord(options)).toEqual({ ...second, resourceVersion: rv });
    expect((await readRecord(options)).history.map((o) => o.buildId)).toEqual(["build-2", "build-1"]);
  });

  test("writeRecord() with a stale resourceVersion throws StateConflictError and leaves the newer record", async () => {
    const namespace = await createNamespace("state");
    const options = { api: admin, namespace };
    await writeRecord(applied(1), null, options);
    const seenByA = await readRecord(options);
    const seenByB = await readRecord(options);
    await writeRecord(applied(3, seenByA), seenByA.resourceVersion, options);
    const error = await writeRecord(applied(2, seenByB), seenByB.resourceVersion, options).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StateConflictError);
    expect((error as StateConflictError).message).toBe(
      `Cannot write the version record ConfigMap ${namespace}/kube-pico-cd-state as it changed since resourceVersion ${seenByB.resourceVersion} was read`,
    );
    expect((await readRecord(options)).current?.build.id).toBe("build-3");
  });

  test("writeRecord() of a first record throws StateConflictError when another writer created it meanwhile", async () => {
    const namespace = await createNamespace("state");
    const options = { api: admin, namespace };
    await writeRecord(applied(1), null, options);
    const error = await writeRecord(recordOutcome(emptyRecord(), { result: "rejected", time: "2024-05-01T12:00:00.000Z" }), null, options).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(StateConflictError);
    expect((await readRecord(options)).current?.build.id).toBe("build-1");
  });

  test("writeRecord() throws StateConflictError when the record was deleted since it was read", async () => {
    const namespace = await createNamespace("state");
    const options = { api: admin, namespace };
    await writeRecord(applied(1), null, options);
    const seen = await readRecord(options);
    await kubectl(["delete", "configmap", "kube-pico-cd-state", "-n", namespace]);
    await expect(writeRecord(applied(2, seen), seen.resourceVersion, options)).rejects.toBeInstanceOf(StateConflictError);
  });

  test("readRecord() by a user without rights throws StateReadError, not 'no record'", async () => {
    const namespace = await createNamespace("state");
    await writeRecord(applied(1), null, { api: admin, namespace });
    const error = (await readRecord({ api: nobody, namespace }).catch((e: unknown) => e)) as StateReadError;
    expect(error).toBeInstanceOf(StateReadError);
    expect(error.cause).toBeInstanceOf(KubeApiError);
    expect((error.cause as KubeApiError).status.reason).toBe("Forbidden");
    expect(error.message).toStartWith(`Cannot read the version record ConfigMap ${namespace}/kube-pico-cd-state: `);
  });

  test("readRecord() by a user without rights throws StateReadError even when the record does not exist", async () => {
    const namespace = await createNamespace("state");
    await expect(readRecord({ api: nobody, namespace })).rejects.toBeInstanceOf(StateReadError);
  });

  test("readRecord() when the API server cannot be reached throws StateReadError", async () => {
    const namespace = await createNamespace("state");
    const unreachable = new KubeApi({ ...admin.connection, server: `https://127.0.0.1:${await closedPort()}` });
    const error = (await readRecord({ api: unreachable, namespace }).catch((e: unknown) => e)) as StateReadError;
    expect(error).toBeInstanceOf(StateReadError);
    expect(error.cause).toBeInstanceOf(KubeUnreachableError);
  });

  test("readRecord() of a ConfigMap whose content does not decode throws StateReadError", async () => {
    const namespace = await createNamespace("state");
    const cm = { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "kube-pico-cd-state", namespace }, data: { format: "1", current: "{oops" } };
    expect((await kubectl(["create", "-f", "-"], { stdin: JSON.stringify(cm) })).code).toBe(0);
    const error = (await readRecord({ api: admin, namespace }).catch((e: unknown) => e)) as StateReadError;
    expect(error).toBeInstanceOf(StateReadError);
    expect(error.message).toStartWith(
      `Cannot read the version record ConfigMap ${namespace}/kube-pico-cd-state: Cannot decode the version record as key 'current' is not JSON: `,
    );
  });

  test("readRecord() of a wrong API path (a 404 that names no object) throws StateReadError, not 'no record'", async () => {
    const namespace = await createNamespace("state");
    const prefixed = new KubeApi({ ...admin.connection, server: `${admin.connection.server}/not-the-api` });
    await expect(readRecord({ api: prefixed, namespace })).rejects.toBeInstanceOf(StateReadError);
  });

  test("the in-flight intent is written and read back with its inventory", async () => {
    const namespace = await createNamespace("state");
    const options = { api: admin, namespace };
    const inflight = {
      build: { id: "build-2", timestampMs: 2 },
      digest: "d2",
      messageId: "m-2",
      objectCount: 1,
      startedAt: "2024-05-01T12:00:00.000Z",
      holder: "pod-a",
      inventory: [{ group: "", kind: "ConfigMap", namespace, name: "x" }],
    };
    await writeRecord({ ...applied(1), inflight }, null, options);
    expect((await readRecord(options)).inflight).toEqual(inflight);
  });

  test("updateRecord() retries on a fresh read when another writer won the race, and writes nothing when the change says null", async () => {
    const namespace = await createNamespace("state");
    const options = { api: admin, namespace };
    await writeRecord(applied(1), null, options);
    // A record read before another writer changed it: the first write conflicts, and the
    // change is made again on a fresh read (awaited here, so that the race is always lost).
    const stale = await readRecord(options);
    await writeRecord(recordOutcome(stale, { result: "duplicate", time: "2024-05-01T12:00:00.000Z", buildId: "other" }), stale.resourceVersion, options);
    let calls = 0;
    const written = await updateRecord((record) => {
      calls++;
      return recordOutcome(record, { result: "rejected", time: "2024-05-01T12:00:00.000Z", buildId: `x-${calls}` });
    }, { ...options, initial: stale });
    expect(calls).toBe(2);
    expect(written.history[0]?.buildId).toBe("x-2");
    // The other writer's entry is kept: the change was made on what it wrote.
    expect(written.history.map((entry) => entry.buildId)).toContain("other");
    expect((await readRecord(options)).history[0]?.buildId).toBe("x-2");
    const before = await readRecord(options);
    const unchanged = await updateRecord(() => null, options);
    expect((await readRecord(options)).resourceVersion).toBe(before.resourceVersion);
    expect(unchanged.history).toEqual(before.history);
  });
});

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

/** Runs `listener.ts record ARGS` with a clean environment, as an operator would. */
async function recordCommand(...args: string[]): Promise<ProcessRun> {
  return runProcess([process.execPath, join(root, "listener.ts"), "record", ...args], { env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: process.env.HOME ?? "/tmp" } });
}

const rawData = async (namespace: string): Promise<{ resourceVersion: string; data: Record<string, string> }> => {
  const got = await kubectl(["get", "configmap", "kube-pico-cd-state", "-n", namespace, "-o", "json"]);
  const cm = JSON.parse(got.stdout) as { metadata: { resourceVersion: string }; data: Record<string, string> };
  return { resourceVersion: cm.metadata.resourceVersion, data: cm.data };
};

describe("repairing the record with listener record", () => {
  test("a record holding a build stamped in the future, as written before the repair existed, is repaired with forget-build --future, and the next genuine build deploys", async () => {
    const env = await testEnv();
    const ns = await createNamespace("repair");
    const queue = await createQueue();
    const future = 9_999_999_999_999; // 2286-11-20
    const genuineMs = Date.now() - 3_600_000;
    // What the future build left live: ours (our field manager), and named in the inventory.
    const evil = configMap(ns, "evil", { v: "future" });
    expect((await kubectl(["apply", "--server-side", "--field-manager=kube-pico-cd", "-f", "-"], { stdin: JSON.stringify(evil) })).code).toBe(0);
    // Format 1 as the listener wrote it before the in-flight intent and the bounds: no inflight key.
    const data = {
      format: "1",
      current: JSON.stringify({ build: { id: "evil-build", timestampMs: future }, digest: "sha256:evil", appliedAt: "2026-01-01T00:00:00.000Z", messageId: "m-evil", objectCount: 1 }),
      inventory: JSON.stringify([{ group: "", kind: "ConfigMap", namespace: ns, name: "evil" }]),
      history: JSON.stringify([
        { result: "superseded", time: "2026-01-01T00:01:00.000Z", buildId: "genuine-2", timestampMs: genuineMs + 1, digest: "sha256:g2", messageId: "m-g2" },
        { result: "applied", time: "2026-01-01T00:00:00.000Z", buildId: "evil-build", timestampMs: future, digest: "sha256:evil", messageId: "m-evil", objects: 1, durationMs: 5 },
        { result: "applied", time: "2025-12-31T00:00:00.000Z", buildId: "genuine-1", timestampMs: genuineMs, digest: "sha256:g1", messageId: "m-g1", commit: "1111111", objects: 1, durationMs: 5 },
      ]),
    };
    const cm = { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "kube-pico-cd-state", namespace: ns }, data };
    expect((await kubectl(["create", "-f", "-"], { stdin: JSON.stringify(cm) })).code).toBe(0);
    const where = ["--namespace", ns, "--kubeconfig", env.kubeconfig];

    const shown = await recordCommand("show", ...where);
    expect(shown.code).toBe(0);
    expect((JSON.parse(shown.stdout) as { current: { build: { id: string } } }).current.build.id).toBe("evil-build");
    expect(shown.stderr).toBe(
      "listener record: the current build evil-build (built at 2286-11-20T17:46:39.999Z) is stamped in the future; every genuine build is superseded until it is forgotten: listener record forget-build --future\n",
    );

    const before = await rawData(ns);
    const dry = await recordCommand("forget-build", "--future", "--dry-run", ...where);
    expect(dry.code).toBe(0);
    expect(dry.stdout).toBe(
      `dry run: would change ${ns}/kube-pico-cd-state (resourceVersion ${before.resourceVersion}):\n  current build evil-build (built at 2286-11-20T17:46:39.999Z) forgotten; current is now genuine-1 (built at ${new Date(genuineMs).toISOString()}) from the history, applied at 2025-12-31T00:00:00.000Z\n`,
    );
    expect(await rawData(ns)).toEqual(before);

    const repaired = await recordCommand("forget-build", "--future", ...where);
    expect(repaired.code).toBe(0);
    expect(repaired.stdout).toStartWith(`changed ${ns}/kube-pico-cd-state:\n  current build evil-build`);
    const record = await readRecord({ api: admin, namespace: ns });
    expect(record.current).toEqual({ build: { id: "genuine-1", timestampMs: genuineMs, commit: "1111111" }, digest: "sha256:g1", appliedAt: "2025-12-31T00:00:00.000Z", messageId: "m-g1", objectCount: 1 });
    expect(record.inventory).toEqual([{ group: "", kind: "ConfigMap", namespace: ns, name: "evil" }]);
    expect(record.history).toHaveLength(3);
    // Run again: nothing left to forget.
    expect((await recordCommand("forget-build", "--future", ...where)).stdout).toBe(`Nothing to change in ${ns}/kube-pico-cd-state.\n`);

    const listener = await startListener({ queueUrl: queue.url, namespace: ns });
    try {
      const good = await sendBundle(queue.url, [configMap(ns, "app", { v: "genuine" })], { timestampMs: Date.now() });
      const after = await until("the genuine build recorded as current", async () => {
        const r = await readRecordAsOperator(ns);
        return r?.current?.build.id === good.build.id ? r : undefined;
      });
      expect(after.history[0]).toMatchObject({ result: "applied", buildId: good.build.id });
      expect((await kubectl(["get", "configmap", "app", "-n", ns, "-o", "jsonpath={.data.v}"])).stdout).toBe("genuine");
      // The forgotten build's object was still in the inventory, so prune took it.
      await until("the forgotten build's object pruned", async () => (await kubectl(["get", "configmap", "evil", "-n", ns])).code !== 0);
    } finally {
      listener.kill("SIGTERM");
      expect(await listener.exited).toBe(0);
    }
  }, 120_000);

  test("listener record --app changes that app's record only, and keeps its app label", async () => {
    const env = await testEnv();
    const ns = await createNamespace("repair-app");
    const outcome = (n: number) => ({ result: "applied" as const, time: `2024-05-0${n}T12:00:00.000Z`, buildId: `build-${n}`, timestampMs: 1_700_000_000_000 + n, digest: `sha256:${n}`, messageId: `m-${n}`, objects: 1 });
    const twoBuilds = { ...applied(2), history: [outcome(2), outcome(1)] };
    await writeRecord(twoBuilds, null, { api: admin, namespace: ns });
    await writeRecord(twoBuilds, null, { api: admin, namespace: ns, name: "kube-pico-cd-state-shop", app: "shop" });
    const defaultBefore = await readRecord({ api: admin, namespace: ns });
    const where = ["--namespace", ns, "--kubeconfig", env.kubeconfig];

    const shown = await recordCommand("show", "--app", "shop", ...where);
    expect(shown.code).toBe(0);
    expect(JSON.parse(shown.stdout)).toMatchObject({ app: "shop", namespace: ns, configMap: "kube-pico-cd-state-shop", current: { build: { id: "build-2" } } });

    const changed = await recordCommand("set-current", "build-1", "--app", "shop", ...where);
    expect({ code: changed.code, stderr: changed.stderr }).toEqual({ code: 0, stderr: "" });
    expect(changed.stdout).toStartWith(`changed ${ns}/kube-pico-cd-state-shop:\n  current build: build-2 `);
    expect((await readRecord({ api: admin, namespace: ns, name: "kube-pico-cd-state-shop" })).current?.build.id).toBe("build-1");
    const labels = await kubectl(["get", "configmap", "kube-pico-cd-state-shop", "-n", ns, "-o", "jsonpath={.metadata.labels}"]);
    expect(JSON.parse(labels.stdout)).toEqual({ ...RECORD_LABELS, [RECORD_APP_LABEL]: "shop" });
    // The default app's record is another ConfigMap, untouched.
    expect(await readRecord({ api: admin, namespace: ns })).toEqual(defaultBefore);

    const none = await recordCommand("clear-inflight", "--app", "web", ...where);
    expect({ code: none.code, stdout: none.stdout, stderr: none.stderr }).toEqual({ code: 0, stdout: "", stderr: `listener record: No version record ${ns}/kube-pico-cd-state-web of app web yet: nothing to change\n` });
    const invalid = await recordCommand("show", "--app", "Web", ...where);
    expect({ code: invalid.code, stdout: invalid.stdout }).toEqual({ code: 1, stdout: "" });
    expect(invalid.stderr).toStartWith(`listener record: --app: app name "Web" is not a DNS label`);
  });

  test("two rejected messages with 300 KiB build ids do not fill the record; a genuine build afterwards is applied and recorded", async () => {
    const ns = await createNamespace("fill");
    const queue = await createQueue({ attributes: { MaximumMessageSize: "1048576" } });
    const listener = await startListener({ queueUrl: queue.url, namespace: ns, env: { KUBE_PICO_CD_TARGET: "here" } });
    try {
      // For another target: rejected, and the outcome used to keep the whole build id.
      const hostile = [
        await sendBundle(queue.url, [configMap(ns, "x", { v: "1" })], { id: "a".repeat(300 * 1024), timestampMs: Date.now() - 2_000 }, "elsewhere"),
        await sendBundle(queue.url, [configMap(ns, "x", { v: "2" })], { id: "b".repeat(300 * 1024), timestampMs: Date.now() - 1_000 }, "elsewhere"),
      ];
      await until("both rejections recorded", async () => {
        const r = await readRecordAsOperator(ns);
        const rejected = r?.history.filter((o) => o.result === "rejected").map((o) => o.messageId) ?? [];
        return hostile.every((h) => rejected.includes(h.messageId));
      });
      const { data } = await rawData(ns);
      expect(recordDataBytes(data)).toBeLessThan(16 * 1024);
      const good = await sendBundle(queue.url, [configMap(ns, "app", { v: "genuine" })], { timestampMs: Date.now() }, "here");
      const after = await until("the genuine build recorded as current", async () => {
        const r = await readRecordAsOperator(ns);
        return r?.current?.build.id === good.build.id ? r : undefined;
      });
      expect(after.history[0]).toMatchObject({ result: "applied", buildId: good.build.id });
      for (const o of after.history) expect(o.buildId?.length ?? 0).toBeLessThanOrEqual(RECORD_LIMITS.idLength + 1);
      expect((await kubectl(["get", "configmap", "app", "-n", ns, "-o", "jsonpath={.data.v}"])).stdout).toBe("genuine");
      expect((await kubectl(["get", "configmap", "x", "-n", ns])).code).not.toBe(0);
      expect(listener.lines.filter((l) => l.msg === "cannot deploy now; the batch is held and tried again")).toEqual([]);
    } finally {
      listener.kill("SIGTERM");
      expect(await listener.exited).toBe(0);
    }
  }, 120_000);

  test("writeRecord() of an inventory of 5,000 objects stores it compressed, and readRecord() gives it back whole", async () => {
    const namespace = await createNamespace("state");
    const inventory = Array.from({ length: 5_000 }, (_, i) => ({ group: "", kind: "ConfigMap", namespace: "app", name: `configuration-${String(i).padStart(5, "0")}` }));
    const record = { ...applied(1), inventory };
    await writeRecord(record, null, { api: admin, namespace });
    const { data } = await rawData(namespace);
    expect(Object.keys(data).sort()).toEqual(["current", "format", "history", "inventory.gz", "marks"]);
    expect((await readRecord({ api: admin, namespace })).inventory).toEqual(inventory);
  });
});
