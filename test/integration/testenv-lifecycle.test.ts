/**
 * The test environment's promises about itself: everything it starts listens on 127.0.0.1
 * only, an interrupted run (Ctrl-C during `bun test`) leaves no process and no listening
 * port behind, and a missing prerequisite fails loudly, naming the tool and how to get it.
 */
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, test } from "bun:test";
import { processesUsing } from "../env/environment.ts";
import { until } from "../helpers/until.ts";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

interface Listening {
  address: string;
  port: number;
  inode: string;
}

/** Listening TCP sockets of the machine (IPv4 and IPv6), from /proc/net. */
function listeningSockets(): Listening[] {
  const out: Listening[] = [];
  for (const [file, v6] of [["/proc/net/tcp", false], ["/proc/net/tcp6", true]] as const) {
    let text = "";
    try {
      text = readFileSync(file, "utf8");
    } catch {
      continue;
    }
    for (const line of text.trim().split("\n").slice(1)) {
      const fields = line.trim().split(/\s+/);
      if (fields[3] !== "0A") continue; // TCP_LISTEN
      const [hex, portHex] = fields[1]!.split(":");
      out.push({ address: v6 ? ipv6(hex!) : ipv4(hex!), port: parseInt(portHex!, 16), inode: fields[9]! });
    }
  }
  return out;
}

function ipv4(hex: string): string {
  return [3, 2, 1, 0].map((i) => parseInt(hex.slice(i * 2, i * 2 + 2), 16)).join(".");
}

function ipv6(hex: string): string {
  if (hex === "00000000000000000000000000000000") return "::";
  if (hex === "00000000000000000000000001000000") return "::1";
  if (hex.startsWith("0000000000000000FFFF0000")) return `::ffff:${ipv4(hex.slice(24))}`;
  return hex;
}

/** Socket inodes held open by `pid`. */
function socketInodes(pid: number): Set<string> {
  const inodes = new Set<string>();
  try {
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      try {
        const target = readlinkSync(`/proc/${pid}/fd/${fd}`);
        const m = /^socket:\[(\d+)\]$/.exec(target);
        if (m) inodes.add(m[1]!);
      } catch {
        // Closed while we looked.
      }
    }
  } catch {
    // The process ended.
  }
  return inodes;
}

describe("test environment lifecycle", () => {
  test("listens on 127.0.0.1 only, and an interrupted run (SIGINT) leaves no process and no listening port", async () => {
    const child = spawn(process.execPath, ["test", "--timeout=700000", "./test/env/probe/interrupted-run.ts"], { cwd: root, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, KPCD_TEST_ENV_STATE: "" } });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (c: string) => (stdout += c));
    child.stderr.setEncoding("utf8").on("data", (c: string) => (stderr += c));
    const exited = new Promise<number | string>((resolve) => child.once("exit", (code, signal) => resolve(code ?? signal ?? "unknown")));
    try {
      const info = await until("the probe's environment to start", async () => {
        const line = stdout.split("\n").find((l) => l.startsWith("PROBE-ENV "));
        return line ? (JSON.parse(line.slice("PROBE-ENV ".length)) as { dir: string }) : undefined;
      }, 120_000);

      const pids = processesUsing(info.dir);
      // etcd, kube-apiserver, controller-manager, scheduler, kwok and ElasticMQ at least.
      expect(pids.length).toBeGreaterThanOrEqual(6);
      const inodes = new Set(pids.flatMap((pid) => [...socketInodes(pid)]));
      const theirs = listeningSockets().filter((s) => inodes.has(s.inode));
      // etcd (client and peer), kube-apiserver, ElasticMQ, and the controllers' health ports.
      expect(theirs.length).toBeGreaterThanOrEqual(5);
      // ElasticMQ's JVM binds an IPv6 socket to the IPv4-mapped loopback address: still 127.0.0.1.
      expect(theirs.filter((s) => s.address !== "127.0.0.1" && s.address !== "::ffff:127.0.0.1").map((s) => `${s.address}:${s.port}`)).toEqual([]);

      child.kill("SIGINT");
      expect(await exited).toBe(130);
      expect(stderr).toContain("SIGINT received, stopping the test environment");
      expect(processesUsing(info.dir)).toEqual([]);
      const stillListening = listeningSockets().filter((s) => theirs.some((t) => t.port === s.port && t.address === s.address));
      expect(stillListening.map((s) => `${s.address}:${s.port}`)).toEqual([]);
      expect(readdirSync(tmpdir()).includes(info.dir.split("/").pop()!)).toBe(false);
    } finally {
      if (child.exitCode === null) child.kill("SIGKILL");
    }
  }, 180_000);

  test("a missing prerequisite fails loudly, naming the tool and how to get it", () => {
    const cache = mkdtempSync(join(tmpdir(), "kpcd-prereq-"));
    const script = join(cache, "prepare.ts");
    writeFileSync(
      script,
      `import { ensureElasticMQ, ensureKubeBinaries } from ${JSON.stringify(join(root, "test", "env", "prerequisites.ts"))};
for (const ensure of [ensureKubeBinaries, ensureElasticMQ]) {
  try { await ensure(); console.log("unexpectedly ready"); } catch (error) { console.log(String(error)); }
}
`,
    );
    try {
      // An empty cache and a PATH without go, java and mvn: a fresh machine without them.
      const run = spawnSync(process.execPath, [script], { encoding: "utf8", env: { HOME: cache, PATH: join(cache, "no-tools"), KPCD_CACHE_DIR: join(cache, "cache") } });
      const lines = run.stdout.trim().split("\n");
      expect(lines[0]).toStartWith("MissingPrerequisiteError: The test environment needs 'go', which is not usable here (");
      expect(lines[0]).toEndWith("Install Go 1.24 or newer (https://go.dev/doc/install, or 'apt-get install golang' where Debian's is new enough) and put it on PATH.");
      expect(lines[1]).toStartWith("MissingPrerequisiteError: The test environment needs 'java', which is not usable here (");
      expect(lines[1]).toEndWith("Install Java 17 or newer (for example 'apt-get install openjdk-17-jre-headless').");
    } finally {
      rmSync(cache, { recursive: true, force: true });
    }
  });
});
