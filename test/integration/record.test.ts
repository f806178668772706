/** The version record against the real kube-apiserver. */
import { beforeAll, describe, expect, test } from "bun:test";
import { KubectlError, StateConflictError, StateReadError } from "../../lib/errors.ts";
import type { KubectlTarget } from "../../lib/kube/kubectl.ts";
import { emptyRecord, readState, recordApplied, recordOutcome, writeState, type VersionRecord } from "../../lib/kube/record.ts";
import { createNamespace, kubectl, testEnv } from "../env/testenv.ts";

let admin: KubectlTarget;
let nobody: KubectlTarget;

beforeAll(async () => {
  const env = await testEnv();
  admin = { kubectlPath: env.kubectl, kubeconfig: env.kubeconfig };
  nobody = { kubectlPath: env.kubectl, kubeconfig: env.unprivilegedKubeconfig };
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

describe("readState() and writeState() against kube-apiserver", () => {
  test("readState() of a namespace without the ConfigMap is the empty record with no resourceVersion", async () => {
    const namespace = await createNamespace("state");
    expect(await readState({ kubectl: admin, namespace })).toEqual({ ...emptyRecord(), resourceVersion: null });
  });

  test("writeState() creates the ConfigMap and readState() returns the same record", async () => {
    const namespace = await createNamespace("state");
    const record = applied(1);
    const rv = await writeState(record, null, { kubectl: admin, namespace });
    const read = await readState({ kubectl: admin, namespace });
    expect(read).toEqual({ ...record, resourceVersion: rv });
    const keys = await kubectl(["get", "configmap", "kube-pico-cd-state", "-n", namespace, "-o", "jsonpath={.data}"]);
    expect(Object.keys(JSON.parse(keys.stdout)).sort()).toEqual(["current", "format", "history", "inventory"]);
  });

  test("writeState() with the resourceVersion read replaces the record", async () => {
    const namespace = await createNamespace("state");
    const options = { kubectl: admin, namespace, name: "custom-name" };
    await writeState(applied(1), null, options);
    const first = await readState(options);
    const second = applied(2, first);
    const rv = await writeState(second, first.resourceVersion, options);
    expect(await readState(options)).toEqual({ ...second, resourceVersion: rv });
    expect((await readState(options)).history.map((o) => o.buildId)).toEqual(["build-2", "build-1"]);
  });

  test("writeState() with a stale resourceVersion throws StateConflictError and leaves the newer record", async () => {
    const namespace = await createNamespace("state");
    const options = { kubectl: admin, namespace };
    await writeState(applied(1), null, options);
    const seenByA = await readState(options);
    const seenByB = await readState(options);
    await writeState(applied(3, seenByA), seenByA.resourceVersion, options);
    const error = await writeState(applied(2, seenByB), seenByB.resourceVersion, options).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StateConflictError);
    expect((error as StateConflictError).message).toBe(
      `Cannot write the version record ConfigMap ${namespace}/kube-pico-cd-state as it changed since resourceVersion ${seenByB.resourceVersion} was read`,
    );
    expect((await readState(options)).current?.build.id).toBe("build-3");
  });

  test("writeState() of a first record throws StateConflictError when another writer created it meanwhile", async () => {
    const namespace = await createNamespace("state");
    const options = { kubectl: admin, namespace };
    await writeState(applied(1), null, options);
    const error = await writeState(recordOutcome(emptyRecord(), { result: "rejected", time: "2024-05-01T12:00:00.000Z" }), null, options).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(StateConflictError);
    expect((await readState(options)).current?.build.id).toBe("build-1");
  });

  test("writeState() throws StateConflictError when the record was deleted since it was read", async () => {
    const namespace = await createNamespace("state");
    const options = { kubectl: admin, namespace };
    await writeState(applied(1), null, options);
    const seen = await readState(options);
    await kubectl(["delete", "configmap", "kube-pico-cd-state", "-n", namespace]);
    await expect(writeState(applied(2, seen), seen.resourceVersion, options)).rejects.toBeInstanceOf(StateConflictError);
  });

  test("readState() by a user without rights throws StateReadError, not 'no record'", async () => {
    const namespace = await createNamespace("state");
    await writeState(applied(1), null, { kubectl: admin, namespace });
    const error = (await readState({ kubectl: nobody, namespace }).catch((e: unknown) => e)) as StateReadError;
    expect(error).toBeInstanceOf(StateReadError);
    expect(error.cause).toBeInstanceOf(KubectlError);
    expect((error.cause as KubectlError).serverReason).toBe("Forbidden");
    expect(error.message).toStartWith(`Cannot read the version record ConfigMap ${namespace}/kube-pico-cd-state: `);
  });

  test("readState() by a user without rights throws StateReadError even when the record does not exist", async () => {
    const namespace = await createNamespace("state");
    await expect(readState({ kubectl: nobody, namespace })).rejects.toBeInstanceOf(StateReadError);
  });

  test("readState() through an impersonated user without rights throws StateReadError", async () => {
    const namespace = await createNamespace("state");
    await expect(readState({ kubectl: { ...admin, extraArgs: ["--as=system:serviceaccount:x:nobody"] }, namespace })).rejects.toBeInstanceOf(
      StateReadError,
    );
  });

  test("readState() when the API server cannot be reached throws StateReadError", async () => {
    const namespace = await createNamespace("state");
    const unreachable = { ...admin, extraArgs: ["--server=https://127.0.0.1:1", "--request-timeout=5s"] };
    await expect(readState({ kubectl: unreachable, namespace })).rejects.toBeInstanceOf(StateReadError);
  });

  test("readState() of a ConfigMap whose content does not decode throws StateReadError", async () => {
    const namespace = await createNamespace("state");
    const cm = { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "kube-pico-cd-state", namespace }, data: { format: "1", current: "{oops" } };
    expect((await kubectl(["create", "-f", "-"], { stdin: JSON.stringify(cm) })).code).toBe(0);
    const error = (await readState({ kubectl: admin, namespace }).catch((e: unknown) => e)) as StateReadError;
    expect(error).toBeInstanceOf(StateReadError);
    expect(error.message).toStartWith(
      `Cannot read the version record ConfigMap ${namespace}/kube-pico-cd-state: Cannot decode the version record as key 'current' is not JSON: `,
    );
  });
});
