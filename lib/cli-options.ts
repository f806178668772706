/**
 * Options of the entry scripts, described once as a table: from it come the node:util
 * parseArgs options, the KUBE_PICO_CD_* environment fallbacks and the --help text, so the
 * three cannot drift apart. Validation is each entry script's zod schema; this module only
 * gathers raw values and remembers where each came from, so that a problem names the flag or
 * variable that caused it.
 */
import { parseArgs } from "node:util";
import type { z } from "zod";
import { errorMessage } from "./errors.ts";

export interface OptionSpec {
  type: "string" | "boolean";
  multiple?: boolean;
  short?: string;
  /** Environment variables read when the flag is absent, in order. */
  env?: readonly string[];
  /** Placeholder of the value in --help, e.g. "URL". */
  value?: string;
  /** The default as shown in --help. */
  defaultText: string;
  help: string;
}

export type OptionTable = Readonly<Record<string, OptionSpec>>;

/** Raw values by option name: strings, booleans, or lists for `multiple` options. */
export type RawOptions = Record<string, string | boolean | string[]>;

export interface GatheredOptions {
  raw: RawOptions;
  /** Where each value came from: "--flag" or the variable's name. */
  origin: Record<string, string>;
  positionals: string[];
  /** One line per problem found while gathering (unknown flag, bad boolean variable). */
  problems: string[];
}

const ENV_TRUE = new Set(["1", "true", "yes", "on"]);
const ENV_FALSE = new Set(["", "0", "false", "no", "off"]);

/**
 * Reads `argv` against `table`, falling back to `env` for absent flags. Booleans default to
 * false and lists to []; other defaults are the schema's business.
 */
export function gatherOptions(
  table: OptionTable,
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
  options: { allowPositionals?: boolean } = {},
): GatheredOptions {
  const { allowPositionals = false } = options;
  const parseOptions = Object.fromEntries(
    Object.entries(table).map(([name, spec]) => [name, { type: spec.type, ...(spec.multiple ? { multiple: true } : {}), ...(spec.short ? { short: spec.short } : {}) }]),
  );
  let parsed: { values: Record<string, unknown>; positionals: string[] };
  try {
    parsed = parseArgs({ args: [...argv], options: parseOptions, allowPositionals, strict: true });
  } catch (error) {
    return { raw: {}, origin: {}, positionals: [], problems: [argumentProblem(error)] };
  }
  const problems: string[] = [];
  const raw: RawOptions = {};
  const origin: Record<string, string> = {};
  for (const [name, spec] of Object.entries(table)) {
    const given = parsed.values[name] as string | boolean | string[] | undefined;
    if (given !== undefined) {
      raw[name] = given;
      origin[name] = `--${name}`;
      continue;
    }
    const variable = spec.env?.find((candidate) => env[candidate] !== undefined && env[candidate] !== "");
    const text = variable === undefined ? undefined : env[variable];
    if (variable !== undefined && text !== undefined) {
      origin[name] = variable;
      if (spec.type === "boolean") {
        const lower = text.trim().toLowerCase();
        if (ENV_TRUE.has(lower)) raw[name] = true;
        else if (ENV_FALSE.has(lower)) raw[name] = false;
        else {
          problems.push(`${variable}: "${text}" is not a boolean (use true or false)`);
          raw[name] = false;
        }
      } else if (spec.multiple) {
        raw[name] = splitList(text);
      } else {
        raw[name] = text;
      }
      continue;
    }
    origin[name] = `--${name}`;
    if (spec.type === "boolean") raw[name] = false;
    else if (spec.multiple) raw[name] = [];
  }
  return { raw, origin, positionals: parsed.positionals, problems };
}

/** One line per zod issue, naming the flag or variable the value came from. */
export function schemaProblems(error: z.ZodError, origin: Readonly<Record<string, string>>): string[] {
  return error.issues.map((issue) => {
    const key = String(issue.path[0] ?? "");
    return `${origin[key] ?? `--${key}`}: ${issue.message}`;
  });
}

/** The options part of --help: each flag, its variables and its default. */
export function optionsHelp(table: OptionTable): string[] {
  const lines: string[] = [];
  for (const [name, spec] of Object.entries(table)) {
    const flag = `${spec.short ? `-${spec.short}, ` : "    "}--${name}${spec.value ? ` ${spec.value}` : ""}`;
    lines.push(`  ${flag}`);
    lines.push(`        ${spec.help}`);
    const env = spec.env && spec.env.length > 0 ? `env ${spec.env.join(", ")}; ` : "";
    lines.push(`        (${env}default: ${spec.defaultText})`);
  }
  return lines;
}

/** A comma-separated list, trimmed, without empty items. */
export function splitList(text: string): string[] {
  return text
    .split(",")
    .map((item) => item.trim())
    .filter((item) => item !== "");
}

/** One line for a node:util parseArgs failure (unknown option, missing value, …). */
export function argumentProblem(error: unknown): string {
  const message = errorMessage(error);
  const code = typeof error === "object" && error !== null && "code" in error ? String(error.code) : "";
  const quoted = /'([^']+)'/.exec(message)?.[1] ?? "";
  const option = /--[\w-]+/.exec(quoted)?.[0] ?? quoted.split(" ")[0];
  if (code === "ERR_PARSE_ARGS_UNKNOWN_OPTION" && option) return `${option}: unknown option (see --help)`;
  if (code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE" && option) {
    // node explains an ambiguous value over three lines; one line per problem is our rule.
    if (/argument is ambiguous/.test(message)) return `${option}: its value starts with a dash; write ${option}=VALUE`;
    return `${option}: ${message.split("\n")[0]!.replace(/^Option '[^']+' /, "")}`;
  }
  return message.split("\n")[0] ?? message;
}
