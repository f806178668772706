import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { parseAllDocuments, parseDocument } from "yaml";
import { duplicateKeyOffsets } from "../../lib/manifests/duplicate-keys.ts";

/** Property runs, as in fuzz-bundle.test.ts (KPCD_FUZZ_RUNS), a quarter of them: each parses twice. */
const RUNS = Math.max(1, Math.floor(Number(process.env.KPCD_FUZZ_RUNS ?? 2000) / 4));

function offsets(text: string): number[] {
  return duplicateKeyOffsets(parseDocument(text, { version: "1.1", uniqueKeys: false }));
}

describe("duplicateKeyOffsets()", () => {
  test("duplicateKeyOffsets() finds nothing in a document without repeated keys", () => {
    expect(offsets("a: 1\nb: {a: 1, b: [a, {a: 2}]}\n")).toEqual([]);
  });

  test("duplicateKeyOffsets() returns the offset of every repeat, in document order, in small and large maps", () => {
    const large = Array.from({ length: 20 }, (_, i) => `  k${i}: ${i}`).join("\n");
    const text = `a: 1\nbig:\n${large}\n  k3: again\nseq:\n  - {x: 1, x: 2}\na: 2\n`;
    expect(offsets(text).map((offset) => text.slice(offset, offset + 2))).toEqual(["a:", "k3", "x:"]);
    expect(offsets(text)).toEqual([text.lastIndexOf("a: 2"), text.indexOf("k3: again"), text.indexOf("x: 2")]);
  });

  test("duplicateKeyOffsets() compares keys as the JSON keys they become: 1 and '1' collide, true and 'true' too", () => {
    expect(offsets("1: a\n'1': b\ntrue: c\n'true': d\n")).toEqual([5, 20]);
  });

  test("duplicateKeyOffsets() looks inside pairs of flow sequences and inside complex keys", () => {
    expect(offsets("s: [a: 1, b: {c: 1, c: 2}]\n")).toEqual([20]);
    expect(offsets("? {k: 1, k: 2}\n: v\n")).toEqual([9]);
  });

  test("duplicateKeyOffsets() does not compare merge keys, nor follow aliases to what they name", () => {
    expect(offsets("base: &b {x: 1}\nm:\n  <<: *b\n  y: 2\nn: *b\n")).toEqual([]);
  });

  test("duplicateKeyOffsets() agrees with the yaml package's own (quadratic) check on maps with string keys", () => {
    const key = fc.constantFrom("a", "b", "c", "d", "e", "f", "g", "h", "i", "j");
    const value = fc.letrec((tie) => ({
      v: fc.oneof(
        { depthSize: "small" },
        fc.integer(),
        fc.array(fc.tuple(key, tie("v")), { maxLength: 14 }),
        fc.array(tie("v"), { maxLength: 4 }),
      ),
    })).v;
    // Pairs are written as maps so that keys may repeat; stringify() would merge them.
    const write = (v: unknown, indent: string): string => {
      if (!Array.isArray(v)) return ` ${JSON.stringify(v)}`;
      if (v.length === 0) return " []";
      const isPairs = v.every((e) => Array.isArray(e) && e.length === 2 && typeof e[0] === "string");
      return v
        .map((e) => (isPairs ? `\n${indent}${(e as [string, unknown])[0]}:${write((e as [string, unknown])[1], `${indent}  `)}` : `\n${indent}-${write(e, `${indent}  `)}`))
        .join("");
    };
    fc.assert(
      fc.property(fc.array(fc.tuple(key, value), { minLength: 1, maxLength: 14 }), (pairs) => {
        const text = `${write(pairs, "").slice(1)}\n`;
        const [strict] = parseAllDocuments(text, { version: "1.1", uniqueKeys: true, prettyErrors: false });
        const expected = strict!.errors.filter((error) => error.code === "DUPLICATE_KEY").map((error) => error.pos[0]);
        expect(offsets(text).sort((x, y) => x - y)).toEqual(expected.sort((x, y) => x - y));
      }),
      { numRuns: RUNS },
    );
  }, 60_000);
});

describe("duplicateKeyOffsets() and merge keys", () => {
  test("duplicateKeyOffsets() takes two merge keys in one map for merges, not for a repeated key", () => {
    expect(duplicateKeyOffsets(parseDocument("<<: {c: 2}\n<<: {d: 3}\na: 1\n", { version: "1.1", uniqueKeys: false }))).toEqual([]);
  });
});
