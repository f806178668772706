/**
 * What the image test needs to stand in for a container engine: the final stage of the
 * Dockerfile as data, the shared libraries an executable loads (`ldd`), a listing of a root
 * filesystem, and a process started in that root the way a container runtime starts one — its
 * own mount and PID namespaces, the root read-only, /proc, a minimal /dev and a tmpfs /tmp
 * mounted, then `chroot` with the image's user. The network stays the host's, so 127.0.0.1
 * reaches the test environment.
 *
 * Needs root (uid 0) and `unshare`, `mount` (util-linux), `chroot`, `env` (coreutils), `sh`
 * and `ldd` (libc-bin) on the host; each missing piece fails with what to install.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { accessSync, constants, lstatSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

/** One `COPY --from=STAGE SOURCE DESTINATION` of a stage. */
export interface StageCopy {
  from: string;
  source: string;
  destination: string;
}

/** The parts of a Dockerfile's final stage that decide what the container holds and runs. */
export interface FinalStage {
  /** The FROM image, e.g. `gcr.io/distroless/base-debian12:nonroot@sha256:…`. */
  base: string;
  copies: StageCopy[];
  env: Record<string, string>;
  user: string;
  entrypoint: string[];
}

/** Joins continuation lines and drops comments, so each instruction is one line. */
function instructions(dockerfile: string): string[] {
  const joined = dockerfile
    .split("\n")
    .filter((line) => !line.trimStart().startsWith("#"))
    .join("\n")
    .replace(/\\\n/g, " ");
  return joined
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "");
}

/** `K=V K2="V 2"` as in ENV and LABEL. */
function keyValues(text: string): Record<string, string> {
  const pairs: Record<string, string> = {};
  for (const match of text.matchAll(/([A-Za-z_][A-Za-z0-9_.-]*)=("(?:[^"\\]|\\.)*"|\S*)/g)) {
    const value = match[2]!;
    pairs[match[1]!] = value.startsWith('"') ? (JSON.parse(value) as string) : value;
  }
  return pairs;
}

/**
 * Reads the last stage of `dockerfile`: its base, its `COPY --from` lines, ENV, USER and the
 * exec-form ENTRYPOINT. Only the forms our Dockerfile uses are understood; anything else in
 * the final stage is an error, so the image test never silently misses an instruction.
 */
export function finalStage(dockerfile: string): FinalStage {
  const lines = instructions(dockerfile);
  const lastFrom = lines.findLastIndex((line) => /^FROM\s/i.test(line));
  if (lastFrom < 0) throw new Error("Cannot read the Dockerfile's final stage as it has no FROM line");
  const base = lines[lastFrom]!.split(/\s+/)[1]!;
  const stage: FinalStage = { base, copies: [], env: {}, user: "", entrypoint: [] };
  for (const line of lines.slice(lastFrom + 1)) {
    const [keyword = "", ...rest] = line.split(/\s+/);
    const args = rest.join(" ");
    switch (keyword.toUpperCase()) {
      case "COPY": {
        const match = /^--from=(\S+)\s+(\S+)\s+(\S+)$/.exec(args);
        if (!match) throw new Error(`Cannot read the final stage's COPY as only 'COPY --from=STAGE SOURCE DESTINATION' is understood: current value is '${line}'`);
        stage.copies.push({ from: match[1]!, source: match[2]!, destination: match[3]! });
        break;
      }
      case "ENV":
        Object.assign(stage.env, keyValues(args));
        break;
      case "USER":
        stage.user = args;
        break;
      case "ENTRYPOINT":
        stage.entrypoint = JSON.parse(args) as string[];
        break;
      case "ARG":
      case "LABEL":
      case "EXPOSE":
        break;
      default:
        throw new Error(`Cannot read the final stage as the image test does not know what '${keyword}' does to the image: current value is '${line}'`);
    }
  }
  return stage;
}

/**
 * The shared objects `executable` loads, as `ldd` prints them: the path the loader finds each
 * one at (e.g. `/lib/x86_64-linux-gnu/libc.so.6`), the loader itself included, the vDSO left
 * out (the kernel provides it). Sorted; empty for a static executable. Fails when a library is
 * not found on this host.
 */
export function sharedLibraries(executable: string): string[] {
  const ldd = requireTool("ldd", "libc-bin");
  const result = spawnSync(ldd, [executable], { encoding: "utf8" });
  // glibc's ldd says so on stdout or stderr, and exits 1, for a statically linked executable.
  if (`${result.stdout}${result.stderr}`.includes("not a dynamic executable")) return [];
  if (result.status !== 0) throw new Error(`Cannot list the libraries of ${executable} as ldd exited with ${result.status}: ${(result.stderr || result.stdout).trim()}`);
  const paths: string[] = [];
  for (const line of result.stdout.split("\n").map((l) => l.trim())) {
    if (line === "" || line.startsWith("linux-vdso.so") || line.startsWith("linux-gate.so")) continue;
    if (line.includes("not found")) throw new Error(`Cannot list the libraries of ${executable} as one is missing on this host: ${line}`);
    const match = /^(?:\S+ => )?(\/\S+) \(0x[0-9a-f]+\)$/.exec(line);
    if (!match) throw new Error(`Cannot read ldd's output for ${executable}: current line is '${line}'`);
    paths.push(match[1]!);
  }
  return paths.sort();
}

/** One entry of a root filesystem. */
export interface RootfsEntry {
  /** Absolute inside the root, e.g. `/etc/passwd`. */
  path: string;
  type: "file" | "directory" | "symlink" | "other";
  /** Permission bits, e.g. 0o755. */
  mode: number;
  uid: number;
  gid: number;
  /** File size; 0 for anything else. */
  sizeBytes: number;
}

/** Every entry under `dir` (the root itself excluded), depth first, sorted by path. */
export function listRootfs(dir: string): RootfsEntry[] {
  const entries: RootfsEntry[] = [];
  const walk = (relative: string): void => {
    for (const name of readdirSync(join(dir, relative)).sort()) {
      const path = `${relative}/${name}`;
      const stat = lstatSync(join(dir, path));
      const type = stat.isFile() ? "file" : stat.isDirectory() ? "directory" : stat.isSymbolicLink() ? "symlink" : "other";
      entries.push({ path, type, mode: stat.mode & 0o7777, uid: stat.uid, gid: stat.gid, sizeBytes: type === "file" ? stat.size : 0 });
      if (type === "directory") walk(path);
    }
  };
  walk("");
  return entries.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/** The absolute path of `name` on PATH (or the sbin directories), or an error saying what to install. */
export function requireTool(name: string, debianPackage: string): string {
  const dirs = [...(process.env.PATH ?? "").split(":"), "/usr/sbin", "/sbin", "/usr/bin", "/bin"].filter((d) => d !== "");
  for (const dir of dirs) {
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // Not here.
    }
  }
  throw new Error(`Cannot run the image test as '${name}' is not installed: install the ${debianPackage} package (searched ${[...new Set(dirs)].join(":")})`);
}

/** The devices an OCI runtime creates in a container's /dev. */
const devices = ["null", "zero", "full", "random", "urandom", "tty"] as const;

/**
 * Runs inside the new mount and PID namespaces as their PID 1, then execs the container's
 * command ("$@"), which becomes PID 1 in turn. Values arrive as arguments, never spliced into
 * the script. Mounts are private to the namespace (unshare's default propagation), so none of
 * them is seen on the host, and all go away with the process.
 */
const runtimeScript = `set -eu
root=$1
shift
mount --bind "$root" "$root"
mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
mount -t tmpfs -o nosuid,mode=755,size=64k tmpfs "$root/dev"
for device in ${devices.join(" ")}; do
  : > "$root/dev/$device"
  mount --bind "/dev/$device" "$root/dev/$device"
done
mount -t tmpfs -o nosuid,nodev,mode=1777,size=64m tmpfs "$root/tmp"
mount -o remount,bind,ro,nosuid,nodev "$root"
exec "$@"
`;

export interface RunInRootfsOptions {
  /** The root filesystem; needs the directories /proc, /dev and /tmp (mount points). */
  rootfs: string;
  /** The command inside the root, e.g. the image's ENTRYPOINT. */
  argv: readonly string[];
  /** The process's whole environment (nothing is inherited from the test). */
  env: Readonly<Record<string, string>>;
  /** `UID:GID`, as in the Dockerfile's USER. */
  user: string;
}

export interface RootfsProcess {
  /** The `unshare` process on the host; it exits with the container's exit code. */
  child: ChildProcess;
  stdout: string[];
  stderr: string[];
  /** Exit code, or the signal that ended it. */
  exited: Promise<number | string>;
  /** The host PID of the container's PID 1 (the command in `argv`), once it runs. */
  containerPid(timeoutMs?: number): Promise<number>;
}

/** Host PIDs of the processes whose parent is `pid`. */
function childrenOf(pid: number): number[] {
  const children: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // The command name in field 2 may hold spaces and parentheses: read after the last ')'.
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === pid) children.push(Number(entry));
    } catch {
      // The process ended while we looked.
    }
  }
  return children;
}

/**
 * Starts `argv` in `rootfs` as a container runtime would: new mount and PID namespaces, the
 * root bind-mounted read-only, /proc, a tmpfs /dev with the usual devices, a tmpfs /tmp, then
 * `chroot --userspec=USER`. The host's network is kept.
 */
export function runInRootfs(options: RunInRootfsOptions): RootfsProcess {
  const { rootfs, argv, env, user } = options;
  if (process.getuid?.() !== 0) {
    throw new Error(`Cannot run a process in a root filesystem as mount namespaces and chroot need root: current uid is ${process.getuid?.()}`);
  }
  const unshare = requireTool("unshare", "util-linux");
  requireTool("mount", "mount");
  const sh = requireTool("sh", "dash");
  const chroot = requireTool("chroot", "coreutils");
  const envTool = requireTool("env", "coreutils");
  const command = [
    unshare,
    "--mount",
    "--pid",
    "--fork",
    sh,
    "-c",
    runtimeScript,
    "runtime",
    rootfs,
    // env -i: the container sees only `env`, as with a container engine.
    envTool,
    "-i",
    ...Object.entries(env).map(([key, value]) => `${key}=${value}`),
    chroot,
    `--userspec=${user}`,
    rootfs,
    ...argv,
  ];
  const child = spawn(command[0]!, command.slice(1), { stdio: ["ignore", "pipe", "pipe"], env: { PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin" } });
  const stdout: string[] = [];
  const stderr: string[] = [];
  let pending = "";
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
    pending += chunk;
    const lines = pending.split("\n");
    pending = lines.pop()!;
    stdout.push(...lines);
  });
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => stderr.push(chunk));
  const exited = new Promise<number | string>((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (code, signal) => {
      if (pending !== "") stdout.push(pending);
      resolve(code ?? signal ?? "unknown");
    });
  });
  return {
    child,
    stdout,
    stderr,
    exited,
    async containerPid(timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      const target = argv[0] ?? "";
      while (Date.now() < deadline) {
        // unshare --fork has one child: the runtime script, which execs env, chroot, then argv.
        for (const pid of childrenOf(child.pid ?? -1)) {
          try {
            if (readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0")[0] === target) return pid;
          } catch {
            // Gone already.
          }
        }
        if (child.exitCode !== null || child.signalCode !== null) break;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      throw new Error(`Cannot find the container's PID 1 (${target}) under unshare (PID ${child.pid}) within ${timeoutMs} ms; stderr: ${stderr.join("").trim()}`);
    },
  };
}
