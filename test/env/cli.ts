/**
 * The test environment by hand:
 *   bun run test/env/cli.ts prepare   build or find the binaries, jars and moto (cached)
 *   bun run test/env/cli.ts up        start it in the background, print endpoints and exports
 *   bun run test/env/cli.ts down      stop it and remove its files
 *   bun run test/env/cli.ts status    say whether one is running
 * (`npm run env:up` / `npm run env:down` call these.)
 */
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { environmentInfo, isEnvironmentAlive, reapAbandoned, startEnvironment, type EnvironmentInfo } from "./environment.ts";
import { ensureMoto } from "./moto.ts";
import { cacheRoot, ensureElasticMQ, ensureKubeBinaries } from "./prerequisites.ts";

const runDir = join(cacheRoot(), "run");
const statePath = join(runDir, "env.json");

function readState(): EnvironmentInfo | undefined {
  if (!existsSync(statePath)) return undefined;
  const info = JSON.parse(readFileSync(statePath, "utf8")) as EnvironmentInfo;
  return isEnvironmentAlive(info) ? info : undefined;
}

function printExports(info: EnvironmentInfo): void {
  console.log(`Test environment is up (files and logs in ${info.dir}).
  SQS endpoint (ElasticMQ): ${info.sqsEndpoint}  region ${info.region}
  Kubernetes admin kubeconfig: ${info.kubeconfig}
  kubectl of the same version: ${info.kubectl}

To use it from a shell:
  export KPCD_TEST_ENV_STATE=${statePath}
  export KUBECONFIG=${info.kubeconfig}
  export AWS_ENDPOINT_URL_SQS=${info.sqsEndpoint} AWS_REGION=${info.region} AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
  alias kubectl=${info.kubectl}
Stop it with: npm run env:down`);
}

async function serve(): Promise<void> {
  const env = await startEnvironment();
  mkdirSync(runDir, { recursive: true });
  writeFileSync(statePath, JSON.stringify(environmentInfo(env), null, 2));
  const shutdown = async () => {
    await env.stop();
    rmSync(statePath, { force: true });
    process.exit(0);
  };
  process.once("SIGTERM", () => void shutdown());
  process.once("SIGINT", () => void shutdown());
  setInterval(() => {}, 1 << 30); // Stay alive until told to stop.
}

async function up(): Promise<number> {
  const running = readState();
  if (running) {
    printExports(running);
    return 0;
  }
  await ensureElasticMQ();
  await ensureKubeBinaries();
  mkdirSync(runDir, { recursive: true });
  rmSync(statePath, { force: true });
  const log = join(runDir, "serve.log");
  const fd = openSync(log, "w");
  const child = spawn(process.execPath, ["run", fileURLToPath(import.meta.url), "serve"], { detached: true, stdio: ["ignore", fd, fd] });
  child.unref();
  const started = Date.now();
  let exited = false;
  child.once("exit", () => (exited = true));
  while (Date.now() - started < 180_000) {
    const info = readState();
    if (info) {
      printExports(info);
      console.log(`(ready in ${((Date.now() - started) / 1000).toFixed(1)} s)`);
      return 0;
    }
    if (exited) break;
    await new Promise((r) => setTimeout(r, 250));
  }
  console.error(`The test environment did not start. Its log (${log}):\n${readFileSync(log, "utf8")}`);
  return 1;
}

async function down(): Promise<number> {
  const info = existsSync(statePath) ? (JSON.parse(readFileSync(statePath, "utf8")) as EnvironmentInfo) : undefined;
  if (info) {
    try {
      process.kill(info.ownerPid, "SIGTERM");
    } catch {
      // Already gone; the reaper below cleans up.
    }
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline && isEnvironmentAlive(info)) await new Promise((r) => setTimeout(r, 200));
  }
  rmSync(statePath, { force: true });
  const reaped = reapAbandoned();
  console.log(info || reaped ? "Test environment stopped." : "No test environment was running.");
  return 0;
}

async function main(command: string | undefined): Promise<number> {
  switch (command) {
    case "prepare":
      await ensureElasticMQ();
      console.log(`Kubernetes binaries: ${(await ensureKubeBinaries()).dir}`);
      // moto (SNS for the fleet tests) installs from PyPI into the cache, before the timed run.
      console.log(`moto: ${ensureMoto()}`);
      return 0;
    case "serve":
      await serve();
      return 0;
    case "up":
      return await up();
    case "down":
      return await down();
    case "status": {
      const info = readState();
      if (info) printExports(info);
      else console.log("No test environment is running.");
      return 0;
    }
    default:
      console.error("usage: bun run test/env/cli.ts prepare|up|down|status");
      return 1;
  }
}

process.exitCode = await main(process.argv[2]);
