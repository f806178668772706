/**
 * Hostile input for the bundle parser (publish reads repositories with it, and the listener
 * reads legacy messages with it): parseManifests() never throws, never hangs, and reports
 * what it cannot read as problems with positions. Property runs per property: KPCD_FUZZ_RUNS
 * (default 2000), printed below.
 */
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { stringify } from "yaml";
import { parseManifests } from "../../lib/manifests/bundle.ts";

const RUNS = Number(process.env.KPCD_FUZZ_RUNS ?? 2000);
if (!Number.isInteger(RUNS) || RUNS < 1) throw new Error(`KPCD_FUZZ_RUNS must be a positive integer: current value is ${process.env.KPCD_FUZZ_RUNS}`);
process.stderr.write(`fuzz-bundle: ${RUNS} runs per property (KPCD_FUZZ_RUNS)\n`);

/** parseManifests() must return, with every item a valid object or a problem line. */
function parse(text: string) {
  const result = parseManifests(text, "fuzz.yaml");
  for (const problem of result.problems) expect(problem).toStartWith("fuzz.yaml");
  for (const item of result.items) {
    expect(typeof item.object.apiVersion).toBe("string");
    expect(typeof item.object.kind).toBe("string");
    expect(typeof item.object.metadata.name).toBe("string");
  }
  return result;
}

const yamlish = fc.oneof(
  fc.string({ unit: "binary", maxLength: 500 }),
  fc.array(fc.constantFrom("---\n", "- ", ": ", "&a ", "*a ", "<<: *a\n", "!!binary ", "!!js/function ", "? ", "{", "}", "[", "]", "'", '"', "\n", "  ", "#", "|\n", ">-\n", "apiVersion: v1\n", "kind: List\n", "items:\n", "metadata:\n  name: x\n", "__proto__: {polluted: true}\n", "constructor: x\n", "%YAML 1.1\n", "...\n"), { maxLength: 40 }).map((parts) => parts.join("")),
);

describe("parseManifests() with hostile input", () => {
  test("parseManifests() of any text returns items and problems and never throws", () => {
    fc.assert(
      fc.property(yamlish, (text) => {
        parse(text);
      }),
      { numRuns: RUNS },
    );
  });

  test("parseManifests() reads back any JSON value written as YAML, with hostile keys, and never pollutes Object.prototype", () => {
    const keys = fc.oneof(fc.constantFrom("__proto__", "constructor", "prototype", "apiVersion", "kind", "metadata", "name", "items", "<<"), fc.string({ maxLength: 5 }));
    const value = fc.letrec((tie) => ({
      v: fc.oneof({ depthSize: "small" }, fc.jsonValue({ maxDepth: 1 }), fc.dictionary(keys, tie("v"), { maxKeys: 4 }), fc.array(tie("v"), { maxLength: 3 })),
    })).v;
    fc.assert(
      fc.property(value, (v) => {
        parse(stringify(v));
        parse(JSON.stringify(v) ?? "null");
        expect(({} as Record<string, unknown>)["polluted"]).toBeUndefined();
      }),
      { numRuns: RUNS },
    );
  });

  test("parseManifests() keeps a __proto__ key as data and leaves Object.prototype alone", () => {
    const { items, problems } = parse("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n__proto__:\n  polluted: true\ndata:\n  constructor: x\n");
    expect(problems).toEqual([]);
    expect(({} as Record<string, unknown>)["polluted"]).toBeUndefined();
    expect(Object.getPrototypeOf(items[0]!.object)).toBe(Object.prototype);
  });

  test("parseManifests() reports a YAML alias bomb (billion laughs) as a problem, quickly", () => {
    const lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'];
    for (let i = 1; i < 10; i++) {
      const previous = String.fromCharCode(96 + i);
      const name = String.fromCharCode(97 + i);
      lines.push(`${name}: &${name} [${Array.from({ length: 9 }, () => `*${previous}`).join(",")}]`);
    }
    const started = performance.now();
    const { items, problems } = parse(`apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: lol\ndata:\n${lines.map((l) => `  ${l}`).join("\n")}\n`);
    expect(items).toEqual([]);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^fuzz\.yaml:1:1: Excessive alias count indicates a resource exhaustion attack/);
    expect(performance.now() - started).toBeLessThan(5_000);
  });

  test("parseManifests() accepts ordinary use of aliases and merge keys", () => {
    const { items, problems } = parse("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  labels: &l {app: web}\n  annotations:\n    <<: *l\n    extra: x\n");
    expect(problems).toEqual([]);
    expect(items[0]?.object.metadata["annotations"]).toEqual({ app: "web", extra: "x" });
  });

  test("parseManifests() reports deep nesting as a problem without crashing, up to the largest SQS message (1 MiB)", () => {
    const started = performance.now();
    for (const depth of [1_000, 100_000, 500_000]) {
      const { items } = parse(`${"[".repeat(depth)}${"]".repeat(depth)}`);
      expect(items).toEqual([]);
      parse(`a:\n${Array.from({ length: 2_000 }, (_, i) => `${" ".repeat(i + 1)}- x`).join("\n")}`);
      parse(`${"{a: ".repeat(Math.min(depth, 50_000))}1${"}".repeat(Math.min(depth, 50_000))}`);
    }
    expect(performance.now() - started).toBeLessThan(60_000);
  }, 90_000);

  test("parseManifests() handles a huge string value", () => {
    const huge = "x".repeat(20 * 1024 * 1024);
    const { items, problems } = parse(`apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  k: ${huge}\n`);
    expect(problems).toEqual([]);
    expect((items[0]?.object["data"] as Record<string, string>)["k"]).toHaveLength(huge.length);
  });
});
