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
   * The value a bare `--flag` stands for, which makes the value optional: `--wait`,
   * `--wait=10m`, or `--wait 10m` when the next argument matches {@link valuePattern}
   * (without a pattern, or when it does not match, the next argument stays a positional).
   * See {@link normalizeArgv}.
   */
  bareValue?: string;
  /**
   * With {@link bareValue}: what the option's values look like (e.g. /^\d+[smh]?$/ for a
   * timeout), so that `--flag VALUE` takes VALUE while `--flag path/` stays a bare flag
   * followed by a positional.
   */
  valuePattern?: RegExp;
  /**
   * Old names still accepted, each with a deprecation notice: flags (`--sqs-endpoint`) and
   * variables (`KUBE_PICO_CD_SQS_ENDPOINT`). An old variable is read right after the
   * option's own (the first of {@link env}) and before the others, which are usually
   * another tool's (AWS_REGION), so that a setting that used to win still does.
   */
  deprecated?: readonly string[];
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
  /** One line per deprecated flag or variable that was used, naming its current name. */
  notices: string[];
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
  const parseOptions: Record<string, { type: "string" | "boolean"; multiple?: boolean; short?: string }> = {};
  for (const [name, spec] of Object.entries(table)) {
    const shape = { type: spec.type, ...(spec.multiple ? { multiple: true } : {}) };
    parseOptions[name] = { ...shape, ...(spec.short ? { short: spec.short } : {}) };
    for (const flag of deprecatedFlags(spec)) parseOptions[flag] = shape;
  }
  const args = normalizeArgv(table, argv);
  let parsed: { values: Record<string, unknown>; positionals: string[] };
  try {
    parsed = parseArgs({ args, options: parseOptions, allowPositionals, strict: true });
  } catch (error) {
    return { raw: {}, origin: {}, positionals: [], problems: [argumentProblem(error, args, table)], notices: [], argvRead: false };
  }
  const problems: string[] = [];
  const notices: string[] = [];
  const raw: RawOptions = {};
  const origin: Record<string, string> = {};
  for (const [name, spec] of Object.entries(table)) {
    const current = parsed.values[name] as string | boolean | string[] | undefined;
    const old = deprecatedFlags(spec).find((flag) => parsed.values[flag] !== undefined);
    if (old !== undefined) {
      notices.push(`--${old} is deprecated: use --${name}`);
      if (current !== undefined) problems.push(`--${old}: given together with --${name}, its current name: drop --${old}`);
    }
    const given = current ?? (old === undefined ? undefined : (parsed.values[old] as string | boolean | string[]));
    if (given !== undefined) {
      raw[name] = given;
      origin[name] = `--${old !== undefined && current === undefined ? old : name}`;
      continue;
    }
    const set = readOrder(spec).filter((candidate) => env[candidate] !== undefined && env[candidate] !== "");
    const own = spec.env?.[0];
    for (const old of set.filter((candidate) => spec.deprecated?.includes(candidate))) {
      notices.push(`${old} is deprecated: use ${own ?? `--${name}`}`);
      // An overlay that still sets the old name over a base that sets the new one must not
      // lose silently to the base's value.
      if (own !== undefined && set[0] === own && env[old] !== env[own]) problems.push(`${old}: set together with ${own}, its current name, to another value: drop ${old}`);
    }
    const variable = set[0];
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
  return { raw, origin, positionals: parsed.positionals, problems, notices, argvRead: true };
}

/** The old flag names of an option, without their dashes. */
function deprecatedFlags(spec: OptionSpec): string[] {
  return (spec.deprecated ?? []).filter((name) => name.startsWith("--")).map((name) => name.slice(2));
}

/** The variables of an option in the order they are read: its own, its deprecated ones, then the rest. */
function readOrder(spec: OptionSpec): string[] {
  const [own, ...others] = spec.env ?? [];
  const old = (spec.deprecated ?? []).filter((name) => !name.startsWith("--"));
  return [...(own === undefined ? [] : [own]), ...old, ...others];
}

/**
 * node:util parseArgs has no options with an optional value, so a bare `--flag` of an option
 * with a {@link OptionSpec.bareValue} becomes `--flag=<next>` when the next argument matches
 * its {@link OptionSpec.valuePattern}, else `--flag=<bareValue>`; `--flag=VALUE` is left as
 * it is. The value of an option that takes one, and everything after `--`, is never touched.
 */
export function normalizeArgv(table: OptionTable, argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let index = 0; index < argv.length; index++) {
    const arg = argv[index]!;
    if (arg === "--") {
      out.push(...argv.slice(index));
      break;
    }
    const spec = specOfFlag(table, arg)?.[1];
    if (spec?.bareValue !== undefined) {
      const next = argv[index + 1];
      const takesNext = next !== undefined && spec.valuePattern !== undefined && spec.valuePattern.test(next);
      out.push(`${arg}=${takesNext ? next : spec.bareValue}`);
      if (takesNext) index++;
      continue;
    }
    out.push(arg);
    if (spec !== undefined && spec.type === "string" && index + 1 < argv.length) out.push(argv[++index]!);
  }
  return out;
}

/** The option that `--name`, an old `--name` or `-x` (exactly, without a value attached) stands for. */
function specOfFlag(table: OptionTable, arg: string): [string, OptionSpec] | undefined {
  return Object.entries(table).find(
    ([name, spec]) => arg === `--${name}` || (spec.short !== undefined && arg === `-${spec.short}`) || (spec.deprecated ?? []).includes(arg),
  );
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
    const deprecated = spec.deprecated && spec.deprecated.length > 0 ? `; deprecated: ${spec.deprecated.join(", ")}` : "";
    lines.push(`        (${env}default: ${spec.defaultText}${deprecated})`);
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
 * was refused for starting with a dash is named too, and an unknown flag gets the closest
 * known one as a suggestion.
 */
export function argumentProblem(error: unknown, args: readonly string[] = [], table: OptionTable = {}): string {
  const message = errorMessage(error);
  const code = typeof error === "object" && error !== null && "code" in error ? String(error.code) : "";
  const quoted = /'([^']+)'/.exec(message)?.[1] ?? "";
  const given = /--[\w-]+/.exec(quoted)?.[0] ?? quoted.split(" ")[0];
  // node names a short flag as given (-q); --help and this text name options by their long flag.
  const known = given === undefined ? undefined : specOfFlag(table, given);
  const option = known === undefined ? given : `--${known[0]}`;
  if (code === "ERR_PARSE_ARGS_UNKNOWN_OPTION" && option) {
    // `--wait -5`: the flag's value was taken for an option of its own.
    const owner = /^-\d/.test(option) ? flagBefore(args, option, table) : undefined;
    if (owner !== undefined) return dashValueProblem(owner, option);
    const closest = option.startsWith("--") ? closestFlag(option.slice(2), Object.keys(table)) : undefined;
    return closest === undefined ? `${option}: unknown option (see --help)` : `${option}: unknown option; did you mean --${closest}? (see --help)`;
  }
  if (code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE" && option) {
    // node explains an ambiguous value over three lines; one line per problem is our rule.
    if (/argument is ambiguous/.test(message)) return dashValueProblem(option, given === undefined ? undefined : dashValue(args, given));
    return `${option}: ${message.split("\n")[0]!.replace(/^Option '[^']+' /, "")}`;
  }
  return message.split("\n")[0] ?? message;
}

/** The one line for a value that starts with a dash and was not attached with '='. */
function dashValueProblem(option: string, value: string | undefined): string {
  const current = value === undefined ? "" : `: current value is ${JSON.stringify(value)}`;
  return `${option}: a value that starts with a dash must be attached with '=' (${option}=VALUE)${current}`;
}

/** The argument after the first `flag` in `args` that starts with a dash: what parseArgs refused as its value. */
function dashValue(args: readonly string[], flag: string): string | undefined {
  for (let index = 0; index + 1 < args.length && args[index] !== "--"; index++) {
    if (args[index] === flag && args[index + 1]!.startsWith("-")) return args[index + 1];
  }
  return undefined;
}

/**
 * The long flag of the option that takes a value standing right before `arg` in `args`
 * (normalized: a bare-value flag reads `--wait=900`), if any.
 */
function flagBefore(args: readonly string[], arg: string, table: OptionTable): string | undefined {
  const index = args.indexOf(arg);
  const previous = index > 0 ? args[index - 1]! : "";
  const known = specOfFlag(table, previous.split("=")[0]!);
  return known !== undefined && known[1].type === "string" ? `--${known[0]}` : undefined;
}

/**
 * The known option name closest to `given` (both without dashes): at most 2 edits away (1 for
 * names of up to 4 characters), or one that `given` is a prefix or a dashless spelling of;
 * undefined when none is close or two are equally close.
 */
export function closestFlag(given: string, names: readonly string[]): string | undefined {
  const plain = (name: string) => name.replaceAll("-", "").toLowerCase();
  const exactish = names.filter((name) => plain(name) === plain(given));
  if (exactish.length === 1) return exactish[0];
  let best: string | undefined;
  let bestDistance = Number.POSITIVE_INFINITY;
  let tie = false;
  for (const name of names) {
    const distance = editDistance(given.toLowerCase(), name);
    if (distance < bestDistance) [best, bestDistance, tie] = [name, distance, false];
    else if (distance === bestDistance) tie = true;
  }
  const allowed = given.length <= 4 ? 1 : 2;
  if (best !== undefined && bestDistance <= allowed && !tie) return best;
  const prefixed = given.length >= 3 ? names.filter((name) => name.startsWith(given)) : [];
  return prefixed.length === 1 ? prefixed[0] : undefined;
}

/**
 * The edit distance between `a` and `b`: insertions, deletions, substitutions and swaps of
 * two neighbouring characters, each counting 1 (optimal string alignment).
 */
export function editDistance(a: string, b: string): number {
  const rows = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let value = Math.min(rows[i - 1]![j]! + 1, rows[i]![j - 1]! + 1, rows[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) value = Math.min(value, rows[i - 2]![j - 2]! + 1);
      rows[i]![j] = value;
    }
  }
  return rows[a.length]![b.length]!;
}
