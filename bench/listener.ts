/**
 * Listener benchmarks: the compiled listener (bench/compile.ts builds it as `npm run build`
 * does, for this machine, into a temporary directory) against the local test environment
 * (ElasticMQ and a real kube-apiserver), every figure next to a floor measured in the same
 * run:
 *
 * 1. Pickup: SendMessage returned → the listener starts kubectl for the apply, over DEPLOYS
 *    deploys of a one-ConfigMap bundle (default 50), p50 and p99. kubectl is a wrapper script
 *    that appends bash's $EPOCHREALTIME to a file and then execs the real kubectl, so the time
 *    is when the process really started, not when the listener logged that it would. Floor: a
 *    bare SDK long-poll loop on the same ElasticMQ (SendMessage returned → ReceiveMessage
 *    returned). Target: p50 within 20 ms, p99 within 50 ms of the floor. The wrapper's own
 *    start (bash) is measured and printed; it is included in the figure, not subtracted.
 * 2. A 300-object bundle (ConfigMaps), SendMessage returned → the outcome is in the record
 *    ConfigMap, ROUNDS rounds (default 5), against a bare `kubectl apply --server-side -f -` of
 *    the same List (into another namespace). "In the record" is when a watch on the ConfigMap
 *    (bench/watch.ts) delivers the write that names the build as current: the write has been
 *    persisted, and nothing polls the API server meanwhile. The health wait is off
 *    (KUBE_PICO_CD_NO_WAIT_HEALTH), as the bare apply does not wait either; prune runs (it has
 *    nothing to delete, the names stay the same) and so do Events, as in production. One
 *    uncounted warm-up round creates the objects, so every counted round updates 300 objects
 *    on both sides. Target: ratio of medians within 1.10.
 * 3. Memory: VmRSS and VmHWM (/proc/<pid>/status) of the listener after IDLE_SECONDS idle
 *    (default 600) and after MANY back-to-back deploys (default 1000; one-ConfigMap bundles, each
 *    a new build, the next sent as soon as the last is recorded), against a compiled bun
 *    hello-world (bench/hello.ts) started at the same moment and read at the same moments.
 *
 * Also printed, to tell where the time goes: the spans between the listener's steps as seen
 * from outside (watches on its Lease and record, its log lines), what one GET and one
 * compare-and-swap PUT cost through lib/kube/api.ts, and each 300-object round applied a third
 * time with the listener's own kubectl flags (-o json, --force-conflicts).
 *
 * Order: idle, pickup, MANY deploys, the 300-object rounds; so the memory "after MANY deploys"
 * is after DEPLOYS + MANY deploys, and the final peak includes the 300-object rounds.
 *
 *   bun bench/listener.ts
 *   DEPLOYS=30 ROUNDS=3 IDLE_SECONDS=60 MANY=300 bun bench/listener.ts     (about 3 minutes)
 *
 * Times that cross processes (SendMessage, the wrapper, watch events, log lines) are
 * wall-clock milliseconds on this one machine; the floor loop is timed in-process.
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { CreateQueueCommand, ReceiveMessageCommand, SendMessageCommand, SQSClient } from "@aws-sdk/client-sqs";
import { KubeApi } from "../lib/kube/api.ts";
import { applyArgs, toListJson } from "../lib/kube/apply.ts";
import { loadKubeConnection } from "../lib/kube/kubeconfig.ts";
import { DEFAULT_LOCK_LEASE } from "../lib/kube/lease.ts";
import { decodeRecord, DEFAULT_STATE_CONFIGMAP, encodeRecord, type VersionRecord } from "../lib/kube/record.ts";
import type { KubeObject } from "../lib/manifests/bundle.ts";
import { decodeMessage, encodeMessage, type BuildInfo } from "../lib/wire/message.ts";
import { environmentInfo, startEnvironment, type Environment } from "../test/env/environment.ts";
import { listenerEnv } from "../test/helpers/listener-process.ts";
import { compileForHost, type Compiled } from "./compile.ts";
import { readMemory, startProcess, type Memory, type Running } from "./process.ts";
import { watchObject, type Watch } from "./watch.ts";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");

function countFromEnv(name: string, fallback: number): number {
  const text = process.env[name];
  if (text === undefined || text === "") return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1) throw new RangeError(`Cannot run the benchmark as ${name} must be a positive integer: current value is ${JSON.stringify(text)}`);
  return value;
}

const DEPLOYS = countFromEnv("DEPLOYS", 50);
const ROUNDS = countFromEnv("ROUNDS", 5);
const IDLE_SECONDS = countFromEnv("IDLE_SECONDS", 600);
const MANY = countFromEnv("MANY", 1000);
const OBJECTS = 300;

/** Targets: pickup p50 / p99 above the floor, in ms; the 300-object deploy over the bare apply. */
const TARGET_P50_MS = 20;
const TARGET_P99_MS = 50;
const TARGET_DEPLOY_RATIO = 1.1;

/**
 * Pause after a timed deploy is recorded, so that the listener has deleted the message and is
 * back in its long poll when the next one is sent (CI does not publish while the listener is
 * still busy with the last build; a send that finds it busy measures the rest of the last deploy).
 */
const SETTLE_MS = 300;

const started = performance.now();
function progress(text: string): void {
  process.stderr.write(`[${((performance.now() - started) / 1000).toFixed(1).padStart(6)} s] ${text}\n`);
}

/** Nearest-rank percentile (p99 of 50 values is the largest). */
function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}
const median = (values: readonly number[]) => percentile(values, 50);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const mib = (kib: number) => kib / 1024;

/** Events of one kind, kept in order, with waiting for the first that matches. */
class Timeline<T extends { arrivedMs: number }> {
  readonly items: T[] = [];
  #waiters: { predicate: (item: T) => boolean; resolve: (item: T) => void }[] = [];

  push(item: T): void {
    this.items.push(item);
    for (const w of [...this.#waiters]) {
      if (w.predicate(item)) {
        this.#waiters.splice(this.#waiters.indexOf(w), 1);
        w.resolve(item);
      }
    }
  }

  /** The first item at or after `sinceMs` that matches, also when it already arrived. */
  first(sinceMs: number, predicate: (item: T) => boolean): T | undefined {
    return this.items.find((item) => item.arrivedMs >= sinceMs && predicate(item));
  }

  waitFor(sinceMs: number, predicate: (item: T) => boolean, timeoutMs: number, what: string): Promise<T> {
    const seen = this.first(sinceMs, predicate);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`)), timeoutMs);
      this.#waiters.push({
        predicate: (item) => item.arrivedMs >= sinceMs && predicate(item),
        resolve: (item) => {
          clearTimeout(timer);
          resolve(item);
        },
      });
    });
  }
}

/** Runs a process to completion, feeding `stdin`; resolves with its wall time in ms and peak RSS in bytes. */
async function runTimed(argv: readonly string[], stdin = ""): Promise<{ ms: number; maxRssBytes: number }> {
  const t0 = performance.now();
  // Bun.spawn (the benchmark runs under bun) reports the child's peak RSS.
  const child = Bun.spawn([...argv], { stdin: new TextEncoder().encode(stdin), stdout: "ignore", stderr: "pipe" });
  const code = await child.exited;
  const ms = performance.now() - t0;
  if (code !== 0) throw new Error(`Cannot run ${argv.slice(0, 4).join(" ")} …: exit code ${code}: ${await new Response(child.stderr).text()}`);
  return { ms, maxRssBytes: child.resourceUsage()?.maxRSS ?? 0 };
}

/** What one deploy took, all wall-clock ms since the epoch except where named. */
interface DeployTimes {
  sentMs: number;
  /** How long the SendMessage call took (ms): an upper bound of how late `sentMs` may be stamped. */
  sendCallMs: number;
  /** The Lease written with a holder (watch event arrived). */
  leaseMs: number | undefined;
  /** The record written with this build as the in-flight intent (watch event arrived). */
  intentMs: number | undefined;
  /** "applying build" logged (the listener's clock, ms). */
  applyingLoggedMs: number | undefined;
  /** The wrapper started (bash's clock, µs precision). */
  kubectlMs: number;
  /** "build applied" logged, after kubectl exited and its output was read (the listener's clock). */
  appliedLoggedMs: number | undefined;
  /** kubectl's duration as the listener measured it. */
  kubectlDurationMs: number | undefined;
  /** The record written with this build as current (watch event arrived). */
  recordedMs: number;
}

let env: Environment | undefined;
let listener: Running | undefined;
let hello: Running | undefined;
const watches: Watch[] = [];
const work = mkdtempSync(join(tmpdir(), "kpcd-bench-"));
let cleanedUp: Promise<void> | undefined;
const cleanUp = () =>
  (cleanedUp ??= (async () => {
    for (const w of watches) w.stop();
    for (const p of [listener, hello]) {
      if (p === undefined || p.child.exitCode !== null) continue;
      p.child.kill("SIGTERM");
      await Promise.race([p.exited, sleep(30_000)]);
    }
    await env?.stop();
    rmSync(work, { recursive: true, force: true });
  })());
process.once("SIGINT", () => {
  progress("interrupted; stopping the listener and the environment");
  void cleanUp().finally(() => process.exit(130));
});

try {
  progress(`DEPLOYS=${DEPLOYS} ROUNDS=${ROUNDS} IDLE_SECONDS=${IDLE_SECONDS} MANY=${MANY}; compiling the listener and the hello-world`);
  const listenerBinary: Compiled = compileForHost(join(root, "listener.ts"), join(work, "kube-pico-cd-listener"));
  const helloBinary: Compiled = compileForHost(join(root, "bench", "hello.ts"), join(work, "hello"));
  progress(`compiled: listener ${mib(listenerBinary.sizeBytes / 1024).toFixed(0)} MiB in ${listenerBinary.buildMs} ms, hello-world ${mib(helloBinary.sizeBytes / 1024).toFixed(0)} MiB`);

  progress("starting the environment (ElasticMQ, kube-apiserver)");
  env = await startEnvironment();
  // The test helpers find the environment through this variable, as after `npm run env:up`.
  const stateFile = join(work, "env.json");
  writeFileSync(stateFile, JSON.stringify(environmentInfo(env)));
  process.env.KPCD_TEST_ENV_STATE = stateFile;
  const cluster = env;

  const sqs = new SQSClient({ endpoint: cluster.sqsEndpoint, region: cluster.region, credentials: { accessKeyId: "bench", secretAccessKey: "bench" } });
  const newQueue = async () => (await sqs.send(new CreateQueueCommand({ QueueName: `bench-${randomBytes(4).toString("hex")}` }))).QueueUrl!;
  const kubectlArgv = (...args: string[]) => [cluster.kubectl, `--kubeconfig=${cluster.kubeconfig}`, ...args];
  const cm = (namespace: string, name: string, data: Record<string, string>): KubeObject => ({ apiVersion: "v1", kind: "ConfigMap", metadata: { name, namespace }, data }) as KubeObject;
  let lastTimestampMs = 0;
  const newBuild = (id: string): BuildInfo => {
    lastTimestampMs = Math.max(lastTimestampMs + 1, Date.now());
    return { id, timestampMs: lastTimestampMs };
  };

  // The kubectl the listener runs: records its start, then becomes the real kubectl.
  const startsFile = join(work, "kubectl-starts.log");
  const wrapper = join(work, "kubectl");
  writeFileSync(
    wrapper,
    `#!/bin/bash\nprintf '%s %s\\n' "$EPOCHREALTIME" "$*" >> ${JSON.stringify(startsFile)}\nexec ${JSON.stringify(cluster.kubectl)} "$@"\n`,
    { mode: 0o755 },
  );
  const kubectlStarts = (): number[] =>
    existsSync(startsFile)
      ? readFileSync(startsFile, "utf8")
          .split("\n")
          .filter((line) => line !== "")
          .map((line) => Number(line.slice(0, line.indexOf(" ")).replace(",", ".")) * 1000)
      : [];

  // What the wrapper adds: spawn → its timestamp, for a kubectl that is started and at once exits.
  const wrapperStartMs: number[] = [];
  for (let i = 0; i < 10; i++) {
    const before = Date.now();
    const count = kubectlStarts().length;
    await runTimed([wrapper, "version", "--client"]);
    wrapperStartMs.push(kubectlStarts()[count]! - before);
  }
  rmSync(startsFile, { force: true });

  // 1a. The floor: a bare long-poll receive loop.
  progress(`floor: ${DEPLOYS} sends to a bare SDK long-poll receive loop`);
  const floorQueue = await newQueue();
  const floor: number[] = [];
  for (let i = 0; i < DEPLOYS; i++) {
    const receiving = sqs.send(new ReceiveMessageCommand({ QueueUrl: floorQueue, WaitTimeSeconds: 20, MaxNumberOfMessages: 10 }));
    // The receive must be waiting at ElasticMQ before the send, as the listener's is.
    await sleep(100);
    await sqs.send(new SendMessageCommand({ QueueUrl: floorQueue, MessageBody: `m${i}` }));
    const sent = performance.now();
    await receiving;
    floor.push(performance.now() - sent);
  }

  // What one API request costs here, through the listener's own client (keep-alive, like the
  // listener's): the pickup path is a handful of them, so this is the unit to count it in.
  const apiNs = `bench-api-${randomBytes(3).toString("hex")}`;
  await runTimed(kubectlArgv("create", "namespace", apiNs));
  const api = new KubeApi(await loadKubeConnection({ kubeconfig: cluster.kubeconfig, env: {} }));
  const probePath = `/api/v1/namespaces/${apiNs}/configmaps/probe`;
  await api.request({ method: "POST", path: `/api/v1/namespaces/${apiNs}/configmaps`, body: cm(apiNs, "probe", { i: "0" }) });
  const apiGetMs: number[] = [];
  const apiPutMs: number[] = [];
  for (let i = 1; i <= 30; i++) {
    const t0 = performance.now();
    const got = await api.request<{ metadata: { resourceVersion: string } }>({ method: "GET", path: probePath });
    const t1 = performance.now();
    // A compare-and-swap write, as the record's and the Lease's are.
    await api.request({ method: "PUT", path: probePath, body: { ...cm(apiNs, "probe", { i: String(i) }), metadata: { name: "probe", namespace: apiNs, resourceVersion: got.metadata.resourceVersion } } });
    apiPutMs.push(performance.now() - t1);
    apiGetMs.push(t1 - t0);
  }
  api.close();

  // The listener and the hello-world, started together; watches on the listener's Lease and record.
  const ns = `bench-${randomBytes(3).toString("hex")}`;
  await runTimed(kubectlArgv("create", "namespace", ns));
  const queue = await newQueue();
  const records = new Timeline<{ arrivedMs: number; record: VersionRecord }>();
  const leases = new Timeline<{ arrivedMs: number; holder: string }>();
  watches.push(
    watchObject(cluster, `/api/v1/namespaces/${ns}/configmaps`, DEFAULT_STATE_CONFIGMAP, (e) => {
      if (e.type !== "DELETED") records.push({ arrivedMs: e.arrivedMs, record: decodeRecord(e.object["data"] as Record<string, string> | undefined) });
    }),
    watchObject(cluster, `/apis/coordination.k8s.io/v1/namespaces/${ns}/leases`, DEFAULT_LOCK_LEASE, (e) => {
      const spec = e.object["spec"] as { holderIdentity?: string } | undefined;
      if (e.type !== "DELETED") leases.push({ arrivedMs: e.arrivedMs, holder: spec?.holderIdentity ?? "" });
    }),
  );
  await Promise.all(watches.map((w) => w.ready));
  const environmentOfListener = await listenerEnv({
    queueUrl: queue,
    namespace: ns,
    env: {
      KUBE_PICO_CD_KUBECTL: wrapper,
      // Production defaults, where the test helpers shorten them.
      KUBE_PICO_CD_WAIT_TIME_SECONDS: "20",
      KUBE_PICO_CD_LEASE_DURATION_SECONDS: "30",
      KUBE_PICO_CD_LOG_LEVEL: "info",
      // The probe server runs, as in the pod, but only on the loopback.
      KUBE_PICO_CD_HTTP_HOST: "127.0.0.1",
      KUBE_PICO_CD_HTTP_PORT: "0",
      KUBE_PICO_CD_NO_WAIT_HEALTH: "true",
    },
  });
  listener = startProcess([listenerBinary.path], environmentOfListener);
  hello = startProcess([helloBinary.path], { PATH: process.env.PATH ?? "/usr/bin:/bin" });
  const running = listener;
  const helloPid = hello.child.pid!;
  await running.waitForLine((l) => l.msg === "listening", 30_000);

  // The listener deploys one build at a time, so the first kubectl start after the last outcome
  // was recorded is the next build's. (Not "after SendMessage returned": a busy benchmark may
  // stamp that late, after the listener has already received the message.)
  let lastRecordedMs = 0;
  /** Sends one bundle and waits until its outcome is in the record. */
  const deploy = async (build: BuildInfo, objects: KubeObject[], timeoutMs: number): Promise<DeployTimes> => {
    const { body } = encodeMessage({ build, objects });
    const sending = performance.now();
    await sqs.send(new SendMessageCommand({ QueueUrl: queue, MessageBody: body }));
    const sentMs = Date.now();
    const sendCallMs = performance.now() - sending;
    const recorded = await records.waitFor(sentMs, (r) => r.record.current?.build.id === build.id || r.record.history[0]?.buildId === build.id, timeoutMs, `the outcome of build ${build.id} in the record`);
    const outcome = recorded.record.history.find((o) => o.buildId === build.id);
    if (outcome?.result !== "applied") throw new Error(`Build ${build.id} was not applied: ${JSON.stringify(outcome)}`);
    const applying = running.lines.find((l) => l.msg === "applying build" && l.build === build.id);
    // Logged before the record is written, but read from a pipe: it may arrive after the watch event.
    const applied = await running.waitForLine((l) => l.msg === "build applied" && l.build === build.id, 5_000);
    const kubectlMs = kubectlStarts().find((t) => t > lastRecordedMs);
    if (kubectlMs === undefined) throw new Error(`Build ${build.id} was recorded but the kubectl wrapper recorded no start since the last outcome`);
    lastRecordedMs = recorded.arrivedMs;
    return {
      sentMs,
      sendCallMs,
      leaseMs: leases.first(sentMs, (l) => l.holder !== "")?.arrivedMs,
      intentMs: records.first(sentMs, (r) => r.record.inflight?.build.id === build.id)?.arrivedMs,
      applyingLoggedMs: applying ? Date.parse(applying.time) : undefined,
      kubectlMs,
      appliedLoggedMs: Date.parse(applied.time),
      kubectlDurationMs: typeof applied["durationMs"] === "number" ? applied["durationMs"] : undefined,
      recordedMs: recorded.arrivedMs,
    };
  };

  // 3a. Idle.
  progress(`idle: the listener long-polls an empty queue for ${IDLE_SECONDS} s`);
  for (let left = IDLE_SECONDS; left > 0; left -= Math.min(left, 60)) {
    await sleep(Math.min(left, 60) * 1000);
    if (left > 60) progress(`idle: ${left - 60} s left`);
  }
  const idle = { listener: readMemory(running.child.pid!), hello: readMemory(helloPid) };

  // 1b. Pickup.
  progress(`pickup: ${DEPLOYS} one-ConfigMap deploys, ${SETTLE_MS} ms apart`);
  const pickups: DeployTimes[] = [];
  for (let i = 1; i <= DEPLOYS; i++) {
    pickups.push(await deploy(newBuild(`pickup-${i}`), [cm(ns, "app", { i: String(i) })], 60_000));
    if (i % 10 === 0 || i === DEPLOYS) progress(`pickup: ${i}/${DEPLOYS}, last ${(pickups.at(-1)!.kubectlMs - pickups.at(-1)!.sentMs).toFixed(1)} ms`);
    await sleep(SETTLE_MS);
  }

  // 3b. Many deploys, back to back.
  progress(`many: ${MANY} one-ConfigMap deploys, back to back`);
  const manyStarted = performance.now();
  // RSS every 100 deploys: a figure that keeps growing is a leak, one that levels off is the heap's working size.
  const manyRssMiB: number[] = [];
  for (let i = 1; i <= MANY; i++) {
    await deploy(newBuild(`many-${i}`), [cm(ns, "many", { i: String(i) })], 60_000);
    if (i % 100 === 0 || i === MANY) {
      const rss = mib(readMemory(running.child.pid!).rssKiB);
      manyRssMiB.push(Math.round(rss * 10) / 10);
      progress(`many: ${i}/${MANY} (${((performance.now() - manyStarted) / i).toFixed(0)} ms per deploy), listener RSS ${rss.toFixed(1)} MiB`);
    }
  }
  await sleep(1_000);
  const afterMany = { listener: readMemory(running.child.pid!), hello: readMemory(helloPid) };

  // 2. 300 objects, against the bare apply. Round 0 creates them and is not counted.
  const bareNs = `${ns}-bare`;
  await runTimed(kubectlArgv("create", "namespace", bareNs));
  const big: DeployTimes[] = [];
  const bare: number[] = [];
  // Not a floor: the bare apply with the listener's own flags (-o json, --force-conflicts), into a
  // third namespace, to tell what those flags cost from what the listener adds around kubectl.
  const flaggedNs = `${ns}-flags`;
  await runTimed(kubectlArgv("create", "namespace", flaggedNs));
  const flagged: number[] = [];
  let kubectlPeakRssBytes = 0;
  for (let round = 0; round <= ROUNDS; round++) {
    const objects = Array.from({ length: OBJECTS }, (_, i) => cm(ns, `obj-${i}`, { round: String(round), payload: "x".repeat(200) }));
    const inNamespace = (namespace: string) => toListJson(objects.map((o) => ({ ...o, metadata: { ...o.metadata, namespace } })));
    let times: DeployTimes | undefined;
    let bareRun: { ms: number; maxRssBytes: number } | undefined;
    let flaggedRun: { ms: number; maxRssBytes: number } | undefined;
    const steps = [
      async () => void (times = await deploy(newBuild(`big-${round}`), objects, 180_000)),
      async () => void (bareRun = await runTimed(kubectlArgv("apply", "--server-side", "--field-manager=bench", "-f", "-"), inNamespace(bareNs))),
      async () => void (flaggedRun = await runTimed(kubectlArgv(...applyArgs({ fieldManager: "bench", forceConflicts: true })), inNamespace(flaggedNs))),
    ];
    // Each round starts with another of the three, so that none always runs first (or right after the listener's deploy).
    for (let step = 0; step < steps.length; step++) {
      await steps[(round + step) % steps.length]!();
      await sleep(SETTLE_MS);
    }
    kubectlPeakRssBytes = Math.max(kubectlPeakRssBytes, bareRun!.maxRssBytes);
    progress(
      `300 objects, round ${round}${round === 0 ? " (warm-up, creates)" : `/${ROUNDS}`}: listener ${times!.recordedMs - times!.sentMs} ms, bare apply ${bareRun!.ms.toFixed(0)} ms, with the listener's flags ${flaggedRun!.ms.toFixed(0)} ms`,
    );
    if (round === 0) continue;
    big.push(times!);
    bare.push(bareRun!.ms);
    flagged.push(flaggedRun!.ms);
  }
  const final = readMemory(running.child.pid!);

  // In-process work on the pickup path, timed here (bun, warm) on the run's own data: decoding a
  // one-ConfigMap message, and decoding and encoding the record as it stands now.
  const timeEach = (fn: () => unknown) => {
    const spans: number[] = [];
    for (let i = 0; i < 200; i++) {
      const t0 = performance.now();
      fn();
      spans.push(performance.now() - t0);
    }
    return median(spans);
  };
  const smallBody = encodeMessage({ build: newBuild("probe"), objects: [cm(ns, "app", { i: "0" })] }).body;
  const lastRecord = records.items.at(-1)!.record;
  const lastData = encodeRecord(lastRecord);
  const inProcessMs = {
    decodeMessage: timeEach(() => decodeMessage(smallBody)),
    decodeRecord: timeEach(() => decodeRecord(lastData)),
    encodeRecord: timeEach(() => encodeRecord(lastRecord)),
    recordBytes: JSON.stringify(lastData).length,
  };

  // Results.
  const pickupMs = pickups.map((t) => t.kubectlMs - t.sentMs);
  const between = (times: readonly DeployTimes[], from: (t: DeployTimes) => number | undefined, to: (t: DeployTimes) => number | undefined) => {
    const spans = times.flatMap((t) => {
      const a = from(t);
      const b = to(t);
      return a === undefined || b === undefined ? [] : [b - a];
    });
    return spans.length === 0 ? Number.NaN : median(spans);
  };
  const e2eMs = big.map((t) => t.recordedMs - t.sentMs);
  const memoryRatio = (m: { listener: Memory; hello: Memory }) => ({
    listenerRssMiB: mib(m.listener.rssKiB),
    listenerHwmMiB: mib(m.listener.hwmKiB),
    helloRssMiB: mib(m.hello.rssKiB),
    helloHwmMiB: mib(m.hello.hwmKiB),
    rssRatio: m.listener.rssKiB / m.hello.rssKiB,
    hwmRatio: m.listener.hwmKiB / m.hello.hwmKiB,
  });
  const result = {
    parameters: { DEPLOYS, ROUNDS, IDLE_SECONDS, MANY, objects: OBJECTS, settleMs: SETTLE_MS },
    listenerBinaryMiB: mib(listenerBinary.sizeBytes / 1024),
    wrapperStartMs: median(wrapperStartMs),
    apiRequestMs: { getP50: median(apiGetMs), putP50: median(apiPutMs) },
    inProcessMs,
    pickup: {
      floorMs: { p50: median(floor), p99: percentile(floor, 99) },
      listenerMs: { p50: median(pickupMs), p99: percentile(pickupMs, 99) },
      overFloorMs: { p50: median(pickupMs) - median(floor), p99: percentile(pickupMs, 99) - percentile(floor, 99) },
      // Where the time goes (medians): SendMessage → Lease written (receive, decode, read the
      // record, read and write the Lease) → intent written (read the record twice, write it)
      // → "applying build" logged → kubectl (wrapper) started.
      medianSpansMs: {
        sendToLease: between(pickups, (t) => t.sentMs, (t) => t.leaseMs),
        leaseToIntent: between(pickups, (t) => t.leaseMs, (t) => t.intentMs),
        intentToKubectl: between(pickups, (t) => t.intentMs, (t) => t.kubectlMs),
        // Of which: spawning kubectl (the wrapper) after the last log line before it.
        applyingLoggedToKubectl: between(pickups, (t) => t.applyingLoggedMs, (t) => t.kubectlMs),
      },
      // The slowest pickups, with the same spans, to tell what makes the p99.
      slowest: [...pickups]
        .sort((a, b) => b.kubectlMs - b.sentMs - (a.kubectlMs - a.sentMs))
        .slice(0, 3)
        .map((t) => ({
          totalMs: Math.round(t.kubectlMs - t.sentMs),
          sendToLease: t.leaseMs === undefined ? null : t.leaseMs - t.sentMs,
          leaseToIntent: t.leaseMs === undefined || t.intentMs === undefined ? null : t.intentMs - t.leaseMs,
          intentToKubectl: t.intentMs === undefined ? null : Math.round(t.kubectlMs - t.intentMs),
        })),
      allMs: pickupMs.map(Math.round),
      sendCallMs: { p50: median(pickups.map((t) => t.sendCallMs)), max: Math.max(...pickups.map((t) => t.sendCallMs)) },
    },
    deploy300: {
      listenerMs: { median: median(e2eMs), all: e2eMs },
      bareApplyMs: { median: median(bare), all: bare.map(Math.round) },
      ratio: median(e2eMs) / median(bare),
      bareWithListenerFlagsMs: { median: median(flagged), all: flagged.map(Math.round) },
      medianSpansMs: {
        sendToKubectl: between(big, (t) => t.sentMs, (t) => t.kubectlMs),
        kubectlAsTimedByListener: between(big, () => 0, (t) => t.kubectlDurationMs),
        appliedLoggedToRecorded: between(big, (t) => t.appliedLoggedMs, (t) => t.recordedMs),
      },
      bareKubectlPeakRssMiB: kubectlPeakRssBytes / 1024 / 1024,
    },
    memory: {
      idle: memoryRatio(idle),
      afterMany: memoryRatio(afterMany),
      rssEvery100DeploysMiB: manyRssMiB,
      listenerFinalHwmMiB: mib(final.hwmKiB),
    },
    listenerWarnings: running.lines.filter((l) => l.level === "warn" || l.level === "error").map((l) => l.msg),
  };
  console.log(JSON.stringify(result, null, 2));

  const ms = (n: number) => `${n.toFixed(1)} ms`;
  const verdict = (ok: boolean) => (ok ? "met" : "MISSED");
  const p = result.pickup;
  const d = result.deploy300;
  const rows: [string, string, string, string, string][] = [
    ["what", "listener", "floor", "vs floor", "target"],
    [`pickup p50 (${DEPLOYS} deploys)`, ms(p.listenerMs.p50), ms(p.floorMs.p50), `+${ms(p.overFloorMs.p50)}`, `+${TARGET_P50_MS} ms: ${verdict(p.overFloorMs.p50 <= TARGET_P50_MS)}`],
    [`pickup p99 (${DEPLOYS} deploys)`, ms(p.listenerMs.p99), ms(p.floorMs.p99), `+${ms(p.overFloorMs.p99)}`, `+${TARGET_P99_MS} ms: ${verdict(p.overFloorMs.p99 <= TARGET_P99_MS)}`],
    [`${OBJECTS}-object deploy, median of ${ROUNDS}`, `${d.listenerMs.median} ms`, `${d.bareApplyMs.median.toFixed(0)} ms`, `${d.ratio.toFixed(2)}x`, `${TARGET_DEPLOY_RATIO.toFixed(2)}x: ${verdict(d.ratio <= TARGET_DEPLOY_RATIO)}`],
    [`RSS idle ${IDLE_SECONDS} s`, `${result.memory.idle.listenerRssMiB.toFixed(1)} MiB`, `${result.memory.idle.helloRssMiB.toFixed(1)} MiB`, `${result.memory.idle.rssRatio.toFixed(2)}x`, "-"],
    [`VmHWM idle ${IDLE_SECONDS} s`, `${result.memory.idle.listenerHwmMiB.toFixed(1)} MiB`, `${result.memory.idle.helloHwmMiB.toFixed(1)} MiB`, `${result.memory.idle.hwmRatio.toFixed(2)}x`, "-"],
    [`RSS after ${DEPLOYS + MANY} deploys`, `${result.memory.afterMany.listenerRssMiB.toFixed(1)} MiB`, `${result.memory.afterMany.helloRssMiB.toFixed(1)} MiB`, `${result.memory.afterMany.rssRatio.toFixed(2)}x`, "-"],
    [`VmHWM after ${DEPLOYS + MANY} deploys`, `${result.memory.afterMany.listenerHwmMiB.toFixed(1)} MiB`, `${result.memory.afterMany.helloHwmMiB.toFixed(1)} MiB`, `${result.memory.afterMany.hwmRatio.toFixed(2)}x`, "-"],
  ];
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  console.log(`\nfloors: bare SDK receive loop (pickup), bare kubectl apply --server-side (deploy), compiled bun hello-world (memory)`);
  for (const r of rows) console.log(r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join("  "));
  const s = p.medianSpansMs;
  console.log(
    `\npickup, median spans: send → Lease written ${ms(s.sendToLease)}, → intent written ${ms(s.leaseToIntent)}, → kubectl started ${ms(s.intentToKubectl)} (of which "applying build" logged → kubectl started ${ms(s.applyingLoggedToKubectl)}, the wrapper's bash start alone ${ms(result.wrapperStartMs)})` +
      `\nslowest pickups (total: send → Lease, → intent, → kubectl): ${p.slowest.map((t) => `${t.totalMs} ms: ${t.sendToLease}, ${t.leaseToIntent}, ${t.intentToKubectl}`).join("; ")}` +
      `\none API request here, median: GET ${ms(result.apiRequestMs.getP50)}, PUT (compare-and-swap) ${ms(result.apiRequestMs.putP50)}; in process: decode a message ${ms(inProcessMs.decodeMessage)}, decode the record ${ms(inProcessMs.decodeRecord)}, encode it ${ms(inProcessMs.encodeRecord)} (${(inProcessMs.recordBytes / 1024).toFixed(0)} KiB)` +
      `\nSendMessage call (pickup deploys): p50 ${ms(p.sendCallMs.p50)}, max ${ms(p.sendCallMs.max)}` +
      `\n${OBJECTS}-object deploy, median spans: send → kubectl started ${ms(d.medianSpansMs.sendToKubectl)}, kubectl (as the listener timed it) ${ms(d.medianSpansMs.kubectlAsTimedByListener)}, "build applied" → recorded ${ms(d.medianSpansMs.appliedLoggedToRecorded)}` +
      `\nbare apply with the listener's flags (-o json --force-conflicts): median ${d.bareWithListenerFlagsMs.median.toFixed(0)} ms; the listener's deploy is ${(d.listenerMs.median / d.bareWithListenerFlagsMs.median).toFixed(2)}x of it` +
      `\nlistener RSS every 100 of the ${MANY} deploys: ${result.memory.rssEvery100DeploysMiB.join(", ")} MiB` +
      `\nlistener peak RSS over the whole run ${result.memory.listenerFinalHwmMiB.toFixed(1)} MiB; bare kubectl apply of ${OBJECTS} objects peak RSS ${d.bareKubectlPeakRssMiB.toFixed(1)} MiB` +
      (result.listenerWarnings.length === 0 ? "" : `\nlistener warnings: ${[...new Set(result.listenerWarnings)].join("; ")}`),
  );
  sqs.destroy();
} finally {
  await cleanUp();
  progress("done");
}
