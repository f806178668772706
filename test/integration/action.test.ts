/**
 * action.yml, run the way the GitHub runner runs a JavaScript action (`using: node24`): its
 * `runs.main` under node 24 (the node on PATH, which must be 24 or newer: .ci/run installs
 * one), in the workspace, with each input as `INPUT_<NAME>` (the given value or the declared
 * default) beside the runner's GITHUB_* variables. The job summary file must end up with
 * publish's Markdown tables.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { generateKeyPairSync } from "node:crypto";
import { ReceiveMessageCommand } from "@aws-sdk/client-sqs";
import { parse } from "yaml";
import { ACTION_INPUTS, inputVariable } from "../../lib/publish/action-inputs.ts";
import { decodeMessage } from "../../lib/wire/message.ts";
import { keyIdOf } from "../../lib/wire/signature.ts";
import { createNamespace, createQueue, kubectl, sqsClient, testEnv } from "../env/testenv.ts";
import { startListener } from "../helpers/listener-process.ts";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

interface ActionInput {
  description: string;
  required?: boolean;
  default?: string;
}

interface ActionFile {
  inputs: Record<string, ActionInput>;
  runs: { using: string; main: string };
}

const action = parse(readFileSync(join(root, "action.yml"), "utf8")) as ActionFile;

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

const github = {
  GITHUB_ACTIONS: "true",
  GITHUB_SHA: "0123456789abcdef0123456789abcdef01234567",
  GITHUB_REF: "refs/heads/main",
  GITHUB_REPOSITORY: "example/shop",
  GITHUB_RUN_ID: "4242",
  GITHUB_RUN_ATTEMPT: "1",
  GITHUB_ACTOR: "octocat",
  GITHUB_SERVER_URL: "https://github.com",
};

interface ActionRun {
  code: number;
  stdout: string;
  stderr: string;
  summary: string;
}

/** Runs the action's main in a workspace with a small app's manifests. */
async function runAction(inputs: Record<string, string>): Promise<ActionRun> {
  for (const name of Object.keys(inputs)) if (!action.inputs[name]) throw new Error(`action.yml has no input ${name}`);
  const workspace = mkdtempSync(join(tmpdir(), "kube-pico-cd-action-"));
  dirs.push(workspace);
  writeFileSync(join(workspace, "app.yaml"), "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: shop\nspec:\n  selector:\n    matchLabels: { app: web }\n  template:\n    metadata:\n      labels: { app: web }\n    spec:\n      containers: [{ name: web, image: nginx }]\n");
  writeFileSync(join(workspace, "config.yaml"), "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\n  namespace: shop\ndata:\n  greeting: hello\n");
  const summaryPath = join(workspace, "step-summary.md");
  writeFileSync(summaryPath, "");
  // The runner sets every declared input: the workflow's value, else the default.
  const inputEnv = Object.fromEntries(Object.entries(action.inputs).map(([name, input]) => [inputVariable(name), inputs[name] ?? input.default ?? ""]));
  const env: Record<string, string | undefined> = {
    ...process.env,
    ...github,
    GITHUB_WORKSPACE: workspace,
    GITHUB_STEP_SUMMARY: summaryPath,
    ...inputEnv,
  };
  // Nothing of this test's own configuration may leak in.
  for (const name of Object.keys(env)) if (name.startsWith("KUBE_PICO_CD_") || name.startsWith("AWS_ENDPOINT_URL")) delete env[name];
  return await new Promise((resolve, reject) => {
    const child = spawn("node", [join(root, action.runs.main)], { cwd: workspace, env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.once("error", reject);
    child.once("exit", (code) => resolve({ code: code ?? 1, stdout, stderr, summary: readFileSync(summaryPath, "utf8") }));
  });
}

const buildId = `${github.GITHUB_SHA}-${github.GITHUB_RUN_ID}-${github.GITHUB_RUN_ATTEMPT}`;

describe("action.yml", () => {
  test("runs dist/action.mjs on the runner's node 24, and the node on PATH that this test runs it with is 24 or newer", () => {
    expect(action.runs).toEqual({ using: "node24", main: "dist/action.mjs" });
    const version = spawnSync("node", ["--version"], { encoding: "utf8" }).stdout.trim();
    expect({ version, atLeast24: Number(/^v(\d+)\./.exec(version)?.[1]) >= 24 }).toEqual({ version, atLeast24: true });
  });

  test("declares the inputs publish needs, each passed to the variable lib/publish/action-inputs.ts names", () => {
    expect(Object.keys(action.inputs)).toEqual(Object.keys(ACTION_INPUTS));
    expect(Object.keys(action.inputs)).toEqual([
      "paths",
      "queue-urls",
      "topic",
      "region",
      "app",
      "target",
      "expect-targets",
      "dry-run",
      "plan",
      "endpoint-url",
      "build-timestamp-ms",
      "max-message-bytes",
      "result-queue",
      "wait",
      "signing-key",
    ]);
    expect(ACTION_INPUTS["signing-key"].variable).toBe("KUBE_PICO_CD_SIGNING_KEY");
    expect(ACTION_INPUTS["region"].variable).toBe("KUBE_PICO_CD_REGION");
    expect(ACTION_INPUTS["endpoint-url"].variable).toBe("KUBE_PICO_CD_ENDPOINT_URL");
  });

  test("a dry run writes the build's summary tables to GITHUB_STEP_SUMMARY and exits 0", async () => {
    const run = await runAction({ paths: "app.yaml\nconfig.yaml", "dry-run": "true", target: "prod", "build-timestamp-ms": "1700000000000" });
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    expect(run.stdout).toStartWith(`Dry run: build ${buildId} (2023-11-14T22:13:20.000Z) is valid; nothing was sent\n`);
    expect(run.summary).toStartWith(`### kube-pico-cd: dry run of build \`${buildId}\`\n`);
    expect(run.stdout).toContain("  app        shop (from GITHUB_REPOSITORY)\n");
    expect(run.summary).toContain(
      "| App | Target | Timestamp | Objects | Raw bytes | Gzipped bytes | Message bytes | Digest |\n|---|---|---|---:|---:|---:|---:|---|\n| shop | prod | 2023-11-14T22:13:20.000Z (1700000000000) | 2 |",
    );
    expect(run.summary).toContain("| Kind | Namespace | Objects |\n|---|---|---:|\n| ConfigMap | shop | 1 |\n| Deployment | shop | 1 |\n");
  });

  test("sends one message to each of the newline-separated queues and lists them in the summary", async () => {
    const { sqsEndpoint } = await testEnv();
    const queues = [await createQueue(), await createQueue()];
    const run = await runAction({ paths: "app.yaml, config.yaml", "queue-urls": queues.map((q) => q.url).join("\n"), "endpoint-url": sqsEndpoint, target: "staging" });
    expect(run.code).toBe(0);
    const sqs = await sqsClient();
    for (const queue of queues) {
      const received = await sqs.send(new ReceiveMessageCommand({ QueueUrl: queue.url, MaxNumberOfMessages: 10, WaitTimeSeconds: 1 }));
      expect(received.Messages?.length).toBe(1);
      const message = received.Messages![0]!;
      const decoded = decodeMessage(message.Body!);
      expect(decoded.build.id).toBe(buildId);
      expect(decoded.build.repository).toBe("example/shop");
      expect(decoded.target).toBe("staging");
      expect(decoded.app).toBe("shop");
      expect(decoded.objects.map((o) => `${o.kind}/${o.metadata.name}`)).toEqual(["Deployment/web", "ConfigMap/web"]);
      expect(run.summary).toContain(`| ${queue.url} | \`${message.MessageId}\` |`);
    }
    expect(run.summary).toStartWith(`### kube-pico-cd: published build \`${buildId}\`\n`);
  });

  test("the app input names the app, and \"default\" sends a body without one", async () => {
    const { sqsEndpoint } = await testEnv();
    const sqs = await sqsClient();
    for (const [app, expected] of [["payments", "payments"], ["default", undefined]] as const) {
      const queue = await createQueue();
      const run = await runAction({ paths: "app.yaml", "queue-urls": queue.url, "endpoint-url": sqsEndpoint, app });
      expect(run.code).toBe(0);
      expect(run.stdout).toContain(`  app        ${app} (from KUBE_PICO_CD_APP)\n`);
      const received = await sqs.send(new ReceiveMessageCommand({ QueueUrl: queue.url, MaxNumberOfMessages: 10, WaitTimeSeconds: 1 }));
      expect((JSON.parse(received.Messages![0]!.Body!) as { app?: string }).app).toBe(expected);
    }
  });

  test("an invalid app input fails with exit code 1, naming the variable and the rule, and sends nothing", async () => {
    const run = await runAction({ paths: "app.yaml", "dry-run": "true", app: "Payments" });
    expect(run.code).toBe(1);
    expect(run.stderr).toBe(
      "publish: Invalid configuration:\n  - KUBE_PICO_CD_APP: app name \"Payments\" is not a DNS label (lowercase letters, digits and '-', starting and ending with a letter or digit)\n",
    );
    expect(run.summary).toBe("");
  });

  test("signs the bundle with the signing-key input", async () => {
    const { sqsEndpoint } = await testEnv();
    const queue = await createQueue();
    const { publicKey, privateKey } = generateKeyPairSync("ed25519");
    const pem = privateKey.export({ type: "pkcs8", format: "pem" }).toString();
    const run = await runAction({ paths: "app.yaml", "queue-urls": queue.url, "endpoint-url": sqsEndpoint, "signing-key": pem });
    expect(run.code).toBe(0);
    const sqs = await sqsClient();
    const received = await sqs.send(new ReceiveMessageCommand({ QueueUrl: queue.url, MaxNumberOfMessages: 10, WaitTimeSeconds: 1 }));
    expect(received.Messages?.length).toBe(1);
    const decoded = decodeMessage(received.Messages![0]!.Body!);
    expect(decoded.signature?.algorithm).toBe("ed25519");
    expect(decoded.signature?.keyId).toBe(keyIdOf(publicKey));
  });

  test("with result-queue and wait, fails with exit code 4 when no listener answers, and says so in the summary", async () => {
    const { sqsEndpoint } = await testEnv();
    const [queue, resultQueue] = [await createQueue(), await createQueue()];
    const run = await runAction({ paths: "app.yaml", "queue-urls": queue.url, "endpoint-url": sqsEndpoint, "result-queue": resultQueue.url, wait: "2s" });
    expect(run.code).toBe(4);
    expect(run.stderr).toContain(`publish: timed out waiting 2 s for the result from ${queue.url}`);
    expect(run.summary).toContain("#### kube-pico-cd: timed out waiting\n");
    expect(run.summary).toContain(`| ${queue.url} | - | - | no result within 2 s | - | - | - | - | - |`);
  });

  test("plan mode for pull requests: a listener answers with the plan, which goes to the job summary; nothing is applied", async () => {
    const { sqsEndpoint } = await testEnv();
    const [queue, resultQueue] = [await createQueue(), await createQueue()];
    // The workspace's manifests are for namespace shop: the listener's own namespace is another.
    const ns = await createNamespace("action-plan");
    await kubectl(["create", "namespace", "shop"]);
    const listener = await startListener({ queueUrl: queue.url, namespace: ns, env: { KUBE_PICO_CD_RESULT_QUEUE: resultQueue.url } });
    try {
      const run = await runAction({ paths: "app.yaml\nconfig.yaml", "queue-urls": queue.url, "endpoint-url": sqsEndpoint, "result-queue": resultQueue.url, plan: "true", wait: "60s" });
      expect(run.stderr).toBe("");
      expect(run.code).toBe(0);
      expect(run.stdout).toContain("Asked for a plan of build");
      expect(run.stdout).toContain("Plan succeeded on 1 queue");
      expect(run.summary).toContain("### kube-pico-cd: plan of build");
      expect(run.summary).toContain(`##### Plan of app shop on ${queue.url}`);
      expect(run.summary).toContain("```diff\n");
      expect(run.summary).toMatch(/plan: [0-9]+ to create, [0-9]+ to change/);
      expect(run.summary).toContain("(app.yaml:1:1)");
      // A plan applies nothing and records nothing.
      expect((await kubectl(["get", "configmap", "kube-pico-cd-state-shop", "-n", ns])).code).not.toBe(0);
    } finally {
      listener.kill("SIGTERM");
      await listener.exited;
    }
  }, 120_000);

  test("exits 1 without sending when neither dry-run nor queue-urls is given", async () => {
    const run = await runAction({ paths: "app.yaml" });
    expect(run.stderr).toContain("publish: ");
    expect(run.code).toBe(1);
    expect(run.summary).toBe("");
  });

  test("a queue given by name with the region input is resolved and sent to, with nothing on stderr (no deprecated variable is set)", async () => {
    const { sqsEndpoint, region } = await testEnv();
    const queue = await createQueue();
    const run = await runAction({ paths: "app.yaml", "queue-urls": queue.name, "endpoint-url": sqsEndpoint, region });
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    expect(run.summary).toContain(`| ${queue.url} | \``);
  });

  test("input values are never run as shell code", async () => {
    const marker = join(tmpdir(), `kube-pico-cd-action-injected-${process.pid}`);
    rmSync(marker, { force: true });
    const run = await runAction({ paths: "app.yaml", "dry-run": "true", target: `$(touch ${marker})"; touch ${marker}; echo "` });
    expect(existsSync(marker)).toBe(false);
    expect(run.code).toBe(0);
    expect(run.summary).toContain(`| $(touch ${marker})"; touch ${marker}; echo " |`);
  });
});
