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
  /**
   * The value a bare `--flag` stands for, which makes the value optional: `--wait` or
   * `--wait=10m`. Such a value can only be attached with '=', so the argument after a bare
   * flag stays a positional. See {@link normalizeArgv}.
   */
  bareValue?: string;
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
  /**
   * False when the command line could not be read (unknown flag, missing value): nothing is
   * gathered then, and `problems` holds the one reason.
   */
  argvRead: boolean;
}

const ENV_TRUE = new Set(["1", "true", "yes", "on"]);
const ENV_FALSE = new Set(["", "0", "false", "no", "off"]);

/**
 * The boolean a variable's text stands for: true for 1, true, yes and on; false for 0, false,
 * no, off and the empty text (any case, surrounding spaces ignored); undefined for anything else.
 */
export function envBoolean(text: string): boolean | undefined {
  const lower = text.trim().toLowerCase();
  if (ENV_TRUE.has(lower)) return true;
  if (ENV_FALSE.has(lower)) return false;
  return undefined;
}

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
  const args = normalizeArgv(table, argv);
  let parsed: { values: Record<string, unknown>; positionals: string[] };
  try {
    parsed = parseArgs({ args, options: parseOptions, allowPositionals, strict: true });
  } catch (error) {
    return { raw: {}, origin: {}, positionals: [], problems: [argumentProblem(error, args, table)], argvRead: false };
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
        const value = envBoolean(text);
        if (value === undefined) problems.push(`${variable}: "${text}" is not a boolean (use true or false)`);
        raw[name] = value ?? false;
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
  return { raw, origin, positionals: parsed.positionals, problems, argvRead: true };
}

/**
 * node:util parseArgs has no options with an optional value, so a bare `--flag` of an option
 * with a {@link OptionSpec.bareValue} becomes `--flag=<bareValue>` before parsing;
 * `--flag=VALUE` is left as it is. The value of an option that takes one, and everything
 * after `--`, is never touched.
 */
export function normalizeArgv(table: OptionTable, argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let index = 0; index < argv.length; index++) {
    const arg = argv[index]!;
    const bare = arg.startsWith("--") ? table[arg.slice(2)]?.bareValue : undefined;
    out.push(bare === undefined ? arg : `${arg}=${bare}`);
    if (arg === "--") {
      out.push(...argv.slice(index + 1));
      break;
    }
    const spec = specOfFlag(table, arg)?.[1];
    if (spec !== undefined && spec.type === "string" && spec.bareValue === undefined && index + 1 < argv.length) out.push(argv[++index]!);
  }
  return out;
}

/** The option that `--name` or `-x` (exactly, without a value attached) stands for. */
function specOfFlag(table: OptionTable, arg: string): [string, OptionSpec] | undefined {
  return Object.entries(table).find(([name, spec]) => arg === `--${name}` || (spec.short !== undefined && arg === `-${spec.short}`));
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
    const value = spec.value === undefined ? "" : spec.bareValue === undefined ? ` ${spec.value}` : `[=${spec.value}]`;
    const flag = `${spec.short ? `-${spec.short}, ` : "    "}--${name}${value}`;
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

/**
 * One line for a node:util parseArgs failure (unknown option, missing value, …), naming the
 * option by its long flag. With the `args` that were parsed and their `table`, a value that
 * was refused for starting with a dash is named too.
 */
export function argumentProblem(error: unknown, args: readonly string[] = [], table: OptionTable = {}): string {
  const message = errorMessage(error);
  const code = typeof error === "object" && error !== null && "code" in error ? String(error.code) : "";
  const quoted = /'([^']+)'/.exec(message)?.[1] ?? "";
  const given = /--[\w-]+/.exec(quoted)?.[0] ?? quoted.split(" ")[0];
  // node names a short flag as given (-q); --help and this text name options by their long flag.
  const known = given === undefined ? undefined : specOfFlag(table, given);
  const option = known === undefined ? given : `--${known[0]}`;
  if (code === "ERR_PARSE_ARGS_UNKNOWN_OPTION" && option) return `${option}: unknown option (see --help)`;
  if (code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE" && option) {
    // node explains an ambiguous value over three lines; one line per problem is our rule.
    if (/argument is ambiguous/.test(message)) {
      const value = given === undefined ? undefined : dashValue(args, given);
      const current = value === undefined ? "" : `: current value is ${JSON.stringify(value)}`;
      return `${option}: a value that starts with a dash must be attached with '=' (${option}=VALUE)${current}`;
    }
    return `${option}: ${message.split("\n")[0]!.replace(/^Option '[^']+' /, "")}`;
  }
  return message.split("\n")[0] ?? message;
}

/** The argument after the first `flag` in `args` that starts with a dash: what parseArgs refused as its value. */
function dashValue(args: readonly string[], flag: string): string | undefined {
  for (let index = 0; index + 1 < args.length && args[index] !== "--"; index++) {
    if (args[index] === flag && args[index + 1]!.startsWith("-")) return args[index + 1];
  }
  return undefined;
}
