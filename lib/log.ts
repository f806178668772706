/**
 * Structured logs: one JSON object per line, `{"level","time","msg",...fields}`, so that a
 * log collector can index builds, message ids and durations without parsing prose.
 *
 * Manifests and Secret data never belong in a log line. Callers pass identifiers (build id,
 * object keys, message id), not objects; as a second line of defence the logger replaces
 * the values of keys that carry manifest or Secret content (`data`, `stringData`,
 * `manifests`, `objects`, `body`, …) with "[redacted]" at any depth, and cuts long strings.
 */
import { KubePicoCdError } from "./errors.ts";

export type LogLevel = "debug" | "info" | "warn" | "error";

/** What a field may hold: JSON-like values and errors (serialized with their context). */
export type LogValue =
  | string
  | number
  | boolean
  | null
  | undefined
  | Error
  | readonly LogValue[]
  | { readonly [key: string]: LogValue };

export type LogFields = { readonly [key: string]: LogValue };

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  /** A logger that adds `fields` to every line (a line's own fields win). */
  child(fields: LogFields): Logger;
}

/** Options of {@link createLogger}. */
export interface LoggerOptions {
  /** Lines below this level are dropped. Default "info". */
  level?: LogLevel;
  /** Receives each line, newline included. Default: process.stdout. */
  write?: (line: string) => void;
  /** Clock for the `time` field. Default `() => new Date()`. */
  now?: () => Date;
  /** Fields on every line. */
  fields?: LogFields;
  /** Strings longer than this many characters are cut. Default 4096. */
  maxStringLength?: number;
}

const levelRank: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** Keys whose values may hold manifest contents or Secret data, compared case-insensitively. */
export const redactedKeys: ReadonlySet<string> = new Set([
  "data",
  "stringdata",
  "binarydata",
  "manifest",
  "manifests",
  "object",
  "objects",
  "items",
  "body",
  "stdin",
  "spec",
  "password",
  "token",
  "secret",
]);

const reserved = new Set(["level", "time", "msg"]);

/** Creates a {@link Logger} writing JSON lines. */
export function createLogger(options: LoggerOptions = {}): Logger {
  const {
    level = "info",
    write = (line: string) => void process.stdout.write(line),
    now = () => new Date(),
    fields = {},
    maxStringLength = 4096,
  } = options;
  const threshold = levelRank[level];
  const make = (base: LogFields): Logger => {
    const emit = (lineLevel: LogLevel, msg: string, own: LogFields = {}) => {
      if (levelRank[lineLevel] < threshold) return;
      write(`${formatLogLine(lineLevel, now(), msg, { ...base, ...own }, maxStringLength)}\n`);
    };
    return {
      debug: (msg, own) => emit("debug", msg, own),
      info: (msg, own) => emit("info", msg, own),
      warn: (msg, own) => emit("warn", msg, own),
      error: (msg, own) => emit("error", msg, own),
      child: (more) => make({ ...base, ...more }),
    };
  };
  return make(fields);
}

/**
 * One log line (without the newline): level, time and msg first, then the fields, redacted
 * and cut. Fields named level, time or msg are renamed with a `field.` prefix.
 */
export function formatLogLine(level: LogLevel, time: Date, msg: string, fields: LogFields, maxStringLength = 4096): string {
  const line: Record<string, unknown> = { level, time: time.toISOString(), msg: cut(msg, maxStringLength) };
  for (const [key, value] of Object.entries(fields)) {
    if (value === undefined) continue;
    line[reserved.has(key) ? `field.${key}` : key] = sanitize(key, value, maxStringLength, 0);
  }
  return JSON.stringify(line);
}

function sanitize(key: string, value: LogValue, maxStringLength: number, depth: number): unknown {
  // A count or a flag cannot carry manifest contents or Secret data: `objects: 12` stays.
  if (redactedKeys.has(key.toLowerCase()) && typeof value !== "number" && typeof value !== "boolean") return "[redacted]";
  if (depth > 8) return "[too deep]";
  if (typeof value === "string") return cut(value, maxStringLength);
  if (value === null || typeof value === "number" || typeof value === "boolean" || value === undefined) return value;
  if (value instanceof Error) return sanitize(key, errorFields(value), maxStringLength, depth + 1);
  if (Array.isArray(value)) return value.map((item: LogValue) => sanitize("", item, maxStringLength, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value as { readonly [key: string]: LogValue })) {
    if (v !== undefined) out[k] = sanitize(k, v, maxStringLength, depth + 1);
  }
  return out;
}

/**
 * An error as log fields: name and message, the context a known error carries (argv, exit
 * code, stderr, reason, …; own enumerable properties that are plain values), and its cause.
 * The stack only for errors that are not ours, since those are bugs.
 */
function errorFields(error: Error): { readonly [key: string]: LogValue } {
  const out: Record<string, LogValue> = { name: error.name, message: error.message };
  for (const [k, v] of Object.entries(error)) {
    if (k === "name" || k === "message") continue;
    if (v === null || ["string", "number", "boolean"].includes(typeof v)) out[k] = v as LogValue;
    else if (Array.isArray(v) && v.every((item) => typeof item === "string")) out[k] = v as readonly string[];
  }
  if (!(error instanceof KubePicoCdError) && error.stack !== undefined) out["stack"] = error.stack;
  if (error.cause instanceof Error) out["cause"] = errorFields(error.cause);
  else if (error.cause !== undefined) out["cause"] = String(error.cause);
  return out;
}

function cut(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max)}…[${text.length - max} more characters]`;
}
