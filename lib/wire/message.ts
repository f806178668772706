/**
 * The wire format: what `publish` sends to SQS and what the listener accepts. Version 1 is
 * specified in docs/protocol.md; the original implementation's messages ("legacy") and SNS
 * notifications wrapping either are accepted too, and everything else is rejected with a
 * {@link MessageRejectedError} naming what is wrong.
 */
import { createHash } from "node:crypto";
import { gunzipSync, gzipSync } from "node:zlib";
import { z } from "zod";
import { duplicateProblems, isRecord, kubeObjectProblem, parseManifests, type KubeObject } from "../manifests/bundle.ts";
import { errorMessage, MessageRejectedError } from "../errors.ts";

export type { KubeObject } from "../manifests/bundle.ts";
export { MessageRejectedError } from "../errors.ts";

/** The discriminator of a version 1 body (`kind`). */
export const MESSAGE_KIND = "kube-pico-cd.bundle";
/** The only version this code writes and reads. */
export const MESSAGE_VERSION = 1;
/** The only manifests encoding of version 1. */
export const MANIFESTS_ENCODING = "gzip+base64";
/** Default of `decodeMessage`'s `maxDecompressedBytes`: 50 MiB. */
export const DEFAULT_MAX_DECOMPRESSED_BYTES = 50 * 1024 * 1024;

/**
 * Who built the bundle and when. `timestampMs` (milliseconds since the epoch) orders builds;
 * `id` names the build for people and FIFO deduplication. The rest is informational.
 */
export interface BuildInfo {
  id: string;
  timestampMs: number;
  commit?: string;
  ref?: string;
  repository?: string;
  runId?: string;
  runAttempt?: string;
  actor?: string;
  url?: string;
}

/** The signature of a signed bundle; made and checked by lib/wire/signature.ts (docs/protocol.md, "Signature"). */
export interface MessageSignature {
  algorithm: "ed25519";
  /** Names the public key that verifies it: 16 lowercase hex digits (see `keyIdOf`). */
  keyId: string;
  /** Base64 of the 64 signature bytes. */
  value: string;
}

/**
 * What a signature covers: every field of a version 1 body except `manifests.data`, which
 * is covered through `manifests.sha256` (a reader checks that the data inflates to exactly
 * those bytes). `kind` and `version` are covered too, as constants of the signed bytes.
 */
export interface SignedFields {
  build: BuildInfo;
  target?: string;
  manifests: { encoding: string; sha256: string; objects: number; bytes: number };
}

/** What {@link encodeMessage} produced. */
export interface EncodedMessage {
  /** The JSON body to send. */
  body: string;
  /** Lowercase hex SHA-256 of the uncompressed payload. */
  digest: string;
  objectCount: number;
  /** Uncompressed payload length in bytes. */
  rawBytes: number;
  /** Gzipped payload length in bytes (before base64). */
  compressedBytes: number;
  /** UTF-8 length of `body` in bytes: what counts against the queue's maximum message size. */
  bodyBytes: number;
}

/** A message that was accepted by {@link decodeMessage}. */
export interface DecodedMessage {
  format: "v1" | "legacy";
  build: BuildInfo;
  target?: string;
  /** The objects in bundle order. */
  objects: KubeObject[];
  /** v1: the SHA-256 of the payload (verified); legacy: SHA-256 of the objects' canonical JSON. */
  digest: string;
  /** v1: the uncompressed payload length in bytes (`manifests.bytes`, verified). */
  payloadBytes?: number;
  signature?: MessageSignature;
}

const OPTIONAL_BUILD_FIELDS = ["commit", "ref", "repository", "runId", "runAttempt", "actor", "url"] as const;

// Unknown keys under "build" are ignored (they are informational and never change what is
// applied); unknown keys anywhere else are rejected, because they could change meaning.
const buildSchema = z.object({
  id: z.string().min(1),
  timestampMs: z.int().nonnegative(),
  commit: z.string().optional(),
  ref: z.string().optional(),
  repository: z.string().optional(),
  runId: z.string().optional(),
  runAttempt: z.string().optional(),
  actor: z.string().optional(),
  url: z.string().optional(),
});

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

const signatureSchema = z.strictObject({
  algorithm: z.literal("ed25519"),
  keyId: z.string().min(1),
  value: z.string().min(1).regex(BASE64, "must be base64"),
});

const v1Schema = z.strictObject({
  kind: z.literal(MESSAGE_KIND),
  version: z.literal(MESSAGE_VERSION),
  build: buildSchema,
  target: z.string().min(1).optional(),
  manifests: z.strictObject({
    encoding: z.literal(MANIFESTS_ENCODING),
    data: z.string(),
    sha256: z.string().regex(/^[0-9a-f]{64}$/, "must be 64 lowercase hex digits"),
    objects: z.int().nonnegative(),
    bytes: z.int().nonnegative(),
  }),
  signature: signatureSchema.optional(),
});

/** Lowercase hex SHA-256 (of UTF-8 text, for a string). */
export function sha256Hex(bytes: Uint8Array | string): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/**
 * JSON with object keys sorted by UTF-16 code units and no whitespace (RFC 8785 for the
 * values Kubernetes objects hold), so the same objects always give the same bytes.
 */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map((item) => canonicalJson(item ?? null)).join(",")}]`;
  if (typeof value === "object" && value !== null) {
    const record = value as Record<string, unknown>;
    const fields = Object.keys(record)
      .sort()
      .filter((key) => record[key] !== undefined)
      .map((key) => `${JSON.stringify(key)}:${canonicalJson(record[key])}`);
    return `{${fields.join(",")}}`;
  }
  return JSON.stringify(value) ?? "null";
}

function buildInfoFrom(parsed: z.infer<typeof buildSchema>): BuildInfo {
  const build: BuildInfo = { id: parsed.id, timestampMs: parsed.timestampMs };
  for (const field of OPTIONAL_BUILD_FIELDS) {
    const value = parsed[field];
    if (value !== undefined) build[field] = value;
  }
  return build;
}

/**
 * Encodes a bundle as a version 1 body: the objects as canonical JSON, gzipped (level 9)
 * and base64-encoded, with the SHA-256 of the uncompressed JSON. Deterministic: the same
 * input gives the same body. Synchronous.
 *
 * @throws {TypeError} when `build` or `target` is not valid (a programming error: publish
 * validates its configuration first).
 */
export function encodeMessage(input: {
  build: BuildInfo;
  target?: string;
  objects: readonly KubeObject[];
  /** Signs the body's fields (lib/wire/signature.ts `signer`); the body is unsigned without it. */
  sign?: (fields: SignedFields) => MessageSignature;
}): EncodedMessage {
  const built = buildSchema.safeParse(input.build);
  if (!built.success) throw new TypeError(`Cannot encode the message: invalid build: ${describeIssues(built.error)}`);
  if (input.target !== undefined && input.target.length === 0) {
    throw new TypeError("Cannot encode the message: target must be a non-empty string when given");
  }
  const payload = Buffer.from(canonicalJson(input.objects), "utf8");
  const digest = sha256Hex(payload);
  const compressed = gzipSync(payload, { level: 9 });
  const build = buildInfoFrom(built.data);
  const manifests = { encoding: MANIFESTS_ENCODING, sha256: digest, objects: input.objects.length, bytes: payload.length };
  const target = input.target === undefined ? {} : { target: input.target };
  const message = {
    kind: MESSAGE_KIND,
    version: MESSAGE_VERSION,
    build,
    ...target,
    manifests: {
      encoding: MANIFESTS_ENCODING,
      data: compressed.toString("base64"),
      sha256: digest,
      objects: input.objects.length,
      bytes: payload.length,
    },
    ...(input.sign === undefined ? {} : { signature: input.sign({ build, ...target, manifests }) }),
  };
  const body = JSON.stringify(message);
  return {
    body,
    digest,
    objectCount: input.objects.length,
    rawBytes: payload.length,
    compressedBytes: compressed.length,
    bodyBytes: Buffer.byteLength(body, "utf8"),
  };
}

/** Options of {@link decodeMessage}. */
export interface DecodeMessageOptions {
  /**
   * Largest uncompressed payload accepted (v1: the inflated JSON; legacy: the YAML text),
   * in bytes. Inflating stops as soon as it is exceeded. Default 50 MiB.
   */
  maxDecompressedBytes?: number;
}

function describeIssues(error: z.ZodError): string {
  const shown = error.issues.slice(0, 3).map((issue) => {
    const path = issue.path.map(String).join(".");
    return path === "" ? issue.message : `${path}: ${issue.message}`;
  });
  const more = error.issues.length - shown.length;
  return shown.join("; ") + (more > 0 ? `; and ${more} more` : "");
}

function typeName(value: unknown): string {
  return value === null ? "null" : Array.isArray(value) ? "an array" : typeof value;
}

/**
 * Decodes a message body: a version 1 body, a legacy body of the original implementation,
 * or an SNS notification whose `Message` is either. Validates everything (schema, size,
 * digest, objects, duplicates) before returning. Synchronous.
 *
 * @throws {MessageRejectedError} for anything it does not accept, and never anything else.
 */
export function decodeMessage(body: string, options: DecodeMessageOptions = {}): DecodedMessage {
  const { maxDecompressedBytes = DEFAULT_MAX_DECOMPRESSED_BYTES } = options;
  try {
    return decodeBody(body, maxDecompressedBytes, true);
  } catch (error) {
    if (error instanceof MessageRejectedError) throw error;
    // Anything else (a stack overflow on absurd nesting, say) still means "not accepted".
    throw new MessageRejectedError(
      "decode",
      `Rejected message: cannot decode it: ${errorMessage(error)}`,
      { cause: error },
    );
  }
}

function decodeBody(body: unknown, maxBytes: number, allowEnvelope: boolean): DecodedMessage {
  if (typeof body !== "string") {
    throw new MessageRejectedError("invalid-json", `Rejected message: the body is ${typeName(body)}, not a string`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch (error) {
    throw new MessageRejectedError(
      "invalid-json",
      `Rejected message: the body is not JSON (${errorMessage(error)})`,
    );
  }
  if (!isRecord(parsed)) {
    throw new MessageRejectedError("schema", `Rejected message: the body is ${typeName(parsed)}, not a JSON object`);
  }
  if (allowEnvelope && parsed["Type"] === "Notification" && typeof parsed["Message"] === "string") {
    try {
      return decodeBody(parsed["Message"], maxBytes, false);
    } catch (error) {
      if (error instanceof MessageRejectedError) {
        throw new MessageRejectedError(error.reason, error.message.replace(/^Rejected message:/, "Rejected SNS message:"), {
          cause: error,
        });
      }
      throw error;
    }
  }
  if ("kind" in parsed || "version" in parsed) return decodeV1(parsed, maxBytes);
  if ("data" in parsed && "manifests" in parsed) return decodeLegacy(parsed, maxBytes);
  throw new MessageRejectedError(
    "schema",
    `Rejected message: not a kube-pico-cd message (no "kind"; top-level keys: ${
      Object.keys(parsed).slice(0, 10).join(", ") || "none"
    })`,
  );
}

function decodeV1(parsed: Record<string, unknown>, maxBytes: number): DecodedMessage {
  const kind = parsed["kind"];
  if (kind !== MESSAGE_KIND) {
    throw new MessageRejectedError(
      "schema",
      `Rejected message: unknown kind ${JSON.stringify(kind) ?? "undefined"} (expected "${MESSAGE_KIND}")`,
    );
  }
  const version = parsed["version"];
  if (version !== MESSAGE_VERSION) {
    throw new MessageRejectedError(
      "unsupported-version",
      `Rejected message: ${MESSAGE_KIND} version ${JSON.stringify(version) ?? "undefined"} is not supported (this reader understands version ${MESSAGE_VERSION})`,
    );
  }
  const result = v1Schema.safeParse(parsed);
  if (!result.success) {
    throw new MessageRejectedError(
      "schema",
      `Rejected message: not a valid ${MESSAGE_KIND} version 1: ${describeIssues(result.error)}`,
    );
  }
  const message = result.data;
  const { manifests } = message;
  if (manifests.bytes > maxBytes) {
    throw new MessageRejectedError(
      "too-large",
      `Rejected message: the manifests declare ${manifests.bytes} uncompressed bytes, over the limit of ${maxBytes}`,
    );
  }
  if (!BASE64.test(manifests.data)) {
    throw new MessageRejectedError("decode", "Rejected message: manifests.data is not valid base64");
  }
  let payload: Buffer;
  try {
    // maxOutputLength makes zlib stop inflating once the limit is passed: a gzip bomb is
    // never inflated in full.
    payload = gunzipSync(Buffer.from(manifests.data, "base64"), { maxOutputLength: Math.max(maxBytes, 1) });
  } catch (error) {
    if (isRecord(error) && error["code"] === "ERR_BUFFER_TOO_LARGE") {
      throw new MessageRejectedError(
        "too-large",
        `Rejected message: the manifests inflate to more than the limit of ${maxBytes} bytes`,
        { cause: error },
      );
    }
    throw new MessageRejectedError(
      "decode",
      `Rejected message: manifests.data is not valid gzip (${errorMessage(error)})`,
      { cause: error },
    );
  }
  if (payload.length > maxBytes) {
    throw new MessageRejectedError(
      "too-large",
      `Rejected message: the manifests inflate to more than the limit of ${maxBytes} bytes`,
    );
  }
  if (payload.length !== manifests.bytes) {
    throw new MessageRejectedError(
      "decode",
      `Rejected message: the manifests inflate to ${payload.length} bytes but manifests.bytes says ${manifests.bytes}`,
    );
  }
  const digest = sha256Hex(payload);
  if (digest !== manifests.sha256) {
    throw new MessageRejectedError(
      "digest-mismatch",
      `Rejected message: the manifests' SHA-256 is ${digest} but manifests.sha256 says ${manifests.sha256}`,
    );
  }
  let objects: unknown;
  try {
    objects = JSON.parse(payload.toString("utf8"));
  } catch (error) {
    throw new MessageRejectedError(
      "invalid-manifests",
      `Rejected message: the manifests payload is not JSON (${errorMessage(error)})`,
    );
  }
  if (!Array.isArray(objects)) {
    throw new MessageRejectedError(
      "invalid-manifests",
      `Rejected message: the manifests payload is ${typeName(objects)}, not an array of objects`,
    );
  }
  const checked = checkObjects(objects, (index) => `object ${index + 1}`);
  if (checked.length !== manifests.objects) {
    throw new MessageRejectedError(
      "invalid-manifests",
      `Rejected message: the manifests hold ${checked.length} objects but manifests.objects says ${manifests.objects}`,
    );
  }
  return {
    format: "v1",
    build: buildInfoFrom(message.build),
    ...(message.target === undefined ? {} : { target: message.target }),
    objects: checked,
    digest,
    payloadBytes: payload.length,
    ...(message.signature === undefined ? {} : { signature: message.signature }),
  };
}

/** Validates every object and rejects duplicates; `where(i)` names the i-th object. */
function checkObjects(values: readonly unknown[], where: (index: number) => string): KubeObject[] {
  const problems: string[] = [];
  values.forEach((value, index) => {
    const problem = kubeObjectProblem(value);
    if (problem !== undefined) problems.push(`${where(index)}: ${problem}`);
  });
  if (problems.length === 0) {
    const items = (values as KubeObject[]).map((object, index) => ({ object, source: where(index) }));
    problems.push(...duplicateProblems(items));
  }
  if (problems.length > 0) {
    const more = problems.length > 3 ? `; and ${problems.length - 3} more` : "";
    throw new MessageRejectedError(
      "invalid-manifests",
      `Rejected message: invalid manifests: ${problems.slice(0, 3).join("; ")}${more}`,
    );
  }
  return values as KubeObject[];
}

const legacySchema = z.object({
  data: z.object({
    BUILD_TIMESTAMP: z.union([z.string().regex(/^\d{1,15}$/, "must be whole seconds since the epoch"), z.int().nonnegative()]),
    COMMIT_HASH: z.string().optional(),
    BRANCH_NAME: z.string().optional(),
    TAG_NAME: z.string().optional(),
  }),
  manifests: z.string(),
});

/** The original implementation writes missing values as the string "undefined". */
function defined(value: string | undefined): string | undefined {
  return value === undefined || value === "" || value === "undefined" ? undefined : value;
}

function decodeLegacy(parsed: Record<string, unknown>, maxBytes: number): DecodedMessage {
  const result = legacySchema.safeParse(parsed);
  if (!result.success) {
    throw new MessageRejectedError("schema", `Rejected message: not a valid legacy message: ${describeIssues(result.error)}`);
  }
  const { data, manifests } = result.data;
  const manifestBytes = Buffer.byteLength(manifests, "utf8");
  if (manifestBytes > maxBytes) {
    throw new MessageRejectedError(
      "too-large",
      `Rejected message: the legacy manifests are ${manifestBytes} bytes, over the limit of ${maxBytes}`,
    );
  }
  const seconds = String(data.BUILD_TIMESTAMP);
  const build: BuildInfo = { id: defined(data.COMMIT_HASH) ?? seconds, timestampMs: Number(seconds) * 1000 };
  const commit = defined(data.COMMIT_HASH);
  if (commit !== undefined) build.commit = commit;
  const tag = defined(data.TAG_NAME);
  const branch = defined(data.BRANCH_NAME);
  const qualify = (prefix: string, name: string) => (name.startsWith("refs/") ? name : `${prefix}${name}`);
  if (tag !== undefined) build.ref = qualify("refs/tags/", tag);
  else if (branch !== undefined) build.ref = qualify("refs/heads/", branch);

  const { items, problems } = parseManifests(manifests, "manifests");
  if (problems.length > 0) {
    const more = problems.length > 3 ? `; and ${problems.length - 3} more` : "";
    throw new MessageRejectedError(
      "invalid-manifests",
      `Rejected message: invalid legacy manifests: ${problems.slice(0, 3).join("; ")}${more}`,
    );
  }
  const objects = checkObjects(
    items.map((item) => item.object),
    (index) => items[index]?.source ?? `object ${index + 1}`,
  );
  return { format: "legacy", build, objects, digest: sha256Hex(canonicalJson(objects)) };
}

/**
 * The total order of builds: by `timestampMs`, then by `digest` (plain string comparison)
 * so two different bundles built in the same millisecond still have an order. Equal in both
 * means the same build (a duplicate delivery).
 */
export function compareBuilds(
  a: { timestampMs: number; digest: string },
  b: { timestampMs: number; digest: string },
): -1 | 0 | 1 {
  if (a.timestampMs !== b.timestampMs) return a.timestampMs < b.timestampMs ? -1 : 1;
  if (a.digest !== b.digest) return a.digest < b.digest ? -1 : 1;
  return 0;
}
