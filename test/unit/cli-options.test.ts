import { describe, expect, test } from "bun:test";
import { z } from "zod";
import { argumentProblem, envBoolean, gatherOptions, normalizeArgv, optionsHelp, schemaProblems, splitList, type OptionTable } from "../../lib/cli-options.ts";

const TABLE = {
  queue: { type: "string", short: "q", env: ["APP_QUEUE", "APP_QUEUE_OLD"], value: "URL", defaultText: "none", help: "Queue." },
  tags: { type: "string", multiple: true, env: ["APP_TAGS"], value: "TAG", defaultText: "none", help: "Tags." },
  wait: { type: "string", env: ["APP_WAIT"], value: "TIMEOUT", bareValue: "60", defaultText: "off", help: "Wait." },
  once: { type: "boolean", env: ["APP_ONCE"], defaultText: "false", help: "Once." },
  help: { type: "boolean", short: "h", defaultText: "false", help: "Help." },
} as const satisfies OptionTable;

const gather = (argv: string[], env: Record<string, string> = {}) => gatherOptions(TABLE, argv, env, { allowPositionals: true });

describe("gatherOptions()", () => {
  test("gatherOptions() lets a flag win over its variables, and reads the variables in order", () => {
    expect(gather(["--queue", "flag"], { APP_QUEUE: "first", APP_QUEUE_OLD: "second" }).raw["queue"]).toBe("flag");
    expect(gather([], { APP_QUEUE_OLD: "second" })).toMatchObject({ raw: { queue: "second" }, origin: { queue: "APP_QUEUE_OLD" } });
    expect(gather([], { APP_QUEUE: "", APP_QUEUE_OLD: "second" }).raw["queue"]).toBe("second");
  });

  test("gatherOptions() gives absent booleans false and absent lists [], and names them by flag", () => {
    expect(gather([])).toEqual({ raw: { tags: [], once: false, help: false }, origin: { queue: "--queue", tags: "--tags", wait: "--wait", once: "--once", help: "--help" }, positionals: [], problems: [], argvRead: true });
  });

  test("gatherOptions() splits a list variable at commas", () => {
    expect(gather([], { APP_TAGS: " a, b,,c " }).raw["tags"]).toEqual(["a", "b", "c"]);
    expect(gather(["--tags", "x", "--tags", "y"], { APP_TAGS: "a" }).raw["tags"]).toEqual(["x", "y"]);
  });

  test("gatherOptions() names a boolean variable it cannot read, and goes on", () => {
    const gathered = gather(["--queue", "q"], { APP_ONCE: "maybe" });
    expect(gathered.problems).toEqual(['APP_ONCE: "maybe" is not a boolean (use true or false)']);
    expect(gathered.raw).toMatchObject({ queue: "q", once: false });
    expect(gathered.argvRead).toBe(true);
  });

  test("gatherOptions() takes a bare flag with a bareValue as that value, and the next argument as a positional", () => {
    expect(gather(["--wait", "k8s"])).toMatchObject({ raw: { wait: "60" }, positionals: ["k8s"] });
    expect(gather(["--wait=5", "k8s"])).toMatchObject({ raw: { wait: "5" }, positionals: ["k8s"] });
  });

  test("gatherOptions() gathers nothing when the command line cannot be read", () => {
    expect(gather(["--nope"], { APP_ONCE: "maybe" })).toEqual({ raw: {}, origin: {}, positionals: [], problems: ["--nope: unknown option (see --help)"], argvRead: false });
  });
});

describe("gatherOptions() problems with the command line", () => {
  const problems = (argv: string[]) => gather(argv).problems;

  test("gatherOptions() names an unknown flag", () => {
    expect(problems(["--nope"])).toEqual(["--nope: unknown option (see --help)"]);
    expect(problems(["-x"])).toEqual(["-x: unknown option (see --help)"]);
  });

  test("gatherOptions() names a flag without its value by its long name", () => {
    expect(problems(["--queue"])).toEqual(["--queue: argument missing"]);
    expect(problems(["-q"])).toEqual(["--queue: argument missing"]);
  });

  test("gatherOptions() names a boolean flag given a value", () => {
    expect(problems(["--once=yes"])).toEqual(["--once: does not take an argument"]);
  });

  test("gatherOptions() refuses a value that starts with a dash in one line naming the flag and the value", () => {
    expect(problems(["--queue", "-5"])).toEqual([`--queue: a value that starts with a dash must be attached with '=' (--queue=VALUE): current value is "-5"`]);
    expect(problems(["-q", "--once"])).toEqual([`--queue: a value that starts with a dash must be attached with '=' (--queue=VALUE): current value is "--once"`]);
    expect(problems(["--queue", "a", "--queue", "-b"])).toEqual([`--queue: a value that starts with a dash must be attached with '=' (--queue=VALUE): current value is "-b"`]);
  });

  test("gatherOptions() takes a value that starts with a dash when it is attached with '='", () => {
    expect(gather(["--queue=-5"])).toMatchObject({ raw: { queue: "-5" }, problems: [] });
  });
});

describe("argumentProblem()", () => {
  test("argumentProblem() keeps the first line of an error it does not know", () => {
    expect(argumentProblem(new Error("something odd\nmore"))).toBe("something odd");
  });

  test("argumentProblem() names an ambiguous value's flag without the value when it has no arguments to look at", () => {
    const error = Object.assign(new Error("Option '--queue' argument is ambiguous.\nDid you forget to specify the option argument for '--queue'?"), { code: "ERR_PARSE_ARGS_INVALID_OPTION_VALUE" });
    expect(argumentProblem(error)).toBe("--queue: a value that starts with a dash must be attached with '=' (--queue=VALUE)");
  });
});

describe("normalizeArgv()", () => {
  test("normalizeArgv() attaches the bareValue to a bare flag only", () => {
    expect(normalizeArgv(TABLE, ["--wait", "k8s", "--wait=5"])).toEqual(["--wait=60", "k8s", "--wait=5"]);
  });

  test("normalizeArgv() leaves another option's value and everything after -- as it is", () => {
    expect(normalizeArgv(TABLE, ["--queue", "--wait", "-q", "--wait", "--", "--wait"])).toEqual(["--queue", "--wait", "-q", "--wait", "--", "--wait"]);
  });

  test("normalizeArgv() changes nothing for a table without bare values", () => {
    const argv = ["--queue", "q", "--once", "x", "--", "--queue"];
    expect(normalizeArgv({ queue: TABLE.queue, once: TABLE.once }, argv)).toEqual(argv);
  });
});

describe("optionsHelp()", () => {
  test("optionsHelp() shows each flag with its value, variables and default; an optional value as [=VALUE]", () => {
    expect(optionsHelp({ queue: TABLE.queue, wait: TABLE.wait, help: TABLE.help })).toEqual([
      "  -q, --queue URL",
      "        Queue.",
      "        (env APP_QUEUE, APP_QUEUE_OLD; default: none)",
      "      --wait[=TIMEOUT]",
      "        Wait.",
      "        (env APP_WAIT; default: off)",
      "  -h, --help",
      "        Help.",
      "        (default: false)",
    ]);
  });
});

describe("envBoolean()", () => {
  test("envBoolean() reads the usual words in any case, and nothing else", () => {
    for (const text of ["1", "true", "YES", " on "]) expect(envBoolean(text)).toBe(true);
    for (const text of ["", "0", "False", "no", "OFF"]) expect(envBoolean(text)).toBe(false);
    for (const text of ["maybe", "2", "y", "enabled"]) expect(envBoolean(text)).toBeUndefined();
  });
});

describe("splitList()", () => {
  test("splitList() trims items and drops empty ones", () => {
    expect(splitList(" a ,b,, c,")).toEqual(["a", "b", "c"]);
    expect(splitList(" , ")).toEqual([]);
  });
});

describe("schemaProblems()", () => {
  test("schemaProblems() names the flag or variable each value came from", () => {
    const result = z.object({ queue: z.string().min(3, "too short"), port: z.string().regex(/^\d+$/, "not a number") }).safeParse({ queue: "q", port: "x" });
    expect(result.success).toBe(false);
    expect(schemaProblems(result.error!, { queue: "APP_QUEUE" })).toEqual(["APP_QUEUE: too short", "--port: not a number"]);
  });
});
