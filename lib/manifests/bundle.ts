/**
 * The bundle: Kubernetes objects collected from files, directories and standard input,
 * parsed the way kubectl reads YAML (lib/manifests/parse.ts), with Helm's hooks sorted out
 * (lib/manifests/helm-hooks.ts), and validated as a whole before anything is sent. Every
 * problem is reported with the file, line and column it comes from.
 */
import { readdirSync, readFileSync, realpathSync, statSync } from "node:fs";
import { basename, isAbsolute, join, relative, resolve, sep } from "node:path";
import { text as streamText } from "node:stream/consumers";
import { setImmediate as nextTurn } from "node:timers/promises";
import { BundleError, errorMessage } from "../errors.ts";
import type { HelmHookOptions } from "./helm-hooks.ts";
import { isRecord, type BundledObject, type KubeObject } from "./kube-object.ts";
import { KUSTOMIZATION_FILE_NAMES, renderKustomization } from "./kustomize.ts";
import { formatRef, refOf } from "./object-ref.ts";
import { hasSecondCore, startParseWorker, type ParseWorker } from "./parse-worker.ts";
import { PIECE_CHARACTERS, readPiece, splitDocuments, type PieceResult, type ReadItem, type TextPiece } from "./pieces.ts";

export { isRecord, kubeObjectProblem, type BundledObject, type KubeObject } from "./kube-object.ts";
export { parseManifests, type ParsedManifests } from "./parse.ts";
export type { ReadItem } from "./pieces.ts";

/** The result of {@link collectBundle}. */
export interface Bundle {
  /** The objects in bundle order. */
  objects: KubeObject[];
  /** The same objects with their sources. */
  items: BundledObject[];
  /** What was read, in order, as shown to the user (files, kustomization directories, `<stdin>`). */
  inputs: string[];
  /** One line per Helm hook applied or left out (lib/manifests/helm-hooks.ts), `source: what and why`. */
  notices: string[];
}

/** What {@link readBundle} tells besides the objects it handed over. */
export interface BundleSummary {
  /** What was read, in order, as shown to the user (files, kustomization directories, `<stdin>`). */
  inputs: string[];
  /** One line per Helm hook applied or left out (lib/manifests/helm-hooks.ts), `source: what and why`. */
  notices: string[];
  /** What did not go as it should but did not change the bundle (the second thread failed, and this one read its share). */
  warnings: string[];
  /** How many objects the bundle holds. */
  objectCount: number;
}

/** Options of {@link readBundle}: those of {@link collectBundle}, and where the objects go. */
export interface ReadBundleOptions extends CollectBundleOptions {
  /**
   * Called with each object of the bundle, as its canonical JSON, in bundle order, as soon as
   * its file is read. When {@link readBundle} then throws, the bundle is refused and what this
   * was given must be dropped.
   */
  onItem: (item: ReadItem) => void;
}

/** Options of {@link collectBundle}. */
export interface CollectBundleOptions {
  /** Directory relative paths are resolved against and shown relative to. Default `process.cwd()`. */
  cwd?: string;
  /** Globs of files and directories to skip while walking directories (see {@link matchesGlob}). Default none. */
  ignore?: readonly string[];
  /** Render directories holding a kustomization file with `kubectl kustomize`. Default `true`. */
  kustomize?: boolean;
  /** The kubectl binary used for kustomize. Default `"kubectl"`. */
  kubectl?: string;
  /** Accept a bundle without objects. Default `false`. */
  allowEmpty?: boolean;
  /** Helm's install and upgrade hooks: applied as ordinary objects, or left out (lib/manifests/helm-hooks.ts). Default `"apply"`. */
  helmHooks?: "apply" | "omit";
  /** Reads the path `-` (all of standard input, as `kubectl apply -f -`). Default: reads `process.stdin`. */
  readStdin?: () => Promise<string>;
  signal?: AbortSignal;
  /**
   * Whether the manifests are parsed on two threads (lib/manifests/parse-worker.ts): `"auto"`
   * (the default) from {@link PARSE_WORKER_AFTER_CHARACTERS} of text when there is a second
   * core; `"always"` and `"never"` for tests and measurements. Either way the objects, their
   * order, sources and problems are the same.
   */
  parseWorker?: "auto" | "always" | "never";
  /** Starts the second thread. Default lib/manifests/parse-worker.ts `startParseWorker`; tests give one that fails. */
  startWorker?: () => ParseWorker;
}

/** The path that names standard input, as for kubectl. */
export const STDIN_PATH = "-";

/** How standard input is named in inputs and sources. */
const STDIN_SHOWN = "<stdin>";

const MANIFEST_EXTENSIONS = [".yaml", ".yml", ".json"];

/**
 * True when `path` (relative, `/`-separated) matches the glob `pattern`. A pattern without
 * `/` matches the last path segment at any depth (`*.secret.yaml`); one with `/` matches
 * the whole relative path (`k8s/dev/**`). `*` and `?` stay within a segment, `**` spans
 * segments. A leading `./` is ignored.
 */
export function matchesGlob(path: string, pattern: string): boolean {
  const normalized = pattern.replace(/^\.\//, "").replace(/\/$/, "");
  const target = normalized.includes("/") ? path : (path.split("/").pop() ?? path);
  let source = "";
  for (let i = 0; i < normalized.length; i++) {
    const char = normalized[i]!;
    if (char === "*" && normalized[i + 1] === "*") {
      const slashAfter = normalized[i + 2] === "/";
      source += slashAfter ? "(?:.*/)?" : ".*";
      i += slashAfter ? 2 : 1;
    } else if (char === "*") source += "[^/]*";
    else if (char === "?") source += "[^/]";
    else source += char.replace(/[.+^${}()|[\]\\]/g, "\\$&");
  }
  return new RegExp(`^${source}$`).test(target);
}

/** What is read, in order; a file with its size, which decides whether parsing is shared before it is read. */
type Input = { kind: "file" | "kustomize" | "stdin"; path: string; shown: string; size?: number };

function errorCode(error: unknown): string | undefined {
  return isRecord(error) && typeof error["code"] === "string" ? error["code"] : undefined;
}

/** True for a file name publish reads in a directory: a manifest extension, and not a kustomization file. */
function isManifestName(name: string): boolean {
  return MANIFEST_EXTENSIONS.some((ext) => name.endsWith(ext)) && !(KUSTOMIZATION_FILE_NAMES as readonly string[]).includes(name);
}

/**
 * Collects, parses and validates the manifests under `paths` (files or directories, in the
 * order given; directories walked recursively in sorted order, hidden entries skipped; `-`
 * is standard input). Lists are replaced by their items (lib/manifests/lists.ts); Helm hooks
 * are applied or left out (lib/manifests/helm-hooks.ts), each with a line in `notices`.
 *
 * @throws {BundleError} listing every problem: unreadable paths, YAML errors, invalid
 * objects and lists, unknown Helm hooks, duplicates (naming both sources), an empty bundle
 * unless `allowEmpty`.
 * @throws {KubectlError} when a kustomization cannot be rendered.
 */
export async function collectBundle(paths: readonly string[], options: CollectBundleOptions = {}): Promise<Bundle> {
  const items: BundledObject[] = [];
  const summary = await readBundle(paths, {
    ...options,
    onItem: ({ json, source }) => items.push({ object: JSON.parse(json) as KubeObject, source }),
  });
  return { objects: items.map((item) => item.object), items, inputs: summary.inputs, notices: summary.notices };
}

/**
 * {@link collectBundle} without holding the objects: each is handed to `onItem` as its file is
 * read, and kept no longer than the caller keeps it (publish turns it into the payload's bytes
 * at once: lib/wire/payload.ts). The same checks, problems and order.
 *
 * @throws {BundleError} as {@link collectBundle}.
 * @throws {KubectlError} when a kustomization cannot be rendered.
 */
export async function readBundle(paths: readonly string[], options: ReadBundleOptions): Promise<BundleSummary> {
  const {
    onItem,
    cwd = process.cwd(),
    ignore = [],
    kustomize = true,
    kubectl = "kubectl",
    allowEmpty = false,
    helmHooks = "apply",
    readStdin = () => streamText(process.stdin),
    signal,
    parseWorker = "auto",
    startWorker = () => startParseWorker(),
  } = options;
  const problems: string[] = [];
  const inputs: Input[] = [];
  const seen = new Set<string>();
  const show = (absolute: string) => {
    const rel = relative(cwd, absolute);
    // Outside the working directory an absolute path reads better than ../../..
    const shown = rel === "" ? "." : rel.startsWith("..") || isAbsolute(rel) ? absolute : rel;
    return shown.split(sep).join("/");
  };
  const ignored = (absolute: string) => {
    const rel = show(absolute);
    return ignore.some((pattern) => matchesGlob(rel, pattern));
  };

  const addResolved = (kind: Input["kind"], absolute: string, real: string, size?: number) => {
    if (seen.has(real)) return;
    seen.add(real);
    inputs.push({ kind, path: absolute, shown: show(absolute), ...(size === undefined ? {} : { size }) });
  };
  const add = (kind: Input["kind"], absolute: string, size?: number) => addResolved(kind, absolute, realpathSync(absolute), size);

  // Synchronous, as the reads below: the entries of a checkout are in the page cache, where a
  // call costs microseconds and a round trip through the worker threads costs more.
  const walk = (dir: string): void => {
    const real = realpathSync(dir);
    if (seen.has(`dir:${real}`)) return; // a symlink loop
    seen.add(`dir:${real}`);
    const names = readdirSync(dir);
    if (kustomize && KUSTOMIZATION_FILE_NAMES.some((name) => names.includes(name))) {
      add("kustomize", dir);
      return;
    }
    const children = names
      .filter((name) => !name.startsWith("."))
      .sort()
      .map((name) => join(dir, name))
      .filter((child) => !ignored(child));
    for (const child of children) {
      try {
        const stats = statSync(child);
        if (stats.isDirectory()) walk(child);
        else if (stats.isFile() && isManifestName(basename(child))) addResolved("file", child, realpathSync(child), stats.size);
      } catch (error) {
        problems.push(`${show(child)}: cannot read: ${errorCode(error) ?? String(error)}`);
      }
    }
  };

  for (const path of paths) {
    if (path === STDIN_PATH) {
      if (!seen.has(STDIN_PATH)) inputs.push({ kind: "stdin", path, shown: STDIN_SHOWN });
      seen.add(STDIN_PATH);
      continue;
    }
    const absolute = resolve(cwd, path);
    let stats;
    try {
      stats = statSync(absolute);
    } catch (error) {
      const code = errorCode(error);
      problems.push(`${path}: ${code === "ENOENT" ? "no such file or directory" : `cannot read: ${code ?? String(error)}`}`);
      continue;
    }
    if (stats.isDirectory()) walk(absolute);
    else if (MANIFEST_EXTENSIONS.some((ext) => absolute.endsWith(ext))) add("file", absolute, stats.size);
    else problems.push(`${path}: not a .yaml, .yml or .json file`);
  }

  // Every input's text first, so that the bundle's size is known before it is parsed and its
  // pieces can be shared out; the reader holds each text only until it is read.
  const texts = await readInputs(inputs, { readStdin, kubectl, ...(signal ? { signal } : {}) });
  const reader = new PieceReader(texts, { installHooks: helmHooks }, shareParsing(texts, parseWorker) ? startWorker : undefined);
  const inputCount = texts.length;
  texts.length = 0;

  // Problems are reported in this order: reading and parsing, then Helm hooks, then duplicates.
  const hookProblems: string[] = [];
  const notices: string[] = [];
  const duplicates = createDuplicateCheck();
  let objectCount = 0;
  let leftOut = 0;
  try {
    for (let index = 0; index < inputCount; index++) {
      signal?.throwIfAborted();
      const read = await reader.results(index);
      if ("problem" in read) {
        problems.push(read.problem);
        continue;
      }
      for (const result of read.results) {
        problems.push(...result.problems);
        // Hooks are sorted out before duplicates are looked for: only what is sent must be unique.
        hookProblems.push(...result.hookProblems);
        notices.push(...result.notices);
        leftOut += result.leftOut;
        for (const item of result.items) {
          duplicates.add(item);
          objectCount++;
          onItem(item);
        }
      }
    }
  } finally {
    reader.close();
  }

  problems.push(...hookProblems, ...duplicates.problems);
  if (problems.length === 0 && objectCount === 0 && !allowEmpty) {
    problems.push(
      paths.length === 0
        ? "no paths given"
        : `no objects found in ${paths.join(", ")} (${leftOut > 0 ? `${leftOut} Helm hook${leftOut === 1 ? "" : "s"} left out; ` : ""}pass --allow-empty-bundle to publish an empty bundle)`,
    );
  }
  if (problems.length > 0) throw new BundleError(problems);
  return { inputs: inputs.map((input) => input.shown), notices, warnings: reader.warnings, objectCount };
}

/**
 * An input to parse: its text; or the file it is in, read when its turn comes, so that a large
 * bundle's files are not all held at once (holding 1,000 files' text while they were parsed cost
 * node 80 MiB more and 5 % longer, measured); or why it cannot be read.
 */
type InputText = { source: string; text: string } | { source: string; file: string; size: number } | { problem: string };

/** Standard input and kustomizations read, files left to {@link loadText}, in input order. */
async function readInputs(
  inputs: readonly Input[],
  options: { readStdin: () => Promise<string>; kubectl: string; signal?: AbortSignal },
): Promise<InputText[]> {
  const { readStdin, kubectl, signal } = options;
  const texts: InputText[] = [];
  for (const input of inputs) {
    signal?.throwIfAborted();
    if (input.kind === "stdin") {
      try {
        texts.push({ source: input.shown, text: await readStdin() });
      } catch (error) {
        texts.push({ problem: `${input.shown}: cannot read: ${errorCode(error) ?? String(error)}` });
      }
    } else if (input.kind === "kustomize") {
      const text = await renderKustomization(input.path, { kubectl, label: input.shown, ...(signal ? { signal } : {}) });
      texts.push({ source: `${input.shown} (kubectl kustomize)`, text });
    } else {
      texts.push({ source: input.shown, file: input.path, size: input.size ?? 0 });
    }
  }
  return texts;
}

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

/** The length of an input's text, or of its file (in bytes: the same for the ASCII manifests mostly are). */
function lengthOf(input: InputText): number {
  return "text" in input ? input.text.length : "file" in input ? input.size : 0;
}

/**
 * Whether a second thread is worth starting for `texts` under `parseWorker` `"auto"` (the texts
 * of the largest inputs are read, in place, to tell): when there is a second core, at least
 * {@link PARSE_WORKER_AFTER_CHARACTERS} of text, and no piece
 * (lib/manifests/pieces.ts) of more than a quarter of it. A piece is read by one thread, and a
 * thread parses more slowly while its code is new to its runtime, so one large document (Argo
 * CD's install manifest is one CustomResourceDefinition of 1.4 MB out of 1.9 MB) takes longer
 * on two threads than on one (measured, bench/publish-bundle.ts).
 */
function shareParsing(texts: InputText[], parseWorker: "auto" | "always" | "never"): boolean {
  if (parseWorker !== "auto") return parseWorker === "always";
  let characters = 0;
  for (const input of texts) characters += lengthOf(input);
  if (characters < PARSE_WORKER_AFTER_CHARACTERS || !hasSecondCore()) return false;
  for (let i = 0; i < texts.length; i++) {
    if (lengthOf(texts[i]!) <= characters / 4) continue;
    // One of at most four inputs that may hold too large a piece: read now, once.
    const input = (texts[i] = loadText(texts[i]!));
    if ("text" in input && splitDocuments(input.text, "").some((piece) => piece.text.length > characters / 4)) return false;
  }
  return true;
}

/**
 * Reads the inputs' texts into {@link PieceResult}s, on this thread and, when it is given a way
 * to start one, on a second (lib/manifests/parse-worker.ts), and gives them back in input order.
 *
 * Each text is cut into pieces of a few documents (lib/manifests/pieces.ts) when there is a
 * second thread. Both threads take the next piece nobody has taken: the second thread a batch
 * at a time, this one a piece at a time, whenever the piece due next is still with the other
 * thread. So neither waits for the other while there are pieces left, however fast each is,
 * and the objects go on to the payload in order, as soon as they can.
 *
 * A file cut into pieces whose pieces have any problem is read again whole, on this thread:
 * its problems are then those of the file (a list's document number counts from the file's
 * start). When the second thread fails, this thread reads what it had not answered, and
 * {@link warnings} says so.
 */
class PieceReader {
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

  constructor(
    texts: readonly InputText[],
    hookOptions: HelmHookOptions,
    startWorker: (() => ParseWorker) | undefined,
  ) {
    this.hookOptions = hookOptions;
    for (let input of texts) {
      // A file too small to be cut waits to be read until its slot is taken.
      if ("file" in input && (startWorker === undefined || input.size < 2 * PIECE_CHARACTERS)) {
        this.groups.push({ first: this.slots.length, count: 1 });
        this.slots.push({ piece: input });
        continue;
      }
      input = loadText(input);
      if ("problem" in input) {
        this.groups.push(input);
        continue;
      }
      const whole = { text: input.text, source: input.source, firstLine: 1 };
      const pieces = startWorker === undefined ? [whole] : splitDocuments(input.text, input.source);
      this.groups.push({ first: this.slots.length, count: pieces.length, ...(pieces.length > 1 ? { whole } : {}) });
      for (const piece of pieces) this.slots.push({ piece });
    }
    this.worker = startWorker?.();
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

/**
 * One problem per object whose identity (lib/manifests/object-ref.ts) was already seen, naming
 * both sources. Namespaces are compared as written: the scope of a kind is not known without
 * the API server.
 */
export function duplicateProblems(items: readonly BundledObject[]): string[] {
  const check = createDuplicateCheck();
  for (const { object, source } of items) check.add({ ref: formatRef(refOf(object)), source });
  return check.problems;
}

/** {@link duplicateProblems} one item at a time: only identities and sources are kept. */
function createDuplicateCheck(): { add(item: { ref: string; source: string }): void; problems: string[] } {
  const first = new Map<string, string>();
  const problems: string[] = [];
  return {
    add({ ref: key, source }) {
      const earlier = first.get(key);
      if (earlier === undefined) first.set(key, source);
      else problems.push(`${source}: duplicate object ${key} (first defined at ${earlier})`);
    },
    problems,
  };
}
