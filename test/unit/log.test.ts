import { describe, expect, test } from "bun:test";
import { KubectlError } from "../../lib/errors.ts";
import { createLogger, formatLogLine } from "../../lib/log.ts";

const time = new Date("2024-05-01T12:00:00.000Z");

function capture(level?: "debug" | "info" | "warn" | "error") {
  const lines: string[] = [];
  const logger = createLogger({ ...(level === undefined ? {} : { level }), write: (line) => lines.push(line), now: () => time });
  return { logger, lines };
}

describe("createLogger()", () => {
  test("createLogger() writes one JSON object per line: level, time, msg, then the fields", () => {
    const { logger, lines } = capture();
    logger.info("applied build", { build: "build-7", messageId: "m-1", durationMs: 1234 });
    expect(lines).toEqual([
      '{"level":"info","time":"2024-05-01T12:00:00.000Z","msg":"applied build","build":"build-7","messageId":"m-1","durationMs":1234}\n',
    ]);
  });

  test("createLogger() drops lines below its level (info by default)", () => {
    const { logger, lines } = capture();
    logger.debug("noise");
    logger.warn("kept");
    expect(lines.map((l) => JSON.parse(l).msg)).toEqual(["kept"]);
  });

  test("createLogger() writes debug lines when the level is debug", () => {
    const { logger, lines } = capture("debug");
    logger.debug("detail");
    expect(lines.length).toBe(1);
  });

  test("child() adds its fields to every line; a line's own fields win", () => {
    const { logger, lines } = capture();
    logger.child({ queue: "q", build: "old" }).info("x", { build: "new" });
    expect(JSON.parse(lines[0] ?? "")).toEqual({ level: "info", time: "2024-05-01T12:00:00.000Z", msg: "x", queue: "q", build: "new" });
  });
});

describe("formatLogLine()", () => {
  test("formatLogLine() redacts keys that may carry manifests or Secret data, at any depth", () => {
    const line = JSON.parse(
      formatLogLine("info", time, "m", {
        manifests: "apiVersion: v1\nkind: Secret",
        stringData: { password: "hunter2" },
        nested: { objects: [{ kind: "Secret" }], data: "x", name: "kept" },
      }),
    );
    expect(line).toEqual({
      level: "info",
      time: "2024-05-01T12:00:00.000Z",
      msg: "m",
      manifests: "[redacted]",
      stringData: "[redacted]",
      nested: { objects: "[redacted]", data: "[redacted]", name: "kept" },
    });
  });

  test("formatLogLine() cuts long strings", () => {
    const line = JSON.parse(formatLogLine("info", time, "m", { text: "a".repeat(20) }, 5));
    expect(line.text).toBe("aaaaa…[15 more characters]");
  });

  test("formatLogLine() does not let fields overwrite level, time or msg", () => {
    const line = JSON.parse(formatLogLine("warn", time, "real", { msg: "fake", level: "debug" }));
    expect(line).toEqual({ level: "warn", time: "2024-05-01T12:00:00.000Z", msg: "real", "field.msg": "fake", "field.level": "debug" });
  });

  test("formatLogLine() writes a known error with its context and without a stack", () => {
    const error = new KubectlError("Cannot run `kubectl apply`: exit code 1", {
      argv: ["kubectl", "apply"],
      exitCode: 1,
      signal: null,
      stderr: "Error from server (Invalid): bad",
      reason: "exit",
      serverReason: "Invalid",
    });
    const line = JSON.parse(formatLogLine("error", time, "apply failed", { err: error }));
    expect(line.err).toEqual({
      name: "KubectlError",
      message: "Cannot run `kubectl apply`: exit code 1",
      argv: ["kubectl", "apply"],
      exitCode: 1,
      signal: null,
      stderr: "Error from server (Invalid): bad",
      reason: "exit",
      serverReason: "Invalid",
    });
  });

  test("formatLogLine() writes an unknown error with its stack and its cause", () => {
    const error = new TypeError("boom", { cause: new Error("root") });
    const line = JSON.parse(formatLogLine("error", time, "bug", { err: error }));
    expect(line.err.name).toBe("TypeError");
    expect(line.err.stack).toContain("boom");
    expect(line.err.cause.message).toBe("root");
  });
});

describe("redaction of counts", () => {
  test("createLogger() keeps numbers and booleans under redacted keys, since they cannot hold manifest contents", () => {
    const lines: string[] = [];
    createLogger({ write: (l) => lines.push(l) }).info("build applied", { objects: 12, data: true, manifests: "kind: Secret" });
    expect(JSON.parse(lines[0]!)).toMatchObject({ objects: 12, data: true, manifests: "[redacted]" });
  });
});
