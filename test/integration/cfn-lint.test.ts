/**
 * deploy/aws/: every CloudFormation template passes cfn-lint (installed from PyPI by
 * scripts/cfn-lint.sh on first use) with no findings, and cfn-lint does catch what it should.
 * What the templates grant is specified in test/unit/aws-templates.test.ts.
 */
import { beforeAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const templatesDir = join(root, "deploy", "aws");
const templates = readdirSync(templatesDir).filter((f) => f.endsWith(".yaml")).sort();
const script = join(root, "scripts", "cfn-lint.sh");

// The first run creates the venv and installs cfn-lint from PyPI.
const installTimeoutMs = 300_000;

function cfnLint(args: readonly string[]): { code: number; output: string } {
  const result = spawnSync("bash", [script, ...args], { encoding: "utf8", timeout: installTimeoutMs });
  return { code: result.status ?? 1, output: `${result.stdout}${result.stderr}` };
}

function withBrokenCopy(file: string, edit: (template: string) => string, run: (path: string) => void): void {
  const original = readFileSync(join(templatesDir, file), "utf8");
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

  // The run above lints deploy/aws/*.yaml; each template on its own shows that none is skipped.
  test.each(templates)("passes on deploy/aws/%s alone with no findings", (file) => {
    const { code, output } = cfnLint([join(templatesDir, file)]);
    expect(output).toBe("");
    expect(code).toBe(0);
  }, installTimeoutMs);

  test("fails on a copy whose queue allows messages above the SQS maximum", () => {
    withBrokenCopy(
      "kube-pico-cd.yaml",
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
      "kube-pico-cd.yaml",
      (t) => t.replace("sqs:SendMessage", "sqs:SendMesage"),
      (path) => {
        const { code, output } = cfnLint([path]);
        expect(output).toContain("W3037 'sendmesage' is not one of");
        expect(code).not.toBe(0);
      },
    );
  }, installTimeoutMs);

  test("fails on a copy of the fleet template whose publisher role names a misspelt SNS action", () => {
    withBrokenCopy(
      "fleet.yaml",
      (t) => t.replaceAll("Action: sns:Publish", "Action: sns:Publsh"),
      (path) => {
        const { code, output } = cfnLint([path]);
        expect(output).toContain("W3037 'publsh' is not one of");
        expect(code).not.toBe(0);
      },
    );
  }, installTimeoutMs);

  test("fails on a copy of the fleet template whose topic allows messages above the SNS maximum", () => {
    withBrokenCopy(
      "fleet.yaml",
      (t) => t.replace("MaxValue: 1048576", "MaxValue: 2097152"),
      (path) => {
        const { code, output } = cfnLint([path]);
        expect(output).toContain("W1030 {'Ref': 'TopicMaximumMessageSize'} is greater than the maximum of 1048576 when 'Ref' is resolved");
        expect(code).not.toBe(0);
      },
    );
  }, installTimeoutMs);
});
