/**
 * One version and one repository address everywhere: every reference to the action, the
 * kustomize bases, the listener image and the repository in README.md, CHANGELOG.md, docs/,
 * deploy/, examples/, action.yml, the Dockerfile and the workflows names package.json's
 * version (or its major tag) and the repository kube-pico-cd/kube-pico-cd. A failure names
 * the file, the line and the reference.
 */
import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { parse } from "yaml";
import { root } from "../../scripts/build.ts";

const repository = "kube-pico-cd/kube-pico-cd";
const image = "ghcr.io/kube-pico-cd/kube-pico-cd-listener";

interface Expected {
  version: string;
  repository: string;
  image: string;
}

const packageJson = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as {
  version: string;
  repository?: { type: string; url: string };
  homepage?: string;
};
const expected: Expected = { version: packageJson.version, repository, image };

/**
 * The wrong references in `text`, one line each: `file:line: reference (why)`. Checks
 * `uses: <owner>/kube-pico-cd@<ref>`, `github.com/<owner>/kube-pico-cd` (and its `?ref=`),
 * `ghcr.io/<owner>/kube-pico-cd…` images and their tags, kustomize `newTag:` values, and
 * OWNER placeholders.
 */
function referenceProblems(file: string, text: string, { version, repository, image }: Expected): string[] {
  const [owner] = repository.split("/");
  const tags = new Set([`v${version}`, `v${version.split(".")[0]}`]);
  const imageTags = new Set([version, version.split(".")[0]]);
  const problems: string[] = [];
  text.split("\n").forEach((line, index) => {
    const at = `${file}:${index + 1}`;
    for (const m of line.matchAll(/uses:\s*([\w.-]+)\/kube-pico-cd@([\w.-]+)/g)) {
      if (m[1] !== owner) problems.push(`${at}: uses: ${m[1]}/kube-pico-cd@${m[2]} (the action is ${repository})`);
      if (!tags.has(m[2]!)) problems.push(`${at}: uses: ${m[1]}/kube-pico-cd@${m[2]} (the version is v${version})`);
    }
    for (const m of line.matchAll(/github\.com\/([\w.-]+)\/kube-pico-cd(?![\w-])(\S*)/g)) {
      if (m[1] !== owner) problems.push(`${at}: github.com/${m[1]}/kube-pico-cd (the repository is ${repository})`);
      const ref = /[?&]ref=([\w.-]+)/.exec(m[2]!)?.[1];
      if (ref !== undefined && !tags.has(ref)) problems.push(`${at}: github.com/${m[1]}/kube-pico-cd${m[2]} (the version is v${version})`);
    }
    for (const m of line.matchAll(/ghcr\.io\/([\w.-]+)\/(kube-pico-cd[\w.-]*)(?::([\w.-]+))?/g)) {
      const name = `ghcr.io/${m[1]}/${m[2]}`;
      if (name !== image) problems.push(`${at}: ${m[0]} (the image is ${image})`);
      else if (m[3] !== undefined && !imageTags.has(m[3])) problems.push(`${at}: ${m[0]} (the version is ${version})`);
    }
    const newTag = /^\s*(?:-\s+)?newTag:\s*["']?([\w.-]+)/.exec(line)?.[1];
    if (newTag !== undefined && newTag !== version) problems.push(`${at}: newTag: ${newTag} (the version is ${version})`);
    for (const m of line.matchAll(/OWNER\/kube-pico-cd/g)) problems.push(`${at}: ${m[0]} (a placeholder; the repository is ${repository})`);
  });
  return problems;
}

function filesUnder(dir: string, keep: (path: string) => boolean): string[] {
  return readdirSync(join(root, dir), { recursive: true, encoding: "utf8" })
    .map((name) => join(dir, name))
    .filter((path) => statSync(join(root, path)).isFile() && keep(path))
    .sort();
}

/** Every file whose references must agree. */
const checkedFiles = [
  "README.md",
  "CHANGELOG.md",
  "action.yml",
  "Dockerfile",
  ...filesUnder("docs", (p) => p.endsWith(".md")),
  ...filesUnder("deploy", (p) => /\.(ya?ml|md)$/.test(p)),
  ...filesUnder("examples", (p) => /\.(ya?ml|md)$/.test(p)),
  ...filesUnder(".github/workflows", (p) => p.endsWith(".yml")),
];

describe("referenceProblems()", () => {
  const expectedHere: Expected = { version: "1.2.3", repository: "acme/kube-pico-cd", image: "ghcr.io/acme/kube-pico-cd-listener" };

  test("accepts the version, the major tag, the repository and the image", () => {
    const text = [
      "- uses: acme/kube-pico-cd@v1.2.3",
      "- uses: acme/kube-pico-cd@v1",
      "  - github.com/acme/kube-pico-cd//deploy/rbac/cluster-wide?ref=v1.2.3",
      "see https://github.com/acme/kube-pico-cd/releases",
      "    newName: ghcr.io/acme/kube-pico-cd-listener",
      "    newTag: 1.2.3",
      "docker pull ghcr.io/acme/kube-pico-cd-listener:1.2.3",
      "/usr/local/bin/kube-pico-cd-listener status and uses: actions/checkout@v4",
    ].join("\n");
    expect(referenceProblems("x.md", text, expectedHere)).toEqual([]);
  });

  test("names the file, the line and each reference that disagrees", () => {
    const text = [
      "- uses: OWNER/kube-pico-cd@v0.1.0",
      "  - github.com/other/kube-pico-cd//deploy/base?ref=v1.2.2",
      "    newName: ghcr.io/other/kube-pico-cd-listener",
      "    newTag: 1.2.2",
      "docker pull ghcr.io/acme/kube-pico-cd-listener:latest",
    ].join("\n");
    expect(referenceProblems("x.md", text, expectedHere)).toEqual([
      "x.md:1: uses: OWNER/kube-pico-cd@v0.1.0 (the action is acme/kube-pico-cd)",
      "x.md:1: uses: OWNER/kube-pico-cd@v0.1.0 (the version is v1.2.3)",
      "x.md:1: OWNER/kube-pico-cd (a placeholder; the repository is acme/kube-pico-cd)",
      "x.md:2: github.com/other/kube-pico-cd (the repository is acme/kube-pico-cd)",
      "x.md:2: github.com/other/kube-pico-cd//deploy/base?ref=v1.2.2 (the version is v1.2.3)",
      "x.md:3: ghcr.io/other/kube-pico-cd-listener (the image is ghcr.io/acme/kube-pico-cd-listener)",
      "x.md:4: newTag: 1.2.2 (the version is 1.2.3)",
      "x.md:5: ghcr.io/acme/kube-pico-cd-listener:latest (the version is 1.2.3)",
    ]);
  });
});

describe(`every reference names version ${expected.version} and ${repository}`, () => {
  test("the checked files include the README, the docs, deploy/ and the workflows", () => {
    for (const file of ["README.md", "docs/github-actions.md", "deploy/README.md", "deploy/base/kustomization.yaml", ".github/workflows/release.yml"]) {
      expect(checkedFiles).toContain(file);
    }
  });

  test("no file holds a reference that disagrees with package.json", () => {
    const problems = checkedFiles.flatMap((file) => referenceProblems(file, readFileSync(join(root, file), "utf8"), expected));
    expect(problems).toEqual([]);
  });

  test("package.json names the repository and its homepage", () => {
    expect(packageJson.repository).toEqual({ type: "git", url: `git+https://github.com/${repository}.git` });
    expect(packageJson.homepage).toBe(`https://github.com/${repository}#readme`);
  });

  test("deploy/base runs the image at package.json's version", () => {
    const kustomization = parse(readFileSync(join(root, "deploy", "base", "kustomization.yaml"), "utf8")) as { images: unknown };
    expect(kustomization.images).toEqual([{ name: "kube-pico-cd-listener", newName: image, newTag: expected.version }]);
  });

  test("the Dockerfile's VERSION defaults to package.json's version and its source label names the repository", () => {
    const dockerfile = readFileSync(join(root, "Dockerfile"), "utf8");
    expect(dockerfile.match(/^ARG VERSION=.*$/gm)).toEqual([`ARG VERSION=${expected.version}`]);
    expect(dockerfile).toContain(`org.opencontainers.image.source="https://github.com/${repository}"`);
  });

  test("the release workflow pushes the image and trusts signatures of this repository's workflow", () => {
    const workflowText = readFileSync(join(root, ".github", "workflows", "release.yml"), "utf8");
    const workflow = parse(workflowText) as { env: Record<string, string> };
    expect(workflow.env["IMAGE"]).toBe(image);
    const identity = `'^https://github\\.com/${repository.replaceAll(".", "\\.")}/\\.github/workflows/release\\.yml@refs/tags/v'`;
    expect(workflowText).toContain(`--certificate-identity-regexp ${identity}`);
    // Compared as a boolean: a failure should not print the whole README.
    expect({ readmeNamesIdentity: readFileSync(join(root, "README.md"), "utf8").includes(`--certificate-identity-regexp ${identity}`) }).toEqual({ readmeNamesIdentity: true });
  });
});
