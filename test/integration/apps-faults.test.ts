/**
 * Many apps through one listener under faults, asserted on the cluster and each app's record:
 * two replicas and three apps with one replica killed between an apply and its record; the
 * API server away while two apps publish; SQS away while one app waits for health and
 * another's build is held; and hostile input: app names that are no DNS label, a bundle that
 * reaches for another app's record, Lease or kept bundle, an app renamed after signing, and an
 * app named inside an SNS notification.
 */
import { describe, expect, test } from "bun:test";
import { createServer, type Server, type Socket, connect } from "node:net";
import { CreateQueueCommand, GetQueueAttributesCommand, SendMessageCommand, SQSClient } from "@aws-sdk/client-sqs";
import { createNamespace, createQueue, kubectl, startDedicatedControlPlane, startDedicatedElasticMQ } from "../env/testenv.ts";
import { SQS_ACCOUNT, SQS_REGION } from "../env/elasticmq.ts";
import { bundleBody, configMap, queueDepth, sendAppBundle, sendRaw } from "../helpers/bundles.ts";
import { startListener, type ListenerProcess, type LogLine } from "../helpers/listener-process.ts";
import { readRecord } from "../helpers/record.ts";
import { testKubeApi } from "../helpers/kube-api.ts";
import { until } from "../helpers/until.ts";
import { deployment } from "../helpers/workloads.ts";
import type { KubeObject } from "../../lib/manifests/bundle.ts";
import { appObjectName } from "../../lib/listener/apps.ts";
import { APP_LABEL } from "../../lib/listener/ownership.ts";
import { DEFAULT_BUNDLE_SECRET } from "../../lib/listener/drift.ts";
import { DEFAULT_STATE_CONFIGMAP, type VersionRecord } from "../../lib/kube/record.ts";
import { acquireLease, DEFAULT_LOCK_LEASE, type HeldLease } from "../../lib/kube/lease.ts";
import { encodeMessage, type BuildInfo } from "../../lib/wire/message.ts";
import { generateSigningKeyPair, parseSigningKey, signFields, type SigningKey } from "../../lib/wire/signature.ts";

const fast = { KUBE_PICO_CD_VISIBILITY_TIMEOUT_SECONDS: "5", KUBE_PICO_CD_HEALTH_TIMEOUT_SECONDS: "30" };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function stopped(listener: ListenerProcess | undefined): Promise<void> {
  if (listener === undefined || listener.child.exitCode !== null || listener.child.signalCode !== null) return;
  listener.kill("SIGTERM");
  await listener.exited;
}

/** The record of `app` in the listener's namespace `ns`. */
function recordOf(ns: string, app: string, kubeconfig?: string): Promise<VersionRecord | undefined> {
  return readRecord(ns, { name: appObjectName(DEFAULT_STATE_CONFIGMAP, app), ...(kubeconfig === undefined ? {} : { kubeconfig }) });
}

/** Names of the objects of `kind` in `ns`, sorted, without the listener's records and the cluster's own. */
async function names(ns: string, kind: string, kubeconfig?: string): Promise<string[]> {
  const got = await kubectl(["get", kind, "-n", ns, "-o", "jsonpath={.items[*].metadata.name}"], kubeconfig === undefined ? {} : { kubeconfig });
  if (got.code !== 0) throw new Error(`listing ${kind} in ${ns} failed: ${got.stderr}`);
  return got.stdout
    .split(" ")
    .filter((n) => n !== "" && n !== "kube-root-ca.crt" && !n.startsWith(DEFAULT_STATE_CONFIGMAP))
    .sort();
}

async function objectJson(ns: string, kind: string, name: string, kubeconfig?: string): Promise<{ data?: Record<string, string>; metadata: { labels?: Record<string, string>; resourceVersion: string } } | undefined> {
  const got = await kubectl(["get", kind, name, "-n", ns, "-o", "json"], kubeconfig === undefined ? {} : { kubeconfig });
  if (got.code !== 0 && got.stderr.includes("NotFound")) return undefined;
  if (got.code !== 0) throw new Error(`reading ${kind} ${ns}/${name} failed: ${got.stderr}`);
  return JSON.parse(got.stdout);
}

/** What every app's final record must say: on its newest build, nothing in flight, only its own builds, none lost or failed. */
function expectOwnRecord(record: VersionRecord | undefined, app: string, builds: readonly string[]): void {
  expect(record?.current?.build.id).toBe(builds.at(-1)!);
  expect(record?.inflight).toBeNull();
  const history = record!.history;
  expect(history.every((h) => h.app === app)).toBe(true);
  expect([...new Set(history.map((h) => h.buildId))].sort()).toEqual([...builds].sort());
  expect(history.some((h) => h.result === "failed" || h.result === "rejected")).toBe(false);
  expect(history.filter((h) => h.buildId === builds.at(-1) && h.result === "applied")).toHaveLength(1);
}

describe("many apps under faults", () => {
  test("two replicas, apps a, b and c publishing three builds each, interleaved; one replica SIGKILLed right after an apply and before its record: every app ends on its newest build, with only its own objects and builds", async () => {
    const ns = await createNamespace("faults-replicas");
    const queue = await createQueue({ deadLetter: { maxReceiveCount: 10 } });
    const apps = ["a", "b", "c"] as const;
    // A Deployment that rolls out: each app's first apply waits seconds for health, the window
    // between "build applied" and the record. Build 1 holds an object the later builds drop.
    const bundle = (app: string, n: number): KubeObject[] => [
      configMap(ns, `${app}-main`, { build: `${app}${n}` }),
      deployment(ns, `${app}-web`),
      ...(n === 1 ? [configMap(ns, `${app}-old`, { build: `${app}1` })] : []),
    ];
    const replicas = [await startListener({ queueUrl: queue.url, namespace: ns, env: fast }), await startListener({ queueUrl: queue.url, namespace: ns, env: fast })];
    let restarted: ListenerProcess | undefined;
    try {
      await Promise.all(replicas.map((r) => r.waitForLog((l) => l.msg === "listening")));
      const firstApplied = Promise.race(
        replicas.map((r, i) =>
          r.waitForLog((l) => l.msg === "build applied", 90_000).then(
            (line) => ({ i, line }),
            () => new Promise<never>(() => {}),
          ),
        ),
      );
      const sending = (async () => {
        for (let n = 1; n <= 3; n++) {
          for (const app of apps) {
            await sendAppBundle(queue.url, app, bundle(app, n), { timestampMs: n * 1_000, id: `${app}${n}` });
            // Spread over both replicas' receives.
            await sleep(150);
          }
        }
      })();
      const { i, line } = await firstApplied;
      replicas[i]!.kill("SIGKILL");
      expect(await replicas[i]!.exited).toBe("SIGKILL");
      const killedBuild = String(line["build"]);
      const killedApp = killedBuild.slice(0, 1);
      // The worst moment: the cluster has the build, the record names it only as in flight.
      const interrupted = await recordOf(ns, killedApp);
      expect(interrupted?.inflight?.build.id).toBe(killedBuild);
      expect(interrupted?.current?.build.id).not.toBe(killedBuild);
      await sending;
      console.log(`killed replica ${i + 1} after it applied ${killedBuild}, before its record`);

      restarted = await startListener({ queueUrl: queue.url, namespace: ns, env: fast });
      const records = await until(
        "every app on its build 3, nothing in flight, the queue empty",
        async () => {
          const rs = await Promise.all(apps.map((app) => recordOf(ns, app)));
          if (!rs.every((r, k) => r?.current?.build.id === `${apps[k]}3` && r.inflight === null)) return undefined;
          const d = await queueDepth(queue.url);
          return d.visible + d.inFlight + d.delayed === 0 ? rs : undefined;
        },
        150_000,
      );
      apps.forEach((app, k) => {
        expectOwnRecord(records[k], app, [`${app}1`, `${app}2`, `${app}3`]);
        expect(records[k]!.inventory.map((o) => `${o.kind}/${o.name}`).sort()).toEqual([`ConfigMap/${app}-main`, `Deployment/${app}-web`]);
      });
      // No app pruned another's objects; each pruned its own build 1 leftover.
      expect(await names(ns, "configmaps")).toEqual(["a-main", "b-main", "c-main"]);
      expect(await names(ns, "deployments")).toEqual(["a-web", "b-web", "c-web"]);
      for (const app of apps) {
        const main = await objectJson(ns, "configmap", `${app}-main`);
        expect(main?.data).toEqual({ build: `${app}3` });
        expect(main?.metadata.labels?.[APP_LABEL]).toBe(app);
      }
      expect(await recordOf(ns, "default")).toBeUndefined();
      expect(await queueDepth(queue.deadLetterUrl!)).toEqual({ visible: 0, inFlight: 0, delayed: 0 });
    } finally {
      for (const r of replicas) await stopped(r);
      await stopped(restarted);
    }
  }, 240_000);

  test("the API server away for 60 s while apps a and b publish three builds each (maxReceiveCount 3): after it both end on their newest builds, and the dead-letter queue stays empty", async () => {
    const cp = await startDedicatedControlPlane();
    const ns = "apps-outage";
    expect((await kubectl(["create", "namespace", ns], { kubeconfig: cp.kubeconfig })).code).toBe(0);
    const queue = await createQueue({ deadLetter: { maxReceiveCount: 3 } });
    const listener = await startListener({ queueUrl: queue.url, namespace: ns, kubeconfig: cp.kubeconfig, env: fast });
    try {
      await listener.waitForLog((l) => l.msg === "listening");
      await cp.stopApiServer();
      const outageStarted = Date.now();
      for (let n = 1; n <= 3; n++) {
        for (const app of ["a", "b"]) await sendAppBundle(queue.url, app, [configMap(ns, `${app}-main`, { build: `${app}${n}` })], { timestampMs: n * 1_000, id: `${app}${n}` });
        await sleep(2_000);
      }
      await listener.waitForLog((l) => l.msg === "cannot deploy now; the batch is held and tried again");
      await sleep(60_000 - (Date.now() - outageStarted));
      expect(listener.child.exitCode).toBeNull();
      await cp.startApiServer();
      const [a, b] = await until(
        "both apps on build 3 after the outage",
        async () => {
          const rs = await Promise.all(["a", "b"].map((app) => recordOf(ns, app, cp.kubeconfig).catch(() => undefined)));
          // The older builds of a batch are recorded as superseded just after the newest is applied.
          const complete = (r: VersionRecord | undefined, app: string) => r?.current?.build.id === `${app}3` && r.inflight === null && [1, 2, 3].every((n) => r.history.some((h) => h.buildId === `${app}${n}`));
          return complete(rs[0], "a") && complete(rs[1], "b") ? rs : undefined;
        },
        90_000,
      );
      expectOwnRecord(a, "a", ["a1", "a2", "a3"]);
      expectOwnRecord(b, "b", ["b1", "b2", "b3"]);
      expect((await objectJson(ns, "configmap", "a-main", cp.kubeconfig))?.data).toEqual({ build: "a3" });
      expect((await objectJson(ns, "configmap", "b-main", cp.kubeconfig))?.data).toEqual({ build: "b3" });
      await until("the queue empty", async () => {
        const d = await queueDepth(queue.url);
        return d.visible + d.inFlight + d.delayed === 0;
      });
      expect(await queueDepth(queue.deadLetterUrl!)).toEqual({ visible: 0, inFlight: 0, delayed: 0 });
    } finally {
      await stopped(listener);
    }
  }, 240_000);

  // ElasticMQ keeps its messages in memory, so "away" is either frozen (SIGSTOP: calls hang,
  // as behind a black-holed route) or unreachable (a proxy in front of it refuses
  // connections and resets open ones); real SQS loses nothing in either.
  for (const outage of ["frozen", "refused"] as const) {
    test(`SQS away (${outage}) for 30 s while app a waits for health and app b's build is held for its Lease: nothing lost, both end on their newest builds`, async () => {
      const ns = await createNamespace(`faults-sqs-${outage}`);
      const sqs = await startDedicatedElasticMQ();
      const proxy = outage === "refused" ? await startCuttableProxy(sqs.port) : undefined;
      const port = proxy?.port ?? sqs.port;
      const client = new SQSClient({ endpoint: sqs.endpoint, region: SQS_REGION });
      const { QueueUrl: directUrl } = await client.send(new CreateQueueCommand({ QueueName: "deploys", Attributes: { VisibilityTimeout: "6" } }));
      const send = (app: string, objects: readonly KubeObject[], build: BuildInfo) => client.send(new SendMessageCommand({ QueueUrl: directUrl!, MessageBody: bundleBody(objects, build, undefined, app).body }));
      const depth = async () => {
        const { Attributes = {} } = await client.send(new GetQueueAttributesCommand({ QueueUrl: directUrl!, AttributeNames: ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessagesDelayed"] }));
        return Number(Attributes.ApproximateNumberOfMessages) + Number(Attributes.ApproximateNumberOfMessagesNotVisible) + Number(Attributes.ApproximateNumberOfMessagesDelayed);
      };
      // Another holder of b's deploy Lease keeps b's build in the listener's hand.
      const api = await testKubeApi();
      let bLease: HeldLease | undefined = await acquireLease({ api, namespace: ns, name: appObjectName(DEFAULT_LOCK_LEASE, "b"), identity: "another-replica", leaseDurationSeconds: 10 });
      const listener = await startListener({
        queueUrl: `http://127.0.0.1:${port}/${SQS_ACCOUNT}/deploys`,
        namespace: ns,
        env: { ...fast, KUBE_PICO_CD_ENDPOINT_URL: `http://127.0.0.1:${port}`, KUBE_PICO_CD_VISIBILITY_TIMEOUT_SECONDS: "6", KUBE_PICO_CD_HEALTH_TIMEOUT_SECONDS: "45" },
      });
      let away = false;
      const back = async () => {
        if (!away) return;
        away = false;
        if (proxy) await proxy.restore();
        else process.kill(sqs.process.pid, "SIGCONT");
      };
      try {
        await listener.waitForLog((l) => l.msg === "listening");
        await send("a", [configMap(ns, "a-main", { build: "a1" }), deployment(ns, "a-slow", { unschedulable: true })], { id: "a1", timestampMs: 1_000 });
        await send("b", [configMap(ns, "b-main", { build: "b1" })], { id: "b1", timestampMs: 1_000 });
        await listener.waitForLog((l) => l.msg === "build applied" && l["build"] === "a1", 30_000);
        await listener.waitForLog((l) => l.msg === "waiting for the deploy Lease; the batch is held", 30_000);

        away = true;
        if (proxy) await proxy.cut();
        else process.kill(sqs.process.pid, "SIGSTOP");
        const awaySince = Date.now();
        // Halfway through, b's Lease comes free: b1 is deployed and recorded while SQS is away.
        await sleep(10_000);
        await bLease.release();
        bLease = undefined;
        await until("b1 recorded while SQS is away", async () => (await recordOf(ns, "b"))?.current?.build.id === "b1", 15_000);
        const a = await recordOf(ns, "a");
        expect(a?.inflight?.build.id).toBe("a1");
        expect(a?.current).toBeNull();
        await sleep(30_000 - (Date.now() - awaySince));
        expect(listener.child.exitCode).toBeNull();
        await back();

        await send("a", [configMap(ns, "a-main", { build: "a2" })], { id: "a2", timestampMs: 2_000 });
        await send("b", [configMap(ns, "b-main", { build: "b2" })], { id: "b2", timestampMs: 2_000 });
        const [ra, rb] = await until(
          "both apps on build 2 and the queue empty",
          async () => {
            const rs = await Promise.all(["a", "b"].map((app) => recordOf(ns, app)));
            if (!rs.every((r, k) => r?.current?.build.id === `${"ab"[k]}2` && r.inflight === null)) return undefined;
            return (await depth()) === 0 ? rs : undefined;
          },
          120_000,
        );
        expectOwnRecord(ra, "a", ["a1", "a2"]);
        expectOwnRecord(rb, "b", ["b1", "b2"]);
        // Every build was applied: a1 after its full health wait (Timeout), b1 while SQS was away.
        expect(ra!.history.filter((h) => h.result === "applied").map((h) => h.buildId)).toEqual(["a2", "a1"]);
        expect(rb!.history.filter((h) => h.result === "applied").map((h) => h.buildId)).toEqual(["b2", "b1"]);
        expect((await objectJson(ns, "configmap", "a-main"))?.data).toEqual({ build: "a2" });
        expect((await objectJson(ns, "configmap", "b-main"))?.data).toEqual({ build: "b2" });
        // a2 dropped the Deployment: pruned by a, once a1's wait was over.
        expect(await names(ns, "deployments")).toEqual([]);
        expect(listener.child.exitCode).toBeNull();
      } finally {
        await back();
        await bLease?.release().catch(() => {});
        await stopped(listener);
        client.destroy();
        api.close();
        await proxy?.close();
      }
    }, 240_000);
  }

  test("hostile input across apps: names that are no DNS label, another app's record, Lease and kept bundle, an app renamed after signing, and an app inside an SNS notification", async () => {
    const ci = signingKey();
    const ns = await createNamespace("faults-hostile");
    const queue = await createQueue({ deadLetter: { maxReceiveCount: 5 } });
    const signedBody = (app: string | undefined, objects: readonly KubeObject[], build: BuildInfo) =>
      encodeMessage({ ...(app === undefined ? {} : { app }), build, objects, sign: (fields) => signFields(fields, ci) }).body;
    const withApp = (body: string, app: unknown) => JSON.stringify({ ...(JSON.parse(body) as Record<string, unknown>), app });
    // Drift correction on (its first pass an hour away): b's bundle is kept in its Secret.
    const listener = await startListener({ queueUrl: queue.url, namespace: ns, env: { ...fast, KUBE_PICO_CD_TRUSTED_KEYS: ci.publicKeyPem, KUBE_PICO_CD_DRIFT_INTERVAL_MINUTES: "60" } });
    try {
      await sendRaw(queue.url, signedBody("b", [configMap(ns, "b-main", { build: "b1" })], { id: "b1", timestampMs: 1_000 }));
      await until("b1 recorded", async () => (await recordOf(ns, "b"))?.current?.build.id === "b1");
      const bObjects = [
        ["configmap", appObjectName(DEFAULT_STATE_CONFIGMAP, "b")],
        ["lease", appObjectName(DEFAULT_LOCK_LEASE, "b")],
        ["secret", appObjectName(DEFAULT_BUNDLE_SECRET, "b")],
      ] as const;
      const bBefore = await Promise.all(bObjects.map(([kind, name]) => objectJson(ns, kind, name)));
      expect(bBefore.every((o) => o !== undefined)).toBe(true);

      // 1. App names that are no DNS label: refused by the schema into the default app's record.
      const badNames = ["Shop", "a".repeat(64), "../x", ""];
      const bad = await Promise.all(badNames.map((name, i) => sendRaw(queue.url, withApp(signedBody(undefined, [configMap(ns, `bad-${i}`, { v: "1" })], { id: `bad-${i}`, timestampMs: 2_000 + i }), name))));
      const rejected = await until("four rejections in the default app's record", async () => {
        const r = await recordOf(ns, "default");
        const found = bad.map((m) => r?.history.find((h) => h.messageId === m.messageId));
        return found.every((h) => h !== undefined) ? found : undefined;
      });
      for (const h of rejected) {
        expect(h!.result).toBe("rejected");
        expect(h!.app).toBe("default");
        expect(h!.error).toStartWith("schema: ");
        expect(h!.error).toContain("app");
      }
      expect((await recordOf(ns, "default"))?.current).toBeNull();

      // 2. App a reaches for b's record, Lease and kept bundle (the Lease without a namespace:
      //    kubectl would put it into the listener's).
      const reaching: KubeObject[] = [
        configMap(ns, appObjectName(DEFAULT_STATE_CONFIGMAP, "b"), { current: "{}" }),
        { apiVersion: "v1", kind: "Secret", metadata: { name: appObjectName(DEFAULT_BUNDLE_SECRET, "b"), namespace: ns }, stringData: { bundle: "planted" } } as unknown as KubeObject,
        { apiVersion: "coordination.k8s.io/v1", kind: "Lease", metadata: { name: appObjectName(DEFAULT_LOCK_LEASE, "b") }, spec: { holderIdentity: "a" } } as unknown as KubeObject,
      ];
      const reached = await Promise.all(
        reaching.map((object, i) => sendRaw(queue.url, signedBody("a", [configMap(ns, `a-${i}`, { v: "1" }), object], { id: `a-reach-${i}`, timestampMs: 3_000 + i }))),
      );
      // App a has no record of its own yet (no build of it passed every check), so its
      // rejections are in the default app's record: rejections create no record.
      const refused = await until("three protected-object rejections of app a in the default record", async () => {
        const r = await recordOf(ns, "default");
        const found = reached.map((m) => r?.history.find((h) => h.messageId === m.messageId));
        return found.every((h) => h !== undefined) ? found : undefined;
      });
      refused.forEach((h, i) => {
        expect(h!.result).toBe("rejected");
        expect(h!.app).toBe("a");
        expect(h!.error).toStartWith("protected-object: ");
        expect(h!.error).toContain(`${reaching[i]!.kind} ${ns}/${reaching[i]!.metadata.name}`);
      });
      expect(await recordOf(ns, "a")).toBeUndefined();
      const bAfter = await Promise.all(bObjects.map(([kind, name]) => objectJson(ns, kind, name)));
      expect(bAfter.map((o) => o?.metadata.resourceVersion)).toEqual(bBefore.map((o) => o?.metadata.resourceVersion));

      // 3. Signed as app a, renamed to b on the way: its lane is b's, its signature fails.
      const renamed = await sendRaw(queue.url, withApp(signedBody("a", [configMap(ns, "renamed", { v: "1" })], { id: "renamed", timestampMs: 4_000 }), "b"));
      const forged = await until("the renamed bundle rejected", async () => (await recordOf(ns, "b"))?.history.find((h) => h.messageId === renamed.messageId));
      expect(forged.result).toBe("rejected");
      expect(forged.error).toStartWith("bad-signature: ");
      expect((await recordOf(ns, "b"))?.current?.build.id).toBe("b1");
      expect(await recordOf(ns, "a")).toBeUndefined();

      // 4. App b inside an SNS notification: routed and applied as b's.
      const inner = signedBody("b", [configMap(ns, "b-main", { build: "b2" })], { id: "b2", timestampMs: 5_000 });
      await sendRaw(queue.url, JSON.stringify({ Type: "Notification", MessageId: "sns-1", TopicArn: `arn:aws:sns:${SQS_REGION}:${SQS_ACCOUNT}:deploys`, Message: inner, Timestamp: new Date().toISOString() }));
      const b = await until("b2 recorded from the notification", async () => {
        const r = await recordOf(ns, "b");
        return r?.current?.build.id === "b2" ? r : undefined;
      });
      expect(b.history.find((h) => h.buildId === "b2")).toMatchObject({ result: "applied", app: "b" });
      expect((await recordOf(ns, "default"))?.history.some((h) => h.buildId === "b2")).toBe(false);

      // Nothing of the hostile bundles reached the cluster; every message is gone, none kept for redrive.
      expect(await names(ns, "configmaps")).toEqual(["b-main"]);
      expect((await objectJson(ns, "configmap", "b-main"))?.data).toEqual({ build: "b2" });
      await until("the queue empty", async () => {
        const d = await queueDepth(queue.url);
        return d.visible + d.inFlight + d.delayed === 0;
      });
      expect(await queueDepth(queue.deadLetterUrl!)).toEqual({ visible: 0, inFlight: 0, delayed: 0 });
      expect(listener.child.exitCode).toBeNull();
    } finally {
      await stopped(listener);
    }
  }, 180_000);
});

function signingKey(): SigningKey & { publicKeyPem: string } {
  const pair = generateSigningKeyPair();
  const key = parseSigningKey(pair.privateKeyPem);
  if ("problem" in key) throw new Error(key.problem);
  return Object.assign(key, { publicKeyPem: pair.publicKeyPem });
}

/**
 * A TCP proxy on 127.0.0.1 to `upstreamPort`: `cut()` closes it (new connections are refused,
 * open ones reset), `restore()` opens it again on the same port.
 */
async function startCuttableProxy(upstreamPort: number): Promise<{ port: number; cut(): Promise<void>; restore(): Promise<void>; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  let server: Server | undefined;
  const listen = (port: number) =>
    new Promise<number>((resolve, reject) => {
      const s = createServer((downstream) => {
        const upstream = connect(upstreamPort, "127.0.0.1");
        for (const socket of [downstream, upstream]) {
          sockets.add(socket);
          socket.on("close", () => sockets.delete(socket));
          socket.on("error", () => {
            downstream.destroy();
            upstream.destroy();
          });
        }
        downstream.pipe(upstream).pipe(downstream);
      });
      s.once("error", reject);
      s.listen(port, "127.0.0.1", () => {
        server = s;
        resolve((s.address() as { port: number }).port);
      });
    });
  const shut = async () => {
    const s = server;
    server = undefined;
    if (s === undefined) return;
    const closed = new Promise<void>((resolve) => s.close(() => resolve()));
    for (const socket of sockets) socket.resetAndDestroy();
    await closed;
  };
  const port = await listen(0);
  return { port, cut: shut, restore: async () => void (await listen(port)), close: shut };
}
