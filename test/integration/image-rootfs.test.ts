/**
 * The listener image without a container engine: the test assembles a root filesystem holding
 * only what the Dockerfile's final stage holds — the glibc loader and the libraries the
 * listener executable loads (found with ldd), the listener built by scripts/build.ts, kubectl,
 * /etc/passwd and /etc/group with nonroot (65532), the CA bundle and an empty /tmp; no shell —
 * then runs the image's ENTRYPOINT in it the way a container runtime would (own mount and PID
 * namespaces, read-only root, tmpfs /tmp, USER 65532:65532, the image's ENV) against the test
 * environment, and checks that a bundle is deployed and that SIGTERM stops it with exit 0.
 * Paths, ENV, USER and ENTRYPOINT are read from the Dockerfile, so the test follows it.
 *
 * Size: on linux-x64 this root filesystem is 177.5 MB (177,519,439 bytes with bun 1.4.5 and
 * kubectl v1.35.4): the listener 115.1 MB (it carries the Bun runtime), kubectl 59.2 MB, the
 * glibc loader and libraries 3.1 MB, the CA bundle 0.2 MB. That is a lower bound for the
 * image: distroless base-debian12 (about 20 MB, glibc included) adds what the listener does
 * not use (libssl, tzdata, package metadata), so expect the image at about 195 MB on disk.
 *
 * Needs root (mount namespaces, chroot); `unshare`, `mount` (util-linux) and `chroot`
 * (coreutils) must be installed. The environment's kubectl is the static Go binary of the same
 * version as the image's.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { chmodSync, chownSync, copyFileSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { executableName, root, type Platform } from "../../scripts/build.ts";
import { createNamespace, createQueue, kubectl, testEnv } from "../env/testenv.ts";
import { configMap, queueDepth, sendBundle } from "../helpers/bundles.ts";
import { listenerEnv } from "../helpers/listener-process.ts";
import { readRecord } from "../helpers/record.ts";
import { finalStage, listRootfs, runInRootfs, sharedLibraries, type FinalStage, type RootfsEntry } from "../helpers/rootfs.ts";

const platform: Platform = process.arch === "arm64" ? "linux-arm64" : "linux-x64";

/** What glibc's loader maps for the listener, by platform: Bun links nothing else dynamically. */
const expectedLibraries: Record<Platform, string[]> = {
  "linux-x64": ["ld-linux-x86-64.so.2", "libc.so.6", "libdl.so.2", "libm.so.6", "libpthread.so.0"],
  "linux-arm64": ["ld-linux-aarch64.so.1", "libc.so.6", "libdl.so.2", "libm.so.6", "libpthread.so.0"],
};

/** The environment distroless base-debian12 sets; the Dockerfile's ENV comes on top. */
const baseImageEnv = {
  PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
  SSL_CERT_FILE: "/etc/ssl/certs/ca-certificates.crt",
};

/** distroless's /etc/passwd and /etc/group: root, nobody and nonroot, none with a shell. */
const passwd = "root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n";
const group = "root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n";

/**
 * Where the listener finds its cluster credentials. Not part of the image: a pod gets them
 * from a volume (its service account); here the file is copied in, readable by group 65532.
 */
const kubeconfigPath = "/var/run/secrets/kube-pico-cd/kubeconfig";

/** Mount points the runtime fills: not image content, but directories the image has. */
const mountPoints = ["/dev", "/proc", "/tmp"];

let workDir = "";
let rootfs = "";
let stage: FinalStage;
let libraries: string[] = [];
let imageFiles: string[] = [];

function copyInto(source: string, path: string, mode: number): void {
  const target = join(rootfs, path);
  mkdirSync(dirname(target), { recursive: true, mode: 0o755 });
  copyFileSync(source, target); // Follows symlinks: the root holds the library, not the link.
  chmodSync(target, mode);
}

function writeInto(path: string, content: string, mode: number): void {
  const target = join(rootfs, path);
  mkdirSync(dirname(target), { recursive: true, mode: 0o755 });
  writeFileSync(target, content);
  chmodSync(target, mode);
}

/** The destination of the final stage's `COPY --from=from`. */
function copiedTo(from: string): string {
  const copy = stage.copies.find((c) => c.from === from);
  if (!copy) throw new Error(`Cannot find the Dockerfile's 'COPY --from=${from}' in its final stage: copies are ${JSON.stringify(stage.copies)}`);
  return copy.destination;
}

function ancestors(path: string): string[] {
  const dirs: string[] = [];
  for (let dir = dirname(path); dir !== "/"; dir = dirname(dir)) dirs.push(dir);
  return dirs;
}

function describeEntry(e: RootfsEntry): string {
  return `${e.type === "directory" ? "d" : "-"}${e.mode.toString(8).padStart(4, "0")} ${e.uid}:${e.gid} ${String(e.sizeBytes).padStart(10)} ${e.path}`;
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs: number, diagnostics: () => string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const value = await probe();
    if (value !== undefined) return value;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`${what} did not happen within ${timeoutMs} ms\n${diagnostics()}`);
}

beforeAll(async () => {
  stage = finalStage(readFileSync(join(root, "Dockerfile"), "utf8"));
  workDir = mkdtempSync(join(tmpdir(), "kube-pico-cd-rootfs-"));
  rootfs = join(workDir, "rootfs");
  mkdirSync(rootfs, { mode: 0o755 });
  chmodSync(rootfs, 0o755); // "/" must be searchable by 65532, whatever the umask.

  const buildDir = join(workDir, "build");
  const name = executableName("listener", platform);
  const build = spawnSync(process.execPath, ["run", join(root, "scripts", "build.ts"), `--out-dir=${buildDir}`, name], { cwd: root, encoding: "utf8" });
  if (build.status !== 0) throw new Error(`Cannot build ${name} as scripts/build.ts exited with ${build.status}: ${build.stdout}${build.stderr}`);
  const listener = join(buildDir, name);
  libraries = sharedLibraries(listener);

  for (const library of libraries) copyInto(library, library, 0o755);
  copyInto(listener, copiedTo("build"), 0o755);
  copyInto((await testEnv()).kubectl, copiedTo("kubectl"), 0o755);
  writeInto("/etc/passwd", passwd, 0o644);
  writeInto("/etc/group", group, 0o644);
  copyInto("/etc/ssl/certs/ca-certificates.crt", "/etc/ssl/certs/ca-certificates.crt", 0o644);
  for (const dir of mountPoints) mkdirSync(join(rootfs, dir), { mode: 0o755 });
  chmodSync(join(rootfs, "tmp"), 0o1777);
  imageFiles = [...libraries, copiedTo("build"), copiedTo("kubectl"), "/etc/passwd", "/etc/group", "/etc/ssl/certs/ca-certificates.crt"].sort();

  copyInto((await testEnv()).kubeconfig, kubeconfigPath, 0o440);
  chownSync(join(rootfs, kubeconfigPath), 0, 65532);
}, 300_000);

afterAll(() => {
  if (workDir) rmSync(workDir, { recursive: true, force: true });
});

describe("listener image (root filesystem of the Dockerfile's final stage)", () => {
  test("the Dockerfile's final stage is distroless, non-root, and points the listener at its kubectl and /tmp", () => {
    expect(stage.base).toStartWith("gcr.io/distroless/base-debian12:nonroot@sha256:");
    expect(stage.user).toBe("65532:65532");
    expect(stage.env.HOME).toBe("/tmp");
    expect(stage.env.KUBE_PICO_CD_KUBECTL).toBe(copiedTo("kubectl"));
    expect(stage.entrypoint).toEqual([copiedTo("build")]);
  });

  test("the listener executable loads only glibc", () => {
    expect(libraries.map((path) => path.slice(path.lastIndexOf("/") + 1)).sort()).toEqual(expectedLibraries[platform]);
  });

  test("kubectl is a static executable, so it needs nothing from the root filesystem", async () => {
    expect(sharedLibraries((await testEnv()).kubectl)).toEqual([]);
  });

  test("the root filesystem holds the image's files, their directories and the mount points, and no shell", () => {
    const entries = listRootfs(rootfs);
    const volume = [kubeconfigPath, ...ancestors(kubeconfigPath)];
    const image = entries.filter((e) => !volume.includes(e.path));
    const dirs = [...new Set([...imageFiles.flatMap(ancestors), ...mountPoints])].sort();
    expect(image.filter((e) => e.type === "file").map((e) => e.path)).toEqual(imageFiles);
    expect(image.filter((e) => e.type === "directory").map((e) => e.path)).toEqual(dirs);
    expect(image.filter((e) => e.type !== "file" && e.type !== "directory")).toEqual([]);
    for (const shell of ["/bin/sh", "/bin/bash", "/bin/dash", "/bin/busybox", "/usr/bin/sh", "/usr/bin/env"]) {
      expect(() => lstatSync(join(rootfs, shell))).toThrow("ENOENT");
    }
    expect(image.find((e) => e.path === "/tmp")?.mode).toBe(0o1777);
    expect(entries.find((e) => e.path === kubeconfigPath)).toMatchObject({ mode: 0o440, uid: 0, gid: 65532 });

    const sizeBytes = image.reduce((sum, e) => sum + e.sizeBytes, 0);
    process.stderr.write(`image root filesystem (${(sizeBytes / 1e6).toFixed(1)} MB):\n${image.map(describeEntry).join("\n")}\n`);
    // Bun and kubectl are most of it; a much larger root means something crept in.
    expect(sizeBytes).toBeGreaterThan(100e6);
    expect(sizeBytes).toBeLessThan(250e6);
  });

  test("deploys a bundle as 65532 on a read-only root, answers `status` as kubectl exec would run it, writes nothing outside /tmp, and exits 0 on SIGTERM", async () => {
    const ns = await createNamespace("image");
    const queue = await createQueue();
    const sent = await sendBundle(queue.url, [configMap(ns, "from-the-image", { runtime: "distroless" })], { timestampMs: 1_700_000_000_000, commit: "image" });
    const env = { ...(await listenerEnv({ queueUrl: queue.url, namespace: ns })), ...baseImageEnv, ...stage.env, KUBE_PICO_CD_KUBECONFIG: kubeconfigPath };
    const before = listRootfs(rootfs);

    const container = runInRootfs({ rootfs, argv: stage.entrypoint, env, user: stage.user });
    // The last log lines, each cut short: an error's cause chain repeats its message.
    const output = () => `listener output:\n${container.stdout.slice(-8).map((l) => (l.length > 1000 ? `${l.slice(0, 1000)}…` : l)).join("\n")}\n${container.stderr.join("")}`;
    try {
      const pid = await container.containerPid();
      const status = readFileSync(`/proc/${pid}/status`, "utf8");
      expect(status).toMatch(/^Uid:\t65532\t65532\t65532\t65532$/m);
      expect(status).toMatch(/^Gid:\t65532\t65532\t65532\t65532$/m);
      expect(status).toMatch(/^NSpid:\t\d+\t1$/m); // PID 1 in its namespace, as in a pod.
      // mountinfo: "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS …", as the process sees it.
      const mounts = readFileSync(`/proc/${pid}/mountinfo`, "utf8").split("\n").map((line) => line.split(" "));
      expect(mounts.find((fields) => fields[4] === "/")?.[5]?.split(",")).toContain("ro");
      expect(mounts.find((fields) => fields[4] === "/tmp")?.[5]?.split(",")).toContain("rw");

      const record = await waitFor(
        "the build's outcome being recorded",
        async () => {
          const r = await readRecord(ns);
          return r?.history.some((h) => h.buildId === sent.build.id) ? r : undefined;
        },
        30_000,
        output,
      );
      // The error column shows why, should the apply fail in the image.
      expect(record.history.map((h) => [h.result, h.buildId, h.error])).toEqual([["applied", sent.build.id, undefined]]);
      expect(record.current?.build).toEqual(sent.build);
      expect(record.current?.digest).toBe(sent.digest);
      expect(record.current?.messageId).toBe(sent.messageId);
      expect((await kubectl(["get", "configmap", "from-the-image", "-n", ns, "-o", "jsonpath={.data.runtime}"])).stdout).toBe("distroless");
      await waitFor("the message being deleted", async () => ((await queueDepth(queue.url)).inFlight === 0 ? true : undefined), 10_000, output);
      expect(await queueDepth(queue.url)).toEqual({ visible: 0, inFlight: 0, delayed: 0 });

      // `kubectl exec deploy/kube-pico-cd -- /usr/local/bin/kube-pico-cd-listener status default`:
      // the same executable, environment and user, with no shell in the image.
      const statusCommand = runInRootfs({ rootfs, argv: [...stage.entrypoint, "status", "default"], env, user: stage.user });
      expect(await statusCommand.exited).toBe(0);
      expect(statusCommand.stdout).toContain(`Current build: ${sent.build.id}`);
      expect(statusCommand.stderr.join("")).toBe("");

      process.kill(pid, "SIGTERM");
      expect(await container.exited).toBe(0);
      const logs = container.stdout.map((line) => JSON.parse(line) as { level: string; msg: string });
      expect(logs.filter((l) => l.level === "error")).toEqual([]);
      expect(logs.map((l) => l.msg)).toContain("stop requested; finishing the deploy in hand");
      expect(container.stderr.join("")).toBe("");
      expect(listRootfs(rootfs)).toEqual(before);
    } finally {
      if (container.child.exitCode === null && container.child.signalCode === null) {
        // The listener first: once unshare is gone it is no longer found as its child.
        try {
          process.kill(await container.containerPid(1_000), "SIGKILL");
        } catch {
          // Already gone.
        }
        container.child.kill("SIGKILL");
      }
    }
  });
});
