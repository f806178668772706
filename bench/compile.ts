/**
 * Compiles an entry script for this machine the way `npm run build` (scripts/build.ts)
 * compiles the release executables: `bun build --compile --minify --bytecode --format=esm`,
 * without autoloading a .env or bunfig.toml. The one difference: the runtime handed to
 * `--compile-executable-path` is the building bun itself (the pinned devDependency, same
 * version as scripts/runtimes), since the host is the only platform the benchmarks run.
 */
import { spawnSync } from "node:child_process";
import { statSync } from "node:fs";
import { arch } from "node:os";

/** Bun's `--target` for the host, as scripts/build.ts names its platforms. */
function hostTarget(): string {
  const cpu = arch();
  if (cpu === "x64") return "bun-linux-x64";
  if (cpu === "arm64") return "bun-linux-arm64";
  throw new Error(`Cannot compile for this machine as its CPU architecture ${cpu} is not one scripts/build.ts builds for (x64, arm64)`);
}

/** A compiled executable and what building it took. */
export interface Compiled {
  path: string;
  sizeBytes: number;
  buildMs: number;
}

/**
 * Compiles `entryFile` into the executable `outfile`.
 *
 * @throws {Error} naming the entry and bun's output when bun build fails.
 */
export function compileForHost(entryFile: string, outfile: string): Compiled {
  const argv = [
    "build",
    "--compile",
    "--minify",
    "--bytecode",
    "--format=esm",
    `--target=${hostTarget()}`,
    `--compile-executable-path=${process.execPath}`,
    "--no-compile-autoload-dotenv",
    "--no-compile-autoload-bunfig",
    `--outfile=${outfile}`,
    entryFile,
  ];
  const started = performance.now();
  const result = spawnSync(process.execPath, argv, { encoding: "utf8", maxBuffer: 64 * 1024 * 1024 });
  const buildMs = Math.round(performance.now() - started);
  if (result.status !== 0) {
    throw new Error(`Cannot compile ${entryFile}: bun build exited with ${result.status}: ${(result.stderr || result.stdout).trim()}`);
  }
  return { path: outfile, sizeBytes: statSync(outfile).size, buildMs };
}
