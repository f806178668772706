import { describe, expect, test } from "bun:test";
import { z } from "zod";
import { argumentProblem, closestFlag, editDistance, envBoolean, gatherOptions, normalizeArgv, optionsHelp, schemaProblems, splitList, type OptionTable } from "../../lib/cli-options.ts";

const TABLE = {
  queue: { type: "string", short: "q", env: ["APP_QUEUE", "APP_QUEUE_OLD"], value: "URL", defaultText: "none", help: "Queue." },
  tags: { type: "string", multiple: true, env: ["APP_TAGS"], value: "TAG", defaultText: "none", help: "Tags." },
  wait: { type: "string", env: ["APP_WAIT"], value: "TIMEOUT", bareValue: "60", valuePattern: /^\d+[smh]?$/, defaultText: "off", help: "Wait." },
  "endpoint-url": { type: "string", env: ["APP_ENDPOINT_URL", "OTHER_ENDPOINT"], deprecated: ["--old-endpoint", "APP_OLD_ENDPOINT"], value: "URL", defaultText: "none", help: "Endpoint." },
  "dry-run": { type: "boolean", env: ["APP_DRY_RUN"], defaultText: "false", help: "Dry run." },
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
    expect(gather([])).toEqual({
      raw: { tags: [], "dry-run": false, once: false, help: false },
      origin: { queue: "--queue", tags: "--tags", wait: "--wait", "endpoint-url": "--endpoint-url", "dry-run": "--dry-run", once: "--once", help: "--help" },
      positionals: [],
      problems: [],
      notices: [],
      argvRead: true,
    });
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

  test("gatherOptions() takes a bare flag with a bareValue as that value, and a next argument that is no value as a positional", () => {
    expect(gather(["--wait", "k8s"])).toMatchObject({ raw: { wait: "60" }, positionals: ["k8s"] });
    expect(gather(["--wait=5", "k8s"])).toMatchObject({ raw: { wait: "5" }, positionals: ["k8s"] });
    expect(gather(["--wait"])).toMatchObject({ raw: { wait: "60" }, positionals: [] });
  });

  test("gatherOptions() takes the next argument as the value of a bare-value flag when it matches the valuePattern", () => {
    expect(gather(["--wait", "10m", "k8s"])).toMatchObject({ raw: { wait: "10m" }, positionals: ["k8s"] });
    expect(gather(["k8s", "--wait", "300"])).toMatchObject({ raw: { wait: "300" }, positionals: ["k8s"] });
    expect(gather(["--wait", "--", "10m"])).toMatchObject({ raw: { wait: "60" }, positionals: ["10m"] });
  });

  test("gatherOptions() gathers nothing when the command line cannot be read", () => {
    expect(gather(["--nope"], { APP_ONCE: "maybe" })).toEqual({ raw: {}, origin: {}, positionals: [], problems: ["--nope: unknown option (see --help)"], notices: [], argvRead: false });
  });
});

describe("gatherOptions() with deprecated names", () => {
  test("gatherOptions() takes a deprecated flag as the option, names it as the origin, and notes the current name", () => {
    expect(gather(["--old-endpoint", "http://a"])).toMatchObject({
      raw: { "endpoint-url": "http://a" },
      origin: { "endpoint-url": "--old-endpoint" },
      problems: [],
      notices: ["--old-endpoint is deprecated: use --endpoint-url"],
    });
    expect(gather(["--old-endpoint=http://a"]).raw["endpoint-url"]).toBe("http://a");
  });

  test("gatherOptions() refuses a deprecated flag given together with its current name", () => {
    expect(gather(["--endpoint-url", "http://a", "--old-endpoint", "http://b"]).problems).toEqual(["--old-endpoint: given together with --endpoint-url, its current name: drop --old-endpoint"]);
  });

  test("gatherOptions() reads a deprecated variable after the option's own and before the others, with a notice", () => {
    expect(gather([], { APP_OLD_ENDPOINT: "http://old", OTHER_ENDPOINT: "http://other" })).toMatchObject({
      raw: { "endpoint-url": "http://old" },
      origin: { "endpoint-url": "APP_OLD_ENDPOINT" },
      notices: ["APP_OLD_ENDPOINT is deprecated: use APP_ENDPOINT_URL"],
    });
    expect(gather([], { APP_ENDPOINT_URL: "http://new", APP_OLD_ENDPOINT: "http://new" })).toMatchObject({ raw: { "endpoint-url": "http://new" }, problems: [] });
    expect(gather([], { OTHER_ENDPOINT: "http://other" })).toMatchObject({ raw: { "endpoint-url": "http://other" }, notices: [] });
  });

  test("gatherOptions() refuses a deprecated variable set to another value than the current one", () => {
    expect(gather([], { APP_ENDPOINT_URL: "http://new", APP_OLD_ENDPOINT: "http://old" }).problems).toEqual([
      "APP_OLD_ENDPOINT: set together with APP_ENDPOINT_URL, its current name, to another value: drop APP_OLD_ENDPOINT",
    ]);
  });
});

describe("gatherOptions() problems with the command line", () => {
  const problems = (argv: string[]) => gather(argv).problems;

  test("gatherOptions() names an unknown flag", () => {
    expect(problems(["--nope"])).toEqual(["--nope: unknown option (see --help)"]);
    expect(problems(["-x"])).toEqual(["-x: unknown option (see --help)"]);
  });

  test("gatherOptions() suggests the closest known flag for an unknown one", () => {
    expect(problems(["--dyr-run"])).toEqual(["--dyr-run: unknown option; did you mean --dry-run? (see --help)"]);
    expect(problems(["--dryrun"])).toEqual(["--dryrun: unknown option; did you mean --dry-run? (see --help)"]);
    expect(problems(["--endpoint=http://a"])).toEqual(["--endpoint: unknown option; did you mean --endpoint-url? (see --help)"]);
    expect(problems(["--qeueu", "q"])).toEqual(["--qeueu: unknown option; did you mean --queue? (see --help)"]);
  });

  test("gatherOptions() names a dash value after a bare-value flag as that flag's", () => {
    expect(problems(["--wait", "-5"])).toEqual([`--wait: a value that starts with a dash must be attached with '=' (--wait=VALUE): current value is "-5"`]);
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

  test("normalizeArgv() attaches a next argument that matches the valuePattern", () => {
    expect(normalizeArgv(TABLE, ["--wait", "90s", "k8s"])).toEqual(["--wait=90s", "k8s"]);
    expect(normalizeArgv(TABLE, ["--wait", "90x"])).toEqual(["--wait=60", "90x"]);
  });

  test("normalizeArgv() keeps the value of a deprecated flag with it", () => {
    expect(normalizeArgv(TABLE, ["--old-endpoint", "--wait"])).toEqual(["--old-endpoint", "--wait"]);
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
  test("optionsHelp() lists an option's deprecated names after its default", () => {
    expect(optionsHelp({ "endpoint-url": TABLE["endpoint-url"] })).toEqual([
      "      --endpoint-url URL",
      "        Endpoint.",
      "        (env APP_ENDPOINT_URL, OTHER_ENDPOINT; default: none; deprecated: --old-endpoint, APP_OLD_ENDPOINT)",
    ]);
  });

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

describe("closestFlag()", () => {
  const names = ["queue", "dry-run", "endpoint-url", "region", "result-queue", "wait", "once"];

  test("closestFlag() finds a name one or two edits away, a swap counting one", () => {
    expect(closestFlag("dyr-run", names)).toBe("dry-run");
    expect(closestFlag("regoin", names)).toBe("region");
    expect(closestFlag("queu", names)).toBe("queue");
  });

  test("closestFlag() finds a name written without its dashes, or a unique prefix", () => {
    expect(closestFlag("dryrun", names)).toBe("dry-run");
    expect(closestFlag("endpoint", names)).toBe("endpoint-url");
    expect(closestFlag("result", names)).toBe("result-queue");
  });

  test("closestFlag() suggests nothing for a name far from all, or close to two", () => {
    expect(closestFlag("frobnicate", names)).toBeUndefined();
    expect(closestFlag("x", names)).toBeUndefined();
    expect(closestFlag("wair", ["wait", "wain"])).toBeUndefined();
  });
});

describe("editDistance()", () => {
  test("editDistance() counts insertions, deletions, substitutions and neighbour swaps", () => {
    expect(editDistance("", "abc")).toBe(3);
    expect(editDistance("abc", "abc")).toBe(0);
    expect(editDistance("abc", "abd")).toBe(1);
    expect(editDistance("abc", "acb")).toBe(1);
    expect(editDistance("kitten", "sitting")).toBe(3);
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
