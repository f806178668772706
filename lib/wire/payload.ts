/**
 * The payload of a version 1 body: the bundle's objects as one canonical JSON array
 * (lib/wire/canonical-json.ts), its SHA-256 and its gzip (docs/protocol.md, "The payload").
 *
 * Two ways to build the same bytes:
 * - {@link encodePayload}, synchronous, from objects in hand;
 * - {@link createPayloadWriter}, one object at a time as the manifests are read. Publish uses
 *   it so that no object outlives its own file (holding every object of a large bundle until
 *   the end costs a runtime's garbage collector more than writing them), and so that gzip,
 *   which runs on the runtime's worker threads when used as a stream, compresses what was
 *   read while the next file is parsed.
 *
 * Deflate's output does not depend on how its input is split into writes, so both give the
 * same `gzip` bytes for the same objects (test/unit/payload.test.ts).
 */
import { createHash } from "node:crypto";
import { createGzip, gzipSync } from "node:zlib";
import { canonicalJson } from "./canonical-json.ts";

/**
 * The gzip level of the payload. Level 7 rather than 9: on Argo CD's install manifest it is
 * 1.2 % larger (32.6 against 32.3 kB), on 9.5 MiB of generated manifests no larger, and it
 * takes a fifth less time (330 against 400 ms there); level 6 would be a third larger on Argo
 * CD's manifest with some zlib builds (bun's, deno's).
 */
export const GZIP_LEVEL = 7;

/** Characters of JSON handed to gzip at once by {@link createPayloadWriter}. */
const CHUNK_CHARACTERS = 64 * 1024;

/** An encoded payload. */
export interface EncodedPayload {
  /** The gzip of the canonical JSON. */
  gzip: Buffer;
  /** Lowercase hex SHA-256 of the canonical JSON (the body's `manifests.sha256`). */
  sha256: string;
  /** Length of the canonical JSON in bytes (`manifests.bytes`). */
  bytes: number;
  /** Number of objects (`manifests.objects`). */
  objects: number;
}

/** The payload of `objects`, synchronously. */
export function encodePayload(objects: readonly unknown[]): EncodedPayload {
  const json = Buffer.from(canonicalJson(objects), "utf8");
  return {
    gzip: gzipSync(json, { level: GZIP_LEVEL }),
    sha256: createHash("sha256").update(json).digest("hex"),
    bytes: json.length,
    objects: objects.length,
  };
}

/** Builds a payload one object at a time; see {@link createPayloadWriter}. */
export interface PayloadWriter {
  /** Appends `object` (any JSON value) to the array. Not after {@link finish}. */
  add(object: unknown): void;
  /** Ends the array; resolves when gzip has written everything. Rejects when gzip failed. */
  finish(): Promise<EncodedPayload>;
  /** Drops what was written (a bundle with problems is never sent). */
  discard(): void;
}

/**
 * A {@link PayloadWriter}: each object is turned into canonical JSON at once, hashed and handed
 * to a gzip stream, and only the compressed bytes are kept. The result has the same bytes as
 * {@link encodePayload} of the same objects.
 */
export function createPayloadWriter(): PayloadWriter {
  const hash = createHash("sha256");
  const gzip = createGzip({ level: GZIP_LEVEL });
  const chunks: Buffer[] = [];
  let bytes = 0;
  let objects = 0;
  let finished = false;
  let failure: unknown;
  gzip.on("data", (chunk: Buffer) => chunks.push(chunk));
  const ended = new Promise<void>((resolve, reject) => {
    gzip.once("end", resolve);
    gzip.once("error", (error) => {
      failure = error;
      reject(error);
    });
  });
  // Never an unhandled rejection: a failure is reported by finish(), or dropped by discard().
  ended.catch(() => {});
  // Text waits here until there is a chunk's worth: each write to the stream is one job for a
  // worker thread and one turn of the event loop to hand the next over, so an object per write
  // (a few kB) leaves the stream far behind the parser, and its work for the end.
  let pending = "";
  const flush = () => {
    const chunk = Buffer.from(pending, "utf8");
    pending = "";
    bytes += chunk.length;
    hash.update(chunk);
    gzip.write(chunk);
  };
  return {
    add(object) {
      if (finished) throw new Error("Cannot add to the payload: it is finished");
      pending += `${objects === 0 ? "[" : ","}${canonicalJson(object)}`;
      objects++;
      if (pending.length >= CHUNK_CHARACTERS) flush();
    },
    async finish() {
      if (finished) throw new Error("Cannot finish the payload twice");
      finished = true;
      pending += objects === 0 ? "[]" : "]";
      flush();
      gzip.end();
      await ended;
      if (failure !== undefined) throw failure;
      return { gzip: Buffer.concat(chunks), sha256: hash.digest("hex"), bytes, objects };
    },
    discard() {
      finished = true;
      gzip.destroy();
    },
  };
}
