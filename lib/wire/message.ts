/**
 * The wire format: what `publish` sends to SQS and what the listener accepts. Version 1 is
 * specified in docs/protocol.md; the original implementation's messages ("legacy") and SNS
 * notifications wrapping either are accepted too, and everything else is rejected with a
 * {@link MessageRejectedError} naming what is wrong.
 */
import { gunzipSync, gzipSync } from "node:zlib";
import { z } from "zod";
import { duplicateProblems, isRecord, kubeObjectProblem, parseManifests, type KubeObject } from "../manifests/bundle.ts";
import { errorMessage, MessageRejectedError } from "../errors.ts";
import { appNameProblem, appNameSchema, DEFAULT_APP } from "./app.ts";
import { canonicalJson, sha256Hex } from "./canonical-json.ts";
import { encodePayload, GZIP_LEVEL, type EncodedPayload } from "./payload.ts";
import { targetsProblem, targetsSchema } from "./targets.ts";

export type { KubeObject } from "../manifests/bundle.ts";
export { MessageRejectedError } from "../errors.ts";
export { DEFAULT_APP } from "./app.ts";
export { canonicalJson, sha256Hex } from "./canonical-json.ts";
export type { EncodedPayload } from "./payload.ts";

/** The discriminator of a version 1 body (`kind`). */
export const MESSAGE_KIND = "kube-pico-cd.bundle";
/** The only version this code writes and reads. */
export const MESSAGE_VERSION = 1;
/** The only manifests encoding of version 1. */
export const MANIFESTS_ENCODING = "gzip+base64";
/** Default of `decodeMessage`'s `maxDecompressedBytes` (and {@link DecodeLimits}' `maxInflatedBytes`): 8 MiB. */
export const DEFAULT_MAX_DECOMPRESSED_BYTES = 8 * 1024 * 1024;

/**
 * What {@link decodeMessage} accepts at most, each enforced before or while the payload is
 * inflated and parsed, so that no message can make the reader hold more than the limits allow.
 * A message over any of them is rejected as `too-large`. The defaults
 * ({@link DEFAULT_DECODE_LIMITS}) keep a listener within its pod's 384 MiB memory limit for
 * the worst message they allow (docs/protocol.md, "Decoding limits").
 */
export interface DecodeLimits {
  /** Largest uncompressed payload (v1: the inflated JSON; legacy: the YAML text), in bytes. Default 8 MiB. */
  maxInflatedBytes: number;
  /** Most objects in one bundle (checked against `manifests.objects` before inflating). Default 10,000. */
  maxObjects: number;
  /**
   * Most JSON values in a payload: objects, arrays, strings (keys included), numbers, booleans
   * and nulls; for a legacy message, of the parsed objects with every alias expanded. What a
   * parsed payload costs in memory grows with this number (about 90 bytes per object or array)
   * more than with its bytes. Default 250,000.
   */
  maxValues: number;
  /** Deepest nesting of arrays and objects; the payload's array is depth 1. Default 100. */
  maxDepth: number;
  /** Longest string, in bytes (v1: of its JSON text, escapes included; legacy: UTF-16 code units). Default 1 MiB. */
  maxStringBytes: number;
  /**
   * Legacy messages only: most structural characters (line feeds and `[`, `{`, `,`, `:`, `-`)
   * in the YAML text, counted before it is parsed. Each is at most one node of the YAML
   * parser, which costs several hundred bytes, so this bounds the parser's memory. Default 65,536.
   */
  maxLegacyYamlTokens: number;
}

/** The default {@link DecodeLimits}. */
export const DEFAULT_DECODE_LIMITS: Readonly<DecodeLimits> = Object.freeze({
  maxInflatedBytes: DEFAULT_MAX_DECOMPRESSED_BYTES,
  maxObjects: 10_000,
  maxValues: 250_000,
  maxDepth: 100,
  maxStringBytes: 1024 * 1024,
  maxLegacyYamlTokens: 65_536,
});

/** Default of `decodeMessage`'s `time.maxFutureSkewMs`: 10 minutes. */
export const DEFAULT_MAX_FUTURE_SKEW_MS = 10 * 60 * 1000;

/** A legacy `BUILD_TIMESTAMP` at most this many seconds keeps `seconds × 1000` a safe integer. */
export const MAX_LEGACY_TIMESTAMP_SECONDS = Math.floor(Number.MAX_SAFE_INTEGER / 1000);

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
  /** The app, when the body names one; {@link DEFAULT_APP} signs as no app (same meaning, same bytes as before apps). */
  app?: string;
  /** "plan" for a plan request (nothing is applied); absent for a deploy. */
  mode?: MessageMode;
  build: BuildInfo;
  target?: string;
  /** The clusters the bundle is for, sorted (lib/wire/targets.ts); never with `target`. */
  targets?: string[];
  manifests: { encoding: string; sha256: string; objects: number; bytes: number };
  /** Where each object came from, covered through its SHA-256 as the manifests are (see {@link SourcesField}). */
  sources?: { sha256: string; count: number };
}

/** What a message asks for: `plan` is a plan request (docs/protocol.md, "Plans"); a body without `mode` is a deploy. */
export type MessageMode = "plan";

/** The encoding of `sources.data`: gzip, then base64, of a JSON array of strings. */
export const SOURCES_ENCODING = "gzip+base64";
/** Largest inflated `sources` JSON, in bytes. */
export const MAX_SOURCES_BYTES = 1024 * 1024;
/** Longest source text of one object, in characters. */
export const MAX_SOURCE_LENGTH = 1024;

/**
 * The body's optional `sources`: for each object, in bundle order, where it came from
 * (`file:line:column`, and `#item` for an item of a list), so that the listener's errors and
 * plans name the file. Gzip'd, since one file name repeats for every object it holds.
 */
export interface SourcesField {
  encoding: typeof SOURCES_ENCODING;
  data: string;
  /** Lowercase hex SHA-256 of the inflated JSON. */
  sha256: string;
  /** Entries: the number of objects. */
  count: number;
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

/**
 * What {@link decodeMessage} knows of a message before it inflates or parses the manifests:
 * handed to its `checkEnvelope` option, so that the signature is checked before any work
 * whose size the sender chooses.
 */
export interface MessageEnvelope {
  format: "v1" | "legacy";
  /** v1: the body's `app`, when it names one (a valid app name); legacy: absent. */
  app?: string;
  build: BuildInfo;
  target?: string;
  /** v1: the body's `targets` (checked: sorted, unique); legacy: absent. */
  targets?: string[];
  /** v1: the manifests fields that are signed (not yet checked against the data); legacy: absent. */
  manifests?: SignedFields["manifests"];
  mode?: MessageMode;
  sources?: SignedFields["sources"];
  signature?: MessageSignature;
}

/** A message that was accepted by {@link decodeMessage}. */
export interface DecodedMessage {
  format: "v1" | "legacy";
  /** The app the bundle belongs to: the body's `app`, else {@link DEFAULT_APP} (always, for a legacy message). */
  app: string;
  build: BuildInfo;
  target?: string;
  /** The clusters the bundle is for (sorted, 2 to 100 names); never with `target`. */
  targets?: string[];
  /** The objects in bundle order. */
  objects: KubeObject[];
  /** v1: the SHA-256 of the payload (verified); legacy: SHA-256 of the objects' canonical JSON. */
  digest: string;
  /** v1: the uncompressed payload length in bytes (`manifests.bytes`, verified). */
  payloadBytes?: number;
  /** "plan": a plan request, never applied. Absent: a deploy. */
  mode?: MessageMode;
  /** Where each object came from, when the body says (verified, one per object); with its signed digest. */
  sources?: { list: string[]; sha256: string };
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
  app: appNameSchema.optional(),
  mode: z.literal("plan").optional(),
  build: buildSchema,
  target: z.string().min(1).optional(),
  targets: targetsSchema.optional(),
  manifests: z.strictObject({
    encoding: z.literal(MANIFESTS_ENCODING),
    data: z.string(),
    sha256: z.string().regex(/^[0-9a-f]{64}$/, "must be 64 lowercase hex digits"),
    objects: z.int().nonnegative(),
    bytes: z.int().nonnegative(),
  }),
  sources: z
    .strictObject({
      encoding: z.literal(SOURCES_ENCODING),
      data: z.string().regex(BASE64, "must be base64"),
      sha256: z.string().regex(/^[0-9a-f]{64}$/, "must be 64 lowercase hex digits"),
      count: z.int().nonnegative(),
    })
    .optional(),
  signature: signatureSchema.optional(),
});



function buildInfoFrom(parsed: z.infer<typeof buildSchema>): BuildInfo {
  const build: BuildInfo = { id: parsed.id, timestampMs: parsed.timestampMs };
  for (const field of OPTIONAL_BUILD_FIELDS) {
    const value = parsed[field];
    if (value !== undefined) build[field] = value;
  }
  return build;
}

/**
 * Encodes a bundle as a version 1 body: the objects as canonical JSON, gzipped (level
 * {@link GZIP_LEVEL}) and base64-encoded, with the SHA-256 of the uncompressed JSON
 * (lib/wire/payload.ts). Deterministic: the same input gives the same body. Synchronous: a
 * payload written as the manifests were read (lib/wire/payload.ts `createPayloadWriter`) is
 * given as `payload` instead of `objects`.
 *
 * `app` {@link DEFAULT_APP} is written as no app: it means the same, and the body stays
 * what a publisher wrote before apps existed, which listeners of that time accept.
 *
 * @throws {TypeError} when `app`, `build` or `target` is not valid (a programming error:
 * publish validates its configuration first).
 */
export function encodeMessage(input: {
  /** The app the bundle belongs to (lib/wire/app.ts); default {@link DEFAULT_APP}. */
  app?: string;
  build: BuildInfo;
  target?: string;
  /** The clusters the bundle is for: sorted, 2 to 100 names (lib/wire/targets.ts); never with `target`. */
  targets?: readonly string[];
  /** The objects; or, instead, their `payload` already encoded. */
  objects?: readonly KubeObject[];
  payload?: EncodedPayload;
  /** Where each object came from (one per object, `file:line:column`): the listener's errors and plans name them. */
  sources?: readonly string[];
  /** "plan": a plan request (nothing is applied). Default: a deploy. */
  mode?: MessageMode;
  /** Signs the body's fields (lib/wire/signature.ts `signer`); the body is unsigned without it. */
  sign?: (fields: SignedFields) => MessageSignature;
}): EncodedMessage {
  const built = buildSchema.safeParse(input.build);
  if (!built.success) throw new TypeError(`Cannot encode the message: invalid build: ${describeIssues(built.error)}`);
  if (input.target !== undefined && input.target.length === 0) {
    throw new TypeError("Cannot encode the message: target must be a non-empty string when given");
  }
  const targetsInvalid = input.targets === undefined ? undefined : input.target !== undefined ? "cannot be given with target" : targetsProblem(input.targets);
  if (targetsInvalid !== undefined) throw new TypeError(`Cannot encode the message: targets ${targetsInvalid}`);
  const appProblem = input.app === undefined ? undefined : appNameProblem(input.app);
  if (appProblem !== undefined) throw new TypeError(`Cannot encode the message: invalid app: ${appProblem}`);
  if ((input.objects === undefined) === (input.payload === undefined)) throw new TypeError("Cannot encode the message: give either objects or payload");
  const payload = input.payload ?? encodePayload(input.objects ?? []);
  const digest = payload.sha256;
  const compressed = payload.gzip;
  const build = buildInfoFrom(built.data);
  const manifests = { encoding: MANIFESTS_ENCODING, sha256: digest, objects: payload.objects, bytes: payload.bytes };
  // `targets` travels where `target` does: in the body right after it, and into the signature.
  const target = input.target !== undefined ? { target: input.target } : input.targets !== undefined ? { targets: [...input.targets] } : {};
  const app = input.app === undefined || input.app === DEFAULT_APP ? {} : { app: input.app };
  const mode = input.mode === undefined ? {} : { mode: input.mode };
  const sources = input.sources === undefined ? undefined : encodeSources(input.sources, payload.objects);
  const signedSources = sources === undefined ? {} : { sources: { sha256: sources.sha256, count: sources.count } };
  const message = {
    kind: MESSAGE_KIND,
    version: MESSAGE_VERSION,
    ...app,
    ...mode,
    build,
    ...target,
    manifests: {
      encoding: MANIFESTS_ENCODING,
      data: compressed.toString("base64"),
      sha256: digest,
      objects: payload.objects,
      bytes: payload.bytes,
    },
    ...(sources === undefined ? {} : { sources }),
    ...(input.sign === undefined ? {} : { signature: input.sign({ ...app, ...mode, build, ...target, manifests, ...signedSources }) }),
  };
  const body = JSON.stringify(message);
  return {
    body,
    digest,
    objectCount: payload.objects,
    rawBytes: payload.bytes,
    compressedBytes: compressed.length,
    bodyBytes: Buffer.byteLength(body, "utf8"),
  };
}

/**
 * The `sources` field of `sources` (one per object; each cut to {@link MAX_SOURCE_LENGTH}).
 *
 * @throws {TypeError} when there is not one per object, or they inflate past {@link MAX_SOURCES_BYTES}.
 */
export function encodeSources(sources: readonly string[], objectCount: number): SourcesField {
  if (sources.length !== objectCount) throw new TypeError(`Cannot encode the message: ${sources.length} sources for ${objectCount} objects`);
  const json = Buffer.from(JSON.stringify(sources.map((s) => (s.length > MAX_SOURCE_LENGTH ? `${s.slice(0, MAX_SOURCE_LENGTH - 1)}…` : s))), "utf8");
  if (json.length > MAX_SOURCES_BYTES) throw new TypeError(`Cannot encode the message: the sources take ${json.length} bytes, over ${MAX_SOURCES_BYTES}`);
  return { encoding: SOURCES_ENCODING, data: gzipSync(json, { level: GZIP_LEVEL }).toString("base64"), sha256: sha256Hex(json), count: sources.length };
}

/** The source list of a checked `sources` field, or a rejection naming what is wrong with it. */
function decodeSources(sources: SourcesField, objectCount: number): string[] {
  const reject = (why: string): never => {
    throw new MessageRejectedError("schema", `Rejected message: sources ${why}`);
  };
  if (sources.count !== objectCount) reject(`has ${sources.count} entries for ${objectCount} objects`);
  let json: Buffer;
  try {
    json = gunzipSync(Buffer.from(sources.data, "base64"), { maxOutputLength: MAX_SOURCES_BYTES });
  } catch (error) {
    return reject(`data is not gzip of at most ${MAX_SOURCES_BYTES} bytes (${errorMessage(error)})`);
  }
  if (sha256Hex(json) !== sources.sha256) reject("data does not match sources.sha256");
  let list: unknown;
  try {
    list = JSON.parse(json.toString("utf8"));
  } catch (error) {
    return reject(`data is not JSON (${errorMessage(error)})`);
  }
  if (!Array.isArray(list) || list.length !== objectCount || !list.every((s) => typeof s === "string" && s.length <= MAX_SOURCE_LENGTH)) {
    reject(`data must be an array of ${objectCount} strings of at most ${MAX_SOURCE_LENGTH} characters`);
  }
  return list as string[];
}

/** Options of {@link decodeMessage}. */
export interface DecodeMessageOptions {
  /**
   * Largest uncompressed payload accepted (v1: the inflated JSON; legacy: the YAML text),
   * in bytes. Inflating stops as soon as it is exceeded. Default 8 MiB; wins over
   * `limits.maxInflatedBytes`.
   */
  maxDecompressedBytes?: number;
  /** The limits of decoding; each one left out is its {@link DEFAULT_DECODE_LIMITS} value. */
  limits?: Partial<DecodeLimits>;
  /**
   * Called with the envelope once its schema is checked, before anything is inflated or
   * parsed (a listener checks the signature here: lib/listener/trust.ts). Throws a
   * MessageRejectedError to refuse the message. Default: every envelope passes.
   */
  checkEnvelope?: (envelope: MessageEnvelope) => void;
  /**
   * Refuse builds stamped in the future (reason `future-build`): a build whose timestampMs is
   * more than `maxFutureSkewMs` (default 10 minutes) after `nowMs` or after
   * `sentTimestampMs` (when SQS sent the message; both in ms since the epoch) is rejected
   * before it is inflated. Default: not checked.
   */
  time?: { nowMs: number; sentTimestampMs?: number | undefined; maxFutureSkewMs?: number };
}

/** Everything decoding needs besides the body, defaults filled in. */
interface Decoding {
  limits: DecodeLimits;
  checkEnvelope: ((envelope: MessageEnvelope) => void) | undefined;
  time: { nowMs: number; sentTimestampMs?: number | undefined; maxFutureSkewMs: number } | undefined;
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
  const { maxDecompressedBytes, limits = {}, checkEnvelope, time } = options;
  const decoding: Decoding = {
    limits: { ...DEFAULT_DECODE_LIMITS, ...limits, ...(maxDecompressedBytes === undefined ? {} : { maxInflatedBytes: maxDecompressedBytes }) },
    checkEnvelope,
    time: time === undefined ? undefined : { ...time, maxFutureSkewMs: time.maxFutureSkewMs ?? DEFAULT_MAX_FUTURE_SKEW_MS },
  };
  try {
    return decodeBody(body, decoding, true);
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

/**
 * The app a raw message body names, to route it before it is decoded: the `app` of a version 1
 * body, or of the one an SNS notification wraps (unwrapped as {@link decodeMessage} does), else
 * {@link DEFAULT_APP}: for a body without one, a legacy body, an invalid app name and anything
 * that is no message. Costs one JSON.parse per level and inflates nothing; never throws.
 *
 * decodeMessage stays the authority: whatever it accepts belongs to the app this returns, as
 * it rejects every `app` this falls back on (an invalid name, a value that is not a string).
 */
export function peekApp(body: string): string {
  return peekMessage(body).app;
}

/**
 * {@link peekApp}, and whether the body is a plan request (`mode: "plan"`), read the same way:
 * plans take a lane of their own, so that they never wait for (or hold up) the app's deploys.
 * A body this reads as a deploy and decodeMessage as a plan (or the reverse) cannot be, but the
 * deploy path rejects plan requests anyway.
 */
export function peekMessage(body: string): { app: string; plan: boolean } {
  return peekedMessage(body, true);
}

function peekedMessage(body: unknown, allowEnvelope: boolean): { app: string; plan: boolean } {
  const none = { app: DEFAULT_APP, plan: false };
  if (typeof body !== "string") return none;
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    // Not JSON, or nested deep enough to overflow the parser's stack: no message, no app.
    return none;
  }
  if (!isRecord(parsed)) return none;
  // The same shapes, in the same order, as decodeBody.
  if (allowEnvelope && parsed["Type"] === "Notification" && typeof parsed["Message"] === "string") return peekedMessage(parsed["Message"], false);
  if (!("kind" in parsed || "version" in parsed)) return none;
  const app = parsed["app"];
  return { app: typeof app === "string" && appNameProblem(app) === undefined ? app : DEFAULT_APP, plan: parsed["mode"] === "plan" };
}

function decodeBody(body: unknown, decoding: Decoding, allowEnvelope: boolean): DecodedMessage {
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
      return decodeBody(parsed["Message"], decoding, false);
    } catch (error) {
      if (error instanceof MessageRejectedError) {
        throw new MessageRejectedError(error.reason, error.message.replace(/^Rejected message:/, "Rejected SNS message:"), {
          cause: error,
        });
      }
      throw error;
    }
  }
  if ("kind" in parsed || "version" in parsed) return decodeV1(parsed, decoding);
  if ("data" in parsed && "manifests" in parsed) return decodeLegacy(parsed, decoding);
  throw new MessageRejectedError(
    "schema",
    `Rejected message: not a kube-pico-cd message (no "kind"; top-level keys: ${
      Object.keys(parsed).slice(0, 10).join(", ") || "none"
    })`,
  );
}

function decodeV1(parsed: Record<string, unknown>, decoding: Decoding): DecodedMessage {
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
  const { limits } = decoding;
  const build = buildInfoFrom(message.build);
  if (message.target !== undefined && message.targets !== undefined) {
    throw new MessageRejectedError("schema", `Rejected message: not a valid ${MESSAGE_KIND} version 1: target and targets cannot both be given`);
  }
  const target = message.target !== undefined ? { target: message.target } : message.targets !== undefined ? { targets: message.targets } : {};
  // Trust and time first: an unsigned or future-stamped message costs no inflating.
  decoding.checkEnvelope?.({
    format: "v1",
    ...(message.app === undefined ? {} : { app: message.app }),
    ...(message.mode === undefined ? {} : { mode: message.mode }),
    build,
    ...target,
    manifests: { encoding: manifests.encoding, sha256: manifests.sha256, objects: manifests.objects, bytes: manifests.bytes },
    ...(message.sources === undefined ? {} : { sources: { sha256: message.sources.sha256, count: message.sources.count } }),
    ...(message.signature === undefined ? {} : { signature: message.signature }),
  });
  checkTime(build, decoding);
  if (manifests.bytes > limits.maxInflatedBytes) {
    throw new MessageRejectedError(
      "too-large",
      `Rejected message: the manifests declare ${manifests.bytes} uncompressed bytes, over the limit of ${limits.maxInflatedBytes}`,
    );
  }
  if (manifests.objects > limits.maxObjects) {
    throw new MessageRejectedError(
      "too-large",
      `Rejected message: the manifests declare ${manifests.objects} objects, over the limit of ${limits.maxObjects}`,
    );
  }
  if (!BASE64.test(manifests.data)) {
    throw new MessageRejectedError("decode", "Rejected message: manifests.data is not valid base64");
  }
  const { objects, digest } = inflateAndParse(manifests, limits);
  const sources = message.sources === undefined ? undefined : decodeSources(message.sources, manifests.objects);
  const checked = checkObjects(objects, (index) => (sources === undefined ? `object ${index + 1}` : `object ${index + 1} (${sources[index]})`));
  return {
    format: "v1",
    app: message.app ?? DEFAULT_APP,
    build,
    ...target,
    objects: checked,
    digest,
    payloadBytes: manifests.bytes,
    ...(message.mode === undefined ? {} : { mode: message.mode }),
    ...(sources === undefined || message.sources === undefined ? {} : { sources: { list: sources, sha256: message.sources.sha256 } }),
    ...(message.signature === undefined ? {} : { signature: message.signature }),
  };
}

/** Rejects a build stamped more than the allowed skew after now or after SQS sent it. */
function checkTime(build: BuildInfo, decoding: Decoding): void {
  const { time } = decoding;
  if (time === undefined) return;
  const { nowMs, sentTimestampMs, maxFutureSkewMs } = time;
  const clocks: [string, number][] = [["the listener's clock", nowMs]];
  if (sentTimestampMs !== undefined) clocks.unshift(["the time SQS sent the message", sentTimestampMs]);
  for (const [what, atMs] of clocks) {
    const aheadMs = build.timestampMs - atMs;
    if (aheadMs > maxFutureSkewMs) {
      throw new MessageRejectedError(
        "future-build",
        `Rejected message: build ${JSON.stringify(build.id.slice(0, 200))} is stamped ${isoTime(build.timestampMs)}, ${Math.round(aheadMs / 1000)} s after ${what} (${isoTime(atMs)}); at most ${Math.round(maxFutureSkewMs / 1000)} s are allowed`,
      );
    }
  }
}

/** ISO 8601 of ms since the epoch; the number itself beyond what a Date can hold (±8.64e15). */
function isoTime(ms: number): string {
  const date = new Date(ms);
  return Number.isNaN(date.getTime()) ? `${ms} ms after the epoch` : date.toISOString();
}

/**
 * Inflates `manifests.data`, never past `manifests.bytes` (itself within the limit), checks
 * length and digest, scans the JSON for the limits and only then parses it. The inflated bytes
 * and their text live only in this function: nothing keeps them once the objects are parsed.
 */
function inflateAndParse(manifests: { data: string; sha256: string; objects: number; bytes: number }, limits: DecodeLimits): { objects: unknown[]; digest: string } {
  let payload: Buffer;
  try {
    // maxOutputLength makes zlib stop inflating one byte past what the (signed) header
    // declares: a gzip bomb is never inflated further than that.
    payload = gunzipSync(Buffer.from(manifests.data, "base64"), { maxOutputLength: manifests.bytes + 1 });
  } catch (error) {
    if (isRecord(error) && (error["code"] === "ERR_BUFFER_TOO_LARGE" || error["code"] === "ERR_OUT_OF_RANGE")) {
      throw new MessageRejectedError(
        "decode",
        `Rejected message: the manifests inflate to more than the ${manifests.bytes} bytes manifests.bytes says`,
        { cause: error },
      );
    }
    throw new MessageRejectedError(
      "decode",
      `Rejected message: manifests.data is not valid gzip (${errorMessage(error)})`,
      { cause: error },
    );
  }
  if (payload.length !== manifests.bytes) {
    throw new MessageRejectedError(
      "decode",
      payload.length > manifests.bytes
        ? `Rejected message: the manifests inflate to more than the ${manifests.bytes} bytes manifests.bytes says`
        : `Rejected message: the manifests inflate to ${payload.length} bytes but manifests.bytes says ${manifests.bytes}`,
    );
  }
  const digest = sha256Hex(payload);
  if (digest !== manifests.sha256) {
    throw new MessageRejectedError(
      "digest-mismatch",
      `Rejected message: the manifests' SHA-256 is ${digest} but manifests.sha256 says ${manifests.sha256}`,
    );
  }
  const problem = jsonLimitProblem(payload, limits, manifests.objects);
  if (problem !== undefined) {
    throw new MessageRejectedError(problem.reason, `Rejected message: the manifests payload ${problem.text}`);
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
  if (objects.length !== manifests.objects) {
    throw new MessageRejectedError(
      "invalid-manifests",
      `Rejected message: the manifests hold ${objects.length} objects but manifests.objects says ${manifests.objects}`,
    );
  }
  return { objects, digest };
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/** Bytes that may continue a JSON number or literal (true, false, null). */
const SCALAR_BYTE = new Uint8Array(256);
for (const c of "0123456789+-.eEtrufalsn") SCALAR_BYTE[c.charCodeAt(0)] = 1;

/**
 * One pass over JSON text, without building anything: what breaks a limit (nesting depth,
 * string length, number of values, number of top-level array elements over `declaredObjects`),
 * or undefined. It does not validate the JSON; JSON.parse does that afterwards, once the text
 * is known to be within the limits. Stops at the first problem.
 */
export function jsonLimitProblem(
  bytes: Uint8Array,
  limits: Pick<DecodeLimits, "maxDepth" | "maxStringBytes" | "maxValues">,
  declaredObjects: number,
): { reason: "too-large" | "invalid-manifests"; text: string } | undefined {
  const { maxDepth, maxStringBytes, maxValues } = limits;
  let depth = 0;
  let values = 0;
  let topLevel = 0;
  let rootIsArray = false;
  let inScalar = false;
  const length = bytes.length;
  for (let i = 0; i < length; i++) {
    const c = bytes[i]!;
    if (c === QUOTE) {
      const start = i;
      // To the closing quote, skipping escaped characters.
      for (i++; i < length; i++) {
        const d = bytes[i]!;
        if (d === BACKSLASH) i++;
        else if (d === QUOTE) break;
      }
      if (i - start - 1 > maxStringBytes) return { reason: "too-large", text: `holds a string of more than ${maxStringBytes} bytes at byte ${start}, over the limit` };
      inScalar = false;
    } else if (SCALAR_BYTE[c] === 1) {
      if (inScalar) continue;
      inScalar = true;
    } else {
      inScalar = false;
      if (c === 0x5b || c === 0x7b) {
        // [ or {: a value, counted below; then one level deeper.
        if (depth === 0 && c === 0x5b) rootIsArray = true;
      } else {
        if (c === 0x5d || c === 0x7d) depth--;
        continue;
      }
    }
    // A value starts here.
    if (++values > maxValues) return { reason: "too-large", text: `holds more than ${maxValues} JSON values, over the limit` };
    if (depth === 1 && rootIsArray && ++topLevel > declaredObjects) {
      return { reason: "invalid-manifests", text: `holds more than the ${declaredObjects} objects manifests.objects says` };
    }
    if (c === 0x5b || c === 0x7b) {
      if (++depth > maxDepth) return { reason: "too-large", text: `nests deeper than ${maxDepth} levels at byte ${i}, over the limit` };
    }
  }
  return undefined;
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

function decodeLegacy(parsed: Record<string, unknown>, decoding: Decoding): DecodedMessage {
  const result = legacySchema.safeParse(parsed);
  if (!result.success) {
    throw new MessageRejectedError("schema", `Rejected message: not a valid legacy message: ${describeIssues(result.error)}`);
  }
  const { data, manifests } = result.data;
  const { limits } = decoding;
  const seconds = String(data.BUILD_TIMESTAMP);
  if (Number(seconds) > MAX_LEGACY_TIMESTAMP_SECONDS) {
    throw new MessageRejectedError(
      "schema",
      `Rejected message: not a valid legacy message: data.BUILD_TIMESTAMP ${seconds} is too large: in milliseconds it is not a safe integer (at most ${MAX_LEGACY_TIMESTAMP_SECONDS} seconds)`,
    );
  }
  const build: BuildInfo = { id: defined(data.COMMIT_HASH) ?? seconds, timestampMs: Number(seconds) * 1000 };
  const commit = defined(data.COMMIT_HASH);
  if (commit !== undefined) build.commit = commit;
  const tag = defined(data.TAG_NAME);
  const branch = defined(data.BRANCH_NAME);
  const qualify = (prefix: string, name: string) => (name.startsWith("refs/") ? name : `${prefix}${name}`);
  if (tag !== undefined) build.ref = qualify("refs/tags/", tag);
  else if (branch !== undefined) build.ref = qualify("refs/heads/", branch);
  // A legacy message is never signed: with trusted keys, it is refused before its YAML is parsed.
  decoding.checkEnvelope?.({ format: "legacy", build });
  checkTime(build, decoding);

  const manifestBytes = Buffer.byteLength(manifests, "utf8");
  if (manifestBytes > limits.maxInflatedBytes) {
    throw new MessageRejectedError(
      "too-large",
      `Rejected message: the legacy manifests are ${manifestBytes} bytes, over the limit of ${limits.maxInflatedBytes}`,
    );
  }
  const tokens = yamlTokenCount(manifests, limits.maxLegacyYamlTokens);
  if (tokens > limits.maxLegacyYamlTokens) {
    throw new MessageRejectedError(
      "too-large",
      `Rejected message: the legacy manifests hold more than ${limits.maxLegacyYamlTokens} structural characters (line feeds, [ { , : -), over the limit`,
    );
  }
  const { items, problems } = parseManifests(manifests, "manifests");
  if (problems.length > 0) {
    const more = problems.length > 3 ? `; and ${problems.length - 3} more` : "";
    throw new MessageRejectedError(
      "invalid-manifests",
      `Rejected message: invalid legacy manifests: ${problems.slice(0, 3).join("; ")}${more}`,
    );
  }
  // Aliases share their values in what the parser returns; counted expanded, as the digest
  // below and kubectl's input would write them out.
  const problem = valueLimitProblem(items.map((item) => item.object), limits);
  if (problem !== undefined) throw new MessageRejectedError("too-large", `Rejected message: the legacy manifests ${problem}`);
  const objects = checkObjects(
    items.map((item) => item.object),
    (index) => items[index]?.source ?? `object ${index + 1}`,
  );
  return { format: "legacy", app: DEFAULT_APP, build, objects, digest: sha256Hex(canonicalJson(objects)) };
}

/** Line feeds and `[ { , : -` in `text`: each starts at most one YAML node. Counting stops past `max`. */
function yamlTokenCount(text: string, max: number): number {
  let count = 0;
  for (let i = 0; i < text.length && count <= max; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x0a || c === 0x5b || c === 0x7b || c === 0x2c || c === 0x3a || c === 0x2d) count++;
  }
  return count;
}

/**
 * What breaks a limit in parsed values (depth, string length, number of values, and their
 * size written out, which aliases can multiply), or undefined. Stops at the first problem, so
 * it costs at most the limits, whatever the aliases would expand to.
 */
export function valueLimitProblem(roots: readonly unknown[], limits: Pick<DecodeLimits, "maxDepth" | "maxStringBytes" | "maxValues" | "maxInflatedBytes" | "maxObjects">): string | undefined {
  const { maxDepth, maxStringBytes, maxValues, maxInflatedBytes, maxObjects } = limits;
  if (roots.length > maxObjects) return `hold ${roots.length} objects, over the limit of ${maxObjects}`;
  let values = 0;
  let size = 0;
  // Depth-first with an explicit stack: no recursion to overflow.
  const stack: [unknown, number][] = roots.map((root): [unknown, number] => [root, 2]).reverse();
  while (stack.length > 0) {
    const [value, depth] = stack.pop()!;
    if (++values > maxValues) return `hold more than ${maxValues} values (aliases expanded), over the limit`;
    if (typeof value === "string") {
      if (value.length > maxStringBytes) return `hold a string of ${value.length} characters, over the limit of ${maxStringBytes}`;
      size += value.length + 2;
    } else if (typeof value === "object" && value !== null) {
      if (depth > maxDepth) return `nest deeper than ${maxDepth} levels, over the limit`;
      size += 2;
      if (Array.isArray(value)) {
        for (let i = value.length - 1; i >= 0; i--) stack.push([value[i], depth + 1]);
      } else {
        for (const [key, item] of Object.entries(value)) {
          // Keys count as values, as they do in a v1 payload.
          if (++values > maxValues) return `hold more than ${maxValues} values (aliases expanded), over the limit`;
          size += key.length + 3;
          stack.push([item, depth + 1]);
        }
      }
    } else {
      size += 8;
    }
    if (size > maxInflatedBytes) return `are more than ${maxInflatedBytes} bytes written out (aliases expanded), over the limit`;
  }
  return undefined;
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
