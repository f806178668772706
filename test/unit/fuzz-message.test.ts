/**
 * Hostile input for the message decoder: whatever bytes arrive on the queue, decodeMessage()
 * returns or throws a MessageRejectedError (a clear rejection) and nothing else, and does so
 * quickly. Property runs per property: KPCD_FUZZ_RUNS (default 2000), printed below.
 */
import { describe, expect, test } from "bun:test";
import { gzipSync } from "node:zlib";
import fc from "fast-check";
import { MessageRejectedError } from "../../lib/errors.ts";
import { decodeMessage, encodeMessage, MANIFESTS_ENCODING, MESSAGE_KIND, type KubeObject } from "../../lib/wire/message.ts";
import { checkPolicy, OPEN_POLICY } from "../../lib/listener/policy.ts";
import { generateSigningKeyPair, parseSigningKey, signFields, type SigningKey } from "../../lib/wire/signature.ts";
import { checkSignature, loadTrustedKeys } from "../../lib/listener/trust.ts";

const RUNS = Number(process.env.KPCD_FUZZ_RUNS ?? 2000);
if (!Number.isInteger(RUNS) || RUNS < 1) throw new Error(`KPCD_FUZZ_RUNS must be a positive integer: current value is ${process.env.KPCD_FUZZ_RUNS}`);
process.stderr.write(`fuzz-message: ${RUNS} runs per property (KPCD_FUZZ_RUNS)\n`);

/** What decodeMessage did: accepted, or rejected with a reason and a non-empty message. */
function outcome(body: string, options: { maxDecompressedBytes?: number } = {}): "accepted" | string {
  try {
    decodeMessage(body, options);
    return "accepted";
  } catch (error) {
    if (!(error instanceof MessageRejectedError)) throw error;
    expect(error.message).toStartWith("Rejected ");
    return error.reason;
  }
}

const sha256 = async (bytes: Buffer) => (await import("node:crypto")).createHash("sha256").update(bytes).digest("hex");

/** A v1 body around `payload` (a string), with the correct digest and sizes. */
async function bodyAround(payload: string, top: Record<string, unknown> = {}): Promise<string> {
  const bytes = Buffer.from(payload, "utf8");
  return JSON.stringify({
    kind: MESSAGE_KIND,
    version: 1,
    build: { id: "fuzz", timestampMs: 1 },
    manifests: { encoding: MANIFESTS_ENCODING, data: gzipSync(bytes).toString("base64"), sha256: await sha256(bytes), objects: 1, bytes: bytes.length },
    ...top,
  });
}

const hostileKeys = fc.constantFrom("__proto__", "constructor", "prototype", "toString", "hasOwnProperty", "apiVersion", "kind", "metadata", "name", "namespace");
const hostileJson = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: "small" },
    fc.jsonValue({ maxDepth: 2 }),
    fc.dictionary(fc.oneof(hostileKeys, fc.string()), tie("value"), { maxKeys: 5 }),
    fc.array(tie("value"), { maxLength: 4 }),
  ),
})).value;

describe("decodeMessage() with hostile input", () => {
  test("decodeMessage() of any string accepts or rejects with a MessageRejectedError", () => {
    fc.assert(
      fc.property(fc.string({ unit: "binary", maxLength: 2000 }), (body) => {
        outcome(body);
      }),
      { numRuns: RUNS },
    );
  });

  test("decodeMessage() of any JSON value, and of any JSON near a v1 body, accepts or rejects with a MessageRejectedError", () => {
    const nearV1 = fc.record(
      {
        kind: fc.oneof(fc.constant(MESSAGE_KIND), hostileJson),
        version: fc.oneof(fc.constant(1), hostileJson),
        build: fc.oneof(fc.record({ id: fc.string(), timestampMs: fc.oneof(fc.integer(), fc.double()) }), hostileJson),
        target: hostileJson,
        manifests: fc.oneof(
          fc.record({ encoding: fc.constant(MANIFESTS_ENCODING), data: fc.base64String(), sha256: fc.stringMatching(/^[0-9a-f]{64}$/), objects: fc.nat(), bytes: fc.nat() }),
          hostileJson,
        ),
        signature: hostileJson,
        __proto__: hostileJson,
      },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(fc.oneof(hostileJson, nearV1), (value) => {
        outcome(JSON.stringify(value) ?? "null");
        outcome(JSON.stringify({ Type: "Notification", Message: JSON.stringify(value) ?? "" }));
      }),
      { numRuns: RUNS },
    );
  });

  test("decodeMessage() of any payload with the right digest accepts or rejects, and never pollutes Object.prototype", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(hostileJson, { maxLength: 5 }), async (objects) => {
        const reason = outcome(await bodyAround(JSON.stringify(objects)));
        expect(["accepted", "invalid-manifests"]).toContain(reason);
        expect(({} as Record<string, unknown>)["polluted"]).toBeUndefined();
      }),
      { numRuns: RUNS },
    );
  });

  test("decodeMessage() keeps __proto__ and constructor keys as plain data", async () => {
    const payload = '[{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","__proto__":{"polluted":true}},"constructor":{"prototype":{"polluted":true}},"__proto__":{"polluted":true}}]';
    const decoded = decodeMessage(await bodyAround(payload));
    expect(({} as Record<string, unknown>)["polluted"]).toBeUndefined();
    expect(Object.getPrototypeOf(decoded.objects[0])).toBe(Object.prototype);
    expect(Object.keys(decoded.objects[0]!)).toContain("__proto__");
  });

  test("decodeMessage() survives any signature and policy check on arbitrary bodies (what the listener runs next)", () => {
    const pair = generateSigningKeyPair();
    const key = parseSigningKey(pair.privateKeyPem) as SigningKey;
    const trusted = loadTrustedKeys([pair.publicKeyPem]).keys;
    const valid = encodeMessage({ build: { id: "b", timestampMs: 1 }, objects: [{ apiVersion: "v1", kind: "ConfigMap", metadata: { name: "a", namespace: "n" } } as KubeObject], sign: (f) => signFields(f, key) }).body;
    fc.assert(
      fc.property(fc.nat({ max: valid.length - 1 }), fc.string({ minLength: 0, maxLength: 3 }), (at, insert) => {
        const body = valid.slice(0, at) + insert + valid.slice(at + 1);
        try {
          const decoded = decodeMessage(body);
          checkSignature(decoded, trusted);
          checkPolicy(decoded.objects, { ...OPEN_POLICY, allowClusterScoped: false, allowedNamespaces: ["n"] });
          // Anything accepted must be what was signed.
          expect(decoded.build).toEqual({ id: "b", timestampMs: 1 });
        } catch (error) {
          if (!(error instanceof MessageRejectedError)) throw error;
        }
      }),
      { numRuns: RUNS },
    );
  });

  test("decodeMessage() rejects deep nesting without crashing, up to the largest SQS message (1 MiB)", async () => {
    const started = performance.now();
    for (const depth of [1_000, 100_000, 500_000]) {
      const nested = `${"[".repeat(depth)}${"]".repeat(depth)}`;
      outcome(nested);
      outcome(await bodyAround(`[{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"},"data":${nested}}]`));
      outcome(JSON.stringify({ data: { BUILD_TIMESTAMP: "1" }, manifests: `${"[".repeat(depth)}${"]".repeat(depth)}` }));
      outcome(JSON.stringify({ data: { BUILD_TIMESTAMP: "1" }, manifests: "a:\n" + Array.from({ length: Math.min(depth, 5_000) }, (_, i) => `${" ".repeat(i + 1)}- x`).join("\n") }));
    }
    expect(performance.now() - started).toBeLessThan(30_000);
  });

  test("decodeMessage() handles huge strings in any field quickly", async () => {
    const huge = "x".repeat(20 * 1024 * 1024);
    const started = performance.now();
    expect(outcome(huge)).toBe("invalid-json");
    expect(outcome(JSON.stringify({ kind: MESSAGE_KIND, version: 1, build: { id: huge, timestampMs: 1 } }))).toBe("schema");
    expect(outcome(await bodyAround(`[{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"},"data":{"k":"${huge}"}}]`))).toBe("accepted");
    expect(outcome(JSON.stringify({ data: { BUILD_TIMESTAMP: "1" }, manifests: huge }), { maxDecompressedBytes: 1024 * 1024 })).toBe("too-large");
    expect(performance.now() - started).toBeLessThan(30_000);
  });

  test("decodeMessage() stops inflating a gzip bomb at the limit: 1 GiB of zeros in a 1 MiB body is rejected as too-large", () => {
    // 1 GiB of zeros gzips to about 1 MiB: built from 1 MiB chunks so the test never holds 1 GiB.
    const chunk = Buffer.alloc(1024 * 1024);
    const { createGzip } = require("node:zlib") as typeof import("node:zlib");
    const gzip = createGzip({ level: 9 });
    const parts: Buffer[] = [];
    gzip.on("data", (d: Buffer) => parts.push(d));
    for (let i = 0; i < 1024; i++) gzip.write(chunk);
    gzip.end();
    return new Promise<void>((resolve, reject) => {
      gzip.on("end", () => {
        try {
          const data = Buffer.concat(parts);
          expect(data.length).toBeLessThan(1.1 * 1024 * 1024);
          const body = (bytes: number) =>
            JSON.stringify({ kind: MESSAGE_KIND, version: 1, build: { id: "bomb", timestampMs: 1 }, manifests: { encoding: MANIFESTS_ENCODING, data: data.toString("base64"), sha256: "0".repeat(64), objects: 1, bytes } });
          const started = performance.now();
          const rssBefore = process.memoryUsage().rss;
          // Declared honestly (over the limit) and declared small (lying): both rejected.
          expect(outcome(body(1024 ** 3))).toBe("too-large");
          expect(outcome(body(100))).toBe("too-large");
          expect(outcome(body(100), { maxDecompressedBytes: 1024 * 1024 })).toBe("too-large");
          expect(performance.now() - started).toBeLessThan(20_000);
          // Never more than the limit (50 MiB) plus slack is inflated.
          expect(process.memoryUsage().rss - rssBefore).toBeLessThan(400 * 1024 * 1024);
          resolve();
        } catch (error) {
          reject(error);
        }
      });
    });
  }, 60_000);

  test("decodeMessage() rejects a legacy body with a YAML alias bomb (billion laughs) quickly", () => {
    const lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'];
    for (let i = 1; i < 10; i++) {
      const previous = String.fromCharCode(96 + i);
      const name = String.fromCharCode(97 + i);
      lines.push(`${name}: &${name} [${Array.from({ length: 9 }, () => `*${previous}`).join(",")}]`);
    }
    const bomb = `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: lol\ndata:\n${lines.map((l) => `  ${l}`).join("\n")}\n`;
    const started = performance.now();
    let message = "";
    try {
      decodeMessage(JSON.stringify({ data: { BUILD_TIMESTAMP: "1" }, manifests: bomb }));
    } catch (error) {
      if (!(error instanceof MessageRejectedError)) throw error;
      expect(error.reason).toBe("invalid-manifests");
      message = error.message;
    }
    expect(message).toContain("Excessive alias count");
    expect(performance.now() - started).toBeLessThan(5_000);
  });
});
