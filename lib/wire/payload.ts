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
import { Worker } from "node:worker_threads";
import { createGzip, gzipSync } from "node:zlib";
import { errorMessage } from "../errors.ts";
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
  /** Appends a value given as its canonical JSON (lib/wire/canonical-json.ts `canonicalJson`), as {@link add} would it. */
  addJson(json: string): void;
  /** Ends the array; resolves when gzip has written everything. Rejects when gzip failed. */
  finish(): Promise<EncodedPayload>;
  /** Drops what was written (a bundle with problems is never sent). */
  discard(): void;
}

/** Where a {@link createPayloadWriter} compresses (see {@link PayloadWriterOptions}). */
export type GzipPlace = "auto" | "stream" | "worker";

/** Options of {@link createPayloadWriter}. */
export interface PayloadWriterOptions {
  /**
   * `"stream"`: a node:zlib stream in this process, which node and bun run on their worker
   * threads. `"worker"`: the same gzip in a worker thread of our own. `"auto"` (the default):
   * the stream, except under Deno, whose node:zlib compresses on the calling thread (half a
   * second of a 10 MB payload, measured): there a payload is held until it reaches
   * {@link WORKER_AFTER_BYTES}, then handed to a worker, and a smaller one is gzipped at the end,
   * in less time than a worker takes to start.
   */
  gzipOn?: GzipPlace;
}

/** Under Deno (`gzipOn: "auto"`), payloads up to this size are gzipped in-process at the end. */
export const WORKER_AFTER_BYTES = 2 * 1024 * 1024;

/**
 * A {@link PayloadWriter}: each object is turned into canonical JSON at once, hashed and handed
 * to gzip, and only the compressed bytes are kept. The result has the same bytes as
 * {@link encodePayload} of the same objects, wherever gzip runs.
 */
export function createPayloadWriter(options: PayloadWriterOptions = {}): PayloadWriter {
  const { gzipOn = "auto" } = options;
  const hash = createHash("sha256");
  const held: Buffer[] = [];
  let sink: GzipSink | undefined = gzipOn === "stream" || (gzipOn === "auto" && !("Deno" in globalThis)) ? streamSink() : undefined;
  let bytes = 0;
  let objects = 0;
  let finished = false;
  // Text waits here until there is a chunk's worth: each write to the stream is one job for a
  // worker thread and one turn of the event loop to hand the next over, so an object per write
  // (a few kB) leaves the stream far behind the parser, and its work for the end.
  let pending = "";
  const flush = () => {
    const chunk = Buffer.from(pending, "utf8");
    pending = "";
    bytes += chunk.length;
    hash.update(chunk);
    if (sink === undefined) {
      held.push(chunk);
      if (gzipOn === "auto" && bytes < WORKER_AFTER_BYTES) return;
      sink = workerSink();
      for (const chunk of held.splice(0)) sink.write(chunk);
    } else sink.write(chunk);
  };
  const addJson = (json: string) => {
    if (finished) throw new Error("Cannot add to the payload: it is finished");
    pending += `${objects === 0 ? "[" : ","}${json}`;
    objects++;
    if (pending.length >= CHUNK_CHARACTERS) flush();
  };
  return {
    add: (object) => addJson(canonicalJson(object)),
    addJson,
    async finish() {
      if (finished) throw new Error("Cannot finish the payload twice");
      finished = true;
      pending += objects === 0 ? "[]" : "]";
      flush();
      const gzip = sink === undefined ? gzipSync(Buffer.concat(held.splice(0)), { level: GZIP_LEVEL }) : await sink.end();
      return { gzip, sha256: hash.digest("hex"), bytes, objects };
    },
    discard() {
      finished = true;
      held.length = 0;
      sink?.destroy();
    },
  };
}

/** Where the payload's chunks are gzipped, in order. */
interface GzipSink {
  write(chunk: Buffer): void;
  /** Ends the input; resolves with the whole gzip. */
  end(): Promise<Buffer>;
  destroy(): void;
}

/** gzip on a node:zlib stream in this process. */
function streamSink(): GzipSink {
  const gzip = createGzip({ level: GZIP_LEVEL });
  const chunks: Buffer[] = [];
  gzip.on("data", (chunk: Buffer) => chunks.push(chunk));
  const ended = new Promise<Buffer>((resolve, reject) => {
    gzip.once("end", () => resolve(Buffer.concat(chunks)));
    gzip.once("error", reject);
  });
  // Never an unhandled rejection: a failure is reported by end(), or dropped by destroy().
  ended.catch(() => {});
  return {
    write: (chunk) => void gzip.write(chunk),
    end: () => {
      gzip.end();
      return ended;
    },
    destroy: () => void gzip.destroy(),
  };
}

/**
 * The worker's program: the same gzip stream, fed the chunks posted to it, answering with the
 * whole gzip or the error. CommonJS, so that it runs as an `eval` worker in every runtime
 * without a file of its own (publish is often one file, dist/publish.mjs).
 */
const WORKER_SOURCE = `
const { parentPort } = require("node:worker_threads");
const { createGzip } = require("node:zlib");
const gzip = createGzip({ level: ${GZIP_LEVEL} });
const chunks = [];
gzip.on("data", (chunk) => chunks.push(chunk));
gzip.on("end", () => parentPort.postMessage({ gzip: Buffer.concat(chunks) }));
gzip.on("error", (error) => parentPort.postMessage({ error: String((error && error.message) || error) }));
parentPort.on("message", (chunk) => (chunk === null ? gzip.end() : gzip.write(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength))));
`;

/** gzip in a worker thread started for this payload, ended with it. */
function workerSink(): GzipSink {
  const worker = new Worker(WORKER_SOURCE, { eval: true });
  const ended = new Promise<Buffer>((resolve, reject) => {
    worker.once("message", (answer: { gzip?: Uint8Array; error?: string }) => {
      if (answer.gzip !== undefined) resolve(Buffer.from(answer.gzip.buffer, answer.gzip.byteOffset, answer.gzip.byteLength));
      else reject(new Error(`Cannot gzip the payload: ${answer.error ?? "the worker gave no answer"}`));
    });
    worker.once("error", (error: unknown) => reject(new Error(`Cannot gzip the payload: the worker failed: ${errorMessage(error)}`)));
    worker.once("exit", (code) => reject(new Error(`Cannot gzip the payload: the worker exited (${code}) before answering`)));
  });
  ended.catch(() => {});
  const stop = () => void worker.terminate().catch(() => {});
  return {
    write: (chunk) => worker.postMessage(chunk),
    end: async () => {
      worker.postMessage(null);
      try {
        return await ended;
      } finally {
        stop();
      }
    },
    destroy: stop,
  };
}
