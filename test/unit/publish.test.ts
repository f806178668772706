import { describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { decodeMessage } from "../../lib/wire/message.ts";
import { normalizeArgv } from "../../lib/cli-options.ts";
import { parsePublishConfig, parseWaitTimeout, publishHelpText, PUBLISH_OPTIONS } from "../../lib/publish/config.ts";
import { waitExitCode } from "../../lib/publish/wait.ts";
import { VERSION } from "../../lib/version.ts";
import { main } from "../../publish.ts";
import { configProblems } from "../helpers/thrown.ts";

const fixtures = resolve(import.meta.dir, "../fixtures");

/** Runs main() in the fixtures directory with no SQS client (a dry run must never make one). */
async function run(argv: string[], env: Record<string, string> = {}) {
  let stdout = "";
  let stderr = "";
  const code = await main(argv, env, {
    cwd: fixtures,
    stdout: (text) => (stdout += text),
    stderr: (text) => (stderr += text),
    now: () => 1_700_000_000_000,
    createSqsClient: () => {
      throw new Error("no SQS client in unit tests");
    },
  });
  return { code, stdout, stderr };
}

const problems = (argv: string[], env: Record<string, string> = {}) => configProblems(() => parsePublishConfig(argv, env));

describe("parsePublishConfig()", () => {
  test("parsePublishConfig() applies the defaults", () => {
    expect(parsePublishConfig(["k8s", "--queue", "deploy"], {})).toEqual({
      paths: ["k8s"],
      queues: [{ name: "deploy" }],
      topics: [],
      ignore: [],
      kustomize: true,
      kubectl: "kubectl",
      allowEmpty: false,
      build: {},
      maxMessageBytes: 262_144,
      dryRun: false,
      plan: false,
      json: false,
      keygen: false,
      version: false,
      help: false,
      deprecations: [],
    });
  });

  test("parsePublishConfig() reads KUBE_PICO_CD_* variables, and flags win over them", () => {
    const config = parsePublishConfig(["--target", "prod"], {
      KUBE_PICO_CD_PATHS: "k8s, crds",
      KUBE_PICO_CD_QUEUE: "a,b.fifo",
      KUBE_PICO_CD_TARGET: "staging",
      KUBE_PICO_CD_NO_KUSTOMIZE: "true",
      KUBE_PICO_CD_BUILD_TIMESTAMP_MS: "1700000000000",
      KUBE_PICO_CD_MAX_MESSAGE_BYTES: "1048576",
      KUBE_PICO_CD_ENDPOINT_URL: "http://127.0.0.1:9324",
      KUBE_PICO_CD_REGION: "eu-west-1",
    });
    expect(config.paths).toEqual(["k8s", "crds"]);
    expect(config.queues).toEqual([{ name: "a" }, { name: "b.fifo" }]);
    expect(config.target).toBe("prod");
    expect(config.kustomize).toBe(false);
    expect(config.build).toEqual({ timestampMs: 1_700_000_000_000 });
    expect(config.maxMessageBytes).toBe(1_048_576);
    expect(config.endpointUrl).toBe("http://127.0.0.1:9324");
    expect(config.region).toBe("eu-west-1");
    expect(config.deprecations).toEqual([]);
  });

  test("parsePublishConfig() falls back to AWS_REGION, AWS_DEFAULT_REGION and AWS_ENDPOINT_URL_SQS, in that order", () => {
    expect(parsePublishConfig(["k8s", "--dry-run"], { AWS_REGION: "eu-west-1", AWS_DEFAULT_REGION: "us-east-1" }).region).toBe("eu-west-1");
    expect(parsePublishConfig(["k8s", "--dry-run"], { AWS_DEFAULT_REGION: "us-east-1" }).region).toBe("us-east-1");
    expect(parsePublishConfig(["k8s", "--dry-run"], { KUBE_PICO_CD_REGION: "ap-south-1", AWS_REGION: "eu-west-1" }).region).toBe("ap-south-1");
    expect(parsePublishConfig(["k8s", "--dry-run"], { AWS_ENDPOINT_URL_SQS: "http://localhost:4566" }).endpointUrl).toBe("http://localhost:4566");
  });

  test("parsePublishConfig() still reads the deprecated names, each with a notice naming the current one", () => {
    const config = parsePublishConfig(["k8s", "--allow-empty"], {
      KUBE_PICO_CD_DEPLOY_QUEUE_NAME: "deploy",
      KUBE_PICO_CD_SQS_ENDPOINT: "http://localhost:4566",
      KUBE_PICO_CD_AWS_REGION: "eu-west-1",
      AWS_REGION: "us-east-1",
    });
    expect(config).toMatchObject({ queues: [{ name: "deploy" }], endpointUrl: "http://localhost:4566", region: "eu-west-1", allowEmpty: true });
    expect(config.deprecations).toEqual([
      "KUBE_PICO_CD_DEPLOY_QUEUE_NAME is deprecated: use KUBE_PICO_CD_QUEUE",
      "--allow-empty is deprecated: use --allow-empty-bundle",
      "KUBE_PICO_CD_SQS_ENDPOINT is deprecated: use KUBE_PICO_CD_ENDPOINT_URL",
      "KUBE_PICO_CD_AWS_REGION is deprecated: use KUBE_PICO_CD_REGION",
    ]);
  });

  test("parsePublishConfig() takes --wait TIMEOUT as the timeout, and a path after --wait as a path", () => {
    expect(parsePublishConfig(["--wait", "10m", "k8s", "-q", "q", "--result-queue", "r"], {})).toMatchObject({ paths: ["k8s"], waitTimeoutMs: 600_000 });
    expect(parsePublishConfig(["k8s", "-q", "q", "--result-queue", "r", "--wait", "45"], {})).toMatchObject({ paths: ["k8s"], waitTimeoutMs: 45_000 });
    expect(parsePublishConfig(["--wait", "k8s/", "-q", "q", "--result-queue", "r"], {})).toMatchObject({ paths: ["k8s/"], waitTimeoutMs: 900_000 });
  });

  test("parsePublishConfig() suggests the closest flag for a misspelt one", () => {
    expect(problems(["k8s", "--dyr-run"])).toEqual(["--dyr-run: unknown option; did you mean --dry-run? (see --help)"]);
    expect(problems(["k8s", "--endpoint", "http://x"])).toEqual(["--endpoint: unknown option; did you mean --endpoint-url? (see --help)"]);
    expect(problems(["k8s", "--regoin", "eu-west-1"])).toEqual(["--regoin: unknown option; did you mean --region? (see --help)"]);
  });

  test("parsePublishConfig() names the flag or variable of every problem", () => {
    expect(
      problems(["k8s", "-q", "htp:/x", "--max-message-bytes", "2000000", "--build-timestamp-ms", "1.5"], {
        KUBE_PICO_CD_DRY_RUN: "maybe",
        KUBE_PICO_CD_MESSAGE_GROUP_ID: "a b",
      }),
    ).toEqual([
      'KUBE_PICO_CD_DRY_RUN: "maybe" is not a boolean (use true or false)',
      '--queue: "htp:/x" is not a queue URL (expected a queue URL such as https://sqs.eu-west-1.amazonaws.com/123456789012/deploy, or a queue name of up to 80 letters, digits, - and _ (FIFO names end in .fifo))',
      "--build-timestamp-ms: must be a whole number of milliseconds since the epoch",
      "--max-message-bytes: must be at most 1048576 (SQS's maximum)",
      'KUBE_PICO_CD_MESSAGE_GROUP_ID: "a b" is not a valid message group id (1 to 128 printable ASCII characters without spaces)',
    ]);
  });

  test("parsePublishConfig() rejects an unknown flag", () => {
    expect(problems(["k8s", "--queue", "q", "--bogus"])).toEqual(["--bogus: unknown option (see --help)"]);
  });

  test("parsePublishConfig() rejects a flag without its value", () => {
    expect(problems(["k8s", "--queue"])).toEqual(["--queue: argument missing"]);
  });

  test("parsePublishConfig() refuses a value that starts with a dash in one line naming the flag and the value", () => {
    expect(problems(["k8s", "--queue", "q", "--max-message-bytes", "-5"])).toEqual([
      `--max-message-bytes: a value that starts with a dash must be attached with '=' (--max-message-bytes=VALUE): current value is "-5"`,
    ]);
    expect(problems(["k8s", "-q", "--dry-run"])).toEqual([`--queue: a value that starts with a dash must be attached with '=' (--queue=VALUE): current value is "--dry-run"`]);
  });

  test("parsePublishConfig() checks a value that starts with a dash when it is attached with '='", () => {
    expect(problems(["k8s", "--queue", "q", "--max-message-bytes=-5"])).toEqual(['--max-message-bytes: must be a whole number of bytes: current value is "-5"']);
  });

  test("parsePublishConfig() requires paths, and a queue unless --dry-run", () => {
    expect(problems([])).toEqual([
      "no manifest paths given: pass files or directories as arguments, or set KUBE_PICO_CD_PATHS",
      "--queue: no queue or --topic given (or set KUBE_PICO_CD_QUEUE or KUBE_PICO_CD_TOPIC); pass --dry-run to bundle without sending",
    ]);
    expect(parsePublishConfig(["k8s", "--dry-run"], {}).queues).toEqual([]);
  });
});

describe("publishHelpText()", () => {
  test("publishHelpText() lists every option with its default and the exit codes", () => {
    const help = publishHelpText();
    for (const flag of [
      "--queue URL|NAME",
      "--topic ARN",
      "--expect-targets NAME,...|COUNT",
      "--sns-endpoint-url URL",
      "--app NAME",
      "--target NAME",
      "--ignore GLOB",
      "--no-kustomize",
      "--kubectl PATH",
      "--allow-empty-bundle",
      "--build-id ID",
      "--build-timestamp-ms MS",
      "--max-message-bytes BYTES",
      "--message-group-id ID",
      "--endpoint-url URL",
      "--region REGION",
      "--dry-run",
      "--output-body FILE",
      "--json",
      "--signing-key-file PATH",
      "--keygen",
      "--version",
      "--help",
    ]) {
      expect(help).toContain(flag);
    }
    expect(help.match(/default: /g)?.length).toBe(33);
    expect(help).toContain("(env KUBE_PICO_CD_REGION, AWS_REGION, AWS_DEFAULT_REGION; default: the AWS SDK's (its profile); deprecated: KUBE_PICO_CD_AWS_REGION)");
    expect(help).toContain("(env KUBE_PICO_CD_APP; default: the repository name in $GITHUB_REPOSITORY (acme/Shop_API: shop-api), else default)");
    expect(help).toContain("(env KUBE_PICO_CD_MAX_MESSAGE_BYTES; default: 262144)");
    expect(help).toContain("  2  sending failed");
  });
});

describe("main()", () => {
  const basic = ["repo-basic", "--ignore", "*.tmpl.yaml", "--build-id", "b-1"];

  test("main() --version prints package.json's version and exits 0", async () => {
    const { code, stdout, stderr } = await run(["--version"]);
    expect(VERSION).toBe(JSON.parse(readFileSync(resolve(import.meta.dir, "../../package.json"), "utf8")).version);
    expect([code, stdout, stderr]).toEqual([0, `kube-pico-cd publish ${VERSION}\n`, ""]);
  });

  test("main() warns on stderr of each deprecated name it read, and goes on", async () => {
    const { code, stderr } = await run([...basic, "--dry-run"], { KUBE_PICO_CD_AWS_REGION: "eu-west-1" });
    expect(code).toBe(0);
    expect(stderr).toBe("publish: warning: KUBE_PICO_CD_AWS_REGION is deprecated: use KUBE_PICO_CD_REGION\n");
  });

  test("main() --help prints the help and exits 0", async () => {
    const { code, stdout } = await run(["--help"]);
    expect(code).toBe(0);
    expect(stdout).toBe(`${publishHelpText()}\n`);
  });

  test("main() --dry-run prints objects by kind and namespace, sizes and digest, and exits 0", async () => {
    const { code, stdout, stderr } = await run([...basic, "--dry-run", "--target", "prod", "-q", "deploy"]);
    expect(stderr).toBe("");
    expect(code).toBe(0);
    const lines = stdout.split("\n");
    expect(lines[0]).toBe("Dry run: build b-1 (2023-11-14T22:13:20.000Z) is valid; nothing was sent");
    expect(stdout).toContain("  target         prod\n");
    expect(stdout).toContain("  objects        6 from 4 inputs\n");
    expect(stdout).toMatch(/ {2}digest {9}sha256:[0-9a-f]{64}\n/);
    expect(stdout).toMatch(/ {2}size {11}\d+ bytes raw, \d+ gzipped, message \d+ of 262144 bytes allowed\n/);
    expect(stdout).toContain("  would send to  deploy\n");
    expect(stdout).toContain(
      [
        "  KIND            NAMESPACE  OBJECTS",
        "  ConfigMap       shop       1",
        "  Deployment      shop       1",
        "  Namespace       -          1",
        "  Role            shop       1",
        "  Service         shop       1",
        "  ServiceAccount  shop       1",
      ].join("\n"),
    );
  });

  test("main() --json prints one JSON object", async () => {
    const { code, stdout } = await run([...basic, "--dry-run", "--json"]);
    expect(code).toBe(0);
    const result = JSON.parse(stdout);
    expect(result.dryRun).toBe(true);
    expect(result.build).toEqual({ id: "b-1", timestampMs: 1_700_000_000_000 });
    expect(result.objects).toBe(6);
    expect(result.sent).toEqual([]);
    expect(result.byKindAndNamespace[0]).toEqual({ kind: "ConfigMap", namespace: "shop", count: 1 });
  });

  test("main() --output-body writes a body that decodes to the bundle", async () => {
    const file = join(mkdtempSync(join(tmpdir(), "publish-test-")), "body.json");
    const { code, stdout } = await run([...basic, "--dry-run", "--json", "--output-body", file]);
    expect(code).toBe(0);
    const decoded = decodeMessage(readFileSync(file, "utf8"));
    expect(decoded.digest).toBe(JSON.parse(stdout).digest);
    expect(decoded.objects.map((object) => object.kind)).toEqual([
      "Namespace",
      "ServiceAccount",
      "Role",
      "ConfigMap",
      "Deployment",
      "Service",
    ]);
  });

  test("main() appends a Markdown table to GITHUB_STEP_SUMMARY", async () => {
    const file = join(mkdtempSync(join(tmpdir(), "publish-test-")), "summary.md");
    const { code } = await run([...basic, "--dry-run"], { GITHUB_STEP_SUMMARY: file });
    expect(code).toBe(0);
    const markdown = readFileSync(file, "utf8");
    expect(markdown).toStartWith("### kube-pico-cd: dry run of build `b-1`\n");
    expect(markdown).toContain("| Kind | Namespace | Objects |\n|---|---|---:|\n| ConfigMap | shop | 1 |\n");
  });

  test("main() exits 1 with one line for invalid manifests", async () => {
    const { code, stdout, stderr } = await run(["invalid/missing-kind", "--dry-run"]);
    expect(code).toBe(1);
    expect(stdout).toBe("");
    expect(stderr).toBe('publish: Cannot bundle the manifests: invalid/missing-kind/app.yaml:6:1: object "no-kind" has no kind\n');
  });

  test("main() exits 1 when the encoded message is over --max-message-bytes, saying how to raise the limit", async () => {
    const { code, stderr } = await run([...basic, "--dry-run", "--max-message-bytes", "1024", "--target", "x".repeat(300)]);
    expect(code).toBe(1);
    expect(stderr).toMatch(
      /^publish: Cannot publish: the encoded message is \d+ bytes, over the limit of 1024 bytes \(--max-message-bytes; \d+ bytes of manifests gzip to \d+\)\. Raise the queue's limit \(aws sqs set-queue-attributes --queue-url URL --attributes MaximumMessageSize=1048576\) and pass --max-message-bytes 1048576, or publish fewer manifests\.\n$/,
    );
  });

  test("main() exits 1 for a usage error", async () => {
    const { code, stderr } = await run(["--nope"]);
    expect(code).toBe(1);
    expect(stderr).toBe("publish: Invalid configuration:\n  - --nope: unknown option (see --help)\n");
  });

  test("main() prints a value that starts with a dash as one line naming the flag and the value", async () => {
    const { code, stdout, stderr } = await run([...basic, "--dry-run", "--max-message-bytes", "-5"]);
    expect(code).toBe(1);
    expect(stdout).toBe("");
    expect(stderr).toBe(
      `publish: Invalid configuration:\n  - --max-message-bytes: a value that starts with a dash must be attached with '=' (--max-message-bytes=VALUE): current value is "-5"\n`,
    );
  });
});

describe("--plan", () => {
  test("parsePublishConfig() --plan waits 5 minutes by default, needs a result queue, and is no dry run", () => {
    const config = parsePublishConfig(["k8s", "--queue", "deploy", "--plan", "--result-queue", "results"], {});
    expect(config.plan).toBe(true);
    expect(config.waitTimeoutMs).toBe(300_000);
    expect(parsePublishConfig(["k8s", "--queue", "deploy", "--plan", "--result-queue", "results", "--wait=90s"], {}).waitTimeoutMs).toBe(90_000);
    expect(problems(["k8s", "--queue", "deploy", "--plan"])).toEqual([expect.stringContaining("--plan: no result queue to receive the plan on")]);
    expect(problems(["k8s", "--plan", "--dry-run", "--result-queue", "r"])).toEqual([expect.stringContaining("--plan: cannot be combined with --dry-run")]);
  });
});

describe("waitExitCode()", () => {
  test("waitExitCode() is 0 when every queue answered with a success", () => {
    expect(waitExitCode([{ result: "applied", health: { status: "Healthy" } }, { result: "superseded" }, { result: "duplicate" }], 0)).toBe(0);
  });

  test("waitExitCode() is 3 for any failure, even when another queue gave no result", () => {
    for (const result of [{ result: "failed" }, { result: "rejected" }, { result: "applied", health: { status: "Degraded" } }, { result: "applied", health: { status: "Timeout" } }] as const) {
      expect(waitExitCode([{ result: "applied" }, result], 0)).toBe(3);
      expect(waitExitCode([result], 1)).toBe(3);
    }
  });

  test("waitExitCode() is 4 when a queue gave no result and none failed", () => {
    expect(waitExitCode([{ result: "applied" }], 1)).toBe(4);
    expect(waitExitCode([], 2)).toBe(4);
  });
});

describe("normalizeArgv() with publish's options", () => {
  test("normalizeArgv() turns a bare --wait into --wait=900, --wait TIMEOUT into --wait=TIMEOUT, and leaves --wait=TIMEOUT alone", () => {
    expect(normalizeArgv(PUBLISH_OPTIONS, ["k8s", "--wait"])).toEqual(["k8s", "--wait=900"]);
    expect(normalizeArgv(PUBLISH_OPTIONS, ["--wait", "k8s"])).toEqual(["--wait=900", "k8s"]);
    expect(normalizeArgv(PUBLISH_OPTIONS, ["--wait", "10m", "k8s"])).toEqual(["--wait=10m", "k8s"]);
    expect(normalizeArgv(PUBLISH_OPTIONS, ["--wait", "90S"])).toEqual(["--wait=90S"]);
    expect(normalizeArgv(PUBLISH_OPTIONS, ["--wait=10m", "k8s"])).toEqual(["--wait=10m", "k8s"]);
  });

  test("normalizeArgv() leaves a --wait that is another option's value, or after --, as it is", () => {
    expect(normalizeArgv(PUBLISH_OPTIONS, ["--target", "--wait", "k8s"])).toEqual(["--target", "--wait", "k8s"]);
    expect(normalizeArgv(PUBLISH_OPTIONS, ["-q", "--wait"])).toEqual(["-q", "--wait"]);
    expect(normalizeArgv(PUBLISH_OPTIONS, ["k8s", "--", "--wait"])).toEqual(["k8s", "--", "--wait"]);
  });
});
describe("parseWaitTimeout()", () => {
  test("parseWaitTimeout() reads seconds, and numbers ending in s, m or h", () => {
    expect(parseWaitTimeout("300", false)).toEqual({ seconds: 300 });
    expect(parseWaitTimeout("90s", false)).toEqual({ seconds: 90 });
    expect(parseWaitTimeout("10m", false)).toEqual({ seconds: 600 });
    expect(parseWaitTimeout("1h", false)).toEqual({ seconds: 3_600 });
  });

  test("parseWaitTimeout() takes true and false only from the variable", () => {
    expect(parseWaitTimeout("true", true)).toEqual({ seconds: 900 });
    expect(parseWaitTimeout("false", true)).toEqual({ seconds: undefined });
    expect(parseWaitTimeout("true", false)).toEqual({ problem: 'must be a timeout such as 300, 90s or 10m (seconds, or a number ending in s, m or h): current value is "true"' });
  });

  test("parseWaitTimeout() names the value it cannot read", () => {
    for (const text of ["", "abc", "10 m", "1.5m", "-5", "10d"]) {
      expect(parseWaitTimeout(text, false)).toEqual({ problem: `must be a timeout such as 300, 90s or 10m (seconds, or a number ending in s, m or h): current value is ${JSON.stringify(text)}` });
    }
  });

  test("parseWaitTimeout() refuses less than 1 second and more than 6 hours", () => {
    expect(parseWaitTimeout("0", false)).toEqual({ problem: 'must be at least 1 second: current value is "0"' });
    expect(parseWaitTimeout("7h", false)).toEqual({ problem: 'must be at most 6h (21600 seconds): current value is "7h"' });
  });
});
describe("parsePublishConfig() with --wait", () => {
  test("parsePublishConfig() reads --wait, --wait=TIMEOUT and the variables", () => {
    expect(parsePublishConfig(["k8s", "--queue", "q", "--result-queue", "r", "--wait"], {}).waitTimeoutMs).toBe(900_000);
    expect(parsePublishConfig(["--wait", "k8s", "--queue", "q", "--result-queue", "r"], {}).paths).toEqual(["k8s"]);
    expect(parsePublishConfig(["k8s", "--queue", "q", "--result-queue", "r", "--wait=90s"], {})).toMatchObject({ waitTimeoutMs: 90_000, resultQueue: { name: "r" } });
    expect(parsePublishConfig(["k8s", "--queue", "q"], { KUBE_PICO_CD_RESULT_QUEUE: "r", KUBE_PICO_CD_WAIT: "10m" }).waitTimeoutMs).toBe(600_000);
    expect(parsePublishConfig(["k8s", "--queue", "q"], { KUBE_PICO_CD_WAIT: "false" }).waitTimeoutMs).toBeUndefined();
    expect(parsePublishConfig(["k8s", "--queue", "q"], {}).waitTimeoutMs).toBeUndefined();
  });

  test("parsePublishConfig() refuses --wait without a result queue", () => {
    expect(problems(["k8s", "--queue", "q", "--wait"])).toEqual([
      "--wait: no result queue to wait on: pass --result-queue URL|NAME (or set KUBE_PICO_CD_RESULT_QUEUE), the queue the listeners send results to",
    ]);
    expect(problems(["k8s", "--queue", "q"], { KUBE_PICO_CD_WAIT: "true" })[0]).toStartWith("KUBE_PICO_CD_WAIT: no result queue to wait on");
  });

  test("parsePublishConfig() names the flag or variable of a bad TIMEOUT", () => {
    expect(problems(["k8s", "--queue", "q", "--result-queue", "r", "--wait=soon"])).toEqual([
      '--wait: must be a timeout such as 300, 90s or 10m (seconds, or a number ending in s, m or h): current value is "soon"',
    ]);
    expect(problems(["k8s", "--queue", "q", "--result-queue", "r"], { KUBE_PICO_CD_WAIT: "0" })).toEqual(['KUBE_PICO_CD_WAIT: must be at least 1 second: current value is "0"']);
  });

  test("parsePublishConfig() ignores --wait with --dry-run, as nothing is sent", () => {
    expect(parsePublishConfig(["k8s", "--dry-run", "--wait"], {}).waitTimeoutMs).toBeUndefined();
  });

  test("parsePublishConfig() refuses a result queue that is neither a URL nor a name", () => {
    expect(problems(["k8s", "--queue", "q", "--result-queue", "no such queue"])[0]).toStartWith('--result-queue: "no such queue" is neither a queue URL nor a queue name');
  });
});
describe("parsePublishConfig() of the app", () => {
  const rule = "is not a DNS label (lowercase letters, digits and '-', starting and ending with a letter or digit)";

  test("parsePublishConfig() takes the app from the repository name in GITHUB_REPOSITORY", () => {
    expect(parsePublishConfig(["k8s", "--dry-run"], { GITHUB_REPOSITORY: "acme/Shop_API" }).app).toEqual({ name: "shop-api", from: "GITHUB_REPOSITORY" });
  });

  test("parsePublishConfig() has no app (the default app) without --app and GITHUB_REPOSITORY", () => {
    expect(parsePublishConfig(["k8s", "--dry-run"], {})).not.toHaveProperty("app");
    expect(parsePublishConfig(["k8s", "--dry-run"], { GITHUB_REPOSITORY: "" })).not.toHaveProperty("app");
  });

  test("parsePublishConfig() takes --app over KUBE_PICO_CD_APP over GITHUB_REPOSITORY, and says where it came from", () => {
    const env = { GITHUB_REPOSITORY: "acme/shop", KUBE_PICO_CD_APP: "from-env" };
    expect(parsePublishConfig(["k8s", "--dry-run", "--app", "from-flag"], env).app).toEqual({ name: "from-flag", from: "--app" });
    expect(parsePublishConfig(["k8s", "--dry-run"], env).app).toEqual({ name: "from-env", from: "KUBE_PICO_CD_APP" });
    expect(parsePublishConfig(["k8s", "--dry-run", "--app", "default"], env).app).toEqual({ name: "default", from: "--app" });
  });

  test("parsePublishConfig() refuses an invalid --app or KUBE_PICO_CD_APP, naming the flag or variable and the rule", () => {
    expect(problems(["k8s", "--dry-run", "--app", "Shop_API"])).toEqual([`--app: app name "Shop_API" ${rule}`]);
    expect(problems(["k8s", "--dry-run"], { KUBE_PICO_CD_APP: "-shop" })).toEqual([`KUBE_PICO_CD_APP: app name "-shop" ${rule}`]);
    expect(problems(["k8s", "--dry-run", "--app", "a".repeat(64)])).toEqual([`--app: app name "${"a".repeat(64)}" is longer than 63 characters`]);
    expect(problems(["k8s", "--dry-run", "--app="])).toEqual(["--app: an app name must not be empty"]);
  });

  test("parsePublishConfig() leaves the FIFO message group to the app unless --message-group-id is given", () => {
    expect(parsePublishConfig(["k8s", "--dry-run"], {})).not.toHaveProperty("messageGroupId");
    expect(parsePublishConfig(["k8s", "--dry-run", "--message-group-id", "all"], {}).messageGroupId).toBe("all");
  });
});

describe("main() and the app", () => {
  const basic = ["repo-basic", "--ignore", "*.tmpl.yaml", "--build-id", "b-1", "--dry-run"];

  async function bodyOf(argv: string[], env: Record<string, string> = {}) {
    const file = join(mkdtempSync(join(tmpdir(), "publish-test-")), "body.json");
    const run_ = await run([...argv, "--output-body", file], env);
    return { ...run_, body: readFileSync(file, "utf8") };
  }

  test("main() publishes for the app GITHUB_REPOSITORY names, and prints it with where it came from", async () => {
    const { code, stdout, body } = await bodyOf(basic, { GITHUB_REPOSITORY: "acme/Shop_API" });
    expect(code).toBe(0);
    expect(stdout).toContain("  app        shop-api (from GITHUB_REPOSITORY)\n");
    expect(JSON.parse(body).app).toBe("shop-api");
    expect(decodeMessage(body).app).toBe("shop-api");
  });

  test("main() without an app publishes a body without one, for the default app", async () => {
    const { code, stdout, body } = await bodyOf(basic);
    expect(code).toBe(0);
    expect(stdout).toContain("  app        default (no --app given, no GITHUB_REPOSITORY)\n");
    expect(JSON.parse(body)).not.toHaveProperty("app");
  });

  test("main() --app default writes no app into the body, so listeners before apps accept it", async () => {
    const { code, stdout, body } = await bodyOf([...basic, "--app", "default"], { GITHUB_REPOSITORY: "acme/shop" });
    expect(code).toBe(0);
    expect(stdout).toContain("  app        default (from --app)\n");
    expect(JSON.parse(body)).not.toHaveProperty("app");
    expect(decodeMessage(body).app).toBe("default");
  });

  test("main() --json and the job summary name the app", async () => {
    const file = join(mkdtempSync(join(tmpdir(), "publish-test-")), "summary.md");
    const { code, stdout } = await run([...basic, "--json", "--app", "shop"], { GITHUB_STEP_SUMMARY: file });
    expect(code).toBe(0);
    expect(JSON.parse(stdout)).toMatchObject({ app: "shop", appFrom: "--app" });
    const markdown = readFileSync(file, "utf8");
    expect(markdown).toContain("| App | Target | Timestamp | Objects | Raw bytes | Gzipped bytes | Message bytes | Digest |\n|---|---|---|---:|---:|---:|---:|---|\n| shop | - | ");
  });

  test("main() exits 1 for an invalid --app, naming the rule, before it bundles anything", async () => {
    const { code, stdout, stderr } = await run([...basic, "--app", "Shop"]);
    expect(code).toBe(1);
    expect(stdout).toBe("");
    expect(stderr).toBe(
      "publish: Invalid configuration:\n  - --app: app name \"Shop\" is not a DNS label (lowercase letters, digits and '-', starting and ending with a letter or digit)\n",
    );
  });
});
