/**
 * Hostile wire input sent through a real listener (ElasticMQ and the real API server): builds
 * stamped in the future, timestamps that cannot be recorded, bodies that would inflate or parse
 * into far more memory than the pod has. For each: nothing is applied, the listener stays up,
 * the outcome is recorded with its reason, the message is deleted, and the next genuine build
 * is deployed.
 */
import { describe, expect, test } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import type { KubeObject } from "../../lib/manifests/bundle.ts";
import { encodeMessage, MANIFESTS_ENCODING, MESSAGE_KIND, type BuildInfo } from "../../lib/wire/message.ts";
import { generateSigningKeyPair, parseSigningKey, signFields, type SigningKey } from "../../lib/wire/signature.ts";
import { createNamespace, createQueue, kubectl } from "../env/testenv.ts";
import { configMap, queueDepth, sendRaw } from "../helpers/bundles.ts";
import { startListener, type ListenerProcess } from "../helpers/listener-process.ts";
import { readRecord } from "../helpers/record.ts";

const ci = (() => {
  const pair = generateSigningKeyPair();
  const key = parseSigningKey(pair.privateKeyPem);
  if ("problem" in key) throw new Error(key.problem);
  return { key: key as SigningKey, publicKeyPem: pair.publicKeyPem };
})();

/** VmHWM (peak RSS) of a process, in MiB. */
function peakRssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  return Number(/^VmHWM:\s+(\d+) kB$/m.exec(status)?.[1]) / 1024;
}

async function exists(ns: string, name: string): Promise<boolean> {
  const got = await kubectl(["get", "configmap", name, "-n", ns, "-o", "name"]);
  if (got.code !== 0 && !got.stderr.includes("NotFound")) throw new Error(got.stderr);
  return got.code === 0;
}

/** A v1 body around any payload text, with the right digest and sizes unless `declared` says otherwise. */
function v1Around(payload: Buffer, build: BuildInfo, declared: { objects?: number; bytes?: number } = {}): string {
  return JSON.stringify({
    kind: MESSAGE_KIND,
    version: 1,
    build,
    manifests: {
      encoding: MANIFESTS_ENCODING,
      data: gzipSync(payload, { level: 9 }).toString("base64"),
      sha256: createHash("sha256").update(payload).digest("hex"),
      objects: declared.objects ?? 1,
      bytes: declared.bytes ?? payload.length,
    },
  });
}

function legacyBody(seconds: string, ns: string): string {
  return JSON.stringify({
    data: { BUILD_TIMESTAMP: seconds, COMMIT_HASH: `c${randomBytes(4).toString("hex")}`, BRANCH_NAME: "main" },
    manifests: `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: hostile\n  namespace: ${ns}\ndata:\n  k: v\n`,
  });
}

interface Refusal {
  listener: ListenerProcess;
  error: string;
}

/**
 * Starts a listener, sends `hostileFor(ns)` (which would create ConfigMap "hostile"), waits for
 * its rejection, then sends a genuine build and waits for it to be applied; checks everything
 * the hostile classes share. The listener is stopped before returning.
 */
async function expectRefusedThenDeploys(options: {
  hostileFor: (ns: string) => string;
  reason: string;
  env?: Record<string, string>;
  sign?: boolean;
  /** Runs once the hostile message is rejected, with the listener's peak RSS (MiB) from before it was sent. */
  during?: (listener: ListenerProcess, idlePeakMiB: number) => void;
}): Promise<Refusal> {
  const { hostileFor, reason, env = {}, sign = false, during } = options;
  const ns = await createNamespace("hostile");
  const queue = await createQueue();
  const listener = await startListener({ queueUrl: queue.url, namespace: ns, env });
  try {
    await listener.waitForLog((l) => l.msg === "listening");
    const idlePeakMiB = peakRssMiB(listener.child.pid!);
    const hostile = await sendRaw(queue.url, hostileFor(ns));
    const rejected = await listener.waitForLog((l) => l.msg === "message rejected" && l["messageId"] === hostile.messageId);
    expect(rejected["reason"]).toBe(reason);
    during?.(listener, idlePeakMiB);

    const build: BuildInfo = { id: `genuine-${randomBytes(3).toString("hex")}`, timestampMs: Date.now() };
    const objects: KubeObject[] = [configMap(ns, "genuine", { color: "blue" })];
    const body = encodeMessage({ build, objects, ...(sign ? { sign: (fields) => signFields(fields, ci.key) } : {}) }).body;
    await sendRaw(queue.url, body);
    await listener.waitForLog((l) => l.msg === "build applied" && l["build"] === build.id, 90_000);

    // Alive, nothing of the hostile message applied, the genuine build recorded after the rejection.
    expect(listener.child.exitCode).toBeNull();
    expect(await exists(ns, "hostile")).toBe(false);
    expect(await exists(ns, "genuine")).toBe(true);
    let record = await readRecord(ns);
    for (let i = 0; i < 50 && record?.current?.build.id !== build.id; i++) {
      await Bun.sleep(100);
      record = await readRecord(ns);
    }
    expect(record?.current?.build.id).toBe(build.id);
    const refusal = record!.history.find((h) => h.messageId === hostile.messageId);
    expect(refusal?.result).toBe("rejected");
    expect(refusal?.error).toStartWith(`${reason}: Rejected `);
    // Both messages deleted (a permanent rejection is not kept).
    for (let i = 0; i < 50; i++) {
      const depth = await queueDepth(queue.url);
      if (depth.visible + depth.inFlight + depth.delayed === 0) break;
      await Bun.sleep(200);
    }
    expect(await queueDepth(queue.url)).toEqual({ visible: 0, inFlight: 0, delayed: 0 });
    return { listener, error: refusal!.error! };
  } finally {
    listener.kill("SIGTERM");
    await listener.exited;
  }
}

describe("hostile wire input through a real listener", () => {
  test("a v1 build stamped a day in the future is rejected as future-build, and the next genuine build deploys", async () => {
    const { error } = await expectRefusedThenDeploys({
      reason: "future-build",
      hostileFor: (ns) => encodeMessage({ build: { id: "from-the-future", timestampMs: Date.now() + 86_400_000 }, objects: [configMap(ns, "hostile", { k: "v" })] }).body,
    });
    expect(error).toContain('build "from-the-future" is stamped ');
    expect(error).toContain("at most 600 s are allowed");
  }, 120_000);

  test("a legacy build stamped a day in the future is rejected as future-build, and the next genuine build deploys", async () => {
    await expectRefusedThenDeploys({ reason: "future-build", hostileFor: (ns) => legacyBody(String(Math.floor(Date.now() / 1000) + 86_400), ns) });
  }, 120_000);

  test("a legacy timestamp whose milliseconds are not a safe integer is rejected as schema", async () => {
    const { error } = await expectRefusedThenDeploys({ reason: "schema", hostileFor: (ns) => legacyBody("99999999999999", ns) });
    expect(error).toContain("data.BUILD_TIMESTAMP 99999999999999 is too large: in milliseconds it is not a safe integer");
  }, 120_000);

  test("an unsigned body that would inflate to 48 MiB of nested arrays is refused as unsigned without inflating, and RSS stays low", async () => {
    const unit = `${"[".repeat(1000)}${"]".repeat(1000)}`;
    const payload = Buffer.from(`[${Array.from({ length: Math.floor((48 * 1024 * 1024) / (unit.length + 1)) }, () => unit).join(",")}]`);
    expect(payload.length).toBeGreaterThan(47 * 1024 * 1024);
    const body = v1Around(payload, { id: "bomb", timestampMs: Date.now() });
    expect(body.length).toBeLessThan(256 * 1024);
    await expectRefusedThenDeploys({
      reason: "unsigned",
      sign: true,
      env: { KUBE_PICO_CD_TRUSTED_KEYS: ci.publicKeyPem, KUBE_PICO_CD_REQUIRE_SIGNATURES: "true" },
      hostileFor: () => body,
      during: (listener, idlePeakMiB) => {
        // Inflated, 48 MiB of nested arrays parse into gigabytes; refused on its envelope, the
        // peak stays the idle listener's.
        expect(peakRssMiB(listener.child.pid!)).toBeLessThan(idlePeakMiB + 40);
      },
    });
  }, 120_000);

  test("a deep-nesting bomb (100,000 levels in a valid, correctly digested payload) is rejected as too-large", async () => {
    const { error } = await expectRefusedThenDeploys({
      reason: "too-large",
      hostileFor: (ns) =>
        v1Around(Buffer.from(`[{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"hostile","namespace":"${ns}"},"data":{"k":${"[".repeat(100_000)}${"]".repeat(100_000)}}}]`), { id: "deep", timestampMs: Date.now() }),
    });
    expect(error).toContain("nests deeper than 100 levels");
  }, 120_000);

  test("a payload holding a 4 MiB string is rejected as too-large", async () => {
    const { error } = await expectRefusedThenDeploys({
      reason: "too-large",
      hostileFor: (ns) =>
        v1Around(Buffer.from(`[{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"hostile","namespace":"${ns}"},"data":{"k":"${"x".repeat(4 * 1024 * 1024)}"}}]`), { id: "huge-string", timestampMs: Date.now() }),
    });
    expect(error).toContain("holds a string of more than 1048576 bytes");
  }, 120_000);
});
