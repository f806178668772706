/**
 * Not a test of its own: test/integration/testenv-lifecycle.test.ts runs this file with
 * `bun test` (so the preload of bunfig.toml applies, as in `npm test`), and interrupts it
 * with SIGINT while it holds a started environment, as Ctrl-C would.
 */
import { test } from "bun:test";
import { testEnv } from "../testenv.ts";

test("holds a started environment until interrupted", async () => {
  const env = await testEnv();
  process.stdout.write(`PROBE-ENV ${JSON.stringify({ dir: env.dir, sqsEndpoint: env.sqsEndpoint, kubeconfig: env.kubeconfig, pid: process.pid })}\n`);
  await new Promise((resolve) => setTimeout(resolve, 600_000));
}, 700_000);
