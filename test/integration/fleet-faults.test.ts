/**
 * A fleet under faults, asserted on the cluster, each record and each queue: moto's SNS topic
 * fans signed bundles out to one queue per cluster (each with a dead-letter queue). Cluster
 * fleet-a runs two listener replicas on one queue and namespace, fleet-b one; one fleet-a
 * replica is SIGKILLed between an apply and its record. Then hostile bodies sent straight to
 * fleet-a's queue (a widened `targets` under a kept signature, a bundle for other clusters, an
 * unsigned one, one with both `target` and `targets`), and a listener without a target that
 * receives a fleet publish.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { CreateTopicCommand, SNSClient, SubscribeCommand } from "@aws-sdk/client-sns";
import { CreateQueueCommand, GetQueueAttributesCommand, ReceiveMessageCommand, SendMessageCommand, SQSClient } from "@aws-sdk/client-sqs";
import { createNamespace, kubectl, startDedicatedMoto } from "../env/testenv.ts";
import { MOTO_REGION } from "../env/moto.ts";
import { configMap } from "../helpers/bundles.ts";
import { startListener, type ListenerProcess } from "../helpers/listener-process.ts";
import { readRecord } from "../helpers/record.ts";
import { awsTestEnv, runProcess } from "../helpers/run.ts";
import { until } from "../helpers/until.ts";
import type { VersionRecord } from "../../lib/kube/record.ts";
import type { KubeObject } from "../../lib/manifests/bundle.ts";
import { ORIGINAL_MESSAGE_ID_ATTRIBUTE, REJECTION_REASON_ATTRIBUTE } from "../../lib/sqs/dead-letter.ts";
import { encodeMessage, type BuildInfo } from "../../lib/wire/message.ts";
import { generateSigningKeyPair, parseSigningKey, signFields, type SigningKey } from "../../lib/wire/signature.ts";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const credentials = { accessKeyId: "test", secretAccessKey: "test" };
const work = mkdtempSync(join(tmpdir(), "kpcd-fleet-faults-"));
/** The app every bundle here belongs to; each listener's apps config puts it in its own namespace. */
const APP = "fleet";
const APP_RECORD = `kube-pico-cd-state-${APP}`;

const pair = generateSigningKeyPair();
const parsedKey = parseSigningKey(pair.privateKeyPem);
if ("problem" in parsedKey) throw new Error(parsedKey.problem);
const ciKey: SigningKey = parsedKey;

interface Cluster {
  target: string;
  namespace: string;
  queueUrl: string;
  deadLetterUrl: string;
  queueArn: string;
}

let endpoint = "";
let topicArn = "";
let resultQueueUrl = "";
let sqs: SQSClient;
let sns: SNSClient;
let fleetA: Cluster;
let fleetB: Cluster;
/** Both fleet-a replicas, then fleet-b's listener; test 3 adds fleet-c's. */
const listeners: ListenerProcess[] = [];
let replicasA: ListenerProcess[] = [];
/** The fleet-a replica that outlives the kill of test 1. */
let survivorA: ListenerProcess | undefined;

const empty = { visible: 0, inFlight: 0, delayed: 0 };

/** A queue with a dead-letter queue that takes a message after five receives. */
async function clusterQueue(target: string, namespace: string): Promise<Cluster> {
  const arnOf = async (url: string) => (await sqs.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ["QueueArn"] }))).Attributes!["QueueArn"]!;
  const deadLetterUrl = (await sqs.send(new CreateQueueCommand({ QueueName: `deploy-${target}-dlq` }))).QueueUrl!;
  const redrive = JSON.stringify({ deadLetterTargetArn: await arnOf(deadLetterUrl), maxReceiveCount: 5 });
  const queueUrl = (await sqs.send(new CreateQueueCommand({ QueueName: `deploy-${target}`, Attributes: { VisibilityTimeout: "5", RedrivePolicy: redrive } }))).QueueUrl!;
  return { target, namespace, queueUrl, deadLetterUrl, queueArn: await arnOf(queueUrl) };
}

async function subscribe(cluster: Cluster, raw: boolean): Promise<void> {
  await sns.send(new SubscribeCommand({ TopicArn: topicArn, Protocol: "sqs", Endpoint: cluster.queueArn, ...(raw ? { Attributes: { RawMessageDelivery: "true" } } : {}) }));
}

async function queueDepth(queueUrl: string): Promise<{ visible: number; inFlight: number; delayed: number }> {
  const { Attributes = {} } = await sqs.send(
    new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessagesDelayed"] }),
  );
  return {
    visible: Number(Attributes.ApproximateNumberOfMessages ?? 0),
    inFlight: Number(Attributes.ApproximateNumberOfMessagesNotVisible ?? 0),
    delayed: Number(Attributes.ApproximateNumberOfMessagesDelayed ?? 0),
  };
}

/** Waits until `queueUrl` holds nothing: a deletion follows the record by a moment. */
async function drained(queueUrl: string): Promise<void> {
  await until(`queue ${queueUrl} empty`, async () => {
    const d = await queueDepth(queueUrl);
    return d.visible + d.inFlight + d.delayed === 0;
  });
}

function listenerFor(cluster: Cluster, env: Record<string, string>): Promise<ListenerProcess> {
  // Objects without a namespace go where the apps config says, not to kubectl's default.
  const appsConfig = join(work, `apps-${cluster.target}.yaml`);
  writeFileSync(appsConfig, `apps:\n  - name: ${APP}\n    namespaces: [${cluster.namespace}]\n    defaultNamespace: ${cluster.namespace}\n`);
  return startListener({
    queueUrl: cluster.queueUrl,
    namespace: cluster.namespace,
    env: {
      KUBE_PICO_CD_ENDPOINT_URL: endpoint,
      AWS_REGION: MOTO_REGION,
      KUBE_PICO_CD_TRUSTED_KEYS: pair.publicKeyPem,
      KUBE_PICO_CD_VISIBILITY_TIMEOUT_SECONDS: "5",
      KUBE_PICO_CD_HEALTH_TIMEOUT_SECONDS: "60",
      KUBE_PICO_CD_LOG_LEVEL: "info",
      KUBE_PICO_CD_APPS_CONFIG: appsConfig,
      ...env,
    },
  });
}

/** The app's record in a cluster's namespace. */
const recordOf = (cluster: Cluster): Promise<VersionRecord | undefined> => readRecord(cluster.namespace, { name: APP_RECORD });

/** A ConfigMap's data, or undefined when it does not exist. */
async function configMapData(namespace: string, name: string): Promise<Record<string, string> | undefined> {
  const got = await kubectl(["get", "configmap", name, "-n", namespace, "-o", "json"]);
  if (got.code !== 0 && got.stderr.includes("NotFound")) return undefined;
  if (got.code !== 0) throw new Error(`reading configmap ${namespace}/${name} failed: ${got.stderr}`);
  return (JSON.parse(got.stdout) as { data?: Record<string, string> }).data;
}

/**
 * A manifests directory without namespaces (each listener applies it in its own): a ConfigMap
 * and a Deployment, whose rollout keeps the listener seconds between the apply and the record.
 */
function manifests(name: string, color: string): string {
  const dir = join(work, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "settings.yaml"), `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  color: ${color}\n`);
  writeFileSync(
    join(dir, "web.yaml"),
    "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n        - name: app\n          image: example.invalid/app:1\n",
  );
  return dir;
}

/** Runs publish.ts as CI would, signing with the fleet's key, against moto for both SNS and SQS. */
async function publish(args: string[]) {
  return await runProcess([process.execPath, join(root, "publish.ts"), ...args], {
    env: { ...(await awsTestEnv()), KUBE_PICO_CD_ENDPOINT_URL: endpoint, AWS_REGION: MOTO_REGION, KUBE_PICO_CD_SIGNING_KEY: pair.privateKeyPem },
  });
}

/** The result table's rows after "Targets: …", as [target, result, build, health], by target (the table is in order of answer). */
function tableRows(stdout: string, count: number): string[][] {
  const table = stdout.slice(stdout.indexOf(`Targets: ${count} of ${count} expected answered`));
  return table
    .split("\n")
    .slice(2, 2 + count)
    .map((line) => line.trim().split(/\s{2,}/).slice(0, 4))
    .sort((x, y) => x[0]!.localeCompare(y[0]!));
}

async function stopped(listener: ListenerProcess): Promise<void> {
  if (listener.child.exitCode !== null || listener.child.signalCode !== null) return;
  listener.kill("SIGTERM");
  await listener.exited;
}

beforeAll(async () => {
  const moto = await startDedicatedMoto();
  endpoint = moto.endpoint;
  const config = { endpoint, region: MOTO_REGION, credentials };
  sqs = new SQSClient(config);
  sns = new SNSClient(config);
  topicArn = (await sns.send(new CreateTopicCommand({ Name: "fleet-deploys" }))).TopicArn!;
  resultQueueUrl = (await sqs.send(new CreateQueueCommand({ QueueName: "fleet-results" }))).QueueUrl!;
  fleetA = await clusterQueue("fleet-a", await createNamespace("fleet-a"));
  fleetB = await clusterQueue("fleet-b", await createNamespace("fleet-b"));
  // fleet-a reads raw bodies, fleet-b SNS's notification envelopes.
  await subscribe(fleetA, true);
  await subscribe(fleetB, false);
  const withResults = (target: string) => ({ KUBE_PICO_CD_TARGET: target, KUBE_PICO_CD_RESULT_QUEUE: resultQueueUrl });
  replicasA = [await listenerFor(fleetA, withResults("fleet-a")), await listenerFor(fleetA, withResults("fleet-a"))];
  listeners.push(...replicasA, await listenerFor(fleetB, withResults("fleet-b")));
  await Promise.all(listeners.map((l) => l.waitForLog((line) => line.msg === "listening", 90_000)));
  for (const l of listeners) expect(l.lines.find((line) => line.msg === "listening")?.["requireTarget"]).toBe(true);
}, 180_000);

afterAll(async () => {
  await Promise.all(listeners.map(stopped));
  sqs?.destroy();
  sns?.destroy();
});

describe("a fleet publish with a replica killed between apply and record", () => {
  test("publish --topic --target fleet-a,fleet-b --wait, the fleet-a replica that applied it SIGKILLed before its record: the other replica finishes it; both clusters on the build with one applied entry each; queues and dead-letter queues empty", async () => {
    const applied = Promise.race(
      replicasA.map((replica, index) =>
        replica.waitForLog((line) => line.msg === "build applied" && line["build"] === "f1", 120_000).then(
          () => index,
          () => new Promise<never>(() => {}),
        ),
      ),
    );
    const publishing = publish([manifests("f1", "blue"), "--topic", topicArn, "--app", APP, "--build-id", "f1", "--target", "fleet-a,fleet-b", "--result-queue", resultQueueUrl, "--wait", "150"]);
    const killed = await applied;
    replicasA[killed]!.kill("SIGKILL");
    expect(await replicasA[killed]!.exited).toBe("SIGKILL");
    survivorA = replicasA[1 - killed]!;
    // The worst moment: the cluster has the build, the record names it only as in flight.
    const interrupted = await recordOf(fleetA);
    expect(interrupted?.inflight?.build.id).toBe("f1");
    expect(interrupted?.current).toBeNull();

    const run = await publishing;
    expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: "" });
    expect(tableRows(run.stdout, 2)).toEqual([
      ["fleet-a", "applied", "f1", "Healthy"],
      ["fleet-b", "applied", "f1", "Healthy"],
    ]);
    expect(run.stdout).toContain("Deploy succeeded on 2 targets");
    // The survivor resumed the build the killed replica left in flight.
    const resumed = await survivorA.waitForLog((line) => line.msg === "build applied" && line["build"] === "f1", 1_000);
    expect(resumed["build"]).toBe("f1");

    for (const cluster of [fleetA, fleetB]) {
      expect({ target: cluster.target, data: await configMapData(cluster.namespace, "settings") }).toEqual({ target: cluster.target, data: { color: "blue" } });
      const record = await recordOf(cluster);
      expect({ target: cluster.target, current: record?.current?.build.id, inflight: record?.inflight }).toEqual({ target: cluster.target, current: "f1", inflight: null });
      expect({ target: cluster.target, history: record?.history.map((h) => [h.result, h.buildId]) }).toEqual({ target: cluster.target, history: [["applied", "f1"]] });
      await drained(cluster.queueUrl);
      expect({ target: cluster.target, deadLetter: await queueDepth(cluster.deadLetterUrl) }).toEqual({ target: cluster.target, deadLetter: empty });
    }
  }, 240_000);
});

describe("hostile bodies straight to fleet-a's queue", () => {
  const build = (id: string): BuildInfo => ({ id, timestampMs: Date.now() });
  const hostileObjects = (name: string): KubeObject[] => [configMap(fleetA.namespace, name, { color: "evil" })];
  const signedFor = (id: string, targets: string[]) => encodeMessage({ app: APP, build: build(id), targets, objects: hostileObjects(id), sign: (fields) => signFields(fields, ciKey) }).body;

  async function send(body: string): Promise<string> {
    return (await sqs.send(new SendMessageCommand({ QueueUrl: fleetA.queueUrl, MessageBody: body }))).MessageId!;
  }

  /** Sends `body` and waits for its rejection in fleet-a's record; asserts nothing applied and both queues empty. */
  async function rejectedInRecord(id: string, body: string): Promise<{ error: string | undefined; historyLength: number }> {
    const messageId = await send(body);
    const record = await until(`the rejection of ${id} in fleet-a's record`, async () => {
      const r = await recordOf(fleetA);
      return r?.history.some((h) => h.messageId === messageId) ? r : undefined;
    });
    const entry = record.history.find((h) => h.messageId === messageId)!;
    expect(entry.result).toBe("rejected");
    expect(record.current?.build.id).toBe("f1");
    expect(await configMapData(fleetA.namespace, id)).toBeUndefined();
    expect(await configMapData(fleetA.namespace, "settings")).toEqual({ color: "blue" });
    await drained(fleetA.queueUrl);
    expect(await queueDepth(fleetA.deadLetterUrl)).toEqual(empty);
    return { error: entry.error, historyLength: record.history.length };
  }

  test("(a) signed for fleet-a,fleet-b, then targets changed to fleet-a,fleet-x with the signature kept: rejected bad-signature, recorded, deleted, nothing applied", async () => {
    const body = JSON.parse(signedFor("h-widened", ["fleet-a", "fleet-b"])) as Record<string, unknown>;
    body["targets"] = ["fleet-a", "fleet-x"];
    const { error } = await rejectedInRecord("h-widened", JSON.stringify(body));
    expect(error).toBe(
      `bad-signature: Rejected message: the signature of build "h-widened" by key ${ciKey.keyId} does not match: the manifests or a signed field (app, mode, build, target, targets, manifests, sources) changed after signing (the message is deleted)`,
    );
  }, 90_000);

  test("(b) signed for fleet-b,fleet-c: fleet-a deletes it unrecorded, unapplied, with no dead-letter copy", async () => {
    const before = await recordOf(fleetA);
    const messageId = await send(signedFor("h-others", ["fleet-b", "fleet-c"]));
    await survivorA!.waitForLog((line) => line.msg === "message for other targets; deleted" && line["messageId"] === messageId, 60_000);
    await drained(fleetA.queueUrl);
    const after = await recordOf(fleetA);
    expect(after?.history.length).toBe(before!.history.length);
    expect(after?.history.some((h) => h.messageId === messageId || h.buildId === "h-others")).toBe(false);
    expect(after?.current?.build.id).toBe("f1");
    expect(await configMapData(fleetA.namespace, "h-others")).toBeUndefined();
    expect(await queueDepth(fleetA.deadLetterUrl)).toEqual(empty);
  }, 90_000);

  test("(c) unsigned, for fleet-a,fleet-b: rejected unsigned, recorded, deleted, nothing applied", async () => {
    const body = encodeMessage({ app: APP, build: build("h-unsigned"), targets: ["fleet-a", "fleet-b"], objects: hostileObjects("h-unsigned") }).body;
    const { error } = await rejectedInRecord("h-unsigned", body);
    expect(error).toBe(
      `unsigned: Rejected message: build "h-unsigned" is not signed, and this listener applies only bundles signed by a trusted key (${ciKey.keyId}) (the message is deleted)`,
    );
  }, 90_000);

  test("(d) signed for fleet-a,fleet-b with target fleet-a added: rejected schema, recorded, deleted, nothing applied", async () => {
    const body = JSON.parse(signedFor("h-both", ["fleet-a", "fleet-b"])) as Record<string, unknown>;
    body["target"] = "fleet-a";
    const { error } = await rejectedInRecord("h-both", JSON.stringify(body));
    expect(error).toBe("schema: Rejected message: not a valid kube-pico-cd.bundle version 1: target and targets cannot both be given (the message is deleted)");
  }, 90_000);
});

describe("a listener without a target in the fleet", () => {
  test("fleet-c, with no target, subscribed to the topic: a publish for fleet-a,fleet-b is rejected there as target, recorded and kept in its dead-letter queue; nothing applied in its namespace", async () => {
    const fleetC = await clusterQueue("fleet-c", await createNamespace("fleet-c"));
    await subscribe(fleetC, false);
    const listenerC = await listenerFor(fleetC, {});
    listeners.push(listenerC);
    const listening = await listenerC.waitForLog((line) => line.msg === "listening", 90_000);
    expect(listening["requireTarget"]).toBe(false);

    const run = await publish([manifests("f2", "green"), "--topic", topicArn, "--app", APP, "--build-id", "f2", "--target", "fleet-a,fleet-b", "--result-queue", resultQueueUrl, "--wait", "120"]);
    expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: "" });
    expect(tableRows(run.stdout, 2)).toEqual([
      ["fleet-a", "applied", "f2", "Healthy"],
      ["fleet-b", "applied", "f2", "Healthy"],
    ]);

    // fleet-c never deployed the app, so the rejection goes to the default app's record: a
    // rejected body's app is not proven, and rejections create no app record.
    const record = await until("fleet-c's record of the rejection", async () => {
      const r = await readRecord(fleetC.namespace);
      return r !== undefined && r.history.length > 0 ? r : undefined;
    });
    expect(await recordOf(fleetC)).toBeUndefined();
    await drained(fleetC.queueUrl);
    const kept = (await sqs.send(new ReceiveMessageCommand({ QueueUrl: fleetC.deadLetterUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1, VisibilityTimeout: 60, MessageAttributeNames: ["All"] }))).Messages ?? [];
    expect(kept.map((m) => m.MessageAttributes?.[REJECTION_REASON_ATTRIBUTE]?.StringValue)).toEqual(["target"]);
    const messageId = kept[0]!.MessageAttributes?.[ORIGINAL_MESSAGE_ID_ATTRIBUTE]?.StringValue;
    expect(record.current).toBeNull();
    expect(record.inflight).toBeNull();
    expect(record.history.map((h) => [h.result, h.buildId, h.messageId])).toEqual([["rejected", "f2", messageId]]);
    expect(record.history[0]?.error).toBe(`target: The message is for targets "fleet-a", "fleet-b" but this listener has no target (the message goes to the dead-letter queue for redrive)`);
    expect(await configMapData(fleetC.namespace, "settings")).toBeUndefined();
    const deployments = await kubectl(["get", "deployments", "-n", fleetC.namespace, "-o", "jsonpath={.items[*].metadata.name}"]);
    expect({ code: deployments.code, names: deployments.stdout }).toEqual({ code: 0, names: "" });
    // fleet-a and fleet-b took the build.
    for (const cluster of [fleetA, fleetB]) {
      expect({ target: cluster.target, data: await configMapData(cluster.namespace, "settings"), build: (await recordOf(cluster))?.current?.build.id }).toEqual({ target: cluster.target, data: { color: "green" }, build: "f2" });
    }
  }, 240_000);
});
