import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";

const root = join(import.meta.dir, "..", "..");

/** `import … from "x"` and `export … from "x"`, with what is imported; `import "x"` too. */
const STATIC_IMPORT = /^(?:import|export)\s+(?:([^;]*?)\s+from\s+)?"([^"]+)";?$/gms;

/** True when the import brings values at run time (not `import type`, not only `{ type A, type B }`). */
function loadsAtRunTime(clause: string | undefined): boolean {
  if (clause === undefined) return true;
  if (/^type\s/.test(clause)) return false;
  const braces = /^\{([^}]*)\}$/.exec(clause.trim());
  if (braces === null) return true;
  const names = braces[1]!.split(",").map((name) => name.trim()).filter((name) => name !== "");
  return !names.every((name) => name.startsWith("type "));
}

/** The packages that loading `entry` loads, with the chain of files that imports each first. */
function packagesLoadedBy(entry: string): Map<string, string[]> {
  const packages = new Map<string, string[]>();
  const seen = new Set<string>();
  const walk = (file: string, chain: string[]) => {
    if (seen.has(file)) return;
    seen.add(file);
    const source = readFileSync(file, "utf8");
    for (const [, clause, specifier] of source.matchAll(STATIC_IMPORT)) {
      if (!loadsAtRunTime(clause)) continue;
      const here = [...chain, relative(root, file)];
      if (specifier!.startsWith(".")) walk(join(dirname(file), specifier!), here);
      else if (!packages.has(specifier!)) packages.set(specifier!, here);
    }
  };
  walk(join(root, entry), []);
  return packages;
}

describe("what publish loads before it sends", () => {
  test("publish.ts imports the AWS SDK only when it sends (a dry run never loads it)", () => {
    const packages = packagesLoadedBy("publish.ts");
    // The walk sees the rest of publish's graph, so the check below can fail.
    expect(packages.has("yaml")).toBe(true);
    const sdk = [...packages].filter(([name]) => name.startsWith("@aws-sdk/")).map(([name, chain]) => `${name} through ${chain.join(" → ")}`);
    expect(sdk).toEqual([]);
  });
});

/** Every package `entry` can load, through static imports and `import("x")` alike. */
function packagesReachableFrom(entry: string): Set<string> {
  const packages = new Set<string>();
  const seen = new Set<string>();
  const walk = (file: string) => {
    if (seen.has(file)) return;
    seen.add(file);
    const source = readFileSync(file, "utf8");
    const specifiers = [
      ...[...source.matchAll(STATIC_IMPORT)].filter(([, clause]) => loadsAtRunTime(clause)).map(([, , specifier]) => specifier!),
      ...[...source.matchAll(/\bimport\(\s*"([^"]+)"\s*\)/g)].map(([, specifier]) => specifier!),
    ];
    for (const specifier of specifiers) {
      if (specifier.startsWith(".")) walk(join(dirname(file), specifier));
      else packages.add(specifier);
    }
  };
  walk(join(root, entry));
  return packages;
}

describe("what the listener loads", () => {
  test("listener.ts never loads the SNS client, which only publish needs", () => {
    const packages = packagesReachableFrom("listener.ts");
    // The walk reaches the SQS client, so the check below can fail.
    expect(packages.has("@aws-sdk/client-sqs")).toBe(true);
    expect(packages.has("@aws-sdk/client-sns")).toBe(false);
    expect(packagesReachableFrom("publish.ts").has("@aws-sdk/client-sns")).toBe(true);
  });
});
