import { describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { spawnSync } from "node:child_process";
import { join, resolve } from "node:path";
import { gunzipSync, gzipSync } from "node:zlib";
import { canonicalJson } from "../../lib/wire/canonical-json.ts";
import { createPayloadWriter, encodePayload, GZIP_LEVEL, WORKER_AFTER_BYTES, type GzipPlace } from "../../lib/wire/payload.ts";

const root = resolve(import.meta.dir, "../..");
const payloadModule = join(root, "lib/wire/payload.ts");
const deno = join(root, "node_modules/.bin/deno");

const objects = [
  { kind: "ConfigMap", apiVersion: "v1", metadata: { name: "a", namespace: "x" }, data: { b: "2", a: "1" } },
  { apiVersion: "apps/v1", kind: "Deployment", metadata: { name: "web" }, spec: { replicas: 3 } },
  { kind: "Secret", apiVersion: "v1", metadata: { name: "s" }, stringData: { "ü": "ß" } },
];

async function written(values: readonly unknown[], gzipOn: GzipPlace = "auto") {
  const writer = createPayloadWriter({ gzipOn });
  for (const value of values) writer.add(value);
  return writer.finish();
}

describe("encodePayload()", () => {
  test("encodePayload() is the canonical JSON array, its SHA-256, byte length and gzip", () => {
    const json = Buffer.from(canonicalJson(objects), "utf8");
    const payload = encodePayload(objects);
    expect(payload.sha256).toBe(createHash("sha256").update(json).digest("hex"));
    expect(payload.bytes).toBe(json.length);
    expect(payload.objects).toBe(3);
    expect(payload.gzip.equals(gzipSync(json, { level: GZIP_LEVEL }))).toBe(true);
  });
});

describe("createPayloadWriter()", () => {
  test("createPayloadWriter() gives the same bytes as encodePayload() of the same objects", async () => {
    const streamed = await written(objects);
    const whole = encodePayload(objects);
    expect(streamed.sha256).toBe(whole.sha256);
    expect(streamed.bytes).toBe(whole.bytes);
    expect(streamed.objects).toBe(3);
    expect(streamed.gzip.equals(whole.gzip)).toBe(true);
  });

  test("createPayloadWriter() gives the same gzip bytes for a payload far larger than one deflate window", async () => {
    const many = Array.from({ length: 2_000 }, (_, i) => ({ kind: "ConfigMap", metadata: { name: `c-${i}` }, data: { value: `${i * 7919}`.repeat(20) } }));
    const streamed = await written(many);
    const whole = encodePayload(many);
    expect(streamed.bytes).toBeGreaterThan(400_000);
    expect(streamed.gzip.equals(whole.gzip)).toBe(true);
    expect(streamed.sha256).toBe(whole.sha256);
  });

  // Larger than WORKER_AFTER_BYTES, so that "auto" under Deno hands it to a worker part way.
  const large = Array.from({ length: 12_000 }, (_, i) => ({ kind: "ConfigMap", metadata: { name: `c-${i}` }, data: { value: `${(i * 7919) % 10007}-`.repeat(40) } }));

  for (const place of ["stream", "worker", "auto"] as const) {
    test(`createPayloadWriter({ gzipOn: "${place}" }) gives encodePayload()'s bytes for a payload over WORKER_AFTER_BYTES`, async () => {
      const streamed = await written(large, place);
      const whole = encodePayload(large);
      expect(streamed.bytes).toBeGreaterThan(WORKER_AFTER_BYTES);
      expect(streamed.gzip.equals(whole.gzip)).toBe(true);
      expect(streamed.sha256).toBe(whole.sha256);
      expect(streamed.objects).toBe(12_000);
    });
  }

  test('createPayloadWriter({ gzipOn: "worker" }) of a small payload and of none gives the same bytes', async () => {
    expect((await written(objects, "worker")).gzip.equals(encodePayload(objects).gzip)).toBe(true);
    expect(gunzipSync((await written([], "worker")).gzip).toString("utf8")).toBe("[]");
  });

  test("createPayloadWriter().discard() stops its worker: a process that discards one exits", () => {
    const script = `import { createPayloadWriter } from ${JSON.stringify(payloadModule)};
const writer = createPayloadWriter({ gzipOn: "worker" });
for (let i = 0; i < 200; i++) writer.add({ i, text: "x".repeat(1000) });
writer.discard();`;
    const run = spawnSync(process.execPath, ["-e", script], { encoding: "utf8", timeout: 20_000 });
    expect({ status: run.status, signal: run.signal, stderr: run.stderr }).toEqual({ status: 0, signal: null, stderr: "" });
  });

  test('under Deno, gzipOn "auto" hands a large payload to a worker and still gives encodePayload()\'s bytes', () => {
    const script = `import { createPayloadWriter, encodePayload } from ${JSON.stringify(payloadModule)};
const values = Array.from({ length: 12000 }, (_, i) => ({ kind: "ConfigMap", metadata: { name: "c-" + i }, data: { value: String((i * 7919) % 10007).repeat(40) } }));
const writer = createPayloadWriter();
for (const value of values) writer.add(value);
const streamed = await writer.finish();
const whole = encodePayload(values);
console.log(JSON.stringify({ same: streamed.gzip.equals(whole.gzip) && streamed.sha256 === whole.sha256, bytes: streamed.bytes }));`;
    const run = spawnSync(deno, ["eval", "--ext=ts", script], { encoding: "utf8", timeout: 60_000 });
    expect(run.stderr).toBe("");
    const answer = JSON.parse(run.stdout) as { same: boolean; bytes: number };
    expect(answer.same).toBe(true);
    expect(answer.bytes).toBeGreaterThan(WORKER_AFTER_BYTES);
  }, 60_000);

  test("createPayloadWriter() of no objects is the empty array", async () => {
    const payload = await written([]);
    expect(gunzipSync(payload.gzip).toString("utf8")).toBe("[]");
    expect(payload).toMatchObject({ bytes: 2, objects: 0, sha256: createHash("sha256").update("[]").digest("hex") });
  });

  test("createPayloadWriter() refuses an object after finish() and a second finish()", async () => {
    const writer = createPayloadWriter();
    writer.add({ a: 1 });
    await writer.finish();
    expect(() => writer.add({ b: 2 })).toThrow("Cannot add to the payload: it is finished");
    expect(writer.finish()).rejects.toThrow("Cannot finish the payload twice");
  });

  test("createPayloadWriter().discard() ends the writer without a result", () => {
    const writer = createPayloadWriter();
    writer.add({ a: 1 });
    writer.discard();
    expect(() => writer.add({ b: 2 })).toThrow("Cannot add to the payload: it is finished");
  });
});
