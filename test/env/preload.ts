/**
 * Loaded by `bun test` before any test file (bunfig.toml). It makes every AWS SDK client in
 * the tests talk to no real AWS account, and guarantees the test environment is torn down
 * at the end of the run, including on Ctrl-C or SIGTERM.
 */
import { afterAll, setDefaultTimeout } from "bun:test";
import { stopTestEnv } from "./testenv.ts";

// Dummy credentials: tests pass an explicit ElasticMQ endpoint to every client, and these make
// sure the SDK's default chain never looks for real ones (profiles, instance metadata).
process.env.AWS_ACCESS_KEY_ID = "test";
process.env.AWS_SECRET_ACCESS_KEY = "test";
process.env.AWS_REGION = "us-east-1";
process.env.AWS_EC2_METADATA_DISABLED = "true";
delete process.env.AWS_PROFILE;
delete process.env.AWS_SESSION_TOKEN;

// Integration tests wait on real servers, and the first one also waits for the environment
// to start (about 10 s); bun's default of 5 s per test is too short for that.
setDefaultTimeout(90_000);

afterAll(async () => {
  await stopTestEnv();
});

for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  process.once(signal, () => {
    process.stderr.write(`\ntest-env: ${signal} received, stopping the test environment\n`);
    void stopTestEnv().finally(() => process.exit(128 + (signal === "SIGINT" ? 2 : signal === "SIGTERM" ? 15 : 1)));
  });
}
