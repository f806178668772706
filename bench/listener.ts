/**
 * Listener benchmarks, in one run against the local test environment (ElasticMQ and a real
 * kube-apiserver):
 *
 * 1. Pickup latency: SendMessage returned → the listener starts kubectl for the apply, over
 *    DEPLOYS deploys (default 50), next to the floor: a bare SDK long-poll receive loop
 *    (SendMessage returned → ReceiveMessage returned).
 * 2. End-to-end deploy of a 300-object bundle (SendMessage returned → outcome recorded),
 *    next to a bare `kubectl apply --server-side` of the same objects.
 *
 *   bun bench/listener.ts            (DEPLOYS=50 ROUNDS=5 by default)
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { ReceiveMessageCommand, SendMessageCommand, SQSClient } from "@aws-sdk/client-sqs";
import type { KubeObject } from "../lib/manifests/bundle.ts";
import { encodeMessage } from "../lib/wire/message.ts";
import { startEnvironment } from "../test/env/environment.ts";
import { startListener, type ListenerProcess } from "../test/helpers/listener-process.ts";

process.env.AWS_ACCESS_KEY_ID = "bench";
process.env.AWS_SECRET_ACCESS_KEY = "bench";
process.env.AWS_REGION = "us-east-1";

const DEPLOYS = Number(process.env.DEPLOYS ?? 50);
const ROUNDS = Number(process.env.ROUNDS ?? 5);

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

function median(values: number[]): number {
  return percentile(values, 50);
}

function run(cmd: string, args: string[], stdin: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ["pipe", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    child.once("exit", (code) => (code === 0 ? resolve(0) : reject(new Error(`${cmd} ${args.join(" ")} failed: ${stderr}`))));
    child.stdin.end(stdin);
  });
}

const env = await startEnvironment();
// The test helpers read the environment from this variable, as with `npm run env:up`.
const { writeFileSync, mkdtempSync } = await import("node:fs");
const stateFile = `${mkdtempSync("/tmp/kpcd-bench-")}/env.json`;
writeFileSync(stateFile, JSON.stringify({ ...env, controlPlane: undefined, elasticmq: undefined }));
process.env.KPCD_TEST_ENV_STATE = stateFile;

const sqs = new SQSClient({ endpoint: env.sqsEndpoint, region: env.region });
const kubectl = (args: string[], stdin = "") => run(env.kubectl, ["--kubeconfig", env.kubeconfig, ...args], stdin);
const newQueue = async () => {
  const { CreateQueueCommand } = await import("@aws-sdk/client-sqs");
  return (await sqs.send(new CreateQueueCommand({ QueueName: `bench-${randomBytes(4).toString("hex")}` }))).QueueUrl!;
};
const cm = (ns: string, name: string, data: Record<string, string>) => ({ apiVersion: "v1", kind: "ConfigMap", metadata: { name, namespace: ns }, data }) as KubeObject;

let listener: ListenerProcess | undefined;
try {
  // 1a. The floor: a bare long-poll receive loop.
  const floorQueue = await newQueue();
  const floor: number[] = [];
  for (let i = 0; i < DEPLOYS; i++) {
    const receiving = sqs.send(new ReceiveMessageCommand({ QueueUrl: floorQueue, WaitTimeSeconds: 20, MaxNumberOfMessages: 10 }));
    await new Promise((r) => setTimeout(r, 20));
    await sqs.send(new SendMessageCommand({ QueueUrl: floorQueue, MessageBody: `m${i}` }));
    const sent = performance.timeOrigin + performance.now();
    await receiving;
    floor.push(performance.timeOrigin + performance.now() - sent);
  }

  // 1b. The listener's pickup: SendMessage returned → "applying build" logged, right before kubectl starts.
  const ns = `bench-${randomBytes(3).toString("hex")}`;
  await kubectl(["create", "namespace", ns]);
  const queue = await newQueue();
  listener = await startListener({ queueUrl: queue, namespace: ns, env: { KUBE_PICO_CD_WAIT_TIME_SECONDS: "20", KUBE_PICO_CD_LOG_LEVEL: "info" } });
  await listener.waitForLog((l) => l.msg === "listening");
  await new Promise((r) => setTimeout(r, 500));
  const pickup: number[] = [];
  for (let i = 1; i <= DEPLOYS; i++) {
    const build = { id: `pickup-${i}`, timestampMs: i };
    const { body } = encodeMessage({ build, objects: [cm(ns, "app", { i: String(i) })] });
    await sqs.send(new SendMessageCommand({ QueueUrl: queue, MessageBody: body }));
    const sent = Date.now();
    const started = await listener.waitForLog((l) => l.msg === "applying build" && l.build === build.id);
    pickup.push(Date.parse(started.time) - sent);
    await listener.waitForLog((l) => l.msg === "outcomes recorded" && l.build === build.id);
    // Let the listener go back to its long poll before the next send.
    await new Promise((r) => setTimeout(r, 100));
  }

  // 2. A 300-object bundle end to end, against a bare kubectl apply of the same objects.
  let kubectlMaxRssBytes = 0;
  const e2e: number[] = [];
  const bare: number[] = [];
  const bareNs = `${ns}-bare`;
  await kubectl(["create", "namespace", bareNs]);
  for (let round = 1; round <= ROUNDS; round++) {
    const objects = Array.from({ length: 300 }, (_, i) => cm(ns, `obj-${i}`, { round: String(round), payload: "x".repeat(200) }));
    const build = { id: `big-${round}`, timestampMs: 1_000_000 + round };
    const { body } = encodeMessage({ build, objects });
    await sqs.send(new SendMessageCommand({ QueueUrl: queue, MessageBody: body }));
    const sent = Date.now();
    const recorded = await listener.waitForLog((l) => l.msg === "outcomes recorded" && l.build === build.id, 120_000);
    e2e.push(Date.parse(recorded.time) - sent);

    const bareObjects = objects.map((o) => ({ ...o, metadata: { ...o.metadata, namespace: bareNs } }));
    const t0 = performance.now();
    // Bun.spawn (bench only) reports the child's peak RSS: kubectl shares the pod's memory limit.
    const child = Bun.spawn([env.kubectl, "--kubeconfig", env.kubeconfig, "apply", "--server-side", "--field-manager=bench", "-f", "-"], {
      stdin: new TextEncoder().encode(JSON.stringify({ apiVersion: "v1", kind: "List", items: bareObjects })),
      stdout: "ignore",
    });
    await child.exited;
    bare.push(performance.now() - t0);
    kubectlMaxRssBytes = Math.max(kubectlMaxRssBytes, child.resourceUsage()?.maxRSS ?? 0);
  }

  const status = (await import("node:fs")).readFileSync(`/proc/${listener.child.pid}/status`, "utf8");
  const listenerPeakRssKiB = Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1] ?? 0);
  const result = {
    listenerPeakRssMiB: Math.round(listenerPeakRssKiB / 1024),
    kubectlApply300PeakRssMiB: Math.round(kubectlMaxRssBytes / 1024 / 1024),
    deploys: DEPLOYS,
    floorReceiveMs: { p50: median(floor), p99: percentile(floor, 99) },
    pickupMs: { p50: median(pickup), p99: percentile(pickup, 99) },
    pickupOverFloor: { p50: median(pickup) / Math.max(1, median(floor)), p99: percentile(pickup, 99) / Math.max(1, percentile(floor, 99)) },
    rounds: ROUNDS,
    deploy300Ms: { median: median(e2e), all: e2e },
    bareApply300Ms: { median: median(bare), all: bare.map(Math.round) },
    deployOverBareApply: median(e2e) / median(bare),
  };
  console.log(JSON.stringify(result, null, 2));
  console.log(
    `\npickup p50 ${result.pickupMs.p50} ms / p99 ${result.pickupMs.p99} ms (bare receive loop: p50 ${result.floorReceiveMs.p50.toFixed(1)} ms / p99 ${result.floorReceiveMs.p99.toFixed(1)} ms)` +
      `\n300-object deploy median ${result.deploy300Ms.median} ms vs bare kubectl apply --server-side ${result.bareApply300Ms.median.toFixed(0)} ms: ratio ${result.deployOverBareApply.toFixed(2)}`,
  );
} finally {
  listener?.kill("SIGTERM");
  await listener?.exited;
  sqs.destroy();
  await env.stop();
}
