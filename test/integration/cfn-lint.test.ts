/**
 * deploy/aws/: the CloudFormation template passes cfn-lint (installed from PyPI by
 * scripts/cfn-lint.sh on first use), and its IAM roles grant exactly the SQS actions the
 * publisher and the listener need, on the deploy queue only.
 */
import { beforeAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parse, type Tags } from "yaml";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const templatePath = join(root, "deploy", "aws", "kube-pico-cd.yaml");
const script = join(root, "scripts", "cfn-lint.sh");

// The first run creates the venv and installs cfn-lint from PyPI.
const installTimeoutMs = 300_000;

function cfnLint(args: readonly string[]): { code: number; output: string } {
  const result = spawnSync("bash", [script, ...args], { encoding: "utf8", timeout: installTimeoutMs });
  return { code: result.status ?? 1, output: `${result.stdout}${result.stderr}` };
}

function withBrokenCopy(edit: (template: string) => string, run: (path: string) => void): void {
  const original = readFileSync(templatePath, "utf8");
  const changed = edit(original);
  expect(changed).not.toBe(original);
  const dir = mkdtempSync(join(tmpdir(), "kube-pico-cd-cfn-"));
  try {
    const path = join(dir, "template.yaml");
    writeFileSync(path, changed);
    run(path);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe("scripts/cfn-lint.sh", () => {
  // Install first, so that the tests below see only cfn-lint's own output: on a fresh clone
  // the script's first run also reports the install on stderr.
  beforeAll(() => {
    const { code, output } = cfnLint(["--version"]);
    if (code !== 0) throw new Error(`scripts/cfn-lint.sh --version exited ${code}:\n${output}`);
  }, installTimeoutMs);

  test("passes on deploy/aws/ with no findings", () => {
    const { code, output } = cfnLint([]);
    expect(output).toBe("");
    expect(code).toBe(0);
  }, installTimeoutMs);

  test("fails on a copy whose queue allows messages above the SQS maximum", () => {
    withBrokenCopy(
      (t) => t.replaceAll("MaximumMessageSize: 1048576", "MaximumMessageSize: 2097152"),
      (path) => {
        const { code, output } = cfnLint([path]);
        expect(output).toContain("E3034 2097152 is greater than the maximum of 1048576");
        expect(code).not.toBe(0);
      },
    );
  }, installTimeoutMs);

  test("fails on a copy with a misspelt IAM action", () => {
    withBrokenCopy(
      (t) => t.replace("sqs:SendMessage", "sqs:SendMesage"),
      (path) => {
        const { code, output } = cfnLint([path]);
        expect(output).toContain("W3037 'sendmesage' is not one of");
        expect(code).not.toBe(0);
      },
    );
  }, installTimeoutMs);
});

/** Reads CloudFormation's short-form tags (!Ref x) as their long form ({ Ref: x }). */
const cloudFormationTags: Tags = ["Ref", "Sub", "GetAtt", "If", "Equals", "Not", "And", "Or"].flatMap((name) => {
  const key = name === "Ref" ? "Ref" : `Fn::${name}`;
  const asLongForm = (value: unknown): Record<string, unknown> => ({ [key]: name === "GetAtt" && typeof value === "string" ? value.split(".") : value });
  return [
    { tag: `!${name}`, identify: () => false, resolve: (value: string) => asLongForm(value) },
    { tag: `!${name}`, identify: () => false, collection: "seq" as const, resolve: (value: { toJSON(): unknown }) => asLongForm(value.toJSON()) },
  ];
});

interface Statement {
  Effect: string;
  Action: string | string[];
  Resource: unknown;
}

function roleStatements(template: Record<string, any>, role: string): Statement[] {
  const policies: Array<{ PolicyDocument: { Statement: Statement[] } }> = template.Resources[role].Properties.Policies;
  return policies.flatMap((p) => p.PolicyDocument.Statement);
}

describe("deploy/aws/kube-pico-cd.yaml", () => {
  const template = parse(readFileSync(templatePath, "utf8"), { customTags: cloudFormationTags }) as Record<string, any>;

  test("the publisher role may only send to the deploy queue, and read, delete and hand back results", () => {
    expect(roleStatements(template, "PublisherRole")).toEqual([
      { Effect: "Allow", Action: ["sqs:SendMessage", "sqs:GetQueueUrl"], Resource: { "Fn::GetAtt": ["Queue", "Arn"] } },
      {
        Effect: "Allow",
        Action: ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueUrl"],
        Resource: { "Fn::GetAtt": ["ResultQueue", "Arn"] },
      },
    ]);
  });

  test("the listener role may only receive, delete, change visibility and read attributes of the deploy queue, send results, and move rejections to the dead-letter queue", () => {
    expect(roleStatements(template, "ListenerRole")).toEqual([
      {
        Effect: "Allow",
        Action: ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"],
        Resource: { "Fn::GetAtt": ["Queue", "Arn"] },
      },
      { Effect: "Allow", Action: ["sqs:SendMessage", "sqs:GetQueueUrl"], Resource: { "Fn::GetAtt": ["ResultQueue", "Arn"] } },
      { Effect: "Allow", Action: ["sqs:SendMessage", "sqs:GetQueueUrl"], Resource: { "Fn::GetAtt": ["DeadLetterQueue", "Arn"] } },
    ]);
  });

  test("the publisher role trusts only GitHub's OIDC tokens for the given repository and branch or environment", () => {
    const [statement] = template.Resources.PublisherRole.Properties.AssumeRolePolicyDocument.Statement;
    expect(statement.Action).toBe("sts:AssumeRoleWithWebIdentity");
    expect(statement.Condition.StringEquals).toEqual({
      "token.actions.githubusercontent.com:aud": "sts.amazonaws.com",
      "token.actions.githubusercontent.com:sub": {
        "Fn::If": [
          "UseEnvironmentSubject",
          { "Fn::Sub": "repo:${GitHubRepository}:environment:${GitHubEnvironment}" },
          { "Fn::Sub": "repo:${GitHubRepository}:ref:refs/heads/${GitHubBranch}" },
        ],
      },
    });
  });

  test("the IRSA trust policy names the listener's service account as subject", () => {
    const [, irsa] = template.Resources.ListenerRole.Properties.AssumeRolePolicyDocument["Fn::If"];
    const substituted = String(irsa["Fn::Sub"])
      .replaceAll("${EksOidcIssuer}", "oidc.example/id/X")
      .replaceAll("${ListenerNamespace}", "kube-pico-cd")
      .replaceAll("${ListenerServiceAccount}", "kube-pico-cd")
      .replaceAll("${AWS::Partition}", "aws")
      .replaceAll("${AWS::AccountId}", "123456789012");
    expect(JSON.parse(substituted).Statement[0].Condition.StringEquals).toEqual({
      "oidc.example/id/X:aud": "sts.amazonaws.com",
      "oidc.example/id/X:sub": "system:serviceaccount:kube-pico-cd:kube-pico-cd",
    });
  });

  test("both queues allow 1 MiB messages with SQS-managed encryption, and the deploy queue redrives to the dead-letter queue", () => {
    const { Queue, DeadLetterQueue } = template.Resources;
    for (const queue of [Queue, DeadLetterQueue]) {
      expect(queue.Properties.MaximumMessageSize).toBe(1048576);
      expect(queue.Properties.SqsManagedSseEnabled).toBe(true);
    }
    expect(Queue.Properties.RedrivePolicy).toEqual({ deadLetterTargetArn: { "Fn::GetAtt": ["DeadLetterQueue", "Arn"] }, maxReceiveCount: { Ref: "MaxReceiveCount" } });
  });

  test("the result queue is encrypted and keeps results for an hour", () => {
    const { ResultQueue } = template.Resources;
    expect(ResultQueue.Properties.SqsManagedSseEnabled).toBe(true);
    expect(ResultQueue.Properties.MessageRetentionPeriod).toBe(3600);
    expect(template.Outputs.ResultQueueUrl.Value).toEqual({ Ref: "ResultQueue" });
  });
});
