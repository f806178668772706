/**
 * What integration tests import. The environment starts on first use, once per `bun test`
 * process, and the preload stops it when the run ends. When an environment started by hand
 * (`npm run env:up`) is announced through KPCD_TEST_ENV_STATE, tests use that one instead.
 *
 * There is no skip: if the environment cannot start, every integration test fails with the
 * reason.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawn } from "node:child_process";
import { CreateQueueCommand, GetQueueAttributesCommand, SQSClient } from "@aws-sdk/client-sqs";
import { isEnvironmentAlive, startEnvironment, type Environment, type EnvironmentInfo } from "./environment.ts";
import { startElasticMQ, type ElasticMQ } from "./elasticmq.ts";
import { startControlPlane, type ControlPlane } from "./kube.ts";
import { startMoto, type Moto } from "./moto.ts";

export type TestEnv = EnvironmentInfo;

let started: Promise<Environment> | undefined;
let announced: EnvironmentInfo | undefined;
const extraCleanups: Array<() => Promise<void>> = [];

/** The shared environment: SQS endpoint, region, kubeconfigs and the matching kubectl. */
export async function testEnv(): Promise<TestEnv> {
  const statePath = process.env.KPCD_TEST_ENV_STATE;
  if (statePath) {
    announced ??= JSON.parse(readFileSync(statePath, "utf8")) as EnvironmentInfo;
    if (!isEnvironmentAlive(announced)) {
      throw new Error(`KPCD_TEST_ENV_STATE names an environment that is no longer running (${statePath}); run 'npm run env:up' again or unset it.`);
    }
    return announced;
  }
  started ??= startEnvironment();
  return await started;
}

/** Stops what this process started (the shared environment and dedicated control planes). */
export async function stopTestEnv(): Promise<void> {
  const cleanups = extraCleanups.splice(0);
  await Promise.all(cleanups.map((c) => c().catch(() => {})));
  const env = started;
  started = undefined;
  if (env) await (await env.catch(() => undefined))?.stop();
}

let client: SQSClient | undefined;

/** An SQS client for the test ElasticMQ (dummy credentials come from the preload). */
export async function sqsClient(): Promise<SQSClient> {
  const env = await testEnv();
  client ??= new SQSClient({ endpoint: env.sqsEndpoint, region: env.region });
  return client;
}

export interface TestQueue {
  url: string;
  name: string;
  deadLetterUrl?: string;
}

export interface CreateQueueOptions {
  fifo?: boolean;
  /** Adds a dead-letter queue that takes a message after `maxReceiveCount` receives. */
  deadLetter?: { maxReceiveCount: number };
  visibilityTimeoutSeconds?: number;
  /** Extra SQS queue attributes, e.g. { MaximumMessageSize: "1048576" }. */
  attributes?: Record<string, string>;
}

/** Creates a queue with a unique name, so tests never see each other's messages. */
export async function createQueue(options: CreateQueueOptions = {}): Promise<TestQueue> {
  const { fifo = false, deadLetter, visibilityTimeoutSeconds = 30, attributes = {} } = options;
  const sqs = await sqsClient();
  const base = `t-${randomBytes(6).toString("hex")}`;
  const suffix = fifo ? ".fifo" : "";
  const fifoAttributes: Record<string, string> = fifo ? { FifoQueue: "true", ContentBasedDeduplication: "false" } : {};
  let deadLetterUrl: string | undefined;
  const queueAttributes: Record<string, string> = { ...fifoAttributes, VisibilityTimeout: String(visibilityTimeoutSeconds), ...attributes };
  if (deadLetter) {
    const dlq = await sqs.send(new CreateQueueCommand({ QueueName: `${base}-dlq${suffix}`, Attributes: fifoAttributes }));
    deadLetterUrl = dlq.QueueUrl!;
    const arn = await sqs.send(new GetQueueAttributesCommand({ QueueUrl: deadLetterUrl, AttributeNames: ["QueueArn"] }));
    queueAttributes.RedrivePolicy = JSON.stringify({ deadLetterTargetArn: arn.Attributes!.QueueArn, maxReceiveCount: deadLetter.maxReceiveCount });
  }
  const name = `${base}${suffix}`;
  const queue = await sqs.send(new CreateQueueCommand({ QueueName: name, Attributes: queueAttributes }));
  return deadLetterUrl ? { url: queue.QueueUrl!, name, deadLetterUrl } : { url: queue.QueueUrl!, name };
}

export interface KubectlResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the test environment's kubectl as admin (or with `kubeconfig`); never throws on exit code. */
export async function kubectl(args: readonly string[], options: { stdin?: string; kubeconfig?: string } = {}): Promise<KubectlResult> {
  const env = await testEnv();
  return await new Promise((resolve, reject) => {
    const child = spawn(env.kubectl, ["--kubeconfig", options.kubeconfig ?? env.kubeconfig, ...args], { stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.once("error", reject);
    child.once("exit", (code) => resolve({ code: code ?? 1, stdout, stderr }));
    child.stdin.end(options.stdin ?? "");
  });
}

/** A namespace with a unique name, created in the shared cluster. */
export async function createNamespace(prefix = "t"): Promise<string> {
  const name = `${prefix}-${randomBytes(5).toString("hex")}`;
  const result = await kubectl(["create", "namespace", name]);
  if (result.code !== 0) throw new Error(`creating namespace ${name} failed: ${result.stderr}`);
  return name;
}

/**
 * A control plane of the test's own (etcd + kube-apiserver, optionally controllers), for
 * tests that take the API server down; stopped with the environment at the end of the run.
 */
export async function startDedicatedControlPlane(options: { controllers?: boolean } = {}): Promise<ControlPlane> {
  await testEnv(); // Reaps abandoned environments and fails early if binaries are missing.
  const dir = mkdtempSync(join(tmpdir(), "kube-pico-cd-env-cp-"));
  // Claimed at once: another test run's reaper removes environment folders whose owner is gone.
  writeFileSync(join(dir, "owner.pid"), String(process.pid));
  const cp = await startControlPlane(dir, { controllers: options.controllers ?? false });
  extraCleanups.push(async () => {
    await cp.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  return cp;
}

/** An ElasticMQ of the test's own (e.g. on a port chosen before it starts, for outage tests). */
export async function startDedicatedElasticMQ(options: { port?: number } = {}): Promise<ElasticMQ> {
  await testEnv();
  const dir = mkdtempSync(join(tmpdir(), "kube-pico-cd-env-sqs-"));
  writeFileSync(join(dir, "owner.pid"), String(process.pid));
  const { mkdirSync } = await import("node:fs");
  mkdirSync(join(dir, "logs"));
  const sqs = await startElasticMQ(dir, options);
  extraCleanups.push(async () => {
    await sqs.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  return sqs;
}

/** A moto server of the test's own (SNS and SQS on one endpoint), stopped with the environment at the end of the run. */
export async function startDedicatedMoto(): Promise<Moto> {
  await testEnv();
  const dir = mkdtempSync(join(tmpdir(), "kube-pico-cd-env-moto-"));
  writeFileSync(join(dir, "owner.pid"), String(process.pid));
  const moto = await startMoto(dir);
  extraCleanups.push(async () => {
    await moto.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  return moto;
}
