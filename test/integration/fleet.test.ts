/**
 * A fleet: one publish to an SNS topic reaches ten listeners, one namespace each, each reading
 * its own queue subscribed to the topic (five with raw delivery, five with SNS envelopes), all
 * answering on one result queue. SNS and SQS are moto's server (test/env/moto.ts); the cluster
 * is the test environment's kube-apiserver; publish.ts and listener.ts run as processes.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { CreateTopicCommand, SNSClient, SubscribeCommand } from "@aws-sdk/client-sns";
import { CreateQueueCommand, GetQueueAttributesCommand, SQSClient } from "@aws-sdk/client-sqs";
import { createNamespace, kubectl, startDedicatedMoto } from "../env/testenv.ts";
import { MOTO_REGION } from "../env/moto.ts";
import { startListener, type ListenerProcess } from "../helpers/listener-process.ts";
import { readRecord } from "../helpers/record.ts";
import { awsTestEnv, runProcess } from "../helpers/run.ts";
import { until } from "../helpers/until.ts";
import type { VersionRecord } from "../../lib/kube/record.ts";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const APP = "fleet";
const CLUSTERS = Array.from({ length: 10 }, (_, i) => `cluster-${i + 1}`);
const credentials = { accessKeyId: "test", secretAccessKey: "test" };

interface Member {
  target: string;
  namespace: string;
  queueUrl: string;
  raw: boolean;
  listener: ListenerProcess;
}

let endpoint = "";
let topicArn = "";
let resultQueueUrl = "";
let sqs: SQSClient;
const members: Member[] = [];
const work = mkdtempSync(join(tmpdir(), "kpcd-fleet-"));

/** The app's record in a member's namespace. */
const recordOf = (member: Member): Promise<VersionRecord | undefined> => readRecord(member.namespace, { name: `kube-pico-cd-state-${APP}` });

/** A ConfigMap's data, or undefined when it does not exist. */
async function configMapData(namespace: string, name: string): Promise<Record<string, string> | undefined> {
  const got = await kubectl(["get", "configmap", name, "-n", namespace, "-o", "json"]);
  return got.code === 0 ? (JSON.parse(got.stdout) as { data?: Record<string, string> }).data : undefined;
}

/** A manifests directory with one ConfigMap (no namespace: each listener's apps config places it). */
function manifests(name: string, color: string): string {
  const dir = join(work, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "settings.yaml"), `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  color: ${color}\n`);
  return dir;
}

/** Runs publish.ts as CI would, against moto for both SNS and SQS. */
async function publish(args: string[], env: Record<string, string> = {}) {
  return await runProcess([process.execPath, join(root, "publish.ts"), ...args], {
    env: { ...(await awsTestEnv()), KUBE_PICO_CD_ENDPOINT_URL: endpoint, AWS_REGION: MOTO_REGION, ...env },
  });
}

beforeAll(async () => {
  const moto = await startDedicatedMoto();
  endpoint = moto.endpoint;
  const config = { endpoint, region: MOTO_REGION, credentials };
  sqs = new SQSClient(config);
  const sns = new SNSClient(config);
  topicArn = (await sns.send(new CreateTopicCommand({ Name: "deploys" }))).TopicArn!;
  resultQueueUrl = (await sqs.send(new CreateQueueCommand({ QueueName: "results" }))).QueueUrl!;
  const started = await Promise.all(
    CLUSTERS.map(async (target, index) => {
      const namespace = await createNamespace(`fleet-${index + 1}`);
      const queueUrl = (await sqs.send(new CreateQueueCommand({ QueueName: `deploy-${target}`, Attributes: { VisibilityTimeout: "10" } }))).QueueUrl!;
      const queueArn = (await sqs.send(new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: ["QueueArn"] }))).Attributes!["QueueArn"]!;
      // Half the fleet reads raw bodies, half SNS's notification envelopes: the listener takes both.
      const raw = index < 5;
      await sns.send(new SubscribeCommand({ TopicArn: topicArn, Protocol: "sqs", Endpoint: queueArn, ...(raw ? { Attributes: { RawMessageDelivery: "true" } } : {}) }));
      const appsConfig = join(work, `apps-${target}.yaml`);
      writeFileSync(appsConfig, `apps:\n  - name: ${APP}\n    namespaces: [${namespace}]\n    defaultNamespace: ${namespace}\n`);
      const listener = await startListener({
        queueUrl,
        namespace,
        env: {
          KUBE_PICO_CD_ENDPOINT_URL: endpoint,
          AWS_REGION: MOTO_REGION,
          KUBE_PICO_CD_TARGET: target,
          KUBE_PICO_CD_RESULT_QUEUE: resultQueueUrl,
          KUBE_PICO_CD_APPS_CONFIG: appsConfig,
          KUBE_PICO_CD_VISIBILITY_TIMEOUT_SECONDS: "10",
          KUBE_PICO_CD_HEALTH_TIMEOUT_SECONDS: "5",
          KUBE_PICO_CD_LOG_LEVEL: "info",
        },
      });
      await listener.waitForLog((line) => line.msg === "listening", 90_000);
      return { target, namespace, queueUrl, raw, listener };
    }),
  );
  members.push(...started);
  sns.destroy();
}, 240_000);

afterAll(async () => {
  await Promise.all(
    members.map(async ({ listener }) => {
      if (listener.child.exitCode !== null || listener.child.signalCode !== null) return;
      listener.kill("SIGTERM");
      await listener.exited;
    }),
  );
  sqs?.destroy();
});

describe("publish --topic to a fleet", () => {
  test("one publish --topic --target cluster-1,…,cluster-10 --wait reaches all ten listeners (raw and enveloped) and reports each in one table", async () => {
    const run = await publish([
      manifests("blue", "blue"),
      "--topic",
      topicArn,
      "--app",
      APP,
      "--build-id",
      "fleet-1",
      "--target",
      CLUSTERS.join(","),
      "--result-queue",
      resultQueueUrl,
      "--wait",
      "120",
    ]);
    expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: "" });
    // The table at the end: a header and one row per target, each applied, Healthy (no workloads: not checked).
    const table = run.stdout.slice(run.stdout.indexOf("Targets: 10 of 10 expected answered"));
    const rows = table.split("\n").slice(2, 12).map((line) => line.trim().split(/\s{2,}/));
    expect(rows.map((row) => row[0]).sort()).toEqual([...CLUSTERS].sort());
    for (const row of rows) expect(row.slice(1, 4)).toEqual(["applied", "fleet-1", "Healthy"]);
    expect(run.stdout).toContain("Deploy succeeded on 10 targets");
    for (const member of members) {
      expect({ target: member.target, data: await configMapData(member.namespace, "settings") }).toEqual({ target: member.target, data: { color: "blue" } });
      const record = await recordOf(member);
      expect({ target: member.target, build: record?.current?.build.id }).toEqual({ target: member.target, build: "fleet-1" });
    }
  }, 180_000);

  test("an expected target that never answers: exit 4 naming it, the ten others reported, and --json carries the table", async () => {
    const summary = join(work, "summary.md");
    writeFileSync(summary, "");
    const expected = [...CLUSTERS, "cluster-11"].join(",");
    const run = await publish(
      [manifests("green", "green"), "--topic", topicArn, "--app", APP, "--build-id", "fleet-2", "--target", CLUSTERS.join(","), "--expect-targets", expected, "--result-queue", resultQueueUrl, "--wait", "40", "--json"],
      { GITHUB_STEP_SUMMARY: summary },
    );
    expect(run.code).toBe(4);
    expect(run.stderr).toContain("publish: no result from target cluster-11 within 40 s;");
    expect(run.stderr.split("\n").filter((line) => line.startsWith("publish: no result from target"))).toHaveLength(1);
    const output = JSON.parse(run.stdout) as { targets: string[]; wait: { exitCode: number; targets: { rows: { target: string; result: string; build: string }[]; unexpected: string[] } } };
    expect(output.targets).toEqual([...CLUSTERS].sort());
    expect(output.wait.exitCode).toBe(4);
    const byTarget = Object.fromEntries(output.wait.targets.rows.map((row) => [row.target, `${row.result} ${row.build}`]));
    expect(byTarget).toEqual(Object.fromEntries([...CLUSTERS.map((name) => [name, "applied fleet-2"]), ["cluster-11", "no result -"]]));
    expect(output.wait.targets.unexpected).toEqual([]);
    const markdown = readFileSync(summary, "utf8");
    expect(markdown).toContain("| cluster-11 | no result | - | - | - |");
    expect(markdown).toContain("#### kube-pico-cd: timed out waiting");
    for (const member of members) expect(await configMapData(member.namespace, "settings")).toEqual({ color: "green" });
  }, 180_000);

  test("a publish for two of the ten: those two apply it; the eight others delete it unrecorded, unapplied and unanswered", async () => {
    const named = ["cluster-2", "cluster-3"];
    const others = members.filter((member) => !named.includes(member.target));
    const historyBefore = new Map(await Promise.all(others.map(async (member) => [member.target, (await recordOf(member))?.history.length] as const)));
    const skipped = others.map((member) => member.listener.waitForLog((line) => line.msg === "message for other targets; deleted", 60_000));
    const run = await publish([manifests("red", "red"), "--topic", topicArn, "--app", APP, "--build-id", "fleet-3", "--target", named.join(","), "--result-queue", resultQueueUrl, "--wait", "60"]);
    // No "unexpected target" warnings: the eight send no result.
    expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: "" });
    expect(run.stdout).toContain("Targets: 2 of 2 expected answered");
    await Promise.all(skipped);
    for (const member of members) {
      const record = await recordOf(member);
      const mine = named.includes(member.target);
      expect({ target: member.target, data: await configMapData(member.namespace, "settings"), build: record?.current?.build.id }).toEqual({
        target: member.target,
        data: { color: mine ? "red" : "green" },
        build: mine ? "fleet-3" : "fleet-2",
      });
      if (!mine) {
        expect({ target: member.target, history: record?.history.length }).toEqual({ target: member.target, history: historyBefore.get(member.target) });
        const depth = (await sqs.send(new GetQueueAttributesCommand({ QueueUrl: member.queueUrl, AttributeNames: ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"] }))).Attributes!;
        expect({ target: member.target, visible: depth["ApproximateNumberOfMessages"], inFlight: depth["ApproximateNumberOfMessagesNotVisible"] }).toEqual({ target: member.target, visible: "0", inFlight: "0" });
      }
    }
  }, 120_000);
});
