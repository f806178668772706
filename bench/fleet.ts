/**
 * The fleet benchmark: one publish to an SNS topic reaches LISTENERS listeners (default 20),
 * each a compiled listener (bench/compile.ts) with its own target, namespace and queue
 * subscribed to the topic (alternately raw delivery and SNS envelopes), against one listener's
 * deploy of the same bundle from a queue of its own, measured in the same run. SNS and SQS are
 * moto's server (test/env/moto.ts); the cluster is the test environment's kube-apiserver.
 *
 * ROUNDS times (default 5), one after another: the floor (SendMessage of the bundle to the
 * lone listener's queue → a watch on its record (bench/watch.ts) delivers the write naming the
 * build as current), then the fleet (SNS Publish of the same bundle with `targets` naming every
 * listener, as `publish --topic --target …` sends it → the last of the LISTENERS records names
 * it). Interleaved, so both see the same machine. Printed: each round, the medians, and the
 * fleet's median over the floor's. Every record must name every build, and each namespace
 * must hold the ConfigMap of the last build, or the run prints FAILED and exits 1.
 *
 * Every listener long-polls (20 s, the production setting) and runs with the health wait on
 * (a ConfigMap is healthy at once). moto delivers to the subscribed queues as it publishes.
 *
 *   bun bench/fleet.ts
 *   LISTENERS=5 ROUNDS=2 bun bench/fleet.ts
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { CreateTopicCommand, PublishCommand, SNSClient, SubscribeCommand } from "@aws-sdk/client-sns";
import { CreateQueueCommand, GetQueueAttributesCommand, SendMessageCommand, SQSClient } from "@aws-sdk/client-sqs";
import { KubeApi } from "../lib/kube/api.ts";
import { loadKubeConnection } from "../lib/kube/kubeconfig.ts";
import { decodeRecord, DEFAULT_STATE_CONFIGMAP } from "../lib/kube/record.ts";
import { appObjectName } from "../lib/listener/apps.ts";
import type { KubeObject } from "../lib/manifests/bundle.ts";
import { encodeMessage } from "../lib/wire/message.ts";
import { environmentInfo, startEnvironment, type Environment } from "../test/env/environment.ts";
import { MOTO_REGION, startMoto, type Moto } from "../test/env/moto.ts";
import { listenerEnv } from "../test/helpers/listener-process.ts";
import { compileForHost } from "./compile.ts";
import { startProcess, type Running } from "./process.ts";
import { watchObject, type Watch } from "./watch.ts";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");

function countFromEnv(name: string, fallback: number): number {
  const text = process.env[name];
  if (text === undefined || text === "") return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1) throw new RangeError(`Cannot run the benchmark as ${name} must be a positive integer: current value is ${JSON.stringify(text)}`);
  return value;
}

const LISTENERS = countFromEnv("LISTENERS", 20);
const ROUNDS = countFromEnv("ROUNDS", 5);
const APP = "fleet";
/** Pause between measurements, so that one's tail (result sends, Events) does not overlap the next. */
const SETTLE_MS = 2_000;
const TIMEOUT_MS = 120_000;

const progress = (text: string) => console.error(`[fleet] ${text}`);
const median = (values: readonly number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
};
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** When each namespace's record first named each build as current. */
class Recorded {
  readonly #seen = new Map<string, number>();
  readonly #waiters = new Map<string, (arrivedMs: number) => void>();

  saw(namespace: string, buildId: string, arrivedMs: number): void {
    const key = `${namespace}\n${buildId}`;
    if (this.#seen.has(key)) return;
    this.#seen.set(key, arrivedMs);
    this.#waiters.get(key)?.(arrivedMs);
  }

  /** When `namespace`'s record named `buildId`, or undefined after `timeoutMs`. */
  when(namespace: string, buildId: string, timeoutMs: number): Promise<number | undefined> {
    const key = `${namespace}\n${buildId}`;
    const seen = this.#seen.get(key);
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(undefined), timeoutMs);
      this.#waiters.set(key, (arrivedMs) => {
        clearTimeout(timer);
        resolve(arrivedMs);
      });
    });
  }
}

const work = mkdtempSync(join(tmpdir(), "kube-pico-cd-env-bench-fleet-"));
writeFileSync(join(work, "owner.pid"), String(process.pid));
let env: Environment | undefined;
let moto: Moto | undefined;
const listeners: Running[] = [];
const watches: Watch[] = [];
const problems: string[] = [];

try {
  progress(`LISTENERS=${LISTENERS} ROUNDS=${ROUNDS}; ${cpus().length} cores, load ${loadavg()[0]!.toFixed(2)}; compiling the listener`);
  const binary = compileForHost(join(root, "listener.ts"), join(work, "kube-pico-cd-listener"));
  progress("starting the environment (kube-apiserver) and moto (SNS, SQS)");
  env = await startEnvironment();
  const stateFile = join(work, "env.json");
  writeFileSync(stateFile, JSON.stringify(environmentInfo(env)));
  // The test helpers find the environment through this variable, as after `npm run env:up`.
  process.env.KPCD_TEST_ENV_STATE = stateFile;
  const motoDir = join(work, "moto");
  mkdirSync(motoDir);
  moto = await startMoto(motoDir);
  const cluster = env;
  const aws = { endpoint: moto.endpoint, region: MOTO_REGION, credentials: { accessKeyId: "bench", secretAccessKey: "bench" } };
  const sqs = new SQSClient(aws);
  const sns = new SNSClient(aws);
  const api = new KubeApi(await loadKubeConnection({ kubeconfig: cluster.kubeconfig, env: {} }));
  const topicArn = (await sns.send(new CreateTopicCommand({ Name: "bench-fleet" }))).TopicArn!;
  const recorded = new Recorded();

  const targets = Array.from({ length: LISTENERS }, (_, i) => `cluster-${String(i + 1).padStart(2, "0")}`);
  const members = [...targets.map((target) => ({ target, namespace: `bench-${target}` })), { target: "floor", namespace: "bench-floor" }];
  let floorQueue = "";
  for (const [index, member] of members.entries()) {
    await api.request({ method: "POST", path: "/api/v1/namespaces", body: { apiVersion: "v1", kind: "Namespace", metadata: { name: member.namespace } } });
    const queueUrl = (await sqs.send(new CreateQueueCommand({ QueueName: `bench-${member.target}` }))).QueueUrl!;
    if (member.target === "floor") floorQueue = queueUrl;
    else {
      const queueArn = (await sqs.send(new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: ["QueueArn"] }))).Attributes!["QueueArn"]!;
      await sns.send(new SubscribeCommand({ TopicArn: topicArn, Protocol: "sqs", Endpoint: queueArn, ...(index % 2 === 0 ? { Attributes: { RawMessageDelivery: "true" } } : {}) }));
    }
    watches.push(
      watchObject(cluster, `/api/v1/namespaces/${member.namespace}/configmaps`, appObjectName(DEFAULT_STATE_CONFIGMAP, APP), (event) => {
        if (event.type === "DELETED") return;
        const id = decodeRecord(event.object["data"] as Record<string, string> | undefined).current?.build.id;
        if (id !== undefined) recorded.saw(member.namespace, id, event.arrivedMs);
      }),
    );
    const appsConfig = join(work, `apps-${member.target}.yaml`);
    writeFileSync(appsConfig, `apps:\n  - name: ${APP}\n    namespaces: [${member.namespace}]\n    defaultNamespace: ${member.namespace}\n`);
    const listenerEnvironment = await listenerEnv({
      queueUrl,
      namespace: member.namespace,
      env: {
        KUBE_PICO_CD_ENDPOINT_URL: moto.endpoint,
        AWS_REGION: MOTO_REGION,
        KUBE_PICO_CD_TARGET: member.target,
        KUBE_PICO_CD_APPS_CONFIG: appsConfig,
        // Production settings, where the test helpers shorten them.
        KUBE_PICO_CD_WAIT_TIME_SECONDS: "20",
        KUBE_PICO_CD_LEASE_DURATION_SECONDS: "30",
        KUBE_PICO_CD_LOG_LEVEL: "info",
      },
    });
    listeners.push(startProcess([binary.path], listenerEnvironment));
  }
  await Promise.all(watches.map((watch) => watch.ready));
  await Promise.all(listeners.map((listener) => listener.waitForLine((line) => line.msg === "listening", 60_000)));
  progress(`${members.length} listeners listening (${LISTENERS} on the topic, 1 alone); load ${loadavg()[0]!.toFixed(2)}`);
  await sleep(SETTLE_MS);

  const objects = (buildId: string): KubeObject[] => [{ apiVersion: "v1", kind: "ConfigMap", metadata: { name: "settings" }, data: { build: buildId } } as KubeObject];
  const floorMs: number[] = [];
  const fleetMs: number[] = [];
  const publishMs: number[] = [];
  let lastFleetBuild = "";
  for (let round = 1; round <= ROUNDS; round++) {
    const floorBuild = `floor-${round}`;
    const floorBody = encodeMessage({ app: APP, build: { id: floorBuild, timestampMs: Date.now() }, target: "floor", objects: objects(floorBuild) }).body;
    const floorSentMs = Date.now();
    await sqs.send(new SendMessageCommand({ QueueUrl: floorQueue, MessageBody: floorBody }));
    const floorDoneMs = await recorded.when("bench-floor", floorBuild, TIMEOUT_MS);
    if (floorDoneMs === undefined) throw new Error(`The lone listener did not record ${floorBuild} within ${TIMEOUT_MS} ms`);
    floorMs.push(floorDoneMs - floorSentMs);
    await sleep(SETTLE_MS);

    const fleetBuild = `fleet-${round}`;
    lastFleetBuild = fleetBuild;
    const fleetBody = encodeMessage({ app: APP, build: { id: fleetBuild, timestampMs: Date.now() }, targets, objects: objects(fleetBuild) }).body;
    const fleetSentMs = Date.now();
    await sns.send(new PublishCommand({ TopicArn: topicArn, Message: fleetBody }));
    // moto delivers to every subscribed queue before Publish returns.
    publishMs.push(Date.now() - fleetSentMs);
    const done = await Promise.all(targets.map((target) => recorded.when(`bench-${target}`, fleetBuild, TIMEOUT_MS)));
    const missing = targets.filter((_, i) => done[i] === undefined);
    if (missing.length > 0) {
      problems.push(`${fleetBuild} was not recorded within ${TIMEOUT_MS} ms by ${missing.join(", ")}`);
      break;
    }
    const times = done.map((ms) => ms! - fleetSentMs);
    fleetMs.push(Math.max(...times));
    progress(`round ${round}: one listener ${floorMs.at(-1)} ms; ${LISTENERS} listeners: first ${Math.min(...times)} ms, median ${median(times)} ms, last ${Math.max(...times)} ms`);
    await sleep(SETTLE_MS);
  }
  for (const target of targets) {
    const { data } = await api.request<{ data?: Record<string, string> }>({ method: "GET", path: `/api/v1/namespaces/bench-${target}/configmaps/settings` });
    if (data?.["build"] !== lastFleetBuild) problems.push(`bench-${target}/settings holds ${JSON.stringify(data)}, not build ${lastFleetBuild}`);
  }
  if (fleetMs.length === ROUNDS) {
    const floor = median(floorMs);
    const fleet = median(fleetMs);
    console.log(`one listener, one queue (SendMessage → record): ${floorMs.join(", ")} ms; median ${floor} ms`);
    console.log(`${LISTENERS} listeners, one topic (Publish → the last of ${LISTENERS} records): ${fleetMs.join(", ")} ms; median ${fleet} ms`);
    console.log(`ratio: ${(fleet / floor).toFixed(2)} × one listener's deploy; ${(fleet / (LISTENERS * floor)).toFixed(2)} × ${LISTENERS} of them one after another (${cpus().length} cores, load ${loadavg()[0]!.toFixed(2)} at the end)`);
    console.log(`Publish (moto's fan-out to ${LISTENERS} queues): ${publishMs.join(", ")} ms; median ${median(publishMs)} ms`);
  }
  sqs.destroy();
  sns.destroy();
} finally {
  for (const watch of watches) watch.stop();
  await Promise.all(
    listeners.map(async (listener) => {
      if (listener.child.exitCode === null && listener.child.signalCode === null) listener.child.kill("SIGTERM");
      await listener.exited;
    }),
  );
  await moto?.stop();
  await env?.stop();
  rmSync(work, { recursive: true, force: true });
}

if (problems.length > 0) {
  const banner = `\nFAILED: ${problems.length} problem${problems.length === 1 ? "" : "s"}:\n${problems.map((p) => `  - ${p}`).join("\n")}`;
  console.log(banner);
  console.error(banner);
  process.exitCode = 1;
}
