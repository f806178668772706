/**
 * `npm run release:artifacts`: the files attached to a GitHub release, built the same way
 * locally and by .github/workflows/release.yml (whose build step is exactly this command), so
 * a dry run here is the release's build.
 *
 * Writes into `--out-dir` (default `dist/release/`), which must be empty or absent:
 * - the four executables `kube-pico-cd-{publish,listener}-linux-{x64,arm64}` and
 *   `publish.mjs`, built by scripts/build.ts;
 * - `SHA256SUMS`, one `<sha256>  <name>` line per file in that order, the format
 *   `sha256sum -c SHA256SUMS` verifies.
 *
 * Usage: `bun run scripts/release-artifacts.ts [--out-dir=DIR]`. Prints each file's size and
 * digest. Exit code 0, 1 on a failed build, 2 on a bad argument.
 */
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { artifacts, buildArtifact, BuildError, distDir, type Artifact } from "./build.ts";

/** The release's files besides SHA256SUMS, in build order. action.mjs is not one: the action runs from the repository at its tag. */
export const releaseArtifacts: readonly Artifact[] = artifacts.filter((a) => a.kind === "executable" || a.kind === "single-file");

/** The name of the checksum file. */
export const checksumFile = "SHA256SUMS";

/** The default output directory (ignored by git with the rest of dist/). */
export const defaultOutDir = join(distDir, "release");

/** One line of SHA256SUMS. Two spaces: sha256sum's text mode, which `sha256sum -c` reads. */
export function checksumLine(name: string, content: Uint8Array): string {
  return `${createHash("sha256").update(content).digest("hex")}  ${name}\n`;
}

/** Builds every release artifact into `outDir` and writes SHA256SUMS; returns the paths written. */
export function buildRelease(outDir: string): string[] {
  if (existsSync(outDir) && readdirSync(outDir).length > 0) {
    throw new BuildError(`Cannot write the release into ${outDir} as it is not empty: remove it or pass another --out-dir`);
  }
  const paths: string[] = [];
  let sums = "";
  for (const artifact of releaseArtifacts) {
    const built = buildArtifact(artifact, { outDir });
    const line = checksumLine(artifact.name, readFileSync(built.path));
    sums += line;
    paths.push(built.path);
    process.stdout.write(`${artifact.name.padEnd(36)} ${(built.sizeBytes / 1024 / 1024).toFixed(1).padStart(6)} MiB  sha256:${line.slice(0, 64)}\n`);
  }
  const sumsPath = join(outDir, checksumFile);
  writeFileSync(sumsPath, sums);
  paths.push(sumsPath);
  return paths;
}

function main(argv: readonly string[]): void {
  let outDir = defaultOutDir;
  for (const arg of argv) {
    if (arg.startsWith("--out-dir=") && arg.length > "--out-dir=".length) {
      outDir = resolve(arg.slice("--out-dir=".length));
    } else {
      process.stderr.write(`release-artifacts: unknown argument '${arg}'; usage: release-artifacts [--out-dir=DIR]\n`);
      process.exitCode = 2;
      return;
    }
  }
  try {
    buildRelease(outDir);
    process.stdout.write(`${checksumFile} written to ${outDir}\n`);
  } catch (error) {
    if (!(error instanceof BuildError)) throw error;
    process.stderr.write(`release-artifacts: ${error.message}\n`);
    process.exitCode = 1;
  }
}

if (import.meta.main) main(process.argv.slice(2));
