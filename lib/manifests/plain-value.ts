/**
 * The value of a parsed YAML document built in one walk, for the documents almost every
 * manifest is: maps, sequences and scalars, nothing else. It is what `document.toJS()` gives,
 * with two differences that cost nothing here and save work later: every map's keys are
 * inserted in sorted order, so the payload's canonical JSON (lib/wire/canonical-json.ts) is
 * what JSON.stringify writes, and repeated keys are noticed on the way, which otherwise takes
 * a walk of its own (lib/manifests/duplicate-keys.ts).
 *
 * Anything else gives `undefined`, and the caller takes the yaml package's own way, whose
 * answer is the definition: aliases, merge keys, tags on collections, keys that are not plain
 * scalars (or are null: toJS writes them as "", the duplicate check as "null"), scalars whose
 * value is not a string, number, boolean or null, and a repeated key (its problem is reported
 * by the duplicate check, with its position).
 */
import { isMap, isScalar, isSeq, type Document } from "yaml";

/** The result of {@link plainValue}. */
export interface PlainValue {
  value: unknown;
  /** True when JSON.stringify of `value` is its canonical JSON: no map has a key JavaScript puts first whatever the order (an array index). */
  canonical: boolean;
}

/** Thrown inside the walk at anything {@link plainValue} leaves to the yaml package. */
const NOT_PLAIN = Symbol("not a plain document");

/** Keys that JavaScript objects keep before all others: array indices. */
const INDEX_KEY = /^(?:0|[1-9][0-9]*)$/;

/** See the module's comment. */
export function plainValue(document: Document.Parsed): PlainValue | undefined {
  const state = { canonical: true };
  try {
    return { value: build(document.contents, state), canonical: state.canonical };
  } catch {
    // NOT_PLAIN, or a RangeError of a document nested deeper than this recursion goes: the
    // yaml package's way then reports it as a problem (lib/manifests/parse.ts).
    return undefined;
  }
}

function build(node: unknown, state: { canonical: boolean }): unknown {
  if (isScalar(node)) {
    const value = node.value;
    if (typeof value === "string" || typeof value === "number" || typeof value === "boolean" || value === null) return value;
    throw NOT_PLAIN;
  }
  if (isMap(node)) {
    if (node.tag !== undefined) throw NOT_PLAIN;
    const pairs = node.items;
    const keys: string[] = new Array(pairs.length);
    let inOrder = true;
    for (let i = 0; i < pairs.length; i++) {
      keys[i] = keyOf(pairs[i]!.key);
      if (i > 0 && !(keys[i - 1]! < keys[i]!)) inOrder = false;
    }
    const object: Record<string, unknown> = {};
    if (inOrder) {
      for (let i = 0; i < pairs.length; i++) set(object, keys[i]!, build(pairs[i]!.value, state), state);
      return object;
    }
    const sorted = keys.slice().sort();
    for (let i = 1; i < sorted.length; i++) if (sorted[i - 1] === sorted[i]) throw NOT_PLAIN;
    if (pairs.length <= SMALL_MAP) {
      // A search is cheaper than a Map for the few keys most maps have.
      for (const key of sorted) set(object, key, build(pairs[keys.indexOf(key)]!.value, state), state);
    } else {
      const nodes = new Map<string, unknown>();
      for (let i = 0; i < pairs.length; i++) nodes.set(keys[i]!, pairs[i]!.value);
      for (const key of sorted) set(object, key, build(nodes.get(key), state), state);
    }
    return object;
  }
  if (isSeq(node)) {
    if (node.tag !== undefined) throw NOT_PLAIN;
    const items = node.items;
    const array: unknown[] = new Array(items.length);
    for (let i = 0; i < items.length; i++) array[i] = build(items[i], state);
    return array;
  }
  // A document without contents is null, as for toJS; anything else (an alias, a pair
  // directly in a sequence) is the yaml package's to read.
  if (node === null) return null;
  throw NOT_PLAIN;
}

/** Up to how many keys a map's values are found by searching its keys. */
const SMALL_MAP = 8;

/** Adds `key` to `object` as toJS does: defined, not assigned, so that "__proto__" is a key and not the prototype. */
function set(object: Record<string, unknown>, key: string, value: unknown, state: { canonical: boolean }): void {
  if (key === "__proto__") Object.defineProperty(object, key, { value, writable: true, enumerable: true, configurable: true });
  else object[key] = value;
  // The first character is looked at first: a regular expression per key costs more.
  if (state.canonical && isDigit(key.charCodeAt(0)) && INDEX_KEY.test(key)) state.canonical = false;
}

/** True for the character code of 0 to 9. */
function isDigit(code: number): boolean {
  return code >= 48 && code <= 57;
}

/** The key a map's pair has in the object, as toJS writes it. */
function keyOf(key: unknown): string {
  if (!isScalar(key)) throw NOT_PLAIN;
  const value = key.value;
  if (typeof value === "string") {
    // A plain `<<` is YAML 1.1's merge key.
    if (value === "<<") throw NOT_PLAIN;
    return value;
  }
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  throw NOT_PLAIN;
}
