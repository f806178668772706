/**
 * Reading a bundle's inputs into bundle items, on one thread or two, handed back in input
 * order (lib/manifests/bundle.ts `readBundle` takes them from here). A second thread
 * (lib/manifests/parse-worker.ts) is started only for a bundle large enough to gain from it,
 * and the items, their order, sources and problems are the same either way.
 */
import { readFileSync } from "node:fs";
import { setImmediate as nextTurn } from "node:timers/promises";
import { errorCode, errorMessage } from "../errors.ts";
import type { HelmHookOptions } from "./helm-hooks.ts";
import { hasSecondCore, type ParseWorker } from "./parse-worker.ts";
import { PIECE_CHARACTERS, readPiece, splitDocuments, type PieceResult, type TextPiece } from "./pieces.ts";

/**
 * An input to parse: its text; or the file it is in, read when its turn comes, so that a large
 * bundle's files are not all held at once (holding 1,000 files' text while they were parsed cost
 * node 80 MiB more and 5 % longer, measured); or why it cannot be read.
 */
export type InputText = { source: string; text: string } | { source: string; file: string; size: number } | { problem: string };

/** `input` with its file read, or why it cannot be. */
function loadText(input: InputText): { source: string; text: string } | { problem: string } {
  if (!("file" in input)) return input;
  try {
    // Read synchronously: a file of a checkout is in the page cache, and an asynchronous read
    // costs a round trip through the worker threads that the payload's gzip is using
    // (measured: about a quarter more wall time under node for 1,000 files).
    return { source: input.source, text: readFileSync(input.file, "utf8") };
  } catch (error) {
    return { problem: `${input.source}: cannot read: ${errorCode(error) ?? String(error)}` };
  }
}

/**
 * Reads the inputs' texts into {@link PieceResult}s, on this thread and, when it is given a way
 * to start one, on a second (lib/manifests/parse-worker.ts), and gives them back in input order.
 *
 * Each text is cut into pieces of a few documents (lib/manifests/pieces.ts) when the bundle
 * is large enough for a second thread (one piece too large then keeps it on one). Both threads take the next piece nobody has taken: the second thread a batch
 * at a time, this one a piece at a time, whenever the piece due next is still with the other
 * thread. So neither waits for the other while there are pieces left, however fast each is,
 * and the objects go on to the payload in order, as soon as they can.
 *
 * A file cut into pieces whose pieces have any problem is read again whole, on this thread:
 * its problems are then those of the file (a list's document number counts from the file's
 * start). When the second thread fails, this thread reads what it had not answered, and
 * {@link warnings} says so.
 */
export class PieceReader {
  readonly warnings: string[] = [];
  private readonly slots: Slot[] = [];
  /** For each text, its slots (`first`, `count`), and the text itself when it was cut (read again whole on a problem). */
  private readonly groups: ({ first: number; count: number; whole?: TextPiece } | { problem: string })[] = [];
  /** The first slot nobody has taken. */
  private next = 0;
  /** Batches sent to the second thread and not yet answered. */
  private inFlight = 0;
  private worker: ParseWorker | undefined;
  private readonly hookOptions: HelmHookOptions;

  /**
   * @param parseWorker Whether a second thread is started: `"auto"` when it is worth it (see
   *   {@link wantsSecondThread}), or `"always"` or `"never"`.
   * @param startWorker How it is started (lib/manifests/parse-worker.ts `startParseWorker`).
   */
  constructor(
    texts: readonly InputText[],
    hookOptions: HelmHookOptions,
    parseWorker: "auto" | "always" | "never",
    startWorker: () => ParseWorker,
  ) {
    this.hookOptions = hookOptions;
    // A file counts by its size in bytes: its characters, for the ASCII most manifests are.
    let characters = 0;
    for (const input of texts) characters += "text" in input ? input.text.length : "file" in input ? input.size : 0;
    // Texts are cut only when a second thread may read some of their pieces.
    const cut = parseWorker === "always" || (parseWorker === "auto" && characters >= PARSE_WORKER_AFTER_CHARACTERS && hasSecondCore());
    let largestPiece = 0;
    for (let input of texts) {
      // A file too small to be cut waits to be read until its slot is taken.
      if ("file" in input && (!cut || input.size < 2 * PIECE_CHARACTERS)) {
        this.groups.push({ first: this.slots.length, count: 1 });
        this.slots.push({ piece: input });
        largestPiece = Math.max(largestPiece, input.size);
        continue;
      }
      input = loadText(input);
      if ("problem" in input) {
        this.groups.push(input);
        continue;
      }
      const whole = { text: input.text, source: input.source, firstLine: 1 };
      const pieces = cut ? splitDocuments(input.text, input.source) : [whole];
      this.groups.push({ first: this.slots.length, count: pieces.length, ...(pieces.length > 1 ? { whole } : {}) });
      for (const piece of pieces) {
        this.slots.push({ piece });
        largestPiece = Math.max(largestPiece, piece.text.length);
      }
    }
    if (parseWorker === "always" || (cut && wantsSecondThread(characters, largestPiece))) this.worker = startWorker();
  }

  /** How many inputs {@link results} answers for. */
  get inputCount(): number {
    return this.groups.length;
  }

  /** The results of text `index` (after those of every earlier text were taken). */
  async results(index: number): Promise<{ results: PieceResult[] } | { problem: string }> {
    const group = this.groups[index]!;
    if ("problem" in group) return group;
    const results: PieceResult[] = [];
    for (let at = group.first; at < group.first + group.count; at++) results.push(await this.result(at));
    if (group.whole !== undefined && results.some((result) => result.problems.length > 0)) {
      return { results: [readPiece(group.whole, this.hookOptions)] };
    }
    return { results };
  }

  close(): void {
    this.worker?.close();
    this.worker = undefined;
  }

  /** The result of slot `at`: read here, or waited for from the second thread, reading later slots meanwhile. */
  private async result(at: number): Promise<PieceResult> {
    const slot = this.slots[at]!;
    for (;;) {
      if (slot.result !== undefined) break;
      if (slot.pending === undefined) {
        // Nobody has it (it is the next free slot): read it here.
        this.readHere(this.next);
        continue;
      }
      if (this.next < this.slots.length) {
        this.readHere(this.next);
        // A turn of the event loop, so that the second thread's answers are taken in.
        await nextTurn();
        continue;
      }
      slot.result = await slot.pending;
    }
    const result = slot.result;
    // What has been handed on is not kept.
    this.slots[at] = DONE;
    // A turn of the event loop between pieces: work handed to other threads (the payload's
    // gzip, the second thread's batches) goes on while the next piece is read.
    await nextTurn();
    return result;
  }

  /** Reads slot `at` (the next free one) on this thread, after handing the second thread more. */
  private readHere(at: number): void {
    const slot = this.slots[at]!;
    this.next = at + 1;
    this.feed();
    const piece = pieceOf(slot);
    slot.result = "problem" in piece ? unreadable(piece.problem) : readPiece(piece, this.hookOptions);
  }

  /** Keeps {@link BATCHES_IN_FLIGHT} batches with the second thread while free slots last. */
  private feed(): void {
    while (this.worker !== undefined && this.inFlight < BATCHES_IN_FLIGHT && this.next < this.slots.length) {
      const batch: Slot[] = [];
      const pieces: TextPiece[] = [];
      let characters = 0;
      while (this.next < this.slots.length && characters < PIECE_CHARACTERS) {
        const slot = this.slots[this.next++]!;
        const piece = pieceOf(slot);
        if ("problem" in piece) {
          slot.result = unreadable(piece.problem);
          continue;
        }
        batch.push(slot);
        pieces.push(piece);
        characters += piece.text.length;
      }
      if (batch.length === 0) continue;
      const answered = this.worker.read(pieces, this.hookOptions);
      this.inFlight++;
      answered.then(
        () => {
          this.inFlight--;
          this.feed();
        },
        (error: unknown) => {
          // Once: every batch still out fails with the same reason.
          if (this.worker !== undefined) this.warnings.push(`read the manifests on one thread: ${errorMessage(error)}`);
          this.close();
        },
      );
      batch.forEach((slot, i) => {
        // Taken as soon as it is answered, so that it is handed on in its turn; a batch the
        // second thread did not answer is read here.
        slot.pending = answered.then(
          (results) => (slot.result = results[i]!),
          () => (slot.result = readPiece(pieces[i]!, this.hookOptions)),
        );
      });
    }
  }
}

/**
 * A piece of {@link PieceReader}: its text (or the file to read it from) until someone takes
 * it, then its result or the promise of it.
 */
interface Slot {
  piece?: TextPiece | { source: string; file: string; size: number } | undefined;
  result?: PieceResult;
  pending?: Promise<PieceResult>;
}

/** The text of the slot being taken (its file read now), which the slot no longer holds; or why the file cannot be read. */
function pieceOf(slot: Slot): TextPiece | { problem: string } {
  const piece = slot.piece!;
  slot.piece = undefined;
  if (!("file" in piece)) return piece;
  const loaded = loadText(piece);
  return "problem" in loaded ? loaded : { ...loaded, firstLine: 1 };
}

/** The result of a file that cannot be read: its problem, in its place among the others. */
function unreadable(problem: string): PieceResult {
  return { items: [], problems: [problem], hookProblems: [], notices: [], leftOut: 0 };
}

/**
 * Whether a second thread is worth starting for a bundle of `characters` that is large enough
 * ({@link PARSE_WORKER_AFTER_CHARACTERS}): not when one piece (lib/manifests/pieces.ts) holds
 * more than a quarter of it. A piece is read by one thread, and a thread parses more slowly
 * while its code is new to its runtime, so one large document (Argo CD's install manifest is
 * one CustomResourceDefinition of 1.4 MB out of 1.9 MB) takes longer on two threads than on
 * one (measured, bench/publish-bundle.ts: 1.45 × the floor under bun, 1.41 × under node).
 */
function wantsSecondThread(characters: number, largestPiece: number): boolean {
  return largestPiece <= characters / 4;
}

/** A slot whose result was handed on. */
const DONE: Slot = {};

/** How many batches of pieces the second thread holds at once: one to read, one to start on at once after. */
const BATCHES_IN_FLIGHT = 2;

/**
 * From how many characters of manifests a bundle is read on two threads, for the runtime this
 * runs in. Below it the second thread costs more than it saves: it starts, loads publish's
 * modules and runs them cold, while gzip and the garbage collector want the second core too.
 * Measured with bench/publish-bundle.ts's generated files, two threads against one: under node
 * and deno 0.99 and 0.88 × at 2.5 MB, 0.89 and 0.87 × at 4.8 MB; under bun 1.23 × at 2.5 MB,
 * 1.14 × at 4.8 MB, 1.05 × at 7.2 MB and 0.84 × at 9.8 MiB.
 */
export const PARSE_WORKER_AFTER_CHARACTERS = (process.versions["bun"] === undefined ? 3 : 8) * 1024 * 1024;

