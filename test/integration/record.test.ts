/** The version record against the real kube-apiserver. */
import { beforeAll, describe, expect, test } from "bun:test";
import { KubeApiError, KubeUnreachableError, StateConflictError, StateReadError } from "../../lib/errors.ts";
import { KubeApi } from "../../lib/kube/api.ts";
import { emptyRecord, readRecord, recordApplied, recordOutcome, updateRecord, writeRecord, type VersionRecord } from "../../lib/kube/record.ts";
import { createNamespace, kubectl, testEnv } from "../env/testenv.ts";
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
    expect(Object.keys(JSON.parse(keys.stdout)).sort()).toEqual(["current", "format", "history", "inventory"]);
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
    let calls = 0;
    const written = await updateRecord((record) => {
      calls++;
      // Another writer changes the record between this read and its write, once.
      if (calls === 1) void writeRecord(recordOutcome(record, { result: "duplicate", time: "2024-05-01T12:00:00.000Z", buildId: "other" }), record.resourceVersion, options);
      return recordOutcome(record, { result: "rejected", time: "2024-05-01T12:00:00.000Z", buildId: `x-${calls}` });
    }, options);
    expect(calls).toBeGreaterThanOrEqual(1);
    expect(written.history[0]?.buildId).toBe(`x-${calls}`);
    expect((await readRecord(options)).history[0]?.buildId).toBe(`x-${calls}`);
    const before = await readRecord(options);
    const unchanged = await updateRecord(() => null, options);
    expect((await readRecord(options)).resourceVersion).toBe(before.resourceVersion);
    expect(unchanged.history).toEqual(before.history);
  });
});
