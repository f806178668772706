/**
 * Pieces of manifest text: a whole input, or a run of its documents, each read into bundle
 * items on its own, so that a large bundle's pieces can be read on two threads
 * (lib/manifests/parse-worker.ts) and handed on in bundle order (lib/manifests/bundle.ts).
 *
 * A YAML stream can be cut at a line that starts with `---`: such a line ends whatever scalar
 * or collection is open and starts a document (YAML 1.2, 9.1.4 "c-forbidden"), and a document
 * cannot refer to another's anchors. Two things do reach across documents, and a text holding
 * either is never cut: directives (a line starting with `%`), which change how the following
 * document is read, and a lone carriage return, which some readers count as a line break and
 * would shift every position after it. Pieces are only ever read together (a file's problems
 * are those of the whole file: see lib/manifests/bundle.ts), and their positions name the
 * file's lines.
 */
import { canonicalJson } from "../wire/canonical-json.ts";
import { applyHelmHookRules, type HelmHookOptions } from "./helm-hooks.ts";
import { formatRef, refOf } from "./object-ref.ts";
import { parseManifests } from "./parse.ts";

/** Manifest text to read: an input's text, or a run of its documents. */
export interface TextPiece {
  text: string;
  /** How the input is named in sources and problems (a file path). */
  source: string;
  /** The line of the input the text starts at (from 1). */
  firstLine: number;
}

/**
 * An object of the bundle as it is sent: its canonical JSON (lib/wire/canonical-json.ts),
 * made where it was parsed, and what the bundle's own checks and summary need of it.
 */
export interface ReadItem {
  /** The object's canonical JSON: its bytes in the payload. */
  json: string;
  /** Where it came from, `file:line:column`. */
  source: string;
  kind: string;
  namespace: string | undefined;
  /** Its identity, as lib/manifests/object-ref.ts `formatRef` writes it (duplicates are found by it). */
  ref: string;
}

/** What a piece becomes: {@link readPiece}. */
export interface PieceResult {
  /** The objects to bundle (Helm's hooks sorted out), in order. */
  items: ReadItem[];
  /** YAML and object problems, `file:line:column: what`. */
  problems: string[];
  /** Helm hook annotations that cannot be read (lib/manifests/helm-hooks.ts). */
  hookProblems: string[];
  /** One line per Helm hook applied or left out. */
  notices: string[];
  /** How many Helm hooks were left out. */
  leftOut: number;
}

/**
 * Reads `piece` as the bundle does: parsed as kubectl reads YAML (lib/manifests/parse.ts), Helm's
 * hooks applied or left out (lib/manifests/helm-hooks.ts), each object kept as its canonical JSON.
 * Never throws.
 */
export function readPiece(piece: TextPiece, hookOptions: HelmHookOptions): PieceResult {
  const parsed = parseManifests(piece.text, piece.source, piece.firstLine);
  const hooks = applyHelmHookRules(parsed.items, hookOptions);
  const items = hooks.items.map(({ object, source, keysSorted }): ReadItem => ({
    // An object built with its keys in order is written by the runtime's own JSON.stringify.
    json: keysSorted === true ? JSON.stringify(object) : canonicalJson(object),
    source,
    kind: object.kind,
    namespace: object.metadata.namespace,
    ref: formatRef(refOf(object)),
  }));
  return { items, problems: parsed.problems, hookProblems: hooks.problems, notices: hooks.notices, leftOut: hooks.leftOut };
}

/**
 * About how many characters of text a piece holds: a few tens of milliseconds of parsing, long
 * next to the cost of handing a piece to another thread and back.
 */
export const PIECE_CHARACTERS = 128 * 1024;

/** A line starting a document: `---`, then a space, a tab or the end of the line. */
const DOCUMENT_START = /\n---(?=[ \t\r\n]|$)/g;

/**
 * `text` cut before document-start lines into pieces of at least `pieceCharacters` (the last
 * may be shorter), in order; joined, their texts are `text`. One piece, the whole text, when
 * it is shorter than two pieces, has no document-start line to cut at, or holds a directive or
 * a lone carriage return (see the module's comment).
 */
export function splitDocuments(text: string, source: string, pieceCharacters = PIECE_CHARACTERS): TextPiece[] {
  const whole = [{ text, source, firstLine: 1 }];
  if (text.length < 2 * pieceCharacters || /^%/m.test(text) || /\r(?!\n)/.test(text)) return whole;
  const pieces: TextPiece[] = [];
  let start = 0;
  let firstLine = 1;
  while (text.length - start >= 2 * pieceCharacters) {
    DOCUMENT_START.lastIndex = start + pieceCharacters - 1;
    const match = DOCUMENT_START.exec(text);
    if (match === null) break;
    const end = match.index + 1;
    pieces.push({ text: text.slice(start, end), source, firstLine });
    firstLine += countLines(text, start, end);
    start = end;
  }
  pieces.push({ text: text.slice(start), source, firstLine });
  return pieces;
}

/** The number of line feeds in `text` from `start` to `end`. */
function countLines(text: string, start: number, end: number): number {
  let count = 0;
  for (let at = text.indexOf("\n", start); at !== -1 && at < end; at = text.indexOf("\n", at + 1)) count++;
  return count;
}
