/**
 * Hostile input for the message decoder: whatever bytes arrive on the queue, decodeMessage()
 * returns or throws a MessageRejectedError (a clear rejection) and nothing else, and does so
 * quickly. Property runs per property: KPCD_FUZZ_RUNS (default 2000), printed below.
 */
import { describe, expect, test } from "bun:test";
import { gzipSync } from "node:zlib";
import fc from "fast-check";
import { MessageRejectedError } from "../../lib/errors.ts";
import {
  decodeMessage,
  encodeMessage,
  jsonLimitProblem,
  MANIFESTS_ENCODING,
  MAX_LEGACY_TIMESTAMP_SECONDS,
  MESSAGE_KIND,
  type DecodeMessageOptions,
  type KubeObject,
} from "../../lib/wire/message.ts";
import { checkPolicy, OPEN_POLICY } from "../../lib/listener/policy.ts";
import { generateSigningKeyPair, parseSigningKey, signFields, type SigningKey } from "../../lib/wire/signature.ts";
import { checkEnvelopeSignature, checkSignature, loadTrustedKeys } from "../../lib/listener/trust.ts";

const RUNS = Number(process.env.KPCD_FUZZ_RUNS ?? 2000);
if (!Number.isInteger(RUNS) || RUNS < 1) throw new Error(`KPCD_FUZZ_RUNS must be a positive integer: current value is ${process.env.KPCD_FUZZ_RUNS}`);
process.stderr.write(`fuzz-message: ${RUNS} runs per property (KPCD_FUZZ_RUNS)\n`);

/** What decodeMessage did: accepted, or rejected with a reason and a non-empty message. */
function outcome(body: string, options: DecodeMessageOptions = {}): "accepted" | string {
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
    // Over the 1 MiB string limit: refused by the scan, before JSON.parse builds it.
    expect(outcome(await bodyAround(`[{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"},"data":{"k":"${huge}"}}]`))).toBe("too-large");
    const big = "x".repeat(1024 * 1024);
    expect(outcome(await bodyAround(`[{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"},"data":{"k":"${big}"}}]`))).toBe("accepted");
    expect(outcome(JSON.stringify({ data: { BUILD_TIMESTAMP: "1" }, manifests: huge }), { maxDecompressedBytes: 1024 * 1024 })).toBe("too-large");
    expect(performance.now() - started).toBeLessThan(30_000);
  });

  test("decodeMessage() stops inflating a gzip bomb: 1 GiB of zeros in a 1 MiB body is rejected as too-large, or as decode when it lies about its size", () => {
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
          // Declared honestly (over the limit: never inflated) and declared small (lying:
          // inflating stops one byte past what it declares): both rejected.
          expect(outcome(body(1024 ** 3))).toBe("too-large");
          expect(outcome(body(100))).toBe("decode");
          expect(outcome(body(100), { maxDecompressedBytes: 1024 * 1024 })).toBe("decode");
          expect(performance.now() - started).toBeLessThan(20_000);
          // Never more than the declared size plus slack is inflated.
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

/** Depth, longest string (bytes of its JSON text) and number of values (keys included) of a JSON value, as the limits count them. */
function measure(value: unknown, depth = 0): { depth: number; longest: number; values: number } {
  if (typeof value === "string") return { depth, longest: Buffer.byteLength(JSON.stringify(value)) - 2, values: 1 };
  if (typeof value !== "object" || value === null) return { depth, longest: 0, values: 1 };
  const entries = Array.isArray(value) ? value.map((v) => [undefined, v] as const) : Object.entries(value);
  let result = { depth: depth + 1, longest: 0, values: 1 };
  for (const [key, item] of entries) {
    const inner = measure(item, depth + 1);
    const keyLength = key === undefined ? 0 : Buffer.byteLength(JSON.stringify(key)) - 2;
    result = { depth: Math.max(result.depth, inner.depth), longest: Math.max(result.longest, inner.longest, keyLength), values: result.values + inner.values + (key === undefined ? 0 : 1) };
  }
  return result;
}

describe("decoding limits with hostile input", () => {
  const limitsArbitrary = fc.record({ maxDepth: fc.integer({ min: 1, max: 6 }), maxStringBytes: fc.integer({ min: 0, max: 12 }), maxValues: fc.integer({ min: 1, max: 40 }) });

  test("jsonLimitProblem() finds a problem exactly when a value breaks a limit, however the JSON is formatted", () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 5 }), limitsArbitrary, fc.boolean(), (value, limits, pretty) => {
        const text = Buffer.from(JSON.stringify(value, null, pretty ? 2 : undefined));
        const m = measure(value);
        const within = m.depth <= limits.maxDepth && m.longest <= limits.maxStringBytes && m.values <= limits.maxValues;
        expect(jsonLimitProblem(text, limits, Number.MAX_SAFE_INTEGER) === undefined).toBe(within);
      }),
      { numRuns: RUNS },
    );
  });

  test("decodeMessage() of any payload under random limits accepts only payloads within them", async () => {
    const bodies = await Promise.all(
      fc.sample(fc.array(fc.oneof(hostileJson, fc.constant({ apiVersion: "v1", kind: "ConfigMap", metadata: { name: "a" } })), { maxLength: 3 }), Math.min(RUNS, 500)).map(async (items) => {
        const payload = JSON.stringify(items);
        const bytes = Buffer.from(payload);
        return { items, body: JSON.stringify({ kind: MESSAGE_KIND, version: 1, build: { id: "fuzz", timestampMs: 1 }, manifests: { encoding: MANIFESTS_ENCODING, data: gzipSync(bytes).toString("base64"), sha256: await sha256(bytes), objects: items.length, bytes: bytes.length } }) };
      }),
    );
    fc.assert(
      fc.property(fc.constantFrom(...bodies), limitsArbitrary, ({ items, body }, limits) => {
        const result = outcome(body, { limits });
        if (result !== "accepted") return;
        const m = measure(items);
        expect(m.depth).toBeLessThanOrEqual(limits.maxDepth);
        expect(m.longest).toBeLessThanOrEqual(limits.maxStringBytes);
        expect(m.values).toBeLessThanOrEqual(limits.maxValues);
      }),
      { numRuns: RUNS },
    );
  });

  test("decodeMessage() with trusted keys never inflates an unsigned, untrusted or forged body: it is refused on its envelope", () => {
    const pair = generateSigningKeyPair();
    const stranger = parseSigningKey(generateSigningKeyPair().privateKeyPem) as SigningKey;
    const trusted = loadTrustedKeys([pair.publicKeyPem]).keys;
    const checkEnvelope = (envelope: Parameters<typeof checkEnvelopeSignature>[0]) => checkEnvelopeSignature(envelope, trusted);
    const signature = fc.oneof(
      fc.constant(undefined),
      fc.record({ algorithm: fc.constant("ed25519"), keyId: fc.stringMatching(/^[0-9a-f]{16}$/), value: fc.base64String({ minLength: 88, maxLength: 88 }) }),
      fc.constant("stranger" as const),
    );
    fc.assert(
      fc.property(fc.string({ maxLength: 40 }), fc.nat(), fc.nat(), fc.base64String({ maxLength: 64 }), signature, (id, objects, bytes, data, sig) => {
        const manifests = { encoding: MANIFESTS_ENCODING, sha256: "a".repeat(64), objects, bytes };
        const build = { id: id || "x", timestampMs: 1 };
        const signed = sig === "stranger" ? signFields({ build, manifests }, stranger) : sig;
        const body = JSON.stringify({ kind: MESSAGE_KIND, version: 1, build, manifests: { ...manifests, data }, ...(signed === undefined ? {} : { signature: signed }) });
        expect(["unsigned", "malformed-signature", "unknown-key", "bad-signature"]).toContain(outcome(body, { checkEnvelope }));
      }),
      { numRuns: RUNS },
    );
  });

  test("decodeMessage() returns only safe-integer timestamps, and rejects future ones, in both formats", () => {
    const nowMs = 1_700_000_000_000;
    fc.assert(
      fc.property(fc.oneof(fc.nat(), fc.maxSafeNat(), fc.double(), fc.bigInt({ min: 0n, max: 10n ** 20n }).map(String)), fc.boolean(), (timestamp, legacy) => {
        const manifests = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: web\n";
        const body = legacy
          ? JSON.stringify({ data: { BUILD_TIMESTAMP: timestamp }, manifests })
          : encodeMessageLoosely(timestamp);
        let decoded: ReturnType<typeof decodeMessage> | undefined;
        try {
          decoded = decodeMessage(body, { time: { nowMs } });
        } catch (error) {
          if (!(error instanceof MessageRejectedError)) throw error;
          expect(["schema", "future-build"]).toContain(error.reason);
          if (error.reason === "future-build") expect(legacy ? Number(timestamp) * 1000 : Number(timestamp)).toBeGreaterThan(nowMs + 600_000);
          return;
        }
        expect(Number.isSafeInteger(decoded.build.timestampMs)).toBe(true);
        expect(decoded.build.timestampMs).toBeLessThanOrEqual(nowMs + 600_000);
        if (legacy) expect(Number(timestamp)).toBeLessThanOrEqual(MAX_LEGACY_TIMESTAMP_SECONDS);
      }),
      { numRuns: RUNS },
    );
  });
});

/** A v1 body of one Namespace whose timestampMs is `timestamp` as given (any JSON value). */
function encodeMessageLoosely(timestamp: unknown): string {
  const body = JSON.parse(encodeMessage({ build: { id: "t", timestampMs: 0 }, objects: [{ apiVersion: "v1", kind: "Namespace", metadata: { name: "web" } } as KubeObject] }).body) as Record<string, any>;
  body.build.timestampMs = timestamp;
  return JSON.stringify(body);
}
