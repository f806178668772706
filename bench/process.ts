/**
 * The benchmark's child processes: a compiled executable started with exactly the given
 * environment, its JSON log lines collected as they come, and its memory read from /proc.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import type { LogLine } from "../test/helpers/listener-process.ts";

export interface Running {
  child: ChildProcess;
  /** Parsed JSON lines of stdout, each with the time it arrived here (ms since the epoch). */
  lines: (LogLine & { arrivedMs: number })[];
  /** stdout lines that were not JSON, and all stderr. */
  other: string[];
  exited: Promise<number | string>;
  /** Resolves with the first line (already seen or future) matching `predicate`. */
  waitForLine(predicate: (line: LogLine) => boolean, timeoutMs: number): Promise<LogLine & { arrivedMs: number }>;
}

/** Starts `argv` with `env` (nothing inherited) and collects its output. */
export function startProcess(argv: readonly string[], env: Record<string, string>): Running {
  const child = spawn(argv[0]!, argv.slice(1), { env, stdio: ["ignore", "pipe", "pipe"] });
  const lines: Running["lines"] = [];
  const other: string[] = [];
  const waiters: { predicate: (l: LogLine) => boolean; resolve: (l: Running["lines"][number]) => void }[] = [];
  let buffer = "";
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
    const arrivedMs = Date.now();
    buffer += chunk;
    let newline: number;
    while ((newline = buffer.indexOf("\n")) >= 0) {
      const text = buffer.slice(0, newline);
      buffer = buffer.slice(newline + 1);
      let line: Running["lines"][number];
      try {
        line = { ...(JSON.parse(text) as LogLine), arrivedMs };
      } catch {
        other.push(text);
        continue;
      }
      lines.push(line);
      for (const w of [...waiters]) {
        if (w.predicate(line)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(line);
        }
      }
    }
  });
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => other.push(chunk));
  const exited = new Promise<number | string>((resolve) => child.once("exit", (code, signal) => resolve(code ?? signal ?? "unknown")));
  return {
    child,
    lines,
    other,
    exited,
    waitForLine(predicate, timeoutMs) {
      const seen = lines.find(predicate);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          reject(new Error(`${argv[0]} logged no matching line within ${timeoutMs} ms; last lines:\n${lines.slice(-10).map((l) => JSON.stringify(l)).join("\n")}\n${other.join("").slice(-2000)}`));
        }, timeoutMs);
        waiters.push({
          predicate,
          resolve: (l) => {
            clearTimeout(timer);
            resolve(l);
          },
        });
      });
    },
  };
}

/** Resident set size now (VmRSS) and its peak so far (VmHWM) of a process, in KiB. */
export interface Memory {
  rssKiB: number;
  hwmKiB: number;
}

/**
 * Reads VmRSS and VmHWM from /proc/<pid>/status.
 *
 * @throws {Error} when the process is gone or the file lacks them.
 */
export function readMemory(pid: number): Memory {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const field = (name: string) => {
    const value = new RegExp(`^${name}:\\s+(\\d+) kB$`, "m").exec(status)?.[1];
    if (value === undefined) throw new Error(`Cannot read ${name} of process ${pid}: /proc/${pid}/status has no such line`);
    return Number(value);
  };
  return { rssKiB: field("VmRSS"), hwmKiB: field("VmHWM") };
}
