/**
 * `npm test`: prepares the test environment's binaries (cached after the first run), type-checks
 * the whole project, then runs every unit and integration test with `bun test`. Arguments are
 * passed to `bun test` (e.g. `npm test -- test/unit`). Exit code: non-zero if the type-check or
 * any test failed.
 */
import { spawnSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { ensureElasticMQ, ensureKubeBinaries } from "./env/prerequisites.ts";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const args = process.argv.slice(2);

const started = Date.now();
await ensureElasticMQ();
await ensureKubeBinaries();
process.stderr.write(`test: environment prerequisites ready in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);

const tsc = spawnSync(join(root, "node_modules", ".bin", "tsc"), ["--noEmit", "-p", root], { stdio: "inherit", cwd: root });
process.stderr.write(tsc.status === 0 ? "test: type-check passed\n" : "test: type-check FAILED (see above)\n");

// --timeout as well as the preload's setDefaultTimeout: with many files, bun applies the flag reliably.
const tests = spawnSync(process.execPath, ["test", "--timeout=90000", ...args], { stdio: "inherit", cwd: root });
process.exitCode = tsc.status === 0 && tests.status === 0 ? 0 : 1;
