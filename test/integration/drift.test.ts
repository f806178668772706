/**
 * Drift correction with the real control plane: a long-running listener keeps the applied
 * bundle's payload in a Secret and re-applies it every 3 seconds, restoring what was changed
 * by hand; a hand-written Secret whose annotations name the current build is never applied;
 * a kept bundle the policy now refuses is not applied; a bundle over the size limit is
 * applied but not kept; with drift correction off no Secret is written; a bundle may not
 * overwrite the kept bundle's Secret.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { Buffer } from "node:buffer";
import { randomBytes } from "node:crypto";
import { gunzipSync } from "node:zlib";
import type { KubeObject } from "../../lib/manifests/bundle.ts";
import { driftPass, encodeKeptBundle, tooLargeWarning, type DriftPassOptions } from "../../lib/listener/drift.ts";
import { formatMicroTime } from "../../lib/kube/lease.ts";
import { OPEN_POLICY } from "../../lib/listener/policy.ts";
import { canonicalJson, sha256Hex } from "../../lib/wire/message.ts";
import { createNamespace, createQueue, kubectl, testEnv } from "../env/testenv.ts";
import { testKubeApi } from "../helpers/kube-api.ts";
import { configMap, sendBundle } from "../helpers/bundles.ts";
import { runListenerOnce, startListener, type ListenerProcess } from "../helpers/listener-process.ts";
import { readRecord } from "../helpers/record.ts";
import { until } from "../helpers/until.ts";
import { deployment } from "../helpers/workloads.ts";

const SECRET = "kube-pico-cd-bundle";
/** 0.05 minutes: a pass every 3 seconds. */
const DRIFT_ARGS = ["--drift-interval-minutes", "0.05"];
// Health is not what these tests are about; waiting for it only slows each deploy.
const FAST = { KUBE_PICO_CD_NO_WAIT_HEALTH: "true" };

interface SecretJson {
  metadata: { annotations?: Record<string, string> };
  data?: Record<string, string>;
}

async function getSecret(ns: string): Promise<SecretJson | undefined> {
  const got = await kubectl(["get", "secret", SECRET, "-n", ns, "-o", "json"]);
  if (got.code !== 0) {
    if (got.stderr.includes("NotFound")) return undefined;
    throw new Error(`reading Secret ${ns}/${SECRET} failed: ${got.stderr}`);
  }
  return JSON.parse(got.stdout) as SecretJson;
}

async function jsonpath(args: string[], path: string): Promise<string> {
  return (await kubectl(["get", ...args, "-o", `jsonpath=${path}`])).stdout;
}

/** The objects as the listener decodes them: the canonical JSON publish sends, parsed. */
function asDecoded(objects: readonly KubeObject[]): KubeObject[] {
  return JSON.parse(canonicalJson(objects)) as KubeObject[];
}

const running: ListenerProcess[] = [];
afterEach(async () => {
  for (const listener of running.splice(0)) {
    listener.kill("SIGTERM");
    await listener.exited;
  }
});

async function startDriftListener(queueUrl: string, ns: string, args: string[] = []): Promise<ListenerProcess> {
  const listener = await startListener({ queueUrl, namespace: ns, args: [...DRIFT_ARGS, ...args], env: FAST });
  running.push(listener);
  return listener;
}

/** What a listener in `ns` hands a drift pass, against the test environment. */
async function passOptions(ns: string): Promise<DriftPassOptions> {
  const env = await testEnv();
  return { api: await testKubeApi(), kubectl: { kubectlPath: env.kubectl, kubeconfig: env.kubeconfig }, namespace: ns, policy: OPEN_POLICY, leaseDurationSeconds: 15 };
}

describe("drift correction", () => {
  test("restores a ConfigMap's data and a Deployment's replicas changed by hand, from the Secret that keeps the current build", async () => {
    const ns = await createNamespace("drift");
    const queue = await createQueue();
    const listener = await startDriftListener(queue.url, ns);
    const objects = [configMap(ns, "app", { v: "1" }), deployment(ns, "web", { replicas: 2 })];
    const sent = await sendBundle(queue.url, objects, { timestampMs: Date.now() });
    await until("the build to be recorded", async () => (await readRecord(ns))?.current?.digest === sent.digest, 30_000);

    const secret = await getSecret(ns);
    expect(secret?.metadata.annotations?.["kube-pico-cd.io/build-id"]).toBe(sent.build.id);
    expect(secret?.metadata.annotations?.["kube-pico-cd.io/digest"]).toBe(sent.digest);
    // The payload exactly as publish sent it: its SHA-256 is the build's digest.
    const payload = gunzipSync(Buffer.from(secret?.data?.["payload.json.gz"] ?? "", "base64"));
    expect(sha256Hex(payload)).toBe(sent.digest);
    expect(JSON.parse(payload.toString("utf8"))).toEqual(asDecoded(objects));

    expect((await kubectl(["patch", "configmap", "app", "-n", ns, "--type=merge", "-p", '{"data":{"v":"by-hand"}}'])).code).toBe(0);
    expect((await kubectl(["scale", "deployment", "web", "-n", ns, "--replicas=5"])).code).toBe(0);
    expect(await jsonpath(["configmap", "app", "-n", ns], "{.data.v}")).toBe("by-hand");
    const editedAt = Date.now();

    await until(
      "the ConfigMap and the Deployment to be restored",
      async () => (await jsonpath(["configmap", "app", "-n", ns], "{.data.v}")) === "1" && (await jsonpath(["deployment", "web", "-n", ns], "{.spec.replicas}")) === "2",
      20_000,
    );
    const pass = await listener.waitForLog((l) => l.msg === "drift pass applied the current build again" && Date.parse(l.time) >= editedAt, 5_000);
    expect(pass).toMatchObject({ level: "info", component: "drift", result: "applied", build: sent.build.id, objectCount: 2 });
    expect(typeof pass["durationMs"]).toBe("number");

    // Passes are logged, never recorded: the history holds the deploy alone.
    const record = await readRecord(ns);
    expect(record?.history.map((o) => o.result)).toEqual(["applied"]);
    expect(record?.history[0]?.warnings).toBeUndefined();

    // A kept bundle whose payload is not the current build is never applied, whatever its annotations say.
    const other = asDecoded([configMap(ns, "app", { v: "planted" })]);
    const planted = encodeKeptBundle({ objects: other, digest: sha256Hex(canonicalJson(other)), build: sent.build }, { namespace: ns });
    if (planted.kind !== "secret") throw new Error("expected a Secret");
    expect((await kubectl(["apply", "--server-side", "--force-conflicts", "--field-manager=someone", "-f", "-"], { stdin: JSON.stringify(planted.secret) })).code).toBe(0);
    expect((await kubectl(["patch", "configmap", "app", "-n", ns, "--type=merge", "-p", '{"data":{"v":"by-hand-again"}}'])).code).toBe(0);
    const plantedAt = Date.now();
    const skipped = await listener.waitForLog((l) => l.msg === "drift pass skipped" && Date.parse(l.time) >= plantedAt, 10_000);
    expect(skipped["reason"]).toBe(
      `the kept bundle's payload has SHA-256 ${sha256Hex(canonicalJson(other))}, annotated as build ${sent.build.id}, not the current build ${sent.build.id}'s digest ${sent.digest}; only the current build is re-applied`,
    );
    expect(await jsonpath(["configmap", "app", "-n", ns], "{.data.v}")).toBe("by-hand-again");

    listener.kill("SIGTERM");
    expect(await listener.exited).toBe(0);
    expect(listener.lines.some((l) => l.msg === "drift correction stopped")).toBe(true);
  }, 90_000);

  test("a pass is skipped while the deploy lock is held", async () => {
    const ns = await createNamespace("drift-lock");
    const queue = await createQueue();
    const listener = await startDriftListener(queue.url, ns);
    const sent = await sendBundle(queue.url, [configMap(ns, "app", { v: "1" })], { timestampMs: Date.now() });
    await until("the build to be recorded", async () => (await readRecord(ns))?.current?.digest === sent.digest, 30_000);

    // Another holder, as a deploy of another replica would be.
    const now = formatMicroTime(Date.now());
    const lease = {
      apiVersion: "coordination.k8s.io/v1",
      kind: "Lease",
      metadata: { name: "kube-pico-cd-deploy", namespace: ns },
      spec: { holderIdentity: "another-replica", leaseDurationSeconds: 60, acquireTime: now, renewTime: now },
    };
    expect((await kubectl(["apply", "--server-side", "--force-conflicts", "--field-manager=test", "-f", "-"], { stdin: JSON.stringify(lease) })).code).toBe(0);
    const heldAt = Date.now();
    const skipped = await listener.waitForLog((l) => l.msg === "drift pass skipped" && Date.parse(l.time) >= heldAt, 10_000);
    expect(skipped).toMatchObject({ result: "skipped", reason: "the deploy lock is held (a deploy is running)" });
  }, 60_000);

  test("a bundle over the size limit is applied but not kept, the older kept bundle is deleted, and the outcome warns", async () => {
    const ns = await createNamespace("drift-big");
    const queue = await createQueue();
    const limit = 2048;
    const listener = await startDriftListener(queue.url, ns, ["--bundle-secret-max-bytes", String(limit)]);

    const small = await sendBundle(queue.url, [configMap(ns, "app", { v: "1" })], { timestampMs: Date.now() });
    await until("the small build to be recorded", async () => (await readRecord(ns))?.current?.digest === small.digest, 30_000);
    expect((await getSecret(ns))?.metadata.annotations?.["kube-pico-cd.io/digest"]).toBe(small.digest);

    // Random data does not compress: 8 KiB of it stays far over 2048 bytes gzip'd.
    const bigObjects = [configMap(ns, "app", { v: "2" }), configMap(ns, "noise", { v: randomBytes(8192).toString("base64") })];
    const big = await sendBundle(queue.url, bigObjects, { timestampMs: Date.now() });
    await until("the big build to be recorded", async () => (await readRecord(ns))?.current?.digest === big.digest, 30_000);

    expect(await jsonpath(["configmap", "noise", "-n", ns], "{.metadata.name}")).toBe("noise");
    expect(await getSecret(ns)).toBeUndefined();
    const encoded = encodeKeptBundle({ objects: asDecoded(bigObjects), digest: big.digest, build: big.build }, { namespace: ns, limitBytes: limit });
    if (encoded.kind !== "too-large") throw new Error(`expected too-large, got ${encoded.kind}`);
    const outcome = (await readRecord(ns))?.history[0];
    expect(outcome).toMatchObject({ result: "applied", buildId: big.build.id });
    expect(outcome?.warnings).toEqual([tooLargeWarning(encoded.compressedBytes, limit)]);

    const recordedAt = Date.now();
    const skipped = await listener.waitForLog((l) => l.msg === "drift pass skipped" && Date.parse(l.time) >= recordedAt, 10_000);
    expect(skipped["reason"]).toBe(`no bundle is kept for the current build ${big.build.id} (it was too large to keep, or was applied before drift correction was on)`);
  }, 90_000);

  test("driftPass() never applies a hand-written Secret whose annotations name the current build, and applies one that holds its payload", async () => {
    const ns = await createNamespace("drift-forged");
    const queue = await createQueue();
    const sent = await sendBundle(queue.url, [configMap(ns, "app", { v: "1" })], { timestampMs: 1_000 });
    expect((await runListenerOnce({ queueUrl: queue.url, namespace: ns, args: DRIFT_ARGS, env: FAST })).code).toBe(0);
    expect((await readRecord(ns))?.current?.digest).toBe(sent.digest);

    // Someone who may write Secrets there: the current build's annotations, other objects
    // (and one the bundle never had), the kept Secret's format.
    const forged = asDecoded([configMap(ns, "app", { v: "forged" }), configMap(ns, "extra", { v: "forged" })]);
    const encoded = encodeKeptBundle({ objects: forged, digest: sha256Hex(canonicalJson(forged)), build: sent.build }, { namespace: ns });
    if (encoded.kind !== "secret") throw new Error("expected a Secret");
    const secret = encoded.secret as { metadata: { annotations: Record<string, string> } };
    secret.metadata.annotations["kube-pico-cd.io/digest"] = sent.digest;
    secret.metadata.annotations["kube-pico-cd.io/objects"] = "1";
    expect((await kubectl(["apply", "--server-side", "--force-conflicts", "--field-manager=someone", "-f", "-"], { stdin: JSON.stringify(secret) })).code).toBe(0);
    expect((await kubectl(["patch", "configmap", "app", "-n", ns, "--type=merge", "-p", '{"data":{"v":"by-hand"}}'])).code).toBe(0);

    const options = await passOptions(ns);
    const report = await driftPass(options, new AbortController().signal);
    expect(report).toMatchObject({
      result: "skipped",
      buildId: sent.build.id,
      reason: `the kept bundle's payload has SHA-256 ${sha256Hex(canonicalJson(forged))}, annotated as build ${sent.build.id}, not the current build ${sent.build.id}'s digest ${sent.digest}; only the current build is re-applied`,
    });
    expect(await jsonpath(["configmap", "app", "-n", ns], "{.data.v}")).toBe("by-hand");
    expect((await kubectl(["get", "configmap", "extra", "-n", ns])).code).not.toBe(0);

    // The current build's payload, written by the same hand, is applied again: what counts is the payload.
    const genuine = encodeKeptBundle({ objects: asDecoded([configMap(ns, "app", { v: "1" })]), digest: sent.digest, build: sent.build }, { namespace: ns });
    if (genuine.kind !== "secret") throw new Error("expected a Secret");
    expect((await kubectl(["apply", "--server-side", "--force-conflicts", "--field-manager=someone", "-f", "-"], { stdin: JSON.stringify(genuine.secret) })).code).toBe(0);
    expect(await driftPass(options, new AbortController().signal)).toMatchObject({ result: "applied", buildId: sent.build.id, objects: 1 });
    expect(await jsonpath(["configmap", "app", "-n", ns], "{.data.v}")).toBe("1");
    options.api.close();
  }, 60_000);

  test("driftPass() does not apply a kept bundle that the policy as configured now refuses", async () => {
    const ns = await createNamespace("drift-policy");
    const queue = await createQueue();
    const sent = await sendBundle(queue.url, [configMap(ns, "app", { v: "1" })], { timestampMs: 1_000 });
    expect((await runListenerOnce({ queueUrl: queue.url, namespace: ns, args: DRIFT_ARGS, env: FAST })).code).toBe(0);
    expect((await getSecret(ns))?.metadata.annotations?.["kube-pico-cd.io/digest"]).toBe(sent.digest);
    expect((await kubectl(["patch", "configmap", "app", "-n", ns, "--type=merge", "-p", '{"data":{"v":"by-hand"}}'])).code).toBe(0);

    const options = await passOptions(ns);
    const report = await driftPass({ ...options, policy: { ...OPEN_POLICY, allowedNamespaces: ["elsewhere"] } }, new AbortController().signal);
    expect(report).toMatchObject({
      result: "skipped",
      buildId: sent.build.id,
      reason: `the listener's policy now refuses 1 of 1 objects of the current build ${sent.build.id}, so it is not re-applied: ConfigMap ${ns}/app: namespace "${ns}" not in the allowed namespaces`,
    });
    expect(await jsonpath(["configmap", "app", "-n", ns], "{.data.v}")).toBe("by-hand");
    options.api.close();
  }, 60_000);

  test("with drift correction off (the default) no Secret is written", async () => {
    const ns = await createNamespace("drift-off");
    const queue = await createQueue();
    const sent = await sendBundle(queue.url, [configMap(ns, "app", { v: "1" })], { timestampMs: 1_000 });
    expect((await runListenerOnce({ queueUrl: queue.url, namespace: ns, env: FAST })).code).toBe(0);
    expect((await readRecord(ns))?.current?.digest).toBe(sent.digest);
    expect(await getSecret(ns)).toBeUndefined();
  });

  test("a bundle holding the kept bundle's Secret is rejected as protected-object and nothing of it is applied", async () => {
    const ns = await createNamespace("drift-protect");
    const queue = await createQueue();
    const forged = { apiVersion: "v1", kind: "Secret", metadata: { name: SECRET, namespace: ns }, stringData: { "objects.json.gz": "x" } } as KubeObject;
    const sent = await sendBundle(queue.url, [configMap(ns, "app", { v: "1" }), forged], { timestampMs: 1_000 });
    expect((await runListenerOnce({ queueUrl: queue.url, namespace: ns, args: DRIFT_ARGS, env: FAST })).code).toBe(0);

    const record = await readRecord(ns);
    expect(record?.current).toBeNull();
    expect(record?.history[0]).toMatchObject({ result: "rejected", messageId: sent.messageId });
    expect(record?.history[0]?.error).toBe(
      `protected-object: The bundle holds Secret ${ns}/${SECRET}, which is the listener's own kept bundle for drift correction; a bundle may not overwrite it (the message is deleted)`,
    );
    expect(await getSecret(ns)).toBeUndefined();
    expect((await kubectl(["get", "configmap", "app", "-n", ns])).code).not.toBe(0);
  });
});
