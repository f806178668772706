/**
 * The release, without GitHub: both workflows pass actionlint (built from the Go module proxy
 * by scripts/actionlint.sh, with shellcheck on the run: scripts); the release workflow's build
 * step is `npm run release:artifacts`, and that command, run here into a temp directory, makes
 * the four executables, publish.mjs and a SHA256SUMS that `sha256sum -c` accepts, with the
 * version of package.json inside; the tag check refuses a tag that is not that version; the
 * image is built from the repository's Dockerfile (which test/integration/image-rootfs.test.ts
 * runs) with provenance and an SBOM, then signed by digest.
 *
 * One build for every assertion (about 8 s and 450 MB here).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { closeSync, mkdtempSync, openSync, readFileSync, readSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse } from "yaml";
import { executableName, root, type Platform } from "../../scripts/build.ts";

const version = (JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { version: string }).version;
const executables = (["publish", "listener"] as const).flatMap((entry) => (["linux-x64", "linux-arm64"] as const).map((platform) => ({ entry, platform, name: executableName(entry, platform) })));
/** e_machine of the ELF specification: EM_X86_64 and EM_AARCH64. */
const elfMachine: Record<Platform, number> = { "linux-x64": 0x3e, "linux-arm64": 0xb7 };

// The first run builds actionlint from the Go module proxy; the release build takes seconds.
const slowTimeoutMs = 300_000;

interface Step {
  name?: string;
  id?: string;
  uses?: string;
  run?: string;
  with?: Record<string, unknown>;
  shell?: string;
}
interface Job {
  uses?: string;
  needs?: string | string[];
  permissions?: Record<string, string>;
  "timeout-minutes"?: number;
  steps?: Step[];
}
interface Workflow {
  on: Record<string, unknown>;
  permissions: unknown;
  env?: Record<string, string>;
  jobs: Record<string, Job>;
}

function readWorkflow(name: string): { text: string; workflow: Workflow } {
  const text = readFileSync(join(root, ".github", "workflows", name), "utf8");
  return { text, workflow: parse(text) as Workflow };
}

function stepNamed(job: Job, name: string): Step {
  const step = job.steps?.find((s) => s.name === name);
  if (step === undefined) throw new Error(`no step named '${name}'`);
  return step;
}

function stepUsing(job: Job, action: string): Step {
  const step = job.steps?.find((s) => s.uses?.startsWith(`${action}@`));
  if (step === undefined) throw new Error(`no step uses ${action}`);
  return step;
}

function run(command: string, args: readonly string[], options: { cwd?: string; env?: Record<string, string> } = {}): { code: number; stdout: string; stderr: string } {
  const result = spawnSync(command, args, { cwd: options.cwd ?? root, encoding: "utf8", timeout: slowTimeoutMs, env: { ...process.env, ...options.env } });
  return { code: result.status ?? 1, stdout: result.stdout, stderr: result.stderr };
}

function actionlint(args: readonly string[]): { code: number; output: string } {
  const { code, stdout, stderr } = run("bash", [join(root, "scripts", "actionlint.sh"), ...args]);
  return { code, output: `${stdout}${stderr}` };
}

function elfMachineOf(path: string): { magic: string; machine: number } {
  const bytes = Buffer.alloc(20);
  const fd = openSync(path, "r");
  try {
    readSync(fd, bytes, 0, 20, 0);
  } finally {
    closeSync(fd);
  }
  return { magic: bytes.subarray(0, 4).toString("latin1"), machine: bytes.readUInt16LE(18) };
}

const release = readWorkflow("release.yml");
const ci = readWorkflow("ci.yml");

describe("scripts/actionlint.sh", () => {
  // Build first, so the tests below see only actionlint's own output.
  beforeAll(() => {
    const { code, output } = actionlint(["--version"]);
    if (code !== 0) throw new Error(`scripts/actionlint.sh --version exited ${code}:\n${output}`);
  }, slowTimeoutMs);

  test("shellcheck is on PATH, so actionlint checks the workflows' run: scripts too", () => {
    expect(run("shellcheck", ["--version"]).code).toBe(0);
  });

  test("passes on .github/workflows/*.yml with no findings", () => {
    expect(readdirSync(join(root, ".github", "workflows")).sort()).toEqual(["ci.yml", "release.yml"]);
    expect(actionlint([])).toEqual({ code: 0, output: "" });
  }, slowTimeoutMs);

  test("fails on a copy of the release workflow with an unknown permission and an unquoted variable", () => {
    const dir = mkdtempSync(join(tmpdir(), "kube-pico-cd-actionlint-"));
    try {
      const broken = release.text
        .replace("      packages: write # push to GHCR", "      package: write # push to GHCR")
        .replace('run: cosign sign --yes "$IMAGE@$DIGEST"', "run: cosign sign --yes $IMAGE@$DIGEST");
      expect(broken).not.toBe(release.text);
      const path = join(dir, "release.yml");
      writeFileSync(path, broken);
      const { code, output } = actionlint([path]);
      expect(output).toContain('unknown permission scope "package"');
      expect(output).toContain("SC2086");
      expect(code).toBe(1);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, slowTimeoutMs);
});

describe("npm run release:artifacts (the release workflow's build step)", () => {
  let outDir = "";
  let buildOutput = "";

  beforeAll(() => {
    outDir = join(mkdtempSync(join(tmpdir(), "kube-pico-cd-release-")), "release");
    // The command of the workflow's step, with a temporary --out-dir.
    const { code, stdout, stderr } = run("npm", ["run", "--silent", "release:artifacts", "--", `--out-dir=${outDir}`]);
    buildOutput = `${stdout}${stderr}`;
    if (code !== 0) throw new Error(`npm run release:artifacts exited ${code}: ${buildOutput}`);
  }, slowTimeoutMs);

  afterAll(() => {
    if (outDir) rmSync(join(outDir, ".."), { recursive: true, force: true });
  });

  test("the workflow builds with exactly this command, verifies the checksums and uploads the directory", () => {
    const { artifacts } = release.workflow.jobs;
    expect(stepNamed(artifacts!, "Build the release artifacts").run).toBe("npm run release:artifacts -- --out-dir=release");
    expect(stepNamed(artifacts!, "Verify the checksums")).toMatchObject({ "working-directory": "release", run: "sha256sum -c SHA256SUMS" });
    expect(stepUsing(artifacts!, "actions/upload-artifact").with).toMatchObject({ name: "release", path: "release/", "if-no-files-found": "error" });
    const json = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { scripts: Record<string, string> };
    expect(json.scripts["release:artifacts"]).toBe("bun run scripts/release-artifacts.ts");
  });

  test("writes the four executables, publish.mjs and SHA256SUMS, nothing else", () => {
    expect(readdirSync(outDir).sort()).toEqual([...executables.map((e) => e.name), "SHA256SUMS", "publish.mjs"].sort());
    expect(buildOutput).toContain(`SHA256SUMS written to ${outDir}\n`);
  });

  test("SHA256SUMS lists each file once, in build order, and sha256sum -c accepts it", () => {
    const names = ["publish.mjs", ...executables.map((e) => e.name)];
    const sums = readFileSync(join(outDir, "SHA256SUMS"), "utf8");
    expect(sums.split("\n").filter(Boolean).map((line) => line.replace(/^[0-9a-f]{64} {2}/, ""))).toEqual(names);
    const check = run("sha256sum", ["-c", "SHA256SUMS"], { cwd: outDir });
    expect(check).toEqual({ code: 0, stdout: names.map((n) => `${n}: OK\n`).join(""), stderr: "" });
  });

  test("sha256sum -c fails once a file is changed", () => {
    const dir = mkdtempSync(join(tmpdir(), "kube-pico-cd-sums-"));
    try {
      writeFileSync(join(dir, "publish.mjs"), `${readFileSync(join(outDir, "publish.mjs"), "utf8")}\n`);
      writeFileSync(join(dir, "SHA256SUMS"), readFileSync(join(outDir, "SHA256SUMS"), "utf8").split("\n")[0]! + "\n");
      const check = run("sha256sum", ["-c", "SHA256SUMS"], { cwd: dir });
      expect({ code: check.code, stdout: check.stdout }).toEqual({ code: 1, stdout: "publish.mjs: FAILED\n" });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  for (const { entry, platform, name } of executables) {
    test(`${name} is an ELF executable for e_machine 0x${elfMachine[platform].toString(16)}`, () => {
      expect(elfMachineOf(join(outDir, name))).toEqual({ magic: "\x7fELF", machine: elfMachine[platform] });
    });
    if (platform === "linux-x64") {
      test(`${name} --version prints package.json's version ${version}`, () => {
        expect(run(join(outDir, name), ["--version"], { cwd: tmpdir() })).toEqual({ code: 0, stdout: `kube-pico-cd ${entry} ${version}\n`, stderr: "" });
      });
    }
  }

  test(`node publish.mjs --version prints ${version}`, () => {
    expect(run("node", [join(outDir, "publish.mjs"), "--version"], { cwd: tmpdir() })).toEqual({ code: 0, stdout: `kube-pico-cd publish ${version}\n`, stderr: "" });
  });

  test("refuses to write into a directory that is not empty, naming it", () => {
    const { code, stderr } = run("npm", ["run", "--silent", "release:artifacts", "--", `--out-dir=${outDir}`]);
    expect({ code, stderr }).toEqual({ code: 1, stderr: `release-artifacts: Cannot write the release into ${outDir} as it is not empty: remove it or pass another --out-dir\n` });
  });
});

describe("scripts/release-tag.sh (the release workflow's first job)", () => {
  const script = join(root, "scripts", "release-tag.sh");

  test("the version job runs it on the pushed tag and hands its lines to the other jobs", () => {
    expect(release.workflow.on).toEqual({ push: { tags: ["v*.*.*"] } });
    expect(stepNamed(release.workflow.jobs.version!, "The tag names package.json's version").run).toBe('bash scripts/release-tag.sh "$GITHUB_REF_NAME" | tee -a "$GITHUB_OUTPUT"');
  });

  test(`accepts v${version} and prints the version, its major and that it is no pre-release`, () => {
    expect(run("bash", [script, `v${version}`])).toEqual({ code: 0, stdout: `version=${version}\nmajor=${version.split(".")[0]}\nprerelease=false\n`, stderr: "" });
  });

  test("refuses another tag with one line naming both versions", () => {
    expect(run("bash", [script, "v9.9.9"])).toEqual({
      code: 1,
      stdout: "",
      stderr: `release-tag: the tag v9.9.9 does not match package.json's version ${version}: tag v${version}, or set "version": "9.9.9" in package.json and tag that commit\n`,
    });
  });

  function withVersion(value: string, tag: string): { code: number; stdout: string; stderr: string } {
    const dir = mkdtempSync(join(tmpdir(), "kube-pico-cd-tag-"));
    try {
      writeFileSync(join(dir, "package.json"), JSON.stringify({ version: value }));
      return run("bash", [script, tag, join(dir, "package.json")]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  test("marks a version with a pre-release part as a pre-release", () => {
    expect(withVersion("1.0.0-rc.1", "v1.0.0-rc.1")).toEqual({ code: 0, stdout: "version=1.0.0-rc.1\nmajor=1\nprerelease=true\n", stderr: "" });
  });

  test("refuses a version that an image tag cannot carry", () => {
    expect(withVersion("1.0.0+build.5", "v1.0.0+build.5")).toEqual({
      code: 1,
      stdout: "",
      stderr: "release-tag: package.json's version 1.0.0+build.5 is not MAJOR.MINOR.PATCH with an optional -PRERELEASE\n",
    });
  });
});

describe(".github/workflows/release.yml", () => {
  const { jobs } = release.workflow;

  test("runs the tests through ci.yml before building anything", () => {
    expect(jobs.test).toEqual({ needs: "version", permissions: { contents: "read" }, uses: "./.github/workflows/ci.yml" });
    expect(jobs.artifacts!.needs).toBe("test");
    expect(jobs.image!.needs).toEqual(["version", "test"]);
    expect(jobs.release!.needs).toEqual(["version", "artifacts", "image"]);
  });

  test("builds the repository's Dockerfile for amd64 and arm64 with provenance and an SBOM, and pushes both tags", () => {
    expect(stepUsing(jobs.image!, "docker/build-push-action").with).toEqual({
      context: ".",
      file: "Dockerfile",
      platforms: "linux/amd64,linux/arm64",
      push: true,
      provenance: "mode=max",
      sbom: true,
      tags: "${{ steps.tags.outputs.tags }}",
      "build-args": "VERSION=${{ env.VERSION }}\nREVISION=${{ github.sha }}\nCREATED=${{ steps.tags.outputs.created }}\n",
    });
    expect(readFileSync(join(root, "Dockerfile"), "utf8")).toContain("ARG VERSION=");
    const tags = stepNamed(jobs.image!, "Image tags").run!;
    expect(tags).toContain('echo "$IMAGE:$VERSION"');
    expect(tags).toContain('if [ "$PRERELEASE" = false ]; then echo "$IMAGE:$MAJOR"; fi');
  });

  test("signs the pushed digest with cosign keyless and verifies it with the README's identity", () => {
    stepUsing(jobs.image!, "sigstore/cosign-installer");
    expect(stepNamed(jobs.image!, "Sign the image by digest")).toMatchObject({ env: { DIGEST: "${{ steps.build.outputs.digest }}" }, run: 'cosign sign --yes "$IMAGE@$DIGEST"' });
    expect(stepNamed(jobs.image!, "Verify the signature as a user would (README \"Releases and installing\")").run).toContain('cosign verify "$IMAGE@$DIGEST"');
  });

  test("attaches the built files to the release with gh and moves the major tag unless it is a pre-release", () => {
    expect(stepUsing(jobs.release!, "actions/download-artifact").with).toEqual({ name: "release", path: "release" });
    expect(stepNamed(jobs.release!, "Create the GitHub release").run).toContain('gh release create "$GITHUB_REF_NAME" --verify-tag --title "kube-pico-cd $VERSION" --notes-file notes.md "${flags[@]}" release/*');
    expect(stepNamed(jobs.release!, "Move the action's major tag")).toMatchObject({
      if: "needs.version.outputs.prerelease == 'false'",
      run: 'git tag --force "v$MAJOR" "$GITHUB_SHA"\ngit push --force origin "refs/tags/v$MAJOR"\n',
    });
  });

  test("grants nothing by default and each job only what it needs", () => {
    expect(release.workflow.permissions).toEqual({});
    expect(Object.fromEntries(Object.entries(jobs).map(([name, job]) => [name, job.permissions]))).toEqual({
      version: { contents: "read" },
      test: { contents: "read" },
      artifacts: { contents: "read" },
      image: { contents: "read", packages: "write", "id-token": "write" },
      release: { contents: "write" },
    });
  });
});

describe(".github/workflows/ci.yml", () => {
  test("runs .ci/run as root on pull requests, pushes to main and when the release calls it, within 100 minutes", () => {
    expect(ci.workflow.on).toEqual({ pull_request: null, push: { branches: ["main"] }, workflow_call: null });
    expect(ci.workflow.permissions).toEqual({});
    const job = ci.workflow.jobs.test!;
    expect({ timeout: job["timeout-minutes"], permissions: job.permissions }).toEqual({ timeout: 100, permissions: { contents: "read" } });
    expect(stepNamed(job, ".ci/run").run).toBe('sudo -E env "PATH=$PATH" bash .ci/run');
  });
});

describe("third-party actions", () => {
  const uses = [...release.text.matchAll(/uses: (\S+)(.*)$/gm), ...ci.text.matchAll(/uses: (\S+)(.*)$/gm)].filter((m) => !m[1]!.startsWith("./"));

  test("are these, and no others", () => {
    expect([...new Set(uses.map((m) => m[1]!.split("@")[0]))].sort()).toEqual([
      "actions/cache",
      "actions/checkout",
      "actions/download-artifact",
      "actions/setup-go",
      "actions/setup-node",
      "actions/upload-artifact",
      "docker/build-push-action",
      "docker/login-action",
      "docker/setup-buildx-action",
      "docker/setup-qemu-action",
      "sigstore/cosign-installer",
    ]);
  });

  test("are pinned by full commit SHA with their version tag in a comment", () => {
    const unpinned = uses.filter((m) => !/^[\w.-]+\/[\w.-]+@[0-9a-f]{40}$/.test(m[1]!) || !/^ # v\d+\.\d+\.\d+$/.test(m[2]!)).map((m) => m[0]);
    expect(unpinned).toEqual([]);
  });

  test("each action has one pin across both workflows", () => {
    const pins = new Map<string, Set<string>>();
    for (const m of uses) {
      const [action, sha] = m[1]!.split("@") as [string, string];
      pins.set(action, (pins.get(action) ?? new Set()).add(sha));
    }
    expect([...pins].filter(([, shas]) => shas.size > 1).map(([action]) => action)).toEqual([]);
  });
});
