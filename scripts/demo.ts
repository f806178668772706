/**
 * `npm run demo`: the whole loop on this machine, with no AWS account and no cluster.
 *
 * 1. Brings up the local environment: ElasticMQ (SQS) and a real Kubernetes control plane
 *    (etcd, kube-apiserver, controller-manager, scheduler, kwok as the node). The first run
 *    builds the control plane from the Go module proxy (about 9 minutes on 2 cores); later runs start in
 *    seconds.
 * 2. Compiles the listener into a standalone executable and starts it, as the pod would.
 * 3. Publishes examples/app (Namespace, ConfigMap, Deployment, Service) with publish.ts.
 * 4. Waits until the deploy is recorded and the Deployment is Available; prints the record
 *    and what was applied.
 * 5. Publishes a change (new ConfigMap value, 3 replicas, one ConfigMap removed) with
 *    `publish --wait`, which waits for the listener's result on the result queue: the
 *    removed ConfigMap is pruned and the rollout is reported Healthy.
 * 6. Prints `listener status` (one line per app) and `listener status default`: the current
 *    build and the history.
 * 7. Tears everything down.
 */
import { spawn, spawnSync } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { CreateQueueCommand, GetQueueAttributesCommand, SQSClient } from "@aws-sdk/client-sqs";
import { decodeRecord } from "../lib/kube/record.ts";
import { startEnvironment, type Environment } from "../test/env/environment.ts";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const started = Date.now();
const elapsed = () => `${((Date.now() - started) / 1000).toFixed(1)} s`;
const step = (text: string) => console.log(`\n[${elapsed()}] ${text}`);
const info = (text: string) => console.log(`    ${text}`);

// Local ElasticMQ accepts any credentials; these keep the SDK from looking for real ones.
const awsEnv = { AWS_ACCESS_KEY_ID: "demo", AWS_SECRET_ACCESS_KEY: "demo", AWS_REGION: "us-east-1", AWS_EC2_METADATA_DISABLED: "true" };
Object.assign(process.env, awsEnv);

function run(cmd: string, args: string[], options: { env?: NodeJS.ProcessEnv; stdin?: string } = {}): { code: number; stdout: string; stderr: string } {
  const result = spawnSync(cmd, args, { env: options.env ?? process.env, input: options.stdin ?? "", encoding: "utf8", maxBuffer: 64 * 1024 * 1024 });
  return { code: result.status ?? 1, stdout: result.stdout ?? "", stderr: result.stderr ?? "" };
}

/** Polls until `check` returns a value, printing what it waits for every 5 s. */
async function waitFor<T>(what: string, check: () => T | undefined | Promise<T | undefined>, timeoutMs = 180_000): Promise<T> {
  const begin = Date.now();
  let lastNote = begin;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() - begin > timeoutMs) throw new Error(`gave up waiting for ${what} after ${timeoutMs / 1000} s`);
    if (Date.now() - lastNote > 5_000) {
      info(`still waiting for ${what} (${((Date.now() - begin) / 1000).toFixed(0)} s)`);
      lastNote = Date.now();
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}

let env: Environment | undefined;
let listener: ReturnType<typeof spawn> | undefined;
const work = mkdtempSync(join(tmpdir(), "kube-pico-cd-demo-"));

async function main(): Promise<void> {
  step("Starting the local environment: ElasticMQ (SQS) and a Kubernetes control plane on 127.0.0.1");
  info("the first run builds kube-apiserver, etcd, controller-manager, scheduler, kubectl and kwok from the Go module proxy (about 9 minutes on 2 cores); later runs reuse the cache");
  env = await startEnvironment();
  info(`SQS endpoint ${env.sqsEndpoint}; kubeconfig ${env.kubeconfig}`);
  const kubectl = (args: string[], stdin?: string) => run(env!.kubectl, ["--kubeconfig", env!.kubeconfig, ...args], stdin === undefined ? {} : { stdin });

  step("Creating the deploy queue (with a dead-letter queue) and the listener's namespace");
  const sqs = new SQSClient({ endpoint: env.sqsEndpoint, region: env.region });
  const dlq = await sqs.send(new CreateQueueCommand({ QueueName: "kube-pico-cd-deploy-dlq" }));
  const dlqArn = (await sqs.send(new GetQueueAttributesCommand({ QueueUrl: dlq.QueueUrl!, AttributeNames: ["QueueArn"] }))).Attributes!.QueueArn!;
  const queue = await sqs.send(
    new CreateQueueCommand({
      QueueName: "kube-pico-cd-deploy",
      Attributes: { MaximumMessageSize: "1048576", RedrivePolicy: JSON.stringify({ deadLetterTargetArn: dlqArn, maxReceiveCount: 5 }) },
    }),
  );
  const queueUrl = queue.QueueUrl!;
  const resultQueueUrl = (await sqs.send(new CreateQueueCommand({ QueueName: "kube-pico-cd-deploy-results", Attributes: { MessageRetentionPeriod: "3600" } }))).QueueUrl!;
  sqs.destroy();
  kubectl(["create", "namespace", "kube-pico-cd"]);
  info(`queue ${queueUrl}`);
  info(`result queue ${resultQueueUrl} (publish --wait reads the deploy's result from it)`);

  step("Compiling the listener into a standalone executable (bun build --compile)");
  const build = run(process.execPath, [join(root, "scripts", "build.ts"), `--out-dir=${work}`, "kube-pico-cd-listener-linux-x64"]);
  if (build.code !== 0) throw new Error(`building the listener failed:\n${build.stderr}${build.stdout}`);
  const executable = join(work, "kube-pico-cd-listener-linux-x64");
  info(executable);

  step("Starting the listener, as its pod would (logs: one JSON object per line)");
  const logFile = join(work, "listener.log");
  const logLines: string[] = [];
  listener = spawn(executable, [], {
    env: {
      PATH: process.env.PATH,
      HOME: work,
      ...awsEnv,
      KUBE_PICO_CD_QUEUE: queueUrl,
      KUBE_PICO_CD_ENDPOINT_URL: env.sqsEndpoint,
      KUBE_PICO_CD_NAMESPACE: "kube-pico-cd",
      KUBE_PICO_CD_KUBECTL: env.kubectl,
      KUBE_PICO_CD_KUBECONFIG: env.kubeconfig,
      KUBE_PICO_CD_HTTP_HOST: "127.0.0.1",
      KUBE_PICO_CD_HTTP_PORT: "0",
      KUBE_PICO_CD_RESULT_QUEUE: resultQueueUrl,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  listener.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
    for (const line of chunk.split("\n").filter(Boolean)) {
      logLines.push(line);
      writeFileSync(logFile, `${line}\n`, { flag: "a" });
      try {
        const entry = JSON.parse(line) as { level: string; msg: string; build?: string };
        info(`listener ${entry.level}: ${entry.msg}${entry.build ? ` (build ${entry.build})` : ""}`);
      } catch {
        info(`listener: ${line}`);
      }
    }
  });
  listener.stderr!.setEncoding("utf8").on("data", (chunk: string) => info(`listener stderr: ${chunk.trim()}`));
  await waitFor("the listener to start listening", () => (logLines.some((l) => l.includes('"msg":"listening"')) ? true : undefined), 60_000);

  const publish = (dir: string, buildId: string, extra: string[] = []) => {
    const result = run(process.execPath, [join(root, "publish.ts"), dir, "--queue", queueUrl, "--endpoint-url", env!.sqsEndpoint, "--build-id", buildId, ...extra], {
      env: { ...process.env, ...awsEnv },
    });
    if (result.code !== 0) throw new Error(`publish failed (exit ${result.code}):\n${result.stderr}`);
    for (const line of result.stdout.trimEnd().split("\n")) info(line);
  };
  const record = () => {
    const got = kubectl(["get", "configmap", "kube-pico-cd-state", "-n", "kube-pico-cd", "-o", "json"]);
    return got.code === 0 ? decodeRecord((JSON.parse(got.stdout) as { data?: Record<string, string> }).data) : undefined;
  };
  const showRecord = () => {
    const r = record()!;
    info(`record: build ${r.current?.build.id} (timestamp ${r.current?.build.timestampMs}), digest ${r.current?.digest.slice(0, 12)}…, ${r.current?.objectCount} objects, applied at ${r.current?.appliedAt}`);
    for (const h of r.history) info(`  history: ${h.time}  ${h.result.padEnd(10)} ${h.buildId ?? "-"}${h.durationMs === undefined ? "" : `  ${h.durationMs} ms`}`);
  };

  step("Publishing examples/app (Namespace, ConfigMap, Deployment, Service)");
  publish(join(root, "examples", "app"), "demo-1");
  await waitFor("the deploy to be recorded", () => (record()?.current?.build.id === "demo-1" ? true : undefined));
  await waitFor("the Deployment to be Available", () => (kubectl(["rollout", "status", "deployment/web", "-n", "demo-app", "--timeout=2s"]).code === 0 ? true : undefined));
  step("Deployed. The version record and what runs now:");
  showRecord();
  for (const line of kubectl(["get", "deployment,replicaset,pod,service,configmap", "-n", "demo-app"]).stdout.trimEnd().split("\n")) info(line);

  step("Publishing a change with --wait: a new greeting, 3 replicas, and the web-extra ConfigMap removed (so it is pruned)");
  const changed = join(work, "app-v2");
  cpSync(join(root, "examples", "app"), changed, { recursive: true });
  writeFileSync(join(changed, "config.yaml"), readFileSync(join(changed, "config.yaml"), "utf8").split(/^---\n/m)[0]!);
  writeFileSync(join(changed, "config.yaml"), readFileSync(join(changed, "config.yaml"), "utf8").replace("Hello from kube-pico-cd", "Hello again, version 2").replace("COLOR: blue", "COLOR: green"));
  writeFileSync(join(changed, "web.yaml"), readFileSync(join(changed, "web.yaml"), "utf8").replace("replicas: 2", "replicas: 3"));
  publish(changed, "demo-2", ["--result-queue", resultQueueUrl, "--wait=180"]);
  await waitFor("the change to be recorded", () => (record()?.current?.build.id === "demo-2" ? true : undefined));
  await waitFor("the Deployment to be Available with 3 replicas", () =>
    kubectl(["get", "deployment", "web", "-n", "demo-app", "-o", "jsonpath={.status.availableReplicas}"]).stdout === "3" ? true : undefined,
  );
  step("Updated:");
  showRecord();
  info(`web-config GREETING = ${kubectl(["get", "configmap", "web-config", "-n", "demo-app", "-o", "jsonpath={.data.GREETING}"]).stdout}`);
  info(kubectl(["get", "deployment", "web", "-n", "demo-app"]).stdout.trimEnd().split("\n").join("\n    "));
  info(`web-extra ConfigMap: ${kubectl(["get", "configmap", "web-extra", "-n", "demo-app"]).code === 0 ? "still there" : "pruned"}`);

  // The overview of every app, then the app the demo published to (bundles that name no app belong to "default").
  step("listener status, then listener status default: every app, then the current build and the history, read from the cluster");
  for (const args of [[], ["default"]]) {
    const status = run(executable, ["status", ...args, "--namespace", "kube-pico-cd", "--kubeconfig", env.kubeconfig]);
    if (status.code !== 0) throw new Error(`listener status ${args.join(" ")} failed (exit ${status.code}):\n${status.stderr}`);
    for (const line of status.stdout.trimEnd().split("\n")) info(line);
  }
}

async function teardown(): Promise<void> {
  step("Tearing down");
  if (listener && listener.exitCode === null) {
    const exited = new Promise((r) => listener!.once("exit", r));
    listener.kill("SIGTERM");
    await exited;
  }
  await env?.stop();
  rmSync(work, { recursive: true, force: true });
}

let failed = false;
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    void teardown().finally(() => process.exit(130));
  });
}
try {
  await main();
  step("Demo finished: the Deployment is Available and the record shows both builds.");
} catch (error) {
  failed = true;
  console.error(`\ndemo failed: ${error instanceof Error ? error.message : String(error)}`);
} finally {
  await teardown();
}
process.exitCode = failed ? 1 : 0;
