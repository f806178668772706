/**
 * Canonical JSON: the one form of the payload's bytes, so that the same objects always give
 * the same digest (docs/protocol.md, "The payload"). Its own module because the publisher's
 * payload writer (lib/wire/payload.ts) and the listener's drift correction both build it.
 */
import { createHash } from "node:crypto";

/** Lowercase hex SHA-256 (of UTF-8 text, for a string). */
export function sha256Hex(bytes: Uint8Array | string): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/**
 * JSON with object keys sorted by UTF-16 code units and no whitespace (RFC 8785 for the
 * values Kubernetes objects hold), so the same objects always give the same bytes.
 *
 * Its bytes are what digests of sent messages and kept bundles cover, so they never change:
 * test/unit/message.test.ts checks them against the first version, {@link canonicalJsonOf}.
 * Plain JSON values (what a YAML or JSON parser returns) take a faster way with the same
 * bytes: objects whose keys are out of order are copied with their keys in order, and the
 * runtime's own JSON.stringify writes the result, which costs a third of building the text
 * value by value.
 */
export function canonicalJson(value: unknown): string {
  let ordered: unknown;
  try {
    ordered = keysInOrder(value);
  } catch (error) {
    if (error !== NOT_PLAIN) throw error;
    return canonicalJsonOf(value);
  }
  return JSON.stringify(ordered);
}

/**
 * The definition of {@link canonicalJson}, for any value: what is not plain JSON keeps the
 * form it has had from the first version (a function or symbol in an array or as a value is
 * `null`, an array's hole is left empty, a Date or boxed primitive is written by its own keys,
 * a bigint throws).
 */
function canonicalJsonOf(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map((item) => canonicalJsonOf(item ?? null)).join(",")}]`;
  if (typeof value === "object" && value !== null) {
    const record = value as Record<string, unknown>;
    const fields = Object.keys(record)
      .sort()
      .filter((key) => record[key] !== undefined)
      .map((key) => `${JSON.stringify(key)}:${canonicalJsonOf(record[key])}`);
    return `{${fields.join(",")}}`;
  }
  return JSON.stringify(value) ?? "null";
}

/** Thrown by {@link keysInOrder} for a value that JSON.stringify would not write as canonicalJsonOf does. */
const NOT_PLAIN = Symbol("not plain JSON");

/** Keys the runtime orders before all others, whatever the insertion order: array indices. */
const INDEX_KEY = /^(?:0|[1-9][0-9]*)$/;

/**
 * `value` with every object's keys in sorted order: the same value where they already are,
 * else a copy. Throws {@link NOT_PLAIN} at anything JSON.stringify writes differently from
 * {@link canonicalJsonOf}: an object that is not a plain object or array (its toJSON, a boxed
 * primitive, a Date), an array hole, undefined or a function or symbol in an array, and an
 * object whose keys no insertion order sorts (an array index such as "10" always comes before
 * "9", and before "-a").
 */
function keysInOrder(value: unknown): unknown {
  if (typeof value !== "object" || value === null) {
    // undefined, functions, symbols and bigints are reached only through arrays (object
    // values that are undefined are skipped by both writers), where canonicalJsonOf decides.
    if (typeof value === "string" || typeof value === "number" || typeof value === "boolean" || value === null) return value;
    throw NOT_PLAIN;
  }
  const prototype: unknown = Object.getPrototypeOf(value);
  if (Array.isArray(value)) {
    if (prototype !== Array.prototype) throw NOT_PLAIN;
    let copy: unknown[] | undefined;
    for (let i = 0; i < value.length; i++) {
      const item: unknown = value[i];
      const ordered = keysInOrder(item);
      if (ordered !== item) (copy ??= value.slice(0, i))[i] = ordered;
      else if (copy !== undefined) copy[i] = item;
    }
    return copy ?? value;
  }
  if (prototype !== Object.prototype && prototype !== null) throw NOT_PLAIN;
  const record = value as Record<string, unknown>;
  const keys = Object.keys(record);
  let sorted = true;
  for (let i = 1; i < keys.length; i++) {
    if (keys[i - 1]! > keys[i]!) {
      sorted = false;
      break;
    }
  }
  if (!sorted) keys.sort();
  // Values in key order; a copy is made when the keys were out of order or a value changed.
  const values: unknown[] = new Array(keys.length);
  let changed = !sorted;
  for (let i = 0; i < keys.length; i++) {
    const item = record[keys[i]!];
    if (typeof item === "function" || typeof item === "symbol" || typeof item === "bigint") throw NOT_PLAIN;
    const ordered = item === undefined ? undefined : keysInOrder(item);
    values[i] = ordered;
    if (ordered !== item) changed = true;
  }
  if (!changed) return value;
  // A plain object (one without a prototype is slower to build and to write out), so a
  // key "__proto__" is defined rather than assigned, which would set the prototype.
  const copy: Record<string, unknown> = {};
  let indexKeys = false;
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i]!;
    if (key === "__proto__") Object.defineProperty(copy, key, { value: values[i], enumerable: true, writable: true, configurable: true });
    else copy[key] = values[i];
    if (!indexKeys && INDEX_KEY.test(key)) indexKeys = true;
  }
  if (indexKeys) {
    const written = Object.keys(copy);
    for (let i = 0; i < keys.length; i++) if (written[i] !== keys[i]) throw NOT_PLAIN;
  }
  return copy;
}
