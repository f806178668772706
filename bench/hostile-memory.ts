/**
 * Memory of the compiled listener (bench/compile.ts builds it as `npm run build` does, for this
 * machine, into a temporary directory) under the worst message the default decoding limits
 * allow (lib/wire/message.ts DEFAULT_DECODE_LIMITS), against the local test environment:
 *
 * - the worst message: a payload of exactly the inflated-bytes limit (8 MiB) holding one value
 *   fewer than the values limit (250,000), almost all of them empty arrays (the costliest value
 *   per byte once parsed, about 90 bytes each) and the rest of the bytes in strings of the
 *   string limit (1 MiB); its body is a few KiB of gzip. It passes every decoding limit and is
 *   parsed in full; its two objects share a name, so it is then rejected (invalid-manifests)
 *   instead of being handed to kubectl: what is measured is what decoding costs.
 * - VmHWM (peak RSS) after one such message, and after 10 of them sent at once (one receive),
 *   each against the idle listener's VmRSS; then VmRSS after SETTLE_SECONDS (default 30), to see
 *   the memory given back.
 *
 * Every figure must stay within the pod's memory limit (deploy/base/deployment.yaml: 384 MiB).
 *
 *   bun bench/hostile-memory.ts
 *   SETTLE_SECONDS=60 bun bench/hostile-memory.ts
 */
import { randomBytes, createHash } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import { DEFAULT_DECODE_LIMITS, jsonLimitProblem, MANIFESTS_ENCODING, MESSAGE_KIND } from "../lib/wire/message.ts";
import { createNamespace, createQueue, stopTestEnv } from "../test/env/testenv.ts";
import { sendRaw } from "../test/helpers/bundles.ts";
import { listenerEnv } from "../test/helpers/listener-process.ts";
import { compileForHost } from "./compile.ts";
import { readMemory, startProcess, type Running } from "./process.ts";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const POD_LIMIT_MIB = 384;
const SETTLE_SECONDS = Number(process.env.SETTLE_SECONDS ?? 30);
if (!Number.isInteger(SETTLE_SECONDS) || SETTLE_SECONDS < 1) {
  throw new RangeError(`Cannot run the benchmark as SETTLE_SECONDS must be a positive integer: current value is ${JSON.stringify(process.env.SETTLE_SECONDS)}`);
}

// ElasticMQ takes any credentials; the SDK wants some (the tests get these from their preload).
process.env.AWS_ACCESS_KEY_ID ??= "bench";
process.env.AWS_SECRET_ACCESS_KEY ??= "bench";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const mib = (kib: number) => kib / 1024;
const started = performance.now();
function progress(text: string): void {
  process.stderr.write(`[${((performance.now() - started) / 1000).toFixed(1).padStart(6)} s] ${text}\n`);
}

/** The payload of the worst message: at the byte limit, one value under the values limit. */
export function worstPayload(): Buffer {
  const { maxInflatedBytes, maxValues, maxStringBytes } = DEFAULT_DECODE_LIMITS;
  const stringsPerObject = 8;
  // Values: the root array, then per object 11 (itself, apiVersion, kind, metadata, name and
  // data, keys included), 2 for the "a" key and its array, 2 per string (key and value).
  const fixedValues = 1 + 2 * (11 + 2 + 2 * stringsPerObject);
  const arraysPerObject = Math.floor((maxValues - 1 - fixedValues) / 2);
  const object = (stringLength: number) =>
    `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"worst"},"data":{"a":[${"[],".repeat(arraysPerObject - 1)}[]]${Array.from({ length: stringsPerObject }, (_, i) => `,"s${i}":"${"x".repeat(stringLength)}"`).join("")}}}`;
  const withoutStrings = Buffer.byteLength(`[${object(0)},${object(0)}]`);
  const stringLength = Math.min(maxStringBytes, Math.floor((maxInflatedBytes - withoutStrings) / (2 * stringsPerObject)));
  const payload = Buffer.from(`[${object(stringLength)},${object(stringLength)}]`);
  const problem = jsonLimitProblem(payload, DEFAULT_DECODE_LIMITS, 2);
  if (problem !== undefined || payload.length > maxInflatedBytes) throw new Error(`Cannot build the worst payload: it breaks a limit: ${problem?.text ?? `${payload.length} bytes`}`);
  return payload;
}

function bodyOf(payload: Buffer): string {
  return JSON.stringify({
    kind: MESSAGE_KIND,
    version: 1,
    build: { id: `worst-${randomBytes(4).toString("hex")}`, timestampMs: Date.now() },
    manifests: {
      encoding: MANIFESTS_ENCODING,
      data: gzipSync(payload, { level: 9 }).toString("base64"),
      sha256: createHash("sha256").update(payload).digest("hex"),
      objects: 2,
      bytes: payload.length,
    },
  });
}

/** Waits for `count` rejections logged since line `from`; returns the peak (VmHWM) seen at the end. */
async function rejections(listener: Running, from: number, count: number): Promise<void> {
  const deadline = Date.now() + 180_000;
  while (listener.lines.slice(from).filter((l) => l.msg === "message rejected").length < count) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${count} rejections; last lines:\n${listener.lines.slice(-5).map((l) => JSON.stringify(l)).join("\n")}`);
    if (listener.child.exitCode !== null) throw new Error(`The listener exited (${listener.child.exitCode}): ${listener.other.join("").slice(-2000)}`);
    await sleep(100);
  }
}

const work = mkdtempSync(join(tmpdir(), "kpcd-bench-hostile-"));
let listener: Running | undefined;
try {
  progress("compiling the listener");
  const binary = compileForHost(join(root, "listener.ts"), join(work, "kube-pico-cd-listener"));
  const payload = worstPayload();
  const body = bodyOf(payload);
  progress(`worst payload: ${(payload.length / 1024 / 1024).toFixed(2)} MiB inflated, body ${(body.length / 1024).toFixed(0)} KiB`);
  const ns = await createNamespace("bench-hostile");
  const queue = await createQueue();
  const env = await listenerEnv({ queueUrl: queue.url, namespace: ns, env: { KUBE_PICO_CD_LOG_LEVEL: "info", KUBE_PICO_CD_WAIT_TIME_SECONDS: "20" } });
  listener = startProcess([binary.path], env);
  await listener.waitForLine((l) => l.msg === "listening", 30_000);
  await sleep(5_000);
  const pid = listener.child.pid!;
  const idle = readMemory(pid);
  progress(`idle: VmRSS ${mib(idle.rssKiB).toFixed(0)} MiB`);

  let from = listener.lines.length;
  const t1 = performance.now();
  await sendRaw(queue.url, body);
  await rejections(listener, from, 1);
  const oneMs = performance.now() - t1;
  const one = readMemory(pid);
  progress(`one worst message rejected in ${oneMs.toFixed(0)} ms: VmHWM ${mib(one.hwmKiB).toFixed(0)} MiB`);
  await sleep(SETTLE_SECONDS * 1000);
  const afterOne = readMemory(pid);

  // Ten at once: sent before the listener's next receive, so one batch holds them all.
  from = listener.lines.length;
  const bodies = Array.from({ length: 10 }, () => bodyOf(payload));
  const t10 = performance.now();
  await Promise.all(bodies.map((b) => sendRaw(queue.url, b)));
  await rejections(listener, from, 10);
  const tenMs = performance.now() - t10;
  const ten = readMemory(pid);
  const batches = new Set(listener.lines.slice(from).filter((l) => l.msg === "message rejected").map((l) => Math.floor(Date.parse(l.time) / 1000))).size;
  progress(`ten worst messages rejected in ${tenMs.toFixed(0)} ms: VmHWM ${mib(ten.hwmKiB).toFixed(0)} MiB`);
  await sleep(SETTLE_SECONDS * 1000);
  const afterTen = readMemory(pid);
  const alive = listener.child.exitCode === null;

  const rows: [string, string][] = [
    ["listener idle, VmRSS", `${mib(idle.rssKiB).toFixed(0)} MiB`],
    [`worst message (${(payload.length / 1024 / 1024).toFixed(0)} MiB inflated, ${DEFAULT_DECODE_LIMITS.maxValues - 1} values, body ${(body.length / 1024).toFixed(0)} KiB), peak VmHWM`, `${mib(one.hwmKiB).toFixed(0)} MiB (+${mib(one.hwmKiB - idle.rssKiB).toFixed(0)}), decoded and rejected in ${oneMs.toFixed(0)} ms`],
    [`  ${SETTLE_SECONDS} s later, VmRSS`, `${mib(afterOne.rssKiB).toFixed(0)} MiB`],
    ["10 worst messages at once, peak VmHWM", `${mib(ten.hwmKiB).toFixed(0)} MiB (+${mib(ten.hwmKiB - idle.rssKiB).toFixed(0)}), all rejected in ${tenMs.toFixed(0)} ms (${batches} distinct seconds of log)`],
    [`  ${SETTLE_SECONDS} s later, VmRSS`, `${mib(afterTen.rssKiB).toFixed(0)} MiB`],
    ["pod memory limit (deploy/base/deployment.yaml)", `${POD_LIMIT_MIB} MiB`],
  ];
  const width = Math.max(...rows.map(([what]) => what.length));
  process.stdout.write(`\n${"what".padEnd(width)}  figure\n${"-".repeat(width)}  ------\n`);
  for (const [what, figure] of rows) process.stdout.write(`${what.padEnd(width)}  ${figure}\n`);
  const within = mib(ten.hwmKiB) < POD_LIMIT_MIB && mib(one.hwmKiB) < POD_LIMIT_MIB;
  process.stdout.write(`\nwithin the pod's limit: ${within ? "yes" : "NO"}; listener alive: ${alive ? "yes" : "NO"}\n`);
  if (!within || !alive) process.exitCode = 1;
} finally {
  if (listener !== undefined && listener.child.exitCode === null) {
    listener.child.kill("SIGTERM");
    await Promise.race([listener.exited, sleep(30_000)]);
  }
  await stopTestEnv();
  rmSync(work, { recursive: true, force: true });
}
