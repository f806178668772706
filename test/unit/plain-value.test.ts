/**
 * lib/manifests/plain-value.ts: the one-walk reading of plain documents gives what the yaml
 * package's toJS gives, with every map's keys in sorted order, and leaves every other document
 * to the yaml package.
 */
import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import fc from "fast-check";
import { parseAllDocuments, stringify, type Document } from "yaml";
import { YAML_OPTIONS } from "../../lib/manifests/parse.ts";
import { plainValue } from "../../lib/manifests/plain-value.ts";
import { canonicalJson } from "../../lib/wire/canonical-json.ts";

const RUNS = Number(process.env.KPCD_FUZZ_RUNS ?? 2000);

function documents(text: string): Document.Parsed[] {
  const parsed = parseAllDocuments(text, YAML_OPTIONS);
  return "empty" in parsed ? [] : parsed.filter((document) => document.errors.length === 0);
}

/** Every map of `value`, its keys in sorted order (as Object.keys gives them). */
function keysSortedEverywhere(value: unknown): boolean {
  if (Array.isArray(value)) return value.every(keysSortedEverywhere);
  if (typeof value !== "object" || value === null) return true;
  const keys = Object.keys(value);
  const sorted = [...keys].sort();
  const indexKeys = keys.some((key) => /^(?:0|[1-9][0-9]*)$/.test(key));
  return (indexKeys || keys.every((key, i) => key === sorted[i])) && Object.values(value).every(keysSortedEverywhere);
}

/** The document read both ways: plainValue, when it reads it, equals toJS and is canonical as it says. */
function checkAgainstToJS(document: Document.Parsed): "plain" | "left to yaml" {
  const plain = plainValue(document);
  if (plain === undefined) return "left to yaml";
  const expected: unknown = document.toJS({ maxAliasCount: 1000 });
  expect(plain.value).toEqual(expected);
  expect(canonicalJson(plain.value)).toBe(canonicalJson(expected));
  expect(keysSortedEverywhere(plain.value)).toBe(true);
  if (plain.canonical) expect(JSON.stringify(plain.value)).toBe(canonicalJson(expected));
  return "plain";
}

function manifestFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return manifestFiles(path);
    return /\.(ya?ml|json)$/.test(name) ? [path] : [];
  });
}

describe("plainValue()", () => {
  test("plainValue() equals toJS, keys sorted, for every document of the test fixtures and the deploy manifests", () => {
    let plain = 0;
    for (const file of [...manifestFiles(join(import.meta.dir, "..", "fixtures")), ...manifestFiles(join(import.meta.dir, "..", "..", "deploy"))]) {
      for (const document of documents(readFileSync(file, "utf8"))) if (checkAgainstToJS(document) === "plain") plain++;
    }
    // The fixtures are mostly plain manifests: the walk must be taken for them, not only be correct.
    expect(plain).toBeGreaterThan(50);
  });

  test("plainValue() reads YAML 1.1 scalars as toJS does: octal, yes/no, null forms, floats, quoted and block strings, unicode keys", () => {
    const text = [
      "mode: 0644",
      "on: yes",
      "off: no",
      "flowPair: [a: 1]",
      "empty:",
      "tilde: ~",
      "nulls: [null, Null, ~, '']",
      "float: 1.5e3",
      "inf: .inf",
      "nan: .NaN",
      "hex: 0x1F",
      "sexagesimal: 1:30",
      "timestamp: 2001-12-14t21:59:43.10-05:00",
      'quoted: "a\\tb\\u00e9"',
      "single: 'it''s'",
      "literal: |\n  line one\n  line two",
      "folded: >-\n  folded\n  text",
      "é: accent",
      "'10': index key",
      "9: number key",
      "__proto__: {polluted: true}",
      "constructor: x",
      "nested: {b: [1, {d: 2, c: 3}], a: {}}",
    ].join("\n");
    const [document] = documents(text);
    expect(checkAgainstToJS(document!)).toBe("plain");
    const plain = plainValue(document!)!;
    // "10" and "9" are array indices, which JavaScript orders first: not canonical as built.
    expect(plain.canonical).toBe(false);
    expect(({} as Record<string, unknown>)["polluted"]).toBeUndefined();
    expect(Object.getPrototypeOf(plain.value)).toBe(Object.prototype);
  });

  test("plainValue() leaves to the yaml package aliases, merge keys, tags on collections, !!binary, null and complex keys, and repeated keys", () => {
    const cases = [
      "a: &x {b: 1}\nc: *x\n",
      "base: &b {x: 1}\nd:\n  <<: *b\n  y: 2\n",
      "s: !!set {a, b}\n",
      "o: !!omap [a: 1]\n",
      "m: !!map {a: 1}\n",
      "q: !!seq [1]\n",
      "bin: !!binary aGVsbG8=\n",
      "~: null key\n",
      "? [a, b]\n: complex key\n",
      "k: 1\nk: 2\n",
      "n: {1: a, '1': b}\n",
    ];
    for (const text of cases) {
      const [document] = documents(text);
      expect(document).toBeDefined();
      expect({ text, value: plainValue(document!) }).toEqual({ text, value: undefined });
    }
  });

  test("plainValue() equals toJS for any JSON value written as YAML, in block and flow style, with hostile keys", () => {
    const key = fc.oneof(fc.string({ maxLength: 8 }), fc.constantFrom("__proto__", "constructor", "toString", "10", "9", "-1", "01", "<<x", "é", "a b"));
    const value = fc.letrec((tie) => ({
      node: fc.oneof({ depthSize: "small" }, fc.string({ maxLength: 12 }), fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true }), fc.boolean(), fc.constant(null), tie("array"), tie("object")),
      array: fc.array(tie("node"), { maxLength: 4 }),
      object: fc.dictionary(key, tie("node"), { maxKeys: 5 }),
    })).node;
    fc.assert(
      fc.property(value, fc.boolean(), (json, flow) => {
        const text = stringify(json, flow ? { collectionStyle: "flow" } : {});
        for (const document of documents(text)) checkAgainstToJS(document);
      }),
      { numRuns: RUNS },
    );
  });
});
