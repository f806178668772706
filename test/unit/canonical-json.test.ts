import { describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseManifests } from "../../lib/manifests/parse.ts";
import { canonicalJson } from "../../lib/wire/message.ts";

const root = join(import.meta.dir, "..", "..");

/**
 * canonicalJson as it was first written. Digests of sent messages and of kept bundles cover
 * its bytes, so every later version must give exactly these, for every value.
 */
function reference(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map((item) => reference(item ?? null)).join(",")}]`;
  if (typeof value === "object" && value !== null) {
    const record = value as Record<string, unknown>;
    const fields = Object.keys(record)
      .sort()
      .filter((key) => record[key] !== undefined)
      .map((key) => `${JSON.stringify(key)}:${reference(record[key])}`);
    return `{${fields.join(",")}}`;
  }
  return JSON.stringify(value) ?? "null";
}

/** mulberry32: the same values on every run. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// Escapes, control characters, line separators, non-ASCII, surrogate pairs and lone surrogates.
const CHARACTERS = ["a", "Z", "0", "9", "-", "_", ".", " ", '"', "\\", "/", "\n", "\t", "\u0000", "\u001f", "\u007f", "\u2028", "é", "ß", "日", "😀", "\ud800", "\udfff", "\ufeff"];
// Array indices ("0", "10", "4294967294") come first in an object whatever their insertion order; "007", "-1" and "4294967295" are not indices.
const KEYS = ["", "a", "b", "B", "apiVersion", "kind", "metadata", "__proto__", "toJSON", "constructor", "0", "1", "9", "10", "007", "-1", "1.5", "4294967294", "4294967295", "é", "😀", "\ud800"];
const NUMBERS = [0, -0, 1, -1, 1.5, 1e21, 1e-7, -1e21, 123456789012345680000, 2 ** 53, -(2 ** 53), Number.MAX_VALUE, Number.MIN_VALUE, 5e-324, 0.1 + 0.2, NaN, Infinity, -Infinity];

function plainValue(next: () => number, depth: number): unknown {
  const pick = <T,>(list: readonly T[]): T => list[Math.floor(next() * list.length)]!;
  const roll = next();
  if (depth <= 0 || roll < 0.35) {
    const kind = Math.floor(next() * 5);
    if (kind === 0) return Array.from({ length: Math.floor(next() * 6) }, () => pick(CHARACTERS)).join("");
    if (kind === 1) return pick(NUMBERS);
    if (kind === 2) return next() < 0.5;
    if (kind === 3) return null;
    return next() * 1e6 - 5e5;
  }
  if (roll < 0.6) return Array.from({ length: Math.floor(next() * 5) }, () => plainValue(next, depth - 1));
  const object: Record<string, unknown> = {};
  const size = Math.floor(next() * 7);
  for (let i = 0; i < size; i++) {
    const key = next() < 0.6 ? pick(KEYS) : Array.from({ length: 1 + Math.floor(next() * 4) }, () => pick(CHARACTERS)).join("");
    // Undefined values are left out by both; defined so that "__proto__" is a key, not the prototype.
    const item = next() < 0.1 ? undefined : plainValue(next, depth - 1);
    Object.defineProperty(object, key, { value: item, enumerable: true, writable: true, configurable: true });
  }
  return object;
}

function deepFreeze<T>(value: T): T {
  if (typeof value === "object" && value !== null) {
    for (const item of Object.values(value)) deepFreeze(item);
    Object.freeze(value);
  }
  return value;
}

describe("canonicalJson() gives the bytes of its first version", () => {
  test("on 5,000 random JSON values: escapes, unicode, lone surrogates, 1e21, -0, NaN, index-like and __proto__ keys, nesting, empty arrays and objects", () => {
    const next = random(20_241_201);
    for (let i = 0; i < 5_000; i++) {
      // Frozen: the input is read, never changed.
      const value = deepFreeze(plainValue(next, 1 + (i % 6)));
      const expected = reference(value);
      expect(canonicalJson(value)).toBe(expected);
    }
  });

  test("on values that are not plain JSON, as the first version wrote them", () => {
    class Point {
      x = 1;
      y = 2;
    }
    // eslint-disable-next-line no-sparse-arrays
    const holes = [1, , 3];
    const cases: unknown[] = [
      holes,
      [undefined, null, () => 1, Symbol("s")],
      { a: () => 1, b: Symbol("s"), c: undefined },
      { when: new Date(0) },
      [new Date(0), new String("ab"), new Number(5), new Boolean(false)],
      { toJSON: () => "replaced", a: 1 },
      new Map([["a", 1]]),
      new Set([1]),
      new Uint8Array([1, 2]),
      new Point(),
      Object.assign(Object.create(null) as object, { b: 1, a: [2, { d: 3, c: 4 }] }),
      { z: { y: [1, { b: undefined, a: holes }] } },
      undefined,
      () => 1,
      Symbol("top"),
      "top-level string",
      -0,
      1e21,
      NaN,
      { "10": "x", "9": "y", "-a": "z" },
      { "10": { b: 1, a: 2 }, "9": [], "09": {} },
    ];
    for (const value of cases) expect(canonicalJson(value)).toBe(reference(value));
  });

  test("on bigints it throws, as the first version did", () => {
    expect(() => reference([1n])).toThrow(TypeError);
    expect(() => canonicalJson([1n])).toThrow(TypeError);
    expect(() => canonicalJson({ a: { b: 1n } })).toThrow(TypeError);
  });

  test("on the repository's manifests and JSON files", () => {
    const tracked = spawnSync("git", ["ls-files", "*.yaml", "*.yml", "*.json"], { cwd: root, encoding: "utf8" });
    const files = tracked.stdout.split("\n").filter((file) => file !== "");
    const values: unknown[] = [];
    for (const file of files) {
      const text = readFileSync(join(root, file), "utf8");
      if (file.endsWith(".json")) {
        try {
          values.push(JSON.parse(text));
        } catch {
          // Not JSON (a fixture of a broken file): nothing to compare.
        }
      } else {
        values.push(parseManifests(text, file).items.map((item) => item.object));
      }
    }
    expect(values.length).toBeGreaterThan(20);
    for (const value of values) expect(canonicalJson(value)).toBe(reference(value));
    // All of them as one bundle, as publish encodes them.
    expect(canonicalJson(values)).toBe(reference(values));
  });

  test("on a large bundle of ConfigMaps whose keys are out of order", () => {
    const next = random(7);
    const objects = Array.from({ length: 200 }, (_, i) => {
      const data: Record<string, string> = {};
      for (let j = 0; j < 100; j++) data[`${Math.floor(next() * 1e6).toString(36)}_${j}`] = `v${Math.floor(next() * 1e9)}`;
      return { kind: "ConfigMap", apiVersion: "v1", metadata: { namespace: "ns", name: `cm-${i}`, labels: { b: "1", a: "2" } }, data };
    });
    expect(canonicalJson(objects)).toBe(reference(objects));
  });
});
