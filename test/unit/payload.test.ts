import { describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { gunzipSync, gzipSync } from "node:zlib";
import { canonicalJson } from "../../lib/wire/canonical-json.ts";
import { createPayloadWriter, encodePayload, GZIP_LEVEL } from "../../lib/wire/payload.ts";

const objects = [
  { kind: "ConfigMap", apiVersion: "v1", metadata: { name: "a", namespace: "x" }, data: { b: "2", a: "1" } },
  { apiVersion: "apps/v1", kind: "Deployment", metadata: { name: "web" }, spec: { replicas: 3 } },
  { kind: "Secret", apiVersion: "v1", metadata: { name: "s" }, stringData: { "ü": "ß" } },
];

async function written(values: readonly unknown[]) {
  const writer = createPayloadWriter();
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
