import { describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { gunzipSync, gzipSync } from "node:zlib";
import { MessageRejectedError } from "../../lib/errors.ts";
import {
  canonicalJson,
  compareBuilds,
  decodeMessage,
  DEFAULT_APP,
  DEFAULT_DECODE_LIMITS,
  encodeMessage,
  jsonLimitProblem,
  MAX_LEGACY_TIMESTAMP_SECONDS,
  peekApp,
  type BuildInfo,
  type DecodeMessageOptions,
  type MessageEnvelope,
  type KubeObject,
} from "../../lib/wire/message.ts";
import { thrown } from "../helpers/thrown.ts";

const build: BuildInfo = { id: "abc123-42-1", timestampMs: 1_700_000_000_123, commit: "abc123", runId: "42" };
const objects: KubeObject[] = [
  { apiVersion: "v1", kind: "Namespace", metadata: { name: "shop" } },
  { kind: "ConfigMap", apiVersion: "v1", metadata: { namespace: "shop", name: "web" }, data: { b: "2", a: "1" } },
];

const sha256 = (data: string | Uint8Array) => createHash("sha256").update(data).digest("hex");

/** A v1 body with its fields replaced; `payload` is gzipped and digested unless overridden. */
function v1Body(overrides: { payload?: string; manifests?: Record<string, unknown>; top?: Record<string, unknown> } = {}) {
  const payload = Buffer.from(overrides.payload ?? JSON.stringify(objects));
  return JSON.stringify({
    kind: "kube-pico-cd.bundle",
    version: 1,
    build,
    manifests: {
      encoding: "gzip+base64",
      data: gzipSync(payload).toString("base64"),
      sha256: sha256(payload),
      objects: JSON.parse(payload.toString()).length ?? 0,
      bytes: payload.length,
      ...overrides.manifests,
    },
    ...overrides.top,
  });
}

const rejection = (body: string, options?: DecodeMessageOptions) => thrown(() => decodeMessage(body, options), MessageRejectedError);

describe("encodeMessage()", () => {
  test("encodeMessage() writes a v1 body whose data inflates to the canonical JSON the digest covers", () => {
    const encoded = encodeMessage({ build, target: "prod", objects });
    const body = JSON.parse(encoded.body);
    expect(Object.keys(body)).toEqual(["kind", "version", "build", "target", "manifests"]);
    expect(body.kind).toBe("kube-pico-cd.bundle");
    expect(body.version).toBe(1);
    expect(body.build).toEqual(build);
    expect(body.target).toBe("prod");
    const payload = gunzipSync(Buffer.from(body.manifests.data, "base64"));
    expect(payload.toString()).toBe(
      '[{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"shop"}},' +
        '{"apiVersion":"v1","data":{"a":"1","b":"2"},"kind":"ConfigMap","metadata":{"name":"web","namespace":"shop"}}]',
    );
    expect(body.manifests).toEqual({
      encoding: "gzip+base64",
      data: body.manifests.data,
      sha256: sha256(payload),
      objects: 2,
      bytes: payload.length,
    });
    expect(encoded.digest).toBe(sha256(payload));
    expect(encoded.objectCount).toBe(2);
    expect(encoded.rawBytes).toBe(payload.length);
    expect(encoded.compressedBytes).toBe(Buffer.from(body.manifests.data, "base64").length);
    expect(encoded.bodyBytes).toBe(Buffer.byteLength(encoded.body));
  });

  test("encodeMessage() gives the same body for the same input", () => {
    expect(encodeMessage({ build, objects }).body).toBe(encodeMessage({ build, objects }).body);
  });

  test("encodeMessage() omits target when none is given", () => {
    expect("target" in JSON.parse(encodeMessage({ build, objects }).body)).toBe(false);
  });

  test("encodeMessage() throws TypeError for an empty build id", () => {
    expect(() => encodeMessage({ build: { id: "", timestampMs: 1 }, objects })).toThrow(
      new TypeError("Cannot encode the message: invalid build: id: Too small: expected string to have >=1 characters"),
    );
  });
});

describe("decodeMessage() of v1 bodies", () => {
  test("decodeMessage() returns what encodeMessage() encoded", () => {
    const encoded = encodeMessage({ build, target: "prod", objects });
    expect(decodeMessage(encoded.body)).toEqual({
      format: "v1",
      app: DEFAULT_APP,
      build,
      target: "prod",
      objects,
      digest: encoded.digest,
      payloadBytes: encoded.rawBytes,
    });
  });

  test("decodeMessage() accepts a body written by another publisher (non-canonical JSON) and digests its bytes", () => {
    const payload = `[ {"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": "shop"}} ]`;
    const decoded = decodeMessage(v1Body({ payload }));
    expect(decoded.digest).toBe(sha256(payload));
    expect(decoded.objects).toEqual([{ apiVersion: "v1", kind: "Namespace", metadata: { name: "shop" } }]);
  });

  test("decodeMessage() ignores unknown keys under build", () => {
    const body = v1Body({ top: { build: { ...build, pipeline: "nightly" } } });
    expect(decodeMessage(body).build).toEqual(build);
  });

  test("decodeMessage() returns the signature when present", () => {
    const signature = { algorithm: "ed25519", keyId: "ci-1", value: "c2lnbmF0dXJl" };
    expect(decodeMessage(v1Body({ top: { signature } })).signature).toEqual(signature as never);
  });

  test("decodeMessage() rejects a body that is not JSON with reason invalid-json", () => {
    const error = rejection("{not json");
    expect(error.reason).toBe("invalid-json");
    expect(error.message).toStartWith("Rejected message: the body is not JSON (");
  });

  test("decodeMessage() rejects a JSON array with reason schema", () => {
    const error = rejection("[1,2]");
    expect(error.reason).toBe("schema");
    expect(error.message).toBe("Rejected message: the body is an array, not a JSON object");
  });

  test("decodeMessage() rejects an object of neither format", () => {
    const error = rejection('{"hello":"world"}');
    expect(error.reason).toBe("schema");
    expect(error.message).toBe('Rejected message: not a kube-pico-cd message (no "kind"; top-level keys: hello)');
  });

  test("decodeMessage() rejects an unknown kind with reason schema", () => {
    const error = rejection(v1Body({ top: { kind: "other.bundle" } }));
    expect(error.reason).toBe("schema");
    expect(error.message).toBe('Rejected message: unknown kind "other.bundle" (expected "kube-pico-cd.bundle")');
  });

  test("decodeMessage() rejects version 2 with reason unsupported-version", () => {
    const error = rejection(v1Body({ top: { version: 2 } }));
    expect(error.reason).toBe("unsupported-version");
    expect(error.message).toBe(
      "Rejected message: kube-pico-cd.bundle version 2 is not supported (this reader understands version 1)",
    );
  });

  test("decodeMessage() rejects an unknown top-level key with reason schema", () => {
    const error = rejection(v1Body({ top: { priority: "high" } }));
    expect(error.reason).toBe("schema");
    expect(error.message).toBe('Rejected message: not a valid kube-pico-cd.bundle version 1: Unrecognized key: "priority"');
  });

  test("decodeMessage() rejects an unknown manifests encoding with reason schema", () => {
    const error = rejection(v1Body({ manifests: { encoding: "zstd+base64" } }));
    expect(error.reason).toBe("schema");
    expect(error.message).toBe(
      'Rejected message: not a valid kube-pico-cd.bundle version 1: manifests.encoding: Invalid input: expected "gzip+base64"',
    );
  });

  test("decodeMessage() rejects a timestamp that is not an integer with reason schema", () => {
    const error = rejection(v1Body({ top: { build: { id: "x", timestampMs: 1.5 } } }));
    expect(error.reason).toBe("schema");
    expect(error.message).toBe(
      "Rejected message: not a valid kube-pico-cd.bundle version 1: build.timestampMs: Invalid input: expected int, received number",
    );
  });

  test("decodeMessage() rejects data that is not base64 with reason decode", () => {
    const error = rejection(v1Body({ manifests: { data: "not base64!" } }));
    expect(error.reason).toBe("decode");
    expect(error.message).toBe("Rejected message: manifests.data is not valid base64");
  });

  test("decodeMessage() rejects data that is not gzip with reason decode", () => {
    const error = rejection(v1Body({ manifests: { data: Buffer.from("plain text").toString("base64") } }));
    expect(error.reason).toBe("decode");
    expect(error.message).toStartWith("Rejected message: manifests.data is not valid gzip (");
  });

  test("decodeMessage() rejects declared bytes over the limit without inflating", () => {
    const error = rejection(v1Body(), { maxDecompressedBytes: 10 });
    expect(error.reason).toBe("too-large");
    expect(error.message).toBe(
      `Rejected message: the manifests declare ${Buffer.byteLength(JSON.stringify(objects))} uncompressed bytes, over the limit of 10`,
    );
  });

  test("decodeMessage() stops inflating a gzip bomb one byte past manifests.bytes", () => {
    const bomb = gzipSync(Buffer.alloc(200 * 1024 * 1024, 0x20)); // 200 MiB of spaces, ~200 KiB gzipped
    const started = performance.now();
    const error = rejection(
      v1Body({ manifests: { data: bomb.toString("base64"), bytes: 10, sha256: "0".repeat(64), objects: 0 } }),
    );
    expect(error.reason).toBe("decode");
    expect(error.message).toBe("Rejected message: the manifests inflate to more than the 10 bytes manifests.bytes says");
    expect(performance.now() - started).toBeLessThan(1_000);
  });

  test("decodeMessage() rejects a payload whose length differs from manifests.bytes with reason decode", () => {
    const error = rejection(v1Body({ manifests: { bytes: 3 } }));
    expect(error.reason).toBe("decode");
    expect(error.message).toBe("Rejected message: the manifests inflate to more than the 3 bytes manifests.bytes says");
    const short = rejection(v1Body({ manifests: { bytes: 1000 } }));
    expect(short.message).toBe(`Rejected message: the manifests inflate to ${Buffer.byteLength(JSON.stringify(objects))} bytes but manifests.bytes says 1000`);
  });

  test("decodeMessage() rejects a payload whose SHA-256 differs with reason digest-mismatch", () => {
    const error = rejection(v1Body({ manifests: { sha256: "a".repeat(64) } }));
    expect(error.reason).toBe("digest-mismatch");
    expect(error.message).toBe(
      `Rejected message: the manifests' SHA-256 is ${sha256(JSON.stringify(objects))} but manifests.sha256 says ${"a".repeat(64)}`,
    );
  });

  test("decodeMessage() rejects a payload that is not an array with reason invalid-manifests", () => {
    const error = rejection(v1Body({ payload: '{"kind":"x"}', manifests: { objects: 1 } }));
    expect(error.reason).toBe("invalid-manifests");
    expect(error.message).toBe("Rejected message: the manifests payload is object, not an array of objects");
  });

  test("decodeMessage() rejects an object without kind with reason invalid-manifests", () => {
    const payload = JSON.stringify([objects[0], { apiVersion: "v1", metadata: { name: "x" } }]);
    const error = rejection(v1Body({ payload }));
    expect(error.reason).toBe("invalid-manifests");
    expect(error.message).toBe('Rejected message: invalid manifests: object 2: object "x" has no kind');
  });

  test("decodeMessage() rejects two objects with the same key with reason invalid-manifests", () => {
    const payload = JSON.stringify([objects[1], objects[1]]);
    const error = rejection(v1Body({ payload }));
    expect(error.reason).toBe("invalid-manifests");
    expect(error.message).toBe(
      "Rejected message: invalid manifests: object 2: duplicate object /ConfigMap/shop/web (first defined at object 1)",
    );
  });

  test("decodeMessage() rejects an object count that differs from manifests.objects", () => {
    const error = rejection(v1Body({ manifests: { objects: 5 } }));
    expect(error.reason).toBe("invalid-manifests");
    expect(error.message).toBe("Rejected message: the manifests hold 2 objects but manifests.objects says 5");
  });

  test("decodeMessage() throws only MessageRejectedError for truncated and mangled bodies", () => {
    const body = encodeMessage({ build, objects }).body;
    const inputs = ["", " ", "null", "0", '"x"', "{}", '{"kind":null}', '{"Type":"Notification","Message":5}'];
    for (let cut = 0; cut < body.length; cut += 7) inputs.push(body.slice(0, cut));
    for (let i = 0; i < 200; i++) {
      const chars = [...body];
      chars[(i * 7919) % chars.length] = String.fromCharCode(32 + ((i * 31) % 90));
      inputs.push(chars.join(""));
    }
    inputs.push("[".repeat(100_000));
    for (const input of inputs) {
      try {
        decodeMessage(input);
      } catch (error) {
        expect(error).toBeInstanceOf(MessageRejectedError);
      }
    }
  });
});

const legacyManifests = `apiVersion: v1
kind: ConfigMap
metadata:
  name: app
data:
  mode: "fast"
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: kube-pico-cd-build-info
data:
  BUILD_TIMESTAMP: "1700000000"
  COMMIT_HASH: "0123abcd"
`;

function legacyBody(data: Record<string, unknown> = {}, manifests = legacyManifests): string {
  return JSON.stringify({
    data: {
      BUILD_TIMESTAMP: "1700000000",
      buildTimestamp: "1700000000",
      BRANCH_NAME: "main",
      COMMIT_HASH: "0123abcd",
      TAG_NAME: "undefined",
      GITHUB_RUN_NUMBER: "42",
      CONFIG_MAP_NAME: "kube-pico-cd-build-info",
      ...data,
    },
    manifests,
  });
}

describe("decodeMessage() of legacy bodies", () => {
  test("decodeMessage() reads the seconds timestamp, the commit as id and every object including the build-info ConfigMap", () => {
    const decoded = decodeMessage(legacyBody());
    expect(decoded.format).toBe("legacy");
    expect(decoded.build).toEqual({
      id: "0123abcd",
      timestampMs: 1_700_000_000_000,
      commit: "0123abcd",
      ref: "refs/heads/main",
    });
    expect(decoded.objects.map((object) => object.metadata.name)).toEqual(["app", "kube-pico-cd-build-info"]);
    expect(decoded.digest).toBe(sha256(canonicalJson(decoded.objects)));
  });

  test("decodeMessage() uses the timestamp as id when COMMIT_HASH is \"undefined\"", () => {
    const decoded = decodeMessage(legacyBody({ COMMIT_HASH: "undefined", BRANCH_NAME: "undefined" }));
    expect(decoded.build).toEqual({ id: "1700000000", timestampMs: 1_700_000_000_000 });
  });

  test("decodeMessage() gives the same legacy digest however the YAML is formatted", () => {
    const reformatted = `{apiVersion: v1, kind: ConfigMap, metadata: {name: app}, data: {mode: fast}}
---
kind: ConfigMap
apiVersion: v1
data: {COMMIT_HASH: "0123abcd", BUILD_TIMESTAMP: "1700000000"}
metadata: {name: kube-pico-cd-build-info}
`;
    expect(decodeMessage(legacyBody({}, reformatted)).digest).toBe(decodeMessage(legacyBody()).digest);
  });

  test("decodeMessage() rejects legacy manifests with a YAML error, naming line and column", () => {
    const error = rejection(legacyBody({}, "apiVersion: v1\nkind: [\n"));
    expect(error.reason).toBe("invalid-manifests");
    expect(error.message).toBe(
      "Rejected message: invalid legacy manifests: manifests:3:1: Flow sequence in block collection must be sufficiently indented and end with a ]",
    );
  });

  test("decodeMessage() rejects a BUILD_TIMESTAMP that is not whole seconds", () => {
    const error = rejection(legacyBody({ BUILD_TIMESTAMP: "soon" }));
    expect(error.reason).toBe("schema");
    expect(error.message).toStartWith(
      "Rejected message: not a valid legacy message: data.BUILD_TIMESTAMP: must be whole seconds since the epoch",
    );
  });

  test("decodeMessage() rejects legacy manifests over the size limit", () => {
    const error = rejection(legacyBody(), { maxDecompressedBytes: 100 });
    expect(error.reason).toBe("too-large");
    expect(error.message).toBe(
      `Rejected message: the legacy manifests are ${Buffer.byteLength(legacyManifests)} bytes, over the limit of 100`,
    );
  });
});

describe("decodeMessage() of SNS notifications", () => {
  const sns = (message: string) =>
    JSON.stringify({ Type: "Notification", MessageId: "m-1", TopicArn: "arn:aws:sns:eu-west-1:1:deploy", Message: message });

  test("decodeMessage() unwraps a v1 body from an SNS notification", () => {
    const encoded = encodeMessage({ build, objects });
    expect(decodeMessage(sns(encoded.body))).toEqual(decodeMessage(encoded.body));
  });

  test("decodeMessage() unwraps a legacy body from an SNS notification", () => {
    expect(decodeMessage(sns(legacyBody()))).toEqual(decodeMessage(legacyBody()));
  });

  test("decodeMessage() names the SNS envelope when its inner body is rejected", () => {
    const error = rejection(sns("{oops"));
    expect(error.reason).toBe("invalid-json");
    expect(error.message).toStartWith("Rejected SNS message: the body is not JSON (");
  });

  test("decodeMessage() does not unwrap an SNS notification inside another", () => {
    const error = rejection(sns(sns(encodeMessage({ build, objects }).body)));
    expect(error.reason).toBe("schema");
  });
});

describe("compareBuilds()", () => {
  test("compareBuilds() orders by timestamp first", () => {
    expect(compareBuilds({ timestampMs: 1, digest: "f" }, { timestampMs: 2, digest: "a" })).toBe(-1);
    expect(compareBuilds({ timestampMs: 2, digest: "a" }, { timestampMs: 1, digest: "f" })).toBe(1);
  });

  test("compareBuilds() breaks a timestamp tie by digest", () => {
    expect(compareBuilds({ timestampMs: 1, digest: "a" }, { timestampMs: 1, digest: "b" })).toBe(-1);
    expect(compareBuilds({ timestampMs: 1, digest: "b" }, { timestampMs: 1, digest: "a" })).toBe(1);
  });

  test("compareBuilds() returns 0 for the same build", () => {
    expect(compareBuilds({ timestampMs: 1, digest: "a" }, { timestampMs: 1, digest: "a" })).toBe(0);
  });
});

describe("canonicalJson()", () => {
  test("canonicalJson() sorts keys at every level and keeps array order", () => {
    expect(canonicalJson({ b: [{ z: 1, a: null }], a: "é" })).toBe('{"a":"é","b":[{"a":null,"z":1}]}');
  });
});

describe("decodeMessage() limits", () => {
  const cm = (data: string) => `[{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"},"data":${data}}]`;

  test("DEFAULT_DECODE_LIMITS are the documented defaults", () => {
    expect(DEFAULT_DECODE_LIMITS).toEqual({
      maxInflatedBytes: 8 * 1024 * 1024,
      maxObjects: 10_000,
      maxValues: 250_000,
      maxDepth: 100,
      maxStringBytes: 1024 * 1024,
      maxLegacyYamlTokens: 65_536,
    });
  });

  test("decodeMessage() rejects more declared objects than maxObjects before inflating", () => {
    const error = rejection(v1Body({ manifests: { data: "AAAA" } }), { limits: { maxObjects: 1 } });
    expect(error.reason).toBe("too-large");
    expect(error.message).toBe("Rejected message: the manifests declare 2 objects, over the limit of 1");
  });

  test("decodeMessage() rejects a string longer than maxStringBytes as too-large", () => {
    const payload = cm(`{"k":"${"x".repeat(17)}"}`);
    const error = rejection(v1Body({ payload }), { limits: { maxStringBytes: 16 } });
    expect(error.reason).toBe("too-large");
    expect(error.message).toBe(`Rejected message: the manifests payload holds a string of more than 16 bytes at byte ${payload.indexOf('"xxx')}, over the limit`);
    expect(decodeMessage(v1Body({ payload: cm(`{"k":"${"x".repeat(16)}"}`) }), { limits: { maxStringBytes: 16 } }).objects).toHaveLength(1);
  });

  test("decodeMessage() rejects more JSON values than maxValues as too-large", () => {
    // The payload [{apiVersion, kind, metadata: {name}}] is 1 + 1 + 6 + 1 + 2 = 11 values (keys count).
    const payload = '[{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"a"}}]';
    expect(decodeMessage(v1Body({ payload }), { limits: { maxValues: 10 } }).objects).toHaveLength(1);
    const error = rejection(v1Body({ payload }), { limits: { maxValues: 9 } });
    expect(error.reason).toBe("too-large");
    expect(error.message).toBe("Rejected message: the manifests payload holds more than 9 JSON values, over the limit");
  });

  test("decodeMessage() rejects nesting deeper than maxDepth as too-large, before JSON.parse", () => {
    const payload = cm(`{"k":${"[".repeat(5)}${"]".repeat(5)}}`);
    // The payload's array is 1, the object 2, data 3, then five arrays: 8 levels.
    expect(decodeMessage(v1Body({ payload }), { limits: { maxDepth: 8 } }).objects).toHaveLength(1);
    const error = rejection(v1Body({ payload }), { limits: { maxDepth: 7 } });
    expect(error.reason).toBe("too-large");
    expect(error.message).toBe(`Rejected message: the manifests payload nests deeper than 7 levels at byte ${payload.lastIndexOf("[")}, over the limit`);
  });

  test("decodeMessage() rejects a payload with more elements than manifests.objects while scanning", () => {
    const payload = JSON.stringify(objects);
    const error = rejection(v1Body({ payload, manifests: { objects: 1 } }));
    expect(error.reason).toBe("invalid-manifests");
    expect(error.message).toBe("Rejected message: the manifests payload holds more than the 1 objects manifests.objects says");
  });

  test("decodeMessage() rejects a declared size over maxDecompressedBytes (limits.maxInflatedBytes too)", () => {
    const size = Buffer.byteLength(JSON.stringify(objects));
    expect(rejection(v1Body(), { limits: { maxInflatedBytes: 10 } }).message).toBe(`Rejected message: the manifests declare ${size} uncompressed bytes, over the limit of 10`);
    expect(rejection(v1Body(), { maxDecompressedBytes: 10, limits: { maxInflatedBytes: 10_000 } }).message).toBe(`Rejected message: the manifests declare ${size} uncompressed bytes, over the limit of 10`);
  });

  test("decodeMessage() rejects an unsafe integer anywhere in a v1 envelope with reason schema", () => {
    for (const field of ["timestampMs", "bytes", "objects"]) {
      const body = JSON.parse(v1Body()) as Record<string, any>;
      if (field === "timestampMs") body.build.timestampMs = Number.MAX_SAFE_INTEGER + 1;
      else body.manifests[field] = Number.MAX_SAFE_INTEGER + 1;
      const error = rejection(JSON.stringify(body));
      expect(error.reason).toBe("schema");
      expect(error.message).toStartWith(`Rejected message: not a valid kube-pico-cd.bundle version 1: ${field === "timestampMs" ? "build" : "manifests"}.${field}: `);
    }
  });

  test("jsonLimitProblem() skips brackets and quotes inside strings", () => {
    const text = Buffer.from(`[{"k":"[[[[\\"]]{{"}]`);
    expect(jsonLimitProblem(text, { maxDepth: 2, maxStringBytes: 100, maxValues: 100 }, 1)).toBeUndefined();
    expect(jsonLimitProblem(text, { maxDepth: 1, maxStringBytes: 100, maxValues: 100 }, 1)).toEqual({ reason: "too-large", text: "nests deeper than 1 levels at byte 1, over the limit" });
  });
});

describe("decodeMessage() checkEnvelope", () => {
  test("decodeMessage() hands checkEnvelope the signed fields of a v1 envelope before inflating", () => {
    const seen: MessageEnvelope[] = [];
    const body = JSON.parse(v1Body({ top: { target: "prod" } })) as Record<string, any>;
    body.manifests.data = "AAAA"; // not gzip: inflating would fail with reason decode
    const error = rejection(JSON.stringify(body), {
      checkEnvelope: (envelope) => {
        seen.push(envelope);
        throw new MessageRejectedError("unsigned", "Rejected message: refused by the test");
      },
    });
    expect(error.reason).toBe("unsigned");
    expect(seen).toEqual([{ format: "v1", build, target: "prod", manifests: { encoding: "gzip+base64", sha256: body.manifests.sha256, objects: 2, bytes: body.manifests.bytes } }]);
  });

  test("decodeMessage() hands checkEnvelope a legacy envelope before parsing its YAML", () => {
    const seen: MessageEnvelope[] = [];
    const error = rejection(legacyBody({}, "{{{{ not yaml"), {
      checkEnvelope: (envelope) => {
        seen.push(envelope);
        throw new MessageRejectedError("unsigned", "Rejected message: refused by the test");
      },
    });
    expect(error.reason).toBe("unsigned");
    expect(seen).toEqual([{ format: "legacy", build: { id: "0123abcd", timestampMs: 1_700_000_000_000, commit: "0123abcd", ref: "refs/heads/main" } }]);
  });
});

describe("decodeMessage() time", () => {
  const nowMs = build.timestampMs;

  test("decodeMessage() accepts a build up to maxFutureSkewMs ahead of both clocks", () => {
    expect(decodeMessage(v1Body(), { time: { nowMs: nowMs - 600_000, sentTimestampMs: nowMs - 600_000 } }).build).toEqual(build);
    expect(decodeMessage(v1Body(), { time: { nowMs: nowMs - 1000, maxFutureSkewMs: 1000 } }).build).toEqual(build);
  });

  test("decodeMessage() rejects a v1 build stamped too far ahead of the listener's clock as future-build", () => {
    const error = rejection(v1Body(), { time: { nowMs: nowMs - 600_001 } });
    expect(error.reason).toBe("future-build");
    expect(error.message).toBe(
      `Rejected message: build "abc123-42-1" is stamped 2023-11-14T22:13:20.123Z, 600 s after the listener's clock (${new Date(nowMs - 600_001).toISOString()}); at most 600 s are allowed`,
    );
  });

  test("decodeMessage() rejects a build stamped too far ahead of SQS's SentTimestamp as future-build, whatever the listener's clock", () => {
    const error = rejection(v1Body(), { time: { nowMs: nowMs + 3_600_000, sentTimestampMs: nowMs - 61_000, maxFutureSkewMs: 60_000 } });
    expect(error.reason).toBe("future-build");
    expect(error.message).toBe(
      `Rejected message: build "abc123-42-1" is stamped 2023-11-14T22:13:20.123Z, 61 s after the time SQS sent the message (${new Date(nowMs - 61_000).toISOString()}); at most 60 s are allowed`,
    );
  });

  test("decodeMessage() rejects a future legacy build as future-build", () => {
    const error = rejection(legacyBody({ BUILD_TIMESTAMP: "4102444800" }), { time: { nowMs } });
    expect(error.reason).toBe("future-build");
    expect(error.message).toStartWith('Rejected message: build "0123abcd" is stamped 2100-01-01T00:00:00.000Z, ');
  });

  test("decodeMessage() rejects a legacy BUILD_TIMESTAMP whose milliseconds are not a safe integer with reason schema", () => {
    for (const seconds of [String(MAX_LEGACY_TIMESTAMP_SECONDS + 1), "999999999999999", MAX_LEGACY_TIMESTAMP_SECONDS + 1]) {
      const error = rejection(legacyBody({ BUILD_TIMESTAMP: seconds }));
      expect(error.reason).toBe("schema");
      expect(error.message).toBe(
        `Rejected message: not a valid legacy message: data.BUILD_TIMESTAMP ${seconds} is too large: in milliseconds it is not a safe integer (at most 9007199254740 seconds)`,
      );
    }
    const largest = decodeMessage(legacyBody({ BUILD_TIMESTAMP: String(MAX_LEGACY_TIMESTAMP_SECONDS) }));
    expect(largest.build.timestampMs).toBe(9_007_199_254_740_000);
    expect(Number.isSafeInteger(largest.build.timestampMs)).toBe(true);
  });
});

describe("decodeMessage() limits of legacy bodies", () => {
  const yaml = (data: string) => `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n${data}`;

  test("decodeMessage() rejects legacy YAML with more structural characters than maxLegacyYamlTokens before parsing it", () => {
    const error = rejection(legacyBody({}, yaml("  k: [" + "a,".repeat(100) + "a]\n")), { limits: { maxLegacyYamlTokens: 100 } });
    expect(error.reason).toBe("too-large");
    expect(error.message).toBe("Rejected message: the legacy manifests hold more than 100 structural characters (line feeds, [ { , : -), over the limit");
  });

  test("decodeMessage() counts legacy aliases expanded: a large anchored string repeated is too-large", () => {
    const manifests = yaml(`  a: &big "${"x".repeat(1000)}"\n  b: [${Array.from({ length: 100 }, () => "*big").join(",")}]\n`);
    const error = rejection(legacyBody({}, manifests), { limits: { maxInflatedBytes: 50_000 } });
    expect(error.reason).toBe("too-large");
    expect(error.message).toBe("Rejected message: the legacy manifests are more than 50000 bytes written out (aliases expanded), over the limit");
  });

  test("decodeMessage() rejects legacy values over maxValues, maxDepth, maxStringBytes and maxObjects as too-large", () => {
    const cases: [NonNullable<DecodeMessageOptions["limits"]>, string, string][] = [
      [{ maxValues: 5 }, yaml("  k: v\n"), "hold more than 5 values (aliases expanded), over the limit"],
      [{ maxDepth: 3 }, yaml("  k:\n    - [x]\n"), "nest deeper than 3 levels, over the limit"],
      [{ maxStringBytes: 10 }, yaml("  k: twenty-characters\n"), "hold a string of 17 characters, over the limit of 10"],
      [{ maxObjects: 1 }, `${yaml("  k: v\n")}---\n${yaml("  k: v\n").replace("name: a", "name: b")}`, "hold 2 objects, over the limit of 1"],
    ];
    for (const [limits, manifests, problem] of cases) {
      const error = rejection(legacyBody({}, manifests), { limits });
      expect(error.reason).toBe("too-large");
      expect(error.message).toBe(`Rejected message: the legacy manifests ${problem}`);
    }
  });
});

describe("app", () => {
  const sns = (message: string) => JSON.stringify({ Type: "Notification", MessageId: "m-1", Message: message });
  const invalidApps: [unknown, string][] = [
    ["Shop", 'app: app name "Shop" is not a DNS label (lowercase letters, digits and \'-\', starting and ending with a letter or digit)'],
    ["-shop", 'app: app name "-shop" is not a DNS label (lowercase letters, digits and \'-\', starting and ending with a letter or digit)'],
    ["shop_api", 'app: app name "shop_api" is not a DNS label (lowercase letters, digits and \'-\', starting and ending with a letter or digit)'],
    ["", "app: an app name must not be empty"],
    ["a".repeat(64), `app: app name "${"a".repeat(64)}" is longer than 63 characters`],
    [7, "app: Invalid input: expected string, received number"],
  ];

  test("encodeMessage() writes app after version, and decodeMessage() returns it", () => {
    const encoded = encodeMessage({ app: "shop-api", build, target: "prod", objects });
    expect(Object.keys(JSON.parse(encoded.body))).toEqual(["kind", "version", "app", "build", "target", "manifests"]);
    expect(JSON.parse(encoded.body).app).toBe("shop-api");
    expect(decodeMessage(encoded.body).app).toBe("shop-api");
  });

  test("encodeMessage() writes the default app as no app: the body of a publisher before apps", () => {
    expect(encodeMessage({ app: DEFAULT_APP, build, objects }).body).toBe(encodeMessage({ build, objects }).body);
    expect(JSON.parse(encodeMessage({ app: DEFAULT_APP, build, objects }).body)).not.toHaveProperty("app");
  });

  test("encodeMessage() throws TypeError for an invalid app, naming the rule", () => {
    expect(() => encodeMessage({ app: "Shop", build, objects })).toThrow(
      new TypeError('Cannot encode the message: invalid app: app name "Shop" is not a DNS label (lowercase letters, digits and \'-\', starting and ending with a letter or digit)'),
    );
  });

  test("decodeMessage() gives the default app to a v1 body without one and to every legacy body", () => {
    expect(decodeMessage(v1Body()).app).toBe(DEFAULT_APP);
    expect(decodeMessage(legacyBody()).app).toBe(DEFAULT_APP);
    expect(decodeMessage(sns(legacyBody())).app).toBe(DEFAULT_APP);
  });

  test("decodeMessage() accepts an explicit default app", () => {
    expect(decodeMessage(v1Body({ top: { app: "default" } })).app).toBe(DEFAULT_APP);
  });

  test("decodeMessage() rejects an invalid app with reason schema, naming the field and the rule", () => {
    for (const [app, problem] of invalidApps) {
      const error = rejection(v1Body({ top: { app } }));
      expect(error.reason).toBe("schema");
      expect(error.message).toBe(`Rejected message: not a valid kube-pico-cd.bundle version 1: ${problem}`);
    }
  });

  test("decodeMessage() hands checkEnvelope the app a v1 body names, and none when it names none", () => {
    const seen: MessageEnvelope[] = [];
    const checkEnvelope = (envelope: MessageEnvelope) => void seen.push(envelope);
    decodeMessage(v1Body({ top: { app: "shop" } }), { checkEnvelope });
    decodeMessage(v1Body(), { checkEnvelope });
    expect(seen.map((envelope) => envelope.app)).toEqual(["shop", undefined]);
    expect("app" in seen[1]!).toBe(false);
  });

  test("peekApp() names the app of a v1 body, also inside an SNS notification", () => {
    const body = encodeMessage({ app: "shop-api", build, objects }).body;
    expect(peekApp(body)).toBe("shop-api");
    expect(peekApp(sns(body))).toBe("shop-api");
  });

  test("peekApp() is the default app for a v1 body without one, a legacy body and an SNS-wrapped legacy body", () => {
    expect(peekApp(encodeMessage({ build, objects }).body)).toBe(DEFAULT_APP);
    expect(peekApp(legacyBody())).toBe(DEFAULT_APP);
    expect(peekApp(sns(legacyBody()))).toBe(DEFAULT_APP);
  });

  test("peekApp() is the default app for what is no message, and never throws", () => {
    const deep = `${"[".repeat(200_000)}${"]".repeat(200_000)}`;
    for (const body of ["", "{oops", "null", "[]", '"shop"', "42", deep, JSON.stringify({ app: "shop" }), JSON.stringify({ data: {}, manifests: "", app: "shop" })]) {
      expect(peekApp(body)).toBe(DEFAULT_APP);
    }
    expect(peekApp(undefined as unknown as string)).toBe(DEFAULT_APP);
  });

  test("peekApp() unwraps one SNS notification only, as decodeMessage() does", () => {
    expect(peekApp(sns(sns(encodeMessage({ app: "shop", build, objects }).body)))).toBe(DEFAULT_APP);
  });

  test("peekApp() does not take an app from under build, where decodeMessage() ignores unknown keys", () => {
    expect(peekApp(v1Body({ top: { build: { ...build, app: "shop" } } }))).toBe(DEFAULT_APP);
  });

  test("peekApp() falls back on the default app for exactly the app values decodeMessage() rejects", () => {
    for (const [app] of invalidApps) {
      const body = v1Body({ top: { app } });
      expect(peekApp(body)).toBe(DEFAULT_APP);
      expect(rejection(body).reason).toBe("schema");
    }
  });

  test("peekApp() agrees with decodeMessage() on every body decodeMessage() accepts", () => {
    const bodies = [
      v1Body(),
      v1Body({ top: { app: "shop" } }),
      v1Body({ top: { app: "default" } }),
      sns(v1Body({ top: { app: "a".repeat(63) } })),
      legacyBody(),
      sns(legacyBody()),
      // JSON.parse keeps the last of duplicate keys, in both.
      v1Body({ top: { app: "shop" } }).replace(/^\{/, '{"app":"first",'),
    ];
    for (const body of bodies) expect(peekApp(body)).toBe(decodeMessage(body).app);
  });
});
