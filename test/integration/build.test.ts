/**
 * `npm run build` (scripts/build.ts): four executables that are ELF files for their machine,
 * the x64 ones run; the single-file publish (dist/publish.mjs) is committed exactly as a fresh
 * build makes it, and runs under node, bun and deno, sending a message the listener decodes.
 *
 * The build writes into a temporary directory (about 5 s and 450 MB for all artifacts), so
 * the test never trusts a stale dist/.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawn, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, openSync, readFileSync, readSync, closeSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ReceiveMessageCommand, type Message } from "@aws-sdk/client-sqs";
import { collectBundle } from "../../lib/manifests/bundle.ts";
import { hasSecondCore } from "../../lib/manifests/parse-worker.ts";
import { bundleMessage } from "../../lib/publish/bundle-message.ts";
import { decodeMessage } from "../../lib/wire/message.ts";
import { artifacts, executableName, root, singleFileBanner, type Entry, type Platform } from "../../scripts/build.ts";
import { createQueue, sqsClient, testEnv } from "../env/testenv.ts";

const fixtures = join(root, "test", "fixtures");
const bun = process.execPath;
const deno = join(root, "node_modules", ".bin", "deno");

let outDir = "";
let buildOutput = "";

beforeAll(() => {
  outDir = mkdtempSync(join(tmpdir(), "kube-pico-cd-build-"));
  const result = spawnSync(bun, ["run", join(root, "scripts", "build.ts"), `--out-dir=${outDir}`], { cwd: root, encoding: "utf8" });
  buildOutput = `${result.stdout}${result.stderr}`;
  if (result.status !== 0) throw new Error(`scripts/build.ts exited with ${result.status}: ${buildOutput}`);
}, 300_000);

afterAll(() => {
  if (outDir) rmSync(outDir, { recursive: true, force: true });
});

let large: Promise<{ dir: string; digest: string }> | undefined;

/**
 * Files enough for publish to parse them on two threads in every runtime (lib/manifests/bundle.ts
 * `PARSE_WORKER_AFTER_CHARACTERS`, largest under bun), repetitive enough to fit a message, and
 * their digest read on one thread.
 */
function largeBundle(): Promise<{ dir: string; digest: string }> {
  large ??= (async () => {
    expect(hasSecondCore()).toBe(true);
    const dir = join(outDir, "large-bundle");
    mkdirSync(dir);
    const perFile = Math.ceil((8 * 1024 * 1024 + 500_000) / 400);
    for (let i = 0; i < 400; i++) {
      let text = `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-${i}\n  namespace: demo\ndata:\n`;
      for (let line = 0; text.length < perFile; line++) text += `  key_${line}: "${"x".repeat(60)}"\n`;
      writeFileSync(join(dir, `cm-${String(i).padStart(3, "0")}.yaml`), text);
    }
    const { encoded } = await bundleMessage([dir], { parseWorker: "never" }, { build: { id: "one-thread", timestampMs: 0 } });
    return { dir, digest: encoded.digest };
  })();
  return large;
}

interface ElfHeader {
  magic: string;
  elfClass: number;
  dataEncoding: number;
  type: number;
  machine: number;
}

function readElfHeader(path: string): ElfHeader {
  const bytes = Buffer.alloc(20);
  const fd = openSync(path, "r");
  try {
    readSync(fd, bytes, 0, 20, 0);
  } finally {
    closeSync(fd);
  }
  return {
    magic: bytes.subarray(0, 4).toString("latin1"),
    elfClass: bytes[4]!,
    dataEncoding: bytes[5]!,
    type: bytes.readUInt16LE(16),
    machine: bytes.readUInt16LE(18),
  };
}

/** e_machine values of the ELF specification. */
const elfMachine: Record<Platform, number> = { "linux-x64": 62, "linux-arm64": 183 };

describe("npm run build", () => {
  test("produces the single-file publish and four executables, and prints each one's size", () => {
    expect(artifacts.map((a) => a.name)).toEqual([
      "publish.mjs",
      "action.mjs",
      "kube-pico-cd-publish-linux-x64",
      "kube-pico-cd-publish-linux-arm64",
      "kube-pico-cd-listener-linux-x64",
      "kube-pico-cd-listener-linux-arm64",
    ]);
    for (const { name } of artifacts) expect(buildOutput).toMatch(new RegExp(`${name.replaceAll(".", "\\.")} +[0-9.]+ (MiB|KiB)`));
  });

  for (const entry of ["publish", "listener"] as const satisfies readonly Entry[]) {
    for (const platform of ["linux-x64", "linux-arm64"] as const satisfies readonly Platform[]) {
      const name = executableName(entry, platform);
      test(`${name} is a 64-bit little-endian ELF executable for e_machine ${elfMachine[platform]}`, () => {
        expect(readElfHeader(join(outDir, name))).toEqual({ magic: "\x7fELF", elfClass: 2, dataEncoding: 1, type: 2, machine: elfMachine[platform] });
      });
    }
  }

  test("kube-pico-cd-publish-linux-x64 --help prints publish's usage and exits 0", () => {
    const result = spawnSync(join(outDir, "kube-pico-cd-publish-linux-x64"), ["--help"], { encoding: "utf8", cwd: tmpdir() });
    expect(result.stdout).toStartWith("Usage: publish [options] <path>...\n");
    expect(result.status).toBe(0);
  });

  test("kube-pico-cd-listener-linux-x64 --help prints the listener's usage and exits 0", () => {
    const result = spawnSync(join(outDir, "kube-pico-cd-listener-linux-x64"), ["--help"], { encoding: "utf8", cwd: tmpdir() });
    expect(result.stdout).toStartWith("Usage: listener [options]\n");
    expect(result.stdout).toContain("KUBE_PICO_CD_QUEUE_URL");
    expect(result.status).toBe(0);
  });

  test("kube-pico-cd-publish-linux-x64 parses a large bundle on two threads: the digest publish gives on one thread, nothing on stderr", async () => {
    const { dir, digest } = await largeBundle();
    const result = spawnSync(join(outDir, "kube-pico-cd-publish-linux-x64"), [dir, "--dry-run", "--json", "--max-message-bytes", "1048576"], { encoding: "utf8", cwd: tmpdir() });
    expect(result.stderr).toBe("");
    expect(result.status).toBe(0);
    expect(JSON.parse(result.stdout).digest).toBe(digest);
  }, 60_000);

  test("the executables ignore a .env file in their working directory", () => {
    const dir = mkdtempSync(join(tmpdir(), "kube-pico-cd-dotenv-"));
    try {
      writeFileSync(join(dir, ".env"), "KUBE_PICO_CD_BUILD_ID=from-dotenv\n");
      writeFileSync(join(dir, "cm.yaml"), "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  namespace: demo\n");
      const result = spawnSync(join(outDir, "kube-pico-cd-publish-linux-x64"), ["cm.yaml", "--dry-run", "--json"], { encoding: "utf8", cwd: dir });
      expect(result.status).toBe(0);
      expect(JSON.parse(result.stdout).build.id).not.toBe("from-dotenv");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("dist/publish.mjs", () => {
  test("the committed file equals a fresh build (run 'npm run build publish.mjs' and commit it)", () => {
    const fresh = readFileSync(join(outDir, "publish.mjs"), "utf8");
    const committed = readFileSync(join(root, "dist", "publish.mjs"), "utf8");
    expect(fresh).toStartWith(`${singleFileBanner}\n`);
    // Compared as booleans first: a diff of two 1 MiB files helps nobody.
    expect(committed === fresh).toBe(true);
  });

  test("the committed dist/action.mjs equals a fresh build", () => {
    expect(readFileSync(join(root, "dist", "action.mjs"), "utf8")).toBe(readFileSync(join(outDir, "action.mjs"), "utf8"));
  });

  test("the node that runs it is 22 or newer (engines; .ci/run installs Node 24 beside an older one)", () => {
    const version = spawnSync("node", ["--version"], { encoding: "utf8" }).stdout.trim();
    expect({ version, atLeast22: Number(/^v(\d+)\./.exec(version)?.[1]) >= 22 }).toEqual({ version, atLeast22: true });
  });

  const runtimes: Record<string, (script: string) => string[]> = {
    node: (script) => ["node", script],
    bun: (script) => [bun, script],
    deno: (script) => [deno, "run", "--allow-all", script],
  };

  function run(runtime: string, args: readonly string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
    const [command, ...prefix] = runtimes[runtime]!(join(outDir, "publish.mjs"));
    return new Promise((resolve, reject) => {
      const child = spawn(command!, [...prefix, ...args], { cwd: fixtures, env: { ...process.env, NO_COLOR: "1", ...env }, stdio: ["ignore", "pipe", "pipe"] });
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (d) => (stdout += d));
      child.stderr.on("data", (d) => (stderr += d));
      child.once("error", reject);
      child.once("exit", (code) => resolve({ code: code ?? 1, stdout, stderr }));
    });
  }

  async function receiveAll(queueUrl: string): Promise<Message[]> {
    const sqs = await sqsClient();
    const messages: Message[] = [];
    for (;;) {
      const output = await sqs.send(new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1 }));
      if (!output.Messages || output.Messages.length === 0) return messages;
      messages.push(...output.Messages);
    }
  }

  for (const runtime of Object.keys(runtimes)) {
    test(`${runtime} dist/publish.mjs --help prints publish's usage and exits 0`, async () => {
      const { code, stdout, stderr } = await run(runtime, ["--help"]);
      expect(stderr).toBe("");
      expect(stdout).toStartWith("Usage: publish [options] <path>...\n");
      expect(code).toBe(0);
    });

    test(`${runtime} dist/publish.mjs parses a large bundle on two threads: the digest publish gives on one thread, nothing on stderr`, async () => {
      const { dir, digest } = await largeBundle();
      const { code, stdout, stderr } = await run(runtime, [dir, "--dry-run", "--json", "--max-message-bytes", "1048576"]);
      // A second thread that failed would say so here; one that ran publish again would print twice.
      expect(stderr).toBe("");
      expect(code).toBe(0);
      expect(JSON.parse(stdout).digest).toBe(digest);
    }, 60_000);

    test(`${runtime} dist/publish.mjs sends a message that decodes to the fixture's objects`, async () => {
      const { sqsEndpoint } = await testEnv();
      const queue = await createQueue();
      const buildId = `single-file-${runtime}`;
      const { code, stdout, stderr } = await run(runtime, ["repo-basic", "--ignore", "*.tmpl.yaml", "--queue", queue.url, "--build-id", buildId, "--json"], {
        KUBE_PICO_CD_ENDPOINT_URL: sqsEndpoint,
      });
      // Nothing at all: no deprecation notice, and no NodeVersionSupportWarning of the AWS SDK (node 22+).
      expect(stderr).toBe("");
      expect(code).toBe(0);
      const messages = await receiveAll(queue.url);
      expect(messages.length).toBe(1);
      const decoded = decodeMessage(messages[0]!.Body!);
      expect(decoded.build.id).toBe(buildId);
      expect(decoded.digest).toBe(JSON.parse(stdout).digest);
      expect(decoded.objects).toEqual((await collectBundle(["repo-basic"], { cwd: fixtures, ignore: ["*.tmpl.yaml"] })).objects);
    }, 120_000);
  }
});
