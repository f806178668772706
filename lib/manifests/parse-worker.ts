/**
 * A second thread that reads pieces of manifest text (lib/manifests/pieces.ts `readPiece`) for
 * lib/manifests/bundle.ts, so that parsing a large bundle, most of publish's time, uses two
 * cores. The pieces are sent as text and come back as the objects' canonical JSON: strings are
 * cheap to pass between threads, and the JSON is what the payload is made of.
 *
 * The thread runs this module's own file: `new Worker(import.meta.url)`, with a mark in its
 * `workerData` that makes the module serve instead of doing nothing. That is the one form that
 * works wherever publish runs: as its source under bun, deno and node, as the single file
 * dist/publish.mjs (where this module's file is that whole file, so the programs in it start
 * only on the main thread), and as an executable made with `bun build --compile`.
 */
import { availableParallelism } from "node:os";
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";
import { errorMessage } from "../errors.ts";
import type { HelmHookOptions } from "./helm-hooks.ts";
import { isRecord } from "./kube-object.ts";
import { readPiece, type PieceResult, type TextPiece } from "./pieces.ts";

/** Marks the `workerData` of a thread started by {@link startParseWorker}. */
const WORKER_MARK = "kube-pico-cd parse worker";

/** A job for the thread: pieces to read, and how to treat Helm's hooks. */
interface Job {
  id: number;
  pieces: TextPiece[];
  hookOptions: HelmHookOptions;
}

/** The thread's answer to a {@link Job}. */
type Answer = { id: number; results: PieceResult[] } | { id: number; error: string };

/** A running second thread. */
export interface ParseWorker {
  /** Reads `pieces` on the thread; resolves with their results in order, rejects when the thread failed. */
  read(pieces: TextPiece[], hookOptions: HelmHookOptions): Promise<PieceResult[]>;
  /** Stops the thread; jobs not answered yet reject. Until then it keeps the process alive, as a job waiting for it must. */
  close(): void;
}

/** True when a second thread can run beside this one. */
export function hasSecondCore(): boolean {
  return availableParallelism() > 1;
}

/**
 * Starts the thread. It loads for a few tens of milliseconds (publish's modules), while the
 * caller goes on; jobs sent meanwhile wait for it. When it cannot start or fails later, every
 * job not yet answered rejects with the reason, so that the caller reads those pieces itself.
 *
 * @param moduleUrl The module the thread runs; only tests give another (one that fails).
 */
export function startParseWorker(moduleUrl: URL = new URL(import.meta.url)): ParseWorker {
  const waiting = new Map<number, { resolve: (results: PieceResult[]) => void; reject: (error: Error) => void }>();
  let failure: Error | undefined;
  let nextId = 0;
  const fail = (error: Error) => {
    failure ??= error;
    for (const job of waiting.values()) job.reject(failure);
    waiting.clear();
  };
  let worker: Worker;
  try {
    worker = new Worker(moduleUrl, { workerData: { [WORKER_MARK]: true } });
  } catch (error) {
    fail(new Error(`the second thread did not start: ${errorMessage(error)}`));
    return { read: () => Promise.reject(failure!), close: () => {} };
  }
  worker.on("message", (answer: Answer) => {
    const job = waiting.get(answer.id);
    if (job === undefined) return;
    waiting.delete(answer.id);
    if ("results" in answer) job.resolve(answer.results);
    else job.reject(new Error(`the second thread failed: ${answer.error}`));
  });
  worker.on("error", (error: unknown) => fail(new Error(`the second thread failed: ${errorMessage(error)}`)));
  worker.on("exit", (code) => fail(new Error(`the second thread exited (${code})`)));
  return {
    read(pieces, hookOptions) {
      if (failure !== undefined) return Promise.reject(failure);
      const id = nextId++;
      const answered = new Promise<PieceResult[]>((resolve, reject) => waiting.set(id, { resolve, reject }));
      worker.postMessage({ id, pieces, hookOptions } satisfies Job);
      return answered;
    },
    close() {
      fail(new Error("the second thread was stopped"));
      void worker.terminate().catch(() => {});
    },
  };
}

/** The thread's side: answers each job in the order they come. */
function serve(port: NonNullable<typeof parentPort>): void {
  port.on("message", (job: Job) => {
    let answer: Answer;
    try {
      answer = { id: job.id, results: job.pieces.map((piece) => readPiece(piece, job.hookOptions)) };
    } catch (error) {
      answer = { id: job.id, error: errorMessage(error) };
    }
    port.postMessage(answer);
  });
}

if (!isMainThread && parentPort !== null && isRecord(workerData) && workerData[WORKER_MARK] === true) serve(parentPort);
