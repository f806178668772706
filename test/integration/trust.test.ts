/**
 * Signed bundles end to end, against ElasticMQ and the real API server: a listener with
 * trusted keys applies what a trusted key signed and rejects (records, deletes, applies
 * nothing) everything else; replaying an old signed bundle never rolls back; the single-file
 * publish that the GitHub Action runs signs bundles the listener accepts.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { rejectionDisposition } from "../../lib/listener/rejections.ts";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parse } from "yaml";
import type { KubeObject } from "../../lib/manifests/bundle.ts";
import { encodeMessage, type BuildInfo } from "../../lib/wire/message.ts";
import { generateSigningKeyPair, parseSigningKey, signFields, type SigningKey } from "../../lib/wire/signature.ts";
import { envFromActionInputs } from "../../lib/publish/action-inputs.ts";
import { buildArtifact } from "../../scripts/build.ts";
import { createNamespace, createQueue, kubectl, testEnv } from "../env/testenv.ts";
import { configMap, queueDepth, sendRaw } from "../helpers/bundles.ts";
import { runListenerOnce, type LogLine } from "../helpers/listener-process.ts";
import { readRecord } from "../helpers/record.ts";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function keyPair(): { key: SigningKey; publicKeyPem: string; privateKeyPem: string } {
  const pair = generateSigningKeyPair();
  const key = parseSigningKey(pair.privateKeyPem);
  if ("problem" in key) throw new Error(key.problem);
  return { key, publicKeyPem: pair.publicKeyPem, privateKeyPem: pair.privateKeyPem };
}

const ci = keyPair();
const trusting = { KUBE_PICO_CD_TRUSTED_KEYS: ci.publicKeyPem };

function signedBody(objects: readonly KubeObject[], build: BuildInfo, key: SigningKey = ci.key): string {
  return encodeMessage({ build, objects, sign: (fields) => signFields(fields, key) }).body;
}

function unsignedBody(objects: readonly KubeObject[], build: BuildInfo): string {
  return encodeMessage({ build, objects }).body;
}

function edited(body: string, change: (message: Record<string, any>) => void): string {
  const message = JSON.parse(body) as Record<string, any>;
  change(message);
  return JSON.stringify(message);
}

async function configMapColor(ns: string, name: string): Promise<string | undefined> {
  const got = await kubectl(["get", "configmap", name, "-n", ns, "-o", "jsonpath={.data.color}"]);
  if (got.code !== 0 && got.stderr.includes("NotFound")) return undefined;
  if (got.code !== 0) throw new Error(got.stderr);
  return got.stdout;
}

/**
 * Sends `bodyFor(ns)` (a bundle that would create ConfigMap "app" in `ns`) to a fresh queue,
 * runs a trusting listener once, and checks that it was rejected, recorded and deleted, and
 * that nothing was applied.
 */
async function expectRejected(bodyFor: (ns: string) => string, reason: string): Promise<{ error: string; lines: LogLine[] }> {
  const ns = await createNamespace("trust");
  const queue = await createQueue({ deadLetter: { maxReceiveCount: 5 } });
  const sent = await sendRaw(queue.url, bodyFor(ns));
  const run = await runListenerOnce({ queueUrl: queue.url, namespace: ns, env: trusting });
  expect(run.code).toBe(0);
  expect(await configMapColor(ns, "app")).toBeUndefined();
  const record = await readRecord(ns);
  expect(record?.current).toBeNull();
  expect(record?.inventory).toEqual([]);
  expect(record?.history.map((h) => [h.result, h.messageId])).toEqual([["rejected", sent.messageId]]);
  const error = record!.history[0]!.error!;
  expect(error).toStartWith(`${reason}: Rejected message: `);
  const logged = run.lines.find((l) => l.msg === "message rejected");
  expect(logged?.["reason"]).toBe(reason);
  expect(await queueDepth(queue.url)).toEqual({ visible: 0, inFlight: 0, delayed: 0 });
  // A rejection a configuration change could cure (a key not trusted yet) is kept for redrive.
  const kept = rejectionDisposition(reason) === "dead-letter";
  expect(await queueDepth(queue.deadLetterUrl!)).toEqual({ visible: kept ? 1 : 0, inFlight: 0, delayed: 0 });
  return { error, lines: run.lines };
}

describe("signed bundles", () => {
  test("a listener with trusted keys applies a bundle signed by one of them and logs the key ids at start-up", async () => {
    const ns = await createNamespace("trust");
    const queue = await createQueue();
    await sendRaw(queue.url, signedBody([configMap(ns, "app", { color: "blue" })], { id: "b1", timestampMs: 1_700_000_000_000 }));
    const run = await runListenerOnce({ queueUrl: queue.url, namespace: ns, env: trusting });
    expect(run.code).toBe(0);
    expect(await configMapColor(ns, "app")).toBe("blue");
    expect((await readRecord(ns))?.current?.build.id).toBe("b1");
    expect(run.lines.find((l) => l.msg === "listening")?.["trustedKeyIds"]).toEqual([ci.key.keyId]);
    expect(run.lines.some((l) => l.level === "warn" && String(l.msg).startsWith("no trusted keys"))).toBe(false);
  });

  test("an unsigned bundle is rejected as unsigned when keys are configured", async () => {
    const { error } = await expectRejected((ns) => unsignedBody([configMap(ns, "app", { color: "blue" })], { id: "u1", timestampMs: 1_700_000_000_000 }), "unsigned");
    expect(error).toContain(`build "u1" is not signed`);
  });

  test("a bundle signed by a key the listener does not trust is rejected as unknown-key", async () => {
    const stranger = keyPair();
    const { error } = await expectRejected((ns) => signedBody([configMap(ns, "app", { color: "blue" })], { id: "k1", timestampMs: 1_700_000_000_000 }, stranger.key), "unknown-key");
    expect(error).toContain(`signed by key ${stranger.key.keyId}, which this listener does not trust`);
  });

  test("a signed bundle whose manifests were replaced (digest updated to match) is rejected as bad-signature", async () => {
    const build = { id: "p1", timestampMs: 1_700_000_000_000 };
    await expectRejected((ns) => {
      const signed = JSON.parse(signedBody([configMap(ns, "app", { color: "blue" })], build)) as { signature: unknown };
      const forged = JSON.parse(encodeMessage({ build, objects: [configMap(ns, "app", { color: "evil" })] }).body) as Record<string, unknown>;
      return JSON.stringify({ ...forged, signature: signed.signature });
    }, "bad-signature");
  });

  test("a signed bundle whose build timestamp was changed is rejected as bad-signature", async () => {
    const body = (ns: string) => signedBody([configMap(ns, "app", { color: "blue" })], { id: "t1", timestampMs: 1_700_000_000_000 });
    const { error } = await expectRejected((ns) => edited(body(ns), (m) => (m.build.timestampMs = 1_900_000_000_000)), "bad-signature");
    expect(error).toContain(`by key ${ci.key.keyId} does not match`);
  });

  test("a malformed signature is rejected as malformed-signature", async () => {
    const body = (ns: string) => signedBody([configMap(ns, "app", { color: "blue" })], { id: "m1", timestampMs: 1_700_000_000_000 });
    const { error } = await expectRejected((ns) => edited(body(ns), (m) => (m.signature.value = Buffer.from("too short").toString("base64"))), "malformed-signature");
    expect(error).toContain("value decodes to 9 bytes, not 64");
  });

  test("replaying an old, validly signed bundle does not roll back", async () => {
    const ns = await createNamespace("replay");
    const queue = await createQueue();
    const old = signedBody([configMap(ns, "app", { color: "old" })], { id: "old", timestampMs: 1_700_000_000_000 });
    await sendRaw(queue.url, old);
    await runListenerOnce({ queueUrl: queue.url, namespace: ns, env: trusting });
    await sendRaw(queue.url, signedBody([configMap(ns, "app", { color: "new" })], { id: "new", timestampMs: 1_700_000_060_000 }));
    await runListenerOnce({ queueUrl: queue.url, namespace: ns, env: trusting });
    expect(await configMapColor(ns, "app")).toBe("new");

    const replayed = await sendRaw(queue.url, old);
    const run = await runListenerOnce({ queueUrl: queue.url, namespace: ns, env: trusting });
    expect(run.code).toBe(0);
    expect(await configMapColor(ns, "app")).toBe("new");
    const record = await readRecord(ns);
    expect(record?.current?.build.id).toBe("new");
    expect(record?.history[0]).toMatchObject({ result: "superseded", buildId: "old", messageId: replayed.messageId });
    expect(await queueDepth(queue.url)).toEqual({ visible: 0, inFlight: 0, delayed: 0 });
  });
});

describe("listener start-up without keys", () => {
  test("without trusted keys the listener runs, applies unsigned bundles and warns at start-up", async () => {
    const ns = await createNamespace("nokeys");
    const queue = await createQueue();
    await sendRaw(queue.url, unsignedBody([configMap(ns, "app", { color: "blue" })], { id: "n1", timestampMs: 1_700_000_000_000 }));
    const run = await runListenerOnce({ queueUrl: queue.url, namespace: ns });
    expect(run.code).toBe(0);
    expect(await configMapColor(ns, "app")).toBe("blue");
    const warning = run.lines.find((l) => l.level === "warn" && String(l.msg).startsWith("no trusted keys"));
    expect(warning?.msg).toBe(
      "no trusted keys: signatures are not checked, so anyone who can send to the queue can change this cluster; set KUBE_PICO_CD_TRUSTED_KEYS (see docs/security.md)",
    );
  });

  test("with --require-signatures and no keys the listener refuses to start", async () => {
    const ns = await createNamespace("nokeys");
    const queue = await createQueue();
    const run = await runListenerOnce({ queueUrl: queue.url, namespace: ns, env: { KUBE_PICO_CD_REQUIRE_SIGNATURES: "true" } });
    expect(run.code).toBe(1);
    expect(run.other.join("")).toContain("KUBE_PICO_CD_REQUIRE_SIGNATURES: signatures are required but no trusted key is given");
    expect(await readRecord(ns)).toBeUndefined();
  });
});

describe("the single-file publish and the GitHub Action sign", () => {
  test("action.yml hands its signing-key input to publish as KUBE_PICO_CD_SIGNING_KEY", () => {
    const action = parse(readFileSync(join(root, "action.yml"), "utf8")) as { inputs: Record<string, unknown>; runs: { main: string } };
    expect(action.inputs["signing-key"]).toBeDefined();
    expect(action.runs.main).toBe("dist/action.mjs");
    expect(envFromActionInputs({ "INPUT_SIGNING-KEY": ci.privateKeyPem })["KUBE_PICO_CD_SIGNING_KEY"]).toBe(ci.privateKeyPem);
  });

  test("dist/publish.mjs, built from the sources and run with node, signs with KUBE_PICO_CD_SIGNING_KEY and the listener applies it", async () => {
    const outDir = mkdtempSync(join(tmpdir(), "kpcd-single-file-"));
    dirs.push(outDir);
    const built = buildArtifact({ kind: "single-file", name: "publish.mjs", entry: "publish" }, { outDir });
    const ns = await createNamespace("signed");
    const queue = await createQueue();
    const manifests = join(outDir, "app.yaml");
    writeFileSync(manifests, `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\n  namespace: ${ns}\ndata:\n  color: signed\n`);
    const env = await testEnv();
    const publish = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
      const child = spawn("node", [built.path, manifests, "--json"], {
        env: {
          PATH: process.env.PATH ?? "/usr/bin:/bin",
          AWS_ACCESS_KEY_ID: "test",
          AWS_SECRET_ACCESS_KEY: "test",
          AWS_EC2_METADATA_DISABLED: "true",
          KUBE_PICO_CD_REGION: env.region,
          KUBE_PICO_CD_ENDPOINT_URL: env.sqsEndpoint,
          KUBE_PICO_CD_QUEUE: queue.url,
          KUBE_PICO_CD_SIGNING_KEY: ci.privateKeyPem,
        },
        stdio: ["ignore", "pipe", "pipe"],
      });
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (d) => (stdout += d));
      child.stderr.on("data", (d) => (stderr += d));
      child.once("error", reject);
      child.once("exit", (code) => resolve({ code, stdout, stderr }));
    });
    // Nothing on stderr: on node 22+ the AWS SDK has no NodeVersionSupportWarning to print.
    expect({ code: publish.code, stderr: publish.stderr }).toEqual({ code: 0, stderr: "" });
    expect(JSON.parse(publish.stdout).signedBy).toBe(ci.key.keyId);

    const run = await runListenerOnce({ queueUrl: queue.url, namespace: ns, env: { ...trusting, KUBE_PICO_CD_REQUIRE_SIGNATURES: "true" } });
    expect(run.code).toBe(0);
    expect(await configMapColor(ns, "app")).toBe("signed");
    expect((await readRecord(ns))?.history[0]?.result).toBe("applied");
  });
});
