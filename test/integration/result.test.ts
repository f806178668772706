/**
 * The result queue end to end, against ElasticMQ and the real API server: the listener
 * (listener.ts, long-running, with KUBE_PICO_CD_RESULT_QUEUE) sends a result for each build,
 * and `publish.ts --wait`, run as CI runs it (a child process), waits for the results of its
 * own messages and exits with them.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { ReceiveMessageCommand, SendMessageCommand } from "@aws-sdk/client-sqs";
import { stringify } from "yaml";
import type { KubeObject } from "../../lib/manifests/bundle.ts";
import { decodeResult, encodeResult, type ResultMessage } from "../../lib/wire/result.ts";
import { createNamespace, createQueue, sqsClient } from "../env/testenv.ts";
import { configMap, queueDepth } from "../helpers/bundles.ts";
import { startListener, type ListenerProcess } from "../helpers/listener-process.ts";
import { awsTestEnv, runProcess, type ProcessRun } from "../helpers/run.ts";
import { brokenDeployment, deployment } from "../helpers/workloads.ts";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

const dirs: string[] = [];
const listeners: ListenerProcess[] = [];
afterAll(async () => {
  for (const listener of listeners.splice(0)) {
    listener.kill("SIGTERM");
    await listener.exited;
  }
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A directory holding `objects` as one YAML file, for publish to bundle. */
function manifestsDir(objects: readonly KubeObject[]): string {
  const dir = mkdtempSync(join(tmpdir(), "kube-pico-cd-result-"));
  dirs.push(dir);
  writeFileSync(join(dir, "app.yaml"), objects.map((object) => stringify(object)).join("---\n"));
  return dir;
}

/** Runs `bun publish.ts <args>` as CI would, against the test ElasticMQ. */
async function runPublish(args: string[], options: { cwd: string; env?: Record<string, string> }): Promise<ProcessRun> {
  return await runProcess([process.execPath, join(root, "publish.ts"), ...args], { cwd: options.cwd, env: { ...(await awsTestEnv()), ...options.env } });
}

/** A listener on `queueUrl` that sends its results to `resultQueue`. */
async function listenerWithResults(queueUrl: string, namespace: string, resultQueue: string): Promise<ListenerProcess> {
  const listener = await startListener({ queueUrl, namespace, env: { KUBE_PICO_CD_RESULT_QUEUE: resultQueue, KUBE_PICO_CD_HEALTH_TIMEOUT_SECONDS: "60" } });
  listeners.push(listener);
  await listener.waitForLog((line) => line.msg === "listening");
  return listener;
}

async function stop(listener: ListenerProcess): Promise<void> {
  listener.kill("SIGTERM");
  expect(await listener.exited).toBe(0);
  listeners.splice(listeners.indexOf(listener), 1);
}

describe("publish --wait with a listener that sends results", () => {
  test("a healthy deploy: publish prints the applied, Healthy result with its durations and exits 0; the result is deleted", async () => {
    const ns = await createNamespace("res-ok");
    const queue = await createQueue();
    const resultQueue = await createQueue();
    const listener = await listenerWithResults(queue.url, ns, resultQueue.name);
    const summary = join(manifestsDir([]), "summary.md");
    writeFileSync(summary, "");
    const dir = manifestsDir([configMap(ns, "app", { v: "1" }), deployment(ns, "web")]);
    const run = await runPublish([".", "--queue", queue.url, "--result-queue", resultQueue.url, "--wait=60", "--commit", "abc123"], {
      cwd: dir,
      env: { GITHUB_STEP_SUMMARY: summary },
    });
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    expect(run.stdout).toContain(`Waiting up to 1 min for the result on ${resultQueue.url}`);
    expect(run.stdout).toMatch(new RegExp(`Result from ${queue.url.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")} after [0-9.]+ m?s: applied, Healthy: applied 2 objects, pruned 0\\n`));
    expect(run.stdout).toContain(`listener  namespace ${ns}, queue ${queue.name}, app default\n`);
    expect(run.stdout).toMatch(/took {6}pickup \d+(\.\d+)? m?s, apply \d+(\.\d+)? m?s, health \d+(\.\d+)? m?s/);
    expect(run.stdout).toContain("Deploy succeeded on 1 queue\n");
    const markdown = readFileSync(summary, "utf8");
    expect(markdown).toContain("#### kube-pico-cd: deploy succeeded");
    expect(markdown).toContain(`| ${queue.url} | ${ns} | default | applied | Healthy | applied 2 objects, pruned 0 |`);
    expect(await queueDepth(resultQueue.url)).toEqual({ visible: 0, inFlight: 0, delayed: 0 });
    const applied = await listener.waitForLog((line) => line.msg === "result sent" && line["result"] !== "progress");
    expect(applied.result).toBe("applied");
    process.stdout.write(`measured: publish --wait of a ConfigMap and a Deployment took ${run.elapsedMs} ms end to end\n`);
    await stop(listener);
  }, 120_000);

  test("--json carries the result: the deploy message's id, build, digest, commit, queue name, namespace and durations", async () => {
    const ns = await createNamespace("res-json");
    const queue = await createQueue();
    const resultQueue = await createQueue();
    const listener = await listenerWithResults(queue.url, ns, resultQueue.url);
    const dir = manifestsDir([configMap(ns, "app", { v: "1" })]);
    const run = await runPublish([".", "--queue", queue.name, "--json", "--build-id", "b-json", "--commit", "c0ffee"], {
      cwd: dir,
      env: { KUBE_PICO_CD_RESULT_QUEUE: resultQueue.name, KUBE_PICO_CD_WAIT: "30s" },
    });
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    const output = JSON.parse(run.stdout) as { digest: string; build: { timestampMs: number }; sent: { messageId: string }[]; wait: { exitCode: number; missing: unknown[]; timeoutSeconds: number; results: { messageId: string; receivedAfterMs: number; result: ResultMessage }[] } };
    expect(output.wait.exitCode).toBe(0);
    expect(output.wait.timeoutSeconds).toBe(30);
    expect(output.wait.missing).toEqual([]);
    expect(output.wait.results).toHaveLength(1);
    const entry = output.wait.results[0]!;
    expect(entry.messageId).toBe(output.sent[0]!.messageId);
    expect(entry.result).toMatchObject({
      kind: "kube-pico-cd.result",
      version: 1,
      messageId: output.sent[0]!.messageId,
      build: { id: "b-json", timestampMs: output.build.timestampMs, commit: "c0ffee" },
      digest: output.digest,
      queue: queue.name,
      namespace: ns,
      result: "applied",
      health: { status: "Healthy" },
      message: "applied 1 object, pruned 0",
    });
    expect(entry.result.durations.applyMs).toBeGreaterThan(0);
    expect(entry.result.durations.pickupMs).toBeGreaterThanOrEqual(0);
    process.stdout.write(`measured: SendMessage returned → result received: ${entry.receivedAfterMs} ms (pickup ${entry.result.durations.pickupMs} ms, apply ${entry.result.durations.applyMs} ms, health ${entry.result.durations.healthMs} ms)\n`);
    await stop(listener);
  }, 120_000);

  test("the result names the app the bundle was published for, and publish prints it", async () => {
    const ns = await createNamespace("res-app");
    const queue = await createQueue();
    const resultQueue = await createQueue();
    const listener = await listenerWithResults(queue.url, ns, resultQueue.url);
    const summary = join(manifestsDir([]), "summary.md");
    writeFileSync(summary, "");
    const run = await runPublish([".", "--queue", queue.url, "--result-queue", resultQueue.url, "--wait=60"], {
      cwd: manifestsDir([configMap(ns, "app", { v: "1" })]),
      env: { GITHUB_REPOSITORY: "acme/Res_App", GITHUB_STEP_SUMMARY: summary },
    });
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    expect(run.stdout).toContain("  app        res-app (from GITHUB_REPOSITORY)\n");
    expect(run.stdout).toContain(`listener  namespace ${ns}, queue ${queue.name}, app res-app\n`);
    expect(readFileSync(summary, "utf8")).toContain(`| ${queue.url} | ${ns} | res-app | applied |`);
    await stop(listener);
  }, 120_000);

  test("a FIFO result queue (group per build, deduplication id) carries the result as well", async () => {
    const ns = await createNamespace("res-fifo");
    const queue = await createQueue();
    const resultQueue = await createQueue({ fifo: true });
    const listener = await listenerWithResults(queue.url, ns, resultQueue.url);
    const run = await runPublish([".", "--queue", queue.url, "--result-queue", resultQueue.name, "--wait=60", "--build-id", "fifo build 1"], { cwd: manifestsDir([configMap(ns, "app", { v: "1" })]) });
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    expect(run.stdout).toContain(": applied, Healthy: applied 1 object, pruned 0\n");
    await stop(listener);
  }, 120_000);

  test("a deploy the API server rejects: publish exits 3 and prints kubectl's reason and that the listener retries", async () => {
    const ns = await createNamespace("res-bad");
    const queue = await createQueue();
    const resultQueue = await createQueue();
    const listener = await listenerWithResults(queue.url, ns, resultQueue.url);
    const run = await runPublish([".", "--queue", queue.url, "--result-queue", resultQueue.url, "--wait=60"], { cwd: manifestsDir([brokenDeployment(ns)]) });
    expect(run.code).toBe(3);
    expect(run.stdout).toContain(": failed: ");
    expect(run.stdout).toContain("retry     attempt 1 failed; the listener retries it until the queue's dead-letter queue takes it");
    expect(run.stderr).toContain(`publish: deploy failed on ${queue.url}: failed: `);
    expect(run.stderr).toContain(`missing required field "selector"`);
    await stop(listener);
  }, 120_000);

  test("a deploy that fails on the last receive its queue's redrive policy allows: publish says it goes to the dead-letter queue", async () => {
    const ns = await createNamespace("res-last");
    const queue = await createQueue({ deadLetter: { maxReceiveCount: 1 } });
    const resultQueue = await createQueue();
    const listener = await listenerWithResults(queue.url, ns, resultQueue.url);
    const run = await runPublish([".", "--queue", queue.url, "--result-queue", resultQueue.url, "--wait=60"], { cwd: manifestsDir([brokenDeployment(ns)]) });
    expect(run.code).toBe(3);
    expect(run.stdout).toContain("retry     attempt 1 failed and was the last: the message goes to the queue's dead-letter queue");
    await stop(listener);
  }, 120_000);

  test("no listener: publish --wait=3 exits 4 after about 3 s, naming the queue and the listener setting", async () => {
    const queue = await createQueue();
    const resultQueue = await createQueue();
    const run = await runPublish([".", "--queue", queue.url, "--result-queue", resultQueue.url, "--wait=3"], { cwd: manifestsDir([configMap("default", "x", { v: "1" })]) });
    expect(run.code).toBe(4);
    expect(run.stderr).toBe(
      `publish: timed out waiting 3 s for the result from ${queue.url}; check that the listener of that queue runs and has KUBE_PICO_CD_RESULT_QUEUE set to ${resultQueue.url}\n`,
    );
    expect(run.elapsedMs).toBeGreaterThan(3_000);
    expect(run.elapsedMs).toBeLessThan(8_000);
    process.stdout.write(`measured: --wait=3 without a listener ended after ${run.elapsedMs} ms\n`);
  }, 30_000);

  test("two publishers waiting on one result queue each get their own result, and leave a third party's result in the queue", async () => {
    const [nsA, nsB] = [await createNamespace("res-a"), await createNamespace("res-b")];
    const [queueA, queueB] = [await createQueue(), await createQueue()];
    const resultQueue = await createQueue();
    // Someone else's result, waiting for a publisher that is not here: both must hand it back.
    const foreign: ResultMessage = {
      kind: "kube-pico-cd.result",
      version: 1,
      messageId: "not-a-message-of-this-test",
      build: { id: "other", timestampMs: 1 },
      digest: "0".repeat(64),
      queue: "elsewhere",
      namespace: "elsewhere",
      result: "applied",
      message: "applied 1 object",
      durations: {},
      time: new Date().toISOString(),
    };
    const sqs = await sqsClient();
    await sqs.send(new SendMessageCommand({ QueueUrl: resultQueue.url, MessageBody: encodeResult(foreign) }));
    const listenerA = await listenerWithResults(queueA.url, nsA, resultQueue.url);
    const listenerB = await listenerWithResults(queueB.url, nsB, resultQueue.url);
    const [runA, runB] = await Promise.all([
      runPublish([".", "--queue", queueA.url, "--result-queue", resultQueue.url, "--wait=60", "--json"], { cwd: manifestsDir([configMap(nsA, "app", { v: "a" })]) }),
      runPublish([".", "--queue", queueB.url, "--result-queue", resultQueue.url, "--wait=60", "--json"], { cwd: manifestsDir([configMap(nsB, "app", { v: "b" })]) }),
    ]);
    expect(runA.stderr).toBe("");
    expect(runB.stderr).toBe("");
    expect([runA.code, runB.code]).toEqual([0, 0]);
    const a = JSON.parse(runA.stdout) as { sent: { messageId: string }[]; wait: { results: { result: ResultMessage }[] } };
    const b = JSON.parse(runB.stdout) as { sent: { messageId: string }[]; wait: { results: { result: ResultMessage }[] } };
    expect(a.wait.results.map((r) => [r.result.messageId, r.result.namespace])).toEqual([[a.sent[0]!.messageId, nsA]]);
    expect(b.wait.results.map((r) => [r.result.messageId, r.result.namespace])).toEqual([[b.sent[0]!.messageId, nsB]]);
    // Only the foreign result is left, visible at once for its own publisher.
    const left = await sqs.send(new ReceiveMessageCommand({ QueueUrl: resultQueue.url, MaxNumberOfMessages: 10, WaitTimeSeconds: 1 }));
    expect((left.Messages ?? []).map((m) => decodeResult(m.Body!).messageId)).toEqual(["not-a-message-of-this-test"]);
    await stop(listenerA);
    await stop(listenerB);
  }, 120_000);

  test("publish --wait prints the deploy's progress in order, one line per step with the elapsed time, then what was applied and pruned", async () => {
    const ns = await createNamespace("res-progress");
    const queue = await createQueue();
    const resultQueue = await createQueue();
    await listenerWithResults(queue.url, ns, resultQueue.name);
    const first = manifestsDir([configMap(ns, "old", { v: "1" }), configMap(ns, "app", { v: "1" })]);
    expect((await runPublish([".", "--queue", queue.url, "--result-queue", resultQueue.url, "--wait=60"], { cwd: first })).code).toBe(0);
    const dir = manifestsDir([configMap(ns, "app", { v: "2" }), deployment(ns, "web", { replicas: 2 })]);
    const run = await runPublish([".", "--queue", queue.url, "--result-queue", resultQueue.url, "--wait=60"], { cwd: dir });
    expect(run.code).toBe(0);
    const steps = run.stdout.split("\n").filter((line) => /^ {2}\[[0-9.]+ m?s\] /.test(line));
    const kinds = steps.map((line) => (line.includes("applying 2 objects") ? "picked-up" : line.includes("applied 2 objects in") ? "applied" : line.includes("waiting for health") ? "health" : line.includes("pruning") ? "pruning" : "other"));
    // In the order of the deploy: picked up, applied, the health wait (as it changes), pruning.
    expect(kinds[0]).toBe("picked-up");
    expect(kinds[1]).toBe("applied");
    expect(kinds).not.toContain("other");
    expect(kinds.at(-1)).toBe("pruning");
    expect(kinds.indexOf("pruning")).toBeGreaterThan(kinds.indexOf("applied"));
    expect(run.stdout.indexOf(steps.at(-1)!)).toBeLessThan(run.stdout.indexOf("Result from"));
    expect(run.stdout).toContain(`pruned    ConfigMap ${ns}/old`);
  }, 120_000);
});
