/**
 * The many-apps benchmark: the compiled listener (bench/compile.ts, as `npm run build` does
 * it) against the local test environment (ElasticMQ and a real kube-apiserver), every figure
 * next to a floor measured in the same run:
 *
 * 1. Drain: APPS apps (default 50) × BUILDS builds each (default 4), every build a bundle of
 *    two ConfigMaps of its app (`<app>-config`, `<app>-env`, in one shared namespace) whose
 *    data names the build, sent interleaved (app-1 build 1, app-2 build 1, …, app-50 build 1,
 *    app-1 build 2, …) one SendMessage at a time to one standard queue, build timestamps
 *    increasing. The listener is started first and is long-polling when the first message is
 *    sent, as in production, where builds arrive at a running listener: the drain runs from
 *    just before the first SendMessage until a watch on each app's record (bench/watch.ts)
 *    has delivered the write naming the app's last build as current, for every app. Its
 *    start-up is therefore not counted, and the sends (one after another) overlap the
 *    deploys, as they would when many pipelines publish at once.
 *    Then every outcome is checked: each app's record names its last build as current, holds
 *    no build in flight, and its history holds exactly its own BUILDS builds, each once,
 *    applied or superseded, the last one applied; no record of an app that was not sent; the
 *    ConfigMaps on the cluster hold exactly the last build's data and their app's ownership
 *    mark; the queue ends empty. Anything wrong is printed as FAILED and the exit code is 1.
 * 2. Floors: one app's deploy, SendMessage returned → the record names the build as current,
 *    median of FLOOR_BUILDS builds (default 5) sent one at a time, SETTLE_MS apart (the first
 *    one creates the app's record and Lease, as each app's first build in the drain does).
 *    The drain is printed against APPS × that median. And ONE_APP_BUILDS builds (default 200,
 *    0 to skip) of one app sent the same way as the drain's, which newest-wins collapses into
 *    a few applies: the same number of messages through one lane.
 * 3. Memory: VmRSS and VmHWM (/proc/<pid>/status) of the listener, sampled every 100 ms
 *    during the drain (the peak VmRSS of the samples, and VmHWM at the drain's end), and again
 *    IDLE_SECONDS (default 60) after the drain was checked, with every app recorded; against
 *    a compiled bun hello-world (bench/hello.ts) started at the same moment as the listener
 *    and read at the same moments. kubectl's own memory is not the listener's and is not
 *    counted.
 *
 * The health wait is on, as in production (the bundles are ConfigMaps, so it ends at once);
 * prune and Events run; kubectl applies of different apps run at most the listener's
 * `--apply-concurrency` at once (its default, 2, unless APPLY_CONCURRENCY is set).
 *
 * Order: the one-app floor, the drain, its checks, idle, the ONE_APP_BUILDS floor. So the
 * listener is warm (five deploys done) when the drain starts, and the VmHWM read at the
 * drain's end is the peak of the start, the floor and the drain.
 *
 *   bun bench/apps.ts
 *   APPS=10 BUILDS=3 IDLE_SECONDS=5 ONE_APP_BUILDS=0 bun bench/apps.ts     (about a minute)
 *
 * Times that cross processes (SendMessage, watch events) are wall-clock milliseconds on this
 * one machine.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { CreateQueueCommand, GetQueueAttributesCommand, SendMessageCommand, SQSClient } from "@aws-sdk/client-sqs";
import { KubeApi } from "../lib/kube/api.ts";
import { loadKubeConnection } from "../lib/kube/kubeconfig.ts";
import { decodeRecord, DEFAULT_STATE_CONFIGMAP, type VersionRecord } from "../lib/kube/record.ts";
import { listRecords } from "../lib/listener/app-records.ts";
import { appObjectName } from "../lib/listener/apps.ts";
import { APP_LABEL, INSTANCE_LABEL } from "../lib/listener/ownership.ts";
import type { KubeObject } from "../lib/manifests/bundle.ts";
import type { BuildInfo } from "../lib/wire/message.ts";
import { environmentInfo, startEnvironment, type Environment } from "../test/env/environment.ts";
import { bundleBody, configMap } from "../test/helpers/bundles.ts";
import { listenerEnv } from "../test/helpers/listener-process.ts";
import { compileForHost, type Compiled } from "./compile.ts";
import { readMemory, startProcess, type Memory, type Running } from "./process.ts";
import { watchObject, type Watch } from "./watch.ts";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");

function countFromEnv(name: string, fallback: number, min = 1): number {
  const text = process.env[name];
  if (text === undefined || text === "") return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value < min) throw new RangeError(`Cannot run the benchmark as ${name} must be an integer of at least ${min}: current value is ${JSON.stringify(text)}`);
  return value;
}

const APPS = countFromEnv("APPS", 50);
const BUILDS = countFromEnv("BUILDS", 4);
const FLOOR_BUILDS = countFromEnv("FLOOR_BUILDS", 5);
const ONE_APP_BUILDS = countFromEnv("ONE_APP_BUILDS", 200, 0);
const IDLE_SECONDS = countFromEnv("IDLE_SECONDS", 60);
const DRAIN_TIMEOUT_SECONDS = countFromEnv("DRAIN_TIMEOUT_SECONDS", 300);
/** Passed to the listener as KUBE_PICO_CD_APPLY_CONCURRENCY when set; else the listener's default. */
const APPLY_CONCURRENCY = process.env.APPLY_CONCURRENCY === undefined || process.env.APPLY_CONCURRENCY === "" ? undefined : countFromEnv("APPLY_CONCURRENCY", 2);

/** Pause after a floor deploy is recorded, so the listener is back in its long poll (as in bench/listener.ts). */
const SETTLE_MS = 300;
const SAMPLE_MS = 100;

const appName = (i: number) => `app-${i}`;
const FLOOR_APP = "floor-one";
const ONE_APP = "floor-many";

const started = performance.now();
function progress(text: string): void {
  process.stderr.write(`[${((performance.now() - started) / 1000).toFixed(1).padStart(6)} s] ${text}\n`);
}

/** Nearest-rank percentile. */
function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}
const median = (values: readonly number[]) => percentile(values, 50);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const mib = (kib: number) => kib / 1024;

/** Every write of one app's record as its watch delivered it, with waiting for the first that names a build as current. */
class RecordWrites {
  readonly items: { arrivedMs: number; record: VersionRecord }[] = [];
  #waiters: { buildId: string; resolve: (arrivedMs: number) => void }[] = [];

  push(arrivedMs: number, record: VersionRecord): void {
    this.items.push({ arrivedMs, record });
    for (const w of [...this.#waiters]) {
      if (record.current?.build.id === w.buildId) {
        this.#waiters.splice(this.#waiters.indexOf(w), 1);
        w.resolve(arrivedMs);
      }
    }
  }

  /** When the record first named `buildId` as current (already or in the future), or undefined after `timeoutMs`. */
  current(buildId: string, timeoutMs: number): Promise<number | undefined> {
    const seen = this.items.find((w) => w.record.current?.build.id === buildId);
    if (seen) return Promise.resolve(seen.arrivedMs);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w.resolve !== done);
        resolve(undefined);
      }, timeoutMs);
      const done = (arrivedMs: number) => {
        clearTimeout(timer);
        resolve(arrivedMs);
      };
      this.#waiters.push({ buildId, resolve: done });
    });
  }
}

let env: Environment | undefined;
let listener: Running | undefined;
let hello: Running | undefined;
const watches: Watch[] = [];
const work = mkdtempSync(join(tmpdir(), "kpcd-bench-apps-"));
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

/** The warnings and errors a process logged, by message, in order. */
function warningsByMsg(lines: Running["lines"]): Map<string, Running["lines"]> {
  const byMsg = new Map<string, Running["lines"]>();
  for (const l of lines) if (l.level === "warn" || l.level === "error") byMsg.set(l.msg, [...(byMsg.get(l.msg) ?? []), l]);
  return byMsg;
}

/**
 * CPU seconds so far: of the whole machine (busy, every core) and of one process, its own and
 * that of its children it has waited for (the listener's kubectl runs). Other work on the
 * machine shares its cores with the listener, so the drain is printed with these.
 */
function cpuSeconds(pid: number): { machineBusy: number; process: number; children: number } {
  const machineBusy = cpus().reduce((sum, c) => sum + c.times.user + c.times.nice + c.times.sys + c.times.irq, 0) / 1000;
  // Fields after the command (which is in parentheses and may hold spaces): utime is the 14th field of the line.
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  const ticks = (i: number) => Number(fields[i - 3]);
  const hz = 100; // USER_HZ: 100 on Linux on both targets (x64, arm64)
  return { machineBusy, process: (ticks(14) + ticks(15)) / hz, children: (ticks(16) + ticks(17)) / hz };
}

/** What went wrong: printed as FAILED at the end, and the exit code is 1. */
const problems: string[] = [];

try {
  progress(`APPS=${APPS} BUILDS=${BUILDS} FLOOR_BUILDS=${FLOOR_BUILDS} ONE_APP_BUILDS=${ONE_APP_BUILDS} IDLE_SECONDS=${IDLE_SECONDS} APPLY_CONCURRENCY=${APPLY_CONCURRENCY ?? "(listener default)"}; compiling the listener and the hello-world`);
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
  const api = new KubeApi(await loadKubeConnection({ kubeconfig: cluster.kubeconfig, env: {} }));
  const createNamespace = async (name: string) => void (await api.request({ method: "POST", path: "/api/v1/namespaces", body: { apiVersion: "v1", kind: "Namespace", metadata: { name } } }));
  const suffix = randomBytes(3).toString("hex");
  // The listener's namespace (records, Leases) and the one every app's ConfigMaps go to.
  const ns = `bench-apps-${suffix}`;
  const appsNs = `bench-apps-${suffix}-objects`;
  await createNamespace(ns);
  await createNamespace(appsNs);
  const queue = (await sqs.send(new CreateQueueCommand({ QueueName: `bench-apps-${suffix}` }))).QueueUrl!;

  let lastTimestampMs = 0;
  const newBuild = (id: string): BuildInfo => {
    lastTimestampMs = Math.max(lastTimestampMs + 1, Date.now());
    return { id, timestampMs: lastTimestampMs };
  };
  const buildId = (app: string, n: number) => `${app}-b${n}`;
  /** The objects of build `n` of `app`: both change with every build. */
  const objectsOf = (app: string, n: number): KubeObject[] => [
    configMap(appsNs, `${app}-config`, { app, build: buildId(app, n), n: String(n) }),
    configMap(appsNs, `${app}-env`, { BUILD_ID: buildId(app, n) }),
  ];
  /** Sends build `n` of `app` as publish --app does to a standard queue (test/helpers/bundles.ts sendAppBundle). */
  const send = async (app: string, n: number): Promise<void> => {
    const { body } = bundleBody(objectsOf(app, n), newBuild(buildId(app, n)), undefined, app);
    await sqs.send(new SendMessageCommand({ QueueUrl: queue, MessageBody: body }));
  };

  // One watch per app's record, open before anything is sent.
  const apps = Array.from({ length: APPS }, (_, i) => appName(i + 1));
  const writes = new Map<string, RecordWrites>();
  for (const app of [...apps, FLOOR_APP, ...(ONE_APP_BUILDS > 0 ? [ONE_APP] : [])]) {
    const timeline = new RecordWrites();
    writes.set(app, timeline);
    watches.push(
      watchObject(cluster, `/api/v1/namespaces/${ns}/configmaps`, appObjectName(DEFAULT_STATE_CONFIGMAP, app), (e) => {
        if (e.type !== "DELETED") timeline.push(e.arrivedMs, decodeRecord(e.object["data"] as Record<string, string> | undefined));
      }),
    );
  }
  await Promise.all(watches.map((w) => w.ready));

  const environmentOfListener = await listenerEnv({
    queueUrl: queue,
    namespace: ns,
    env: {
      // Production defaults, where the test helpers shorten them; the health wait stays on.
      KUBE_PICO_CD_WAIT_TIME_SECONDS: "20",
      KUBE_PICO_CD_LEASE_DURATION_SECONDS: "30",
      KUBE_PICO_CD_LOG_LEVEL: "info",
      KUBE_PICO_CD_HTTP_HOST: "127.0.0.1",
      KUBE_PICO_CD_HTTP_PORT: "0",
      ...(APPLY_CONCURRENCY === undefined ? {} : { KUBE_PICO_CD_APPLY_CONCURRENCY: String(APPLY_CONCURRENCY) }),
    },
  });
  listener = startProcess([listenerBinary.path], environmentOfListener);
  hello = startProcess([helloBinary.path], { PATH: process.env.PATH ?? "/usr/bin:/bin" });
  const running = listener;
  const listenerPid = running.child.pid!;
  const helloPid = hello.child.pid!;
  const listening = await running.waitForLine((l) => l.msg === "listening", 30_000);
  const applyConcurrency = typeof listening["applyConcurrency"] === "number" ? listening["applyConcurrency"] : Number.NaN;
  await sleep(1_000);
  /** The "build applied" lines of builds whose id starts with `prefix`: one per kubectl apply that succeeded. */
  const appliedLines = (prefix: string) => running.lines.filter((l) => l.msg === "build applied" && typeof l["build"] === "string" && l["build"].startsWith(prefix));
  const appliedBuilds = (prefix: string) => appliedLines(prefix).length;
  /** The apply's duration as the listener logged it (kubectl's phases, without the record writes around them), median. */
  const applyDurationMs = (prefixes: readonly string[]) => {
    const spans = prefixes.flatMap((prefix) => appliedLines(prefix).flatMap((l) => (typeof l["durationMs"] === "number" ? [l["durationMs"]] : [])));
    return spans.length === 0 ? Number.NaN : median(spans);
  };

  // 2a. The floor: one app, one build at a time.
  progress(`floor: ${FLOOR_BUILDS} builds of one app, one at a time`);
  const floorMs: number[] = [];
  for (let n = 1; n <= FLOOR_BUILDS; n++) {
    await send(FLOOR_APP, n);
    const sentMs = Date.now();
    const recordedMs = await writes.get(FLOOR_APP)!.current(buildId(FLOOR_APP, n), 60_000);
    if (recordedMs === undefined) throw new Error(`Build ${buildId(FLOOR_APP, n)} of the floor was not recorded as current within 60 s; the listener's last lines:\n${running.lines.slice(-10).map((l) => JSON.stringify(l)).join("\n")}`);
    floorMs.push(recordedMs - sentMs);
    await sleep(SETTLE_MS);
  }
  progress(`floor: ${floorMs.join(", ")} ms`);

  // 1. The drain: every app's builds, interleaved, to the running listener.
  progress(`drain: ${APPS * BUILDS} messages (${APPS} apps × ${BUILDS} builds), interleaved`);
  const samples: { listener: Memory; hello: Memory }[] = [];
  const sampler = setInterval(() => samples.push({ listener: readMemory(listenerPid), hello: readMemory(helloPid) }), SAMPLE_MS);
  const cpuBefore = cpuSeconds(listenerPid);
  const loadBefore = loadavg()[0]!;
  const drainStartMs = Date.now();
  const sendTimes = new Map<string, number>();
  const waits = apps.map((app) => writes.get(app)!.current(buildId(app, BUILDS), DRAIN_TIMEOUT_SECONDS * 1000));
  for (let n = 1; n <= BUILDS; n++) {
    for (const app of apps) {
      await send(app, n);
      if (n === BUILDS) sendTimes.set(app, Date.now());
    }
  }
  const sendsDoneMs = Date.now();
  progress(`drain: ${APPS * BUILDS} messages sent in ${sendsDoneMs - drainStartMs} ms`);
  const doneMs = await Promise.all(waits);
  clearInterval(sampler);
  const cpuAfter = cpuSeconds(listenerPid);
  const loadAfter = loadavg()[0]!;
  const atDrainEnd = { listener: readMemory(listenerPid), hello: readMemory(helloPid) };
  const late = apps.filter((_, i) => doneMs[i] === undefined);
  if (late.length > 0) problems.push(`${late.length} of ${APPS} apps had no record naming build ${BUILDS} as current within ${DRAIN_TIMEOUT_SECONDS} s: ${late.slice(0, 10).join(", ")}${late.length > 10 ? ", …" : ""}`);
  const recordedTimes = doneMs.filter((t): t is number => t !== undefined);
  const drainMs = Math.max(...recordedTimes) - drainStartMs;
  // Each app's last build: its SendMessage returned → its record names it.
  const perAppMs = apps.flatMap((app, i) => (doneMs[i] === undefined ? [] : [doneMs[i]! - sendTimes.get(app)!]));
  progress(`drain: every app on build ${BUILDS} after ${drainMs} ms`);

  // The queue ends empty: each message is deleted only once its outcome is recorded.
  const depth = async () => {
    const { Attributes = {} } = await sqs.send(
      new GetQueueAttributesCommand({ QueueUrl: queue, AttributeNames: ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessagesDelayed"] }),
    );
    return Number(Attributes.ApproximateNumberOfMessages ?? 0) + Number(Attributes.ApproximateNumberOfMessagesNotVisible ?? 0) + Number(Attributes.ApproximateNumberOfMessagesDelayed ?? 0);
  };
  let left = await depth();
  for (const until = Date.now() + 30_000; left > 0 && Date.now() < until; left = await depth()) await sleep(250);
  const queueEmptyMs = Date.now() - drainStartMs;
  if (left > 0) problems.push(`the queue still holds ${left} messages 30 s after the drain; every outcome should be recorded and its message deleted`);

  // Every outcome, from the records as the listener's own reader lists them.
  const known = new Set([...apps, FLOOR_APP]);
  const { records, notes } = await listRecords({ api, namespace: ns });
  for (const note of notes) problems.push(`records: ${note}`);
  const byApp = new Map(records.map((r) => [r.app, r]));
  for (const listed of records) if (!known.has(listed.app)) problems.push(`a record of an app that was never sent: ${listed.app} (${listed.name})`);
  let applied = 0;
  let superseded = 0;
  for (const app of apps) {
    const listed = byApp.get(app);
    if (listed === undefined) {
      problems.push(`${app}: no record`);
      continue;
    }
    if ("error" in listed) {
      problems.push(`${app}: record unreadable: ${listed.error}`);
      continue;
    }
    const { record } = listed;
    const last = buildId(app, BUILDS);
    if (record.current?.build.id !== last) problems.push(`${app}: current build is ${record.current?.build.id ?? "none"}, not ${last}`);
    if (record.inflight !== null) problems.push(`${app}: build ${record.inflight.build.id} is still in flight`);
    const ids = record.history.map((o) => o.buildId ?? "(none)").sort();
    const expected = Array.from({ length: BUILDS }, (_, i) => buildId(app, i + 1)).sort();
    if (JSON.stringify(ids) !== JSON.stringify(expected)) problems.push(`${app}: history holds builds ${ids.join(", ")}, not exactly ${expected.join(", ")}`);
    for (const o of record.history) {
      if (o.app !== undefined && o.app !== app) problems.push(`${app}: history holds an outcome of app ${o.app} (build ${o.buildId})`);
      if (o.result === "applied") applied++;
      else if (o.result === "superseded") superseded++;
      else problems.push(`${app}: build ${o.buildId} is ${o.result}${o.error === undefined ? "" : `: ${o.error}`}`);
      if (o.result === "applied" && o.health !== undefined && o.health.status !== "Healthy") problems.push(`${app}: build ${o.buildId} is ${o.health.status}`);
    }
    const lastOutcome = record.history.find((o) => o.buildId === last);
    if (lastOutcome !== undefined && lastOutcome.result !== "applied") problems.push(`${app}: its last build ${last} is ${lastOutcome.result}, not applied`);
  }

  // The cluster holds each app's last build, with its mark, and nothing else.
  const live = await api.request<{ items: { metadata: { name: string; labels?: Record<string, string> }; data?: Record<string, string> }[] }>({ method: "GET", path: `/api/v1/namespaces/${appsNs}/configmaps` });
  const liveByName = new Map(live.items.filter((c) => c.metadata.name !== "kube-root-ca.crt").map((c) => [c.metadata.name, c]));
  const expectedNames = new Set<string>();
  for (const app of apps) {
    for (const want of objectsOf(app, BUILDS)) {
      const name = want.metadata.name;
      expectedNames.add(name);
      const got = liveByName.get(name);
      if (got === undefined) {
        problems.push(`${app}: ConfigMap ${appsNs}/${name} is missing`);
        continue;
      }
      if (JSON.stringify(got.data) !== JSON.stringify(want["data"])) problems.push(`${app}: ConfigMap ${name} holds ${JSON.stringify(got.data)}, not build ${BUILDS}'s ${JSON.stringify(want["data"])}`);
      if (got.metadata.labels?.[APP_LABEL] !== app || got.metadata.labels?.[INSTANCE_LABEL] !== ns) problems.push(`${app}: ConfigMap ${name} carries the mark ${got.metadata.labels?.[APP_LABEL]}/${got.metadata.labels?.[INSTANCE_LABEL]}, not ${app}/${ns}`);
    }
  }
  const floorNames = new Set(objectsOf(FLOOR_APP, 1).map((o) => o.metadata.name));
  for (const name of liveByName.keys()) if (!expectedNames.has(name) && !floorNames.has(name)) problems.push(`ConfigMap ${appsNs}/${name} belongs to no app that was sent`);
  const drainApplies = apps.reduce((sum, app) => sum + appliedBuilds(`${app}-b`), 0);
  // How many applies each app took: 1 when all its builds were in hand at once, BUILDS when none collapsed.
  const appliesPerApp: Record<string, number> = {};
  for (const app of apps) {
    const count = String(appliedBuilds(`${app}-b`));
    appliesPerApp[count] = (appliesPerApp[count] ?? 0) + 1;
  }
  progress(`checked: ${APPS * BUILDS} outcomes (${applied} applied, ${superseded} superseded), ${problems.length} problems; queue empty ${queueEmptyMs} ms after the first send`);

  // 3. Idle, with every app recorded.
  progress(`idle: ${IDLE_SECONDS} s`);
  for (let rest = IDLE_SECONDS; rest > 0; rest -= Math.min(rest, 60)) {
    await sleep(Math.min(rest, 60) * 1000);
    if (rest > 60) progress(`idle: ${rest - 60} s left`);
  }
  const idle = { listener: readMemory(listenerPid), hello: readMemory(helloPid) };
  const recordsAtIdle = records.length;

  // 2b. The second floor: as many builds of one app, sent the same way.
  let oneApp: { ms: number; applies: number } | undefined;
  if (ONE_APP_BUILDS > 0) {
    progress(`floor: ${ONE_APP_BUILDS} builds of one app, sent back to back`);
    const t0 = Date.now();
    const waitLast = writes.get(ONE_APP)!.current(buildId(ONE_APP, ONE_APP_BUILDS), DRAIN_TIMEOUT_SECONDS * 1000);
    for (let n = 1; n <= ONE_APP_BUILDS; n++) await send(ONE_APP, n);
    const recordedMs = await waitLast;
    if (recordedMs === undefined) problems.push(`${ONE_APP}: build ${ONE_APP_BUILDS} was not recorded as current within ${DRAIN_TIMEOUT_SECONDS} s`);
    else {
      oneApp = { ms: recordedMs - t0, applies: appliedBuilds(`${ONE_APP}-b`) };
      const got = await api.request<{ data?: Record<string, string> }>({ method: "GET", path: `/api/v1/namespaces/${appsNs}/configmaps/${ONE_APP}-config` });
      const want = objectsOf(ONE_APP, ONE_APP_BUILDS)[0]!["data"];
      if (JSON.stringify(got.data) !== JSON.stringify(want)) problems.push(`${ONE_APP}: ConfigMap ${ONE_APP}-config holds ${JSON.stringify(got.data)}, not ${JSON.stringify(want)}`);
      progress(`floor: build ${ONE_APP_BUILDS} current after ${oneApp.ms} ms, ${oneApp.applies} applies`);
    }
  }
  const final = readMemory(listenerPid);
  if (running.child.exitCode !== null) problems.push(`the listener exited with ${running.child.exitCode}`);
  api.close();
  sqs.destroy();

  // Results.
  const floorMedian = median(floorMs);
  const peak = samples.reduce((best, s) => (s.listener.rssKiB > best.listener.rssKiB ? s : best), atDrainEnd);
  const memoryRatio = (m: { listener: Memory; hello: Memory }) => ({
    listenerRssMiB: mib(m.listener.rssKiB),
    listenerHwmMiB: mib(m.listener.hwmKiB),
    helloRssMiB: mib(m.hello.rssKiB),
    helloHwmMiB: mib(m.hello.hwmKiB),
    rssRatio: m.listener.rssKiB / m.hello.rssKiB,
    hwmRatio: m.listener.hwmKiB / m.hello.hwmKiB,
  });
  const result = {
    parameters: { APPS, BUILDS, FLOOR_BUILDS, ONE_APP_BUILDS, IDLE_SECONDS, applyConcurrency, objectsPerBuild: 2, settleMs: SETTLE_MS, sampleMs: SAMPLE_MS },
    drain: {
      ms: drainMs,
      sendsMs: sendsDoneMs - drainStartMs,
      queueEmptyMs,
      applies: drainApplies,
      appsByApplies: appliesPerApp,
      applyMedianMs: applyDurationMs(apps.map((app) => `${app}-b`)),
      outcomes: { applied, superseded },
      cpuSeconds: {
        machineBusy: cpuAfter.machineBusy - cpuBefore.machineBusy,
        machineAvailable: (cpus().length * drainMs) / 1000,
        listener: cpuAfter.process - cpuBefore.process,
        listenerKubectl: cpuAfter.children - cpuBefore.children,
      },
      loadAverage1m: { before: loadBefore, after: loadAfter },
      lastBuildPerAppMs: perAppMs.length === 0 ? null : { p50: median(perAppMs), max: Math.max(...perAppMs) },
    },
    floor: { oneDeployMs: { median: floorMedian, all: floorMs }, applyMedianMs: applyDurationMs([`${FLOOR_APP}-b`]), appsTimesFloorMs: APPS * floorMedian, ratio: drainMs / (APPS * floorMedian) },
    oneAppBuilds: oneApp === undefined ? null : { ...oneApp, drainRatio: drainMs / oneApp.ms },
    memory: { drainPeakSample: memoryRatio(peak), drainEnd: memoryRatio(atDrainEnd), idle: memoryRatio(idle), recordsAtIdle, listenerFinalHwmMiB: mib(final.hwmKiB) },
    // Each distinct warning once, with how often and the first one's error.
    listenerWarnings: [...warningsByMsg(running.lines)].map(([msg, lines]) => ({
      msg,
      count: lines.length,
      ...(lines[0]!["error"] === undefined ? {} : { firstError: JSON.stringify(lines[0]!["error"]).slice(0, 400) }),
    })),
  };
  console.log(JSON.stringify(result, null, 2));

  const ms = (n: number) => `${Math.round(n)} ms`;
  const m = result.memory;
  const rows: [string, string, string, string][] = [
    ["what", "listener", "floor", "vs floor"],
    [`drain: ${APPS} apps × ${BUILDS} builds, first send → every app current`, ms(drainMs), `${APPS} × ${ms(floorMedian)} = ${ms(APPS * floorMedian)}`, `${result.floor.ratio.toFixed(2)}x`],
    [`one app's deploy, send → current (median of ${FLOOR_BUILDS})`, ms(floorMedian), "-", "-"],
  ];
  if (oneApp !== undefined) rows.push([`the drain against ${ONE_APP_BUILDS} builds of one app, first send → current`, ms(drainMs), ms(oneApp.ms), `${(drainMs / oneApp.ms).toFixed(2)}x`]);
  rows.push(
    [`RSS peak during the drain (${SAMPLE_MS} ms samples)`, `${m.drainPeakSample.listenerRssMiB.toFixed(1)} MiB`, `${m.drainPeakSample.helloRssMiB.toFixed(1)} MiB`, `${m.drainPeakSample.rssRatio.toFixed(2)}x`],
    ["VmHWM at the drain's end", `${m.drainEnd.listenerHwmMiB.toFixed(1)} MiB`, `${m.drainEnd.helloHwmMiB.toFixed(1)} MiB`, `${m.drainEnd.hwmRatio.toFixed(2)}x`],
    [`RSS idle ${IDLE_SECONDS} s after, ${recordsAtIdle} apps recorded`, `${m.idle.listenerRssMiB.toFixed(1)} MiB`, `${m.idle.helloRssMiB.toFixed(1)} MiB`, `${m.idle.rssRatio.toFixed(2)}x`],
    [`VmHWM idle ${IDLE_SECONDS} s after`, `${m.idle.listenerHwmMiB.toFixed(1)} MiB`, `${m.idle.helloHwmMiB.toFixed(1)} MiB`, `${m.idle.hwmRatio.toFixed(2)}x`],
  );
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  console.log(`\nfloors: one app's deploy (× ${APPS}), ${ONE_APP_BUILDS > 0 ? `${ONE_APP_BUILDS} builds of one app, ` : ""}compiled bun hello-world (memory); apply concurrency ${applyConcurrency}`);
  for (const r of rows) console.log(r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join("  "));
  const d = result.drain;
  console.log(
    `\ndrain: ${APPS * BUILDS} messages sent in ${ms(d.sendsMs)} (one SendMessage at a time); ${d.applies} kubectl applies for ${APPS * BUILDS} builds (outcomes: ${d.outcomes.applied} applied, ${d.outcomes.superseded} superseded); queue empty ${ms(d.queueEmptyMs)} after the first send` +
      `\napps by the number of applies they took: ${Object.entries(d.appsByApplies).map(([count, n]) => `${n} × ${count}`).join(", ")}` +
      `\nCPU during the drain: the machine busy ${d.cpuSeconds.machineBusy.toFixed(1)} of ${d.cpuSeconds.machineAvailable.toFixed(1)} core-seconds; the listener ${d.cpuSeconds.listener.toFixed(1)} s, its kubectl runs ${d.cpuSeconds.listenerKubectl.toFixed(1)} s; the rest is the API server, ElasticMQ, this benchmark and anything else running (1-minute load average ${d.loadAverage1m.before.toFixed(1)} before, ${d.loadAverage1m.after.toFixed(1)} after)` +
      `\napply as the listener timed it, median: ${ms(d.applyMedianMs)} in the drain, ${ms(result.floor.applyMedianMs)} in the one-app floor` +
      (d.lastBuildPerAppMs === null ? "" : `\neach app's last build, its send → current: p50 ${ms(d.lastBuildPerAppMs.p50)}, max ${ms(d.lastBuildPerAppMs.max)}`) +
      `\none app's deploys: ${floorMs.map(ms).join(", ")} (the first creates its record and Lease)` +
      (oneApp === undefined ? "" : `\n${ONE_APP_BUILDS} builds of one app: ${oneApp.applies} applies`) +
      `\nlistener peak RSS (VmHWM) over the whole run ${m.listenerFinalHwmMiB.toFixed(1)} MiB` +
      (result.listenerWarnings.length === 0 ? "" : `\nlistener warnings: ${result.listenerWarnings.map((w) => `${w.msg} (${w.count}×)`).join("; ")}`),
  );
} catch (error) {
  problems.push(`the benchmark stopped: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
} finally {
  await cleanUp();
  progress("done");
}

if (problems.length > 0) {
  const banner = `\nFAILED: ${problems.length} problem${problems.length === 1 ? "" : "s"}:\n${problems.map((p) => `  - ${p}`).join("\n")}`;
  console.log(banner);
  console.error(banner);
  process.exitCode = 1;
}
