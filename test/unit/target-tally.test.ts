import { describe, expect, test } from "bun:test";
import { EXIT_DEPLOY_FAILED, EXIT_SENT, EXIT_TIMED_OUT } from "../../lib/publish/exit-codes.ts";
import { formatTargetsTable } from "../../lib/publish/summary.ts";
import { waitExitCode } from "../../lib/publish/wait.ts";
import { answersBuild, TargetTally } from "../../lib/sqs/target-tally.ts";

const build = { app: "shop", buildId: "b1", digest: "d".repeat(64) };

describe("answersBuild()", () => {
  test("answersBuild() matches app, build id and digest, a result without app as the default app's", () => {
    const result = { app: "shop", build: { id: "b1", timestampMs: 1 }, digest: "d".repeat(64) };
    expect(answersBuild(result, build)).toBe(true);
    expect(answersBuild({ ...result, build: { id: "b2", timestampMs: 1 } }, build)).toBe(false);
    expect(answersBuild({ ...result, digest: "e".repeat(64) }, build)).toBe(false);
    expect(answersBuild({ ...result, app: "web" }, build)).toBe(false);
    expect(answersBuild({ build: result.build, digest: result.digest }, { ...build, app: "default" })).toBe(true);
  });
});

describe("TargetTally", () => {
  test("TargetTally counts each named target's first final result, and is done once all have one", () => {
    const tally = new TargetTally({ names: ["a", "b"] });
    expect(tally.receive({ result: "progress", target: "a" })).toBe("progress");
    expect(tally.receive({ result: "applied", target: "a" })).toBe("counted");
    expect(tally.receive({ result: "failed", target: "a" })).toBe("repeat");
    expect(tally.receive({ result: "progress", target: "a" })).toBe("repeat");
    expect(tally.done()).toBe(false);
    expect(tally.missingNames()).toEqual(["b"]);
    expect(tally.receive({ result: "applied", target: "b" })).toBe("counted");
    expect(tally.done()).toBe(true);
    expect(tally.missingCount()).toBe(0);
  });

  test("TargetTally reports a target it does not expect, or a result naming none, as unexpected, never counted", () => {
    const tally = new TargetTally({ names: ["a"] });
    expect(tally.receive({ result: "applied", target: "z" })).toBe("unexpected");
    expect(tally.receive({ result: "applied" })).toBe("unexpected");
    expect(tally.missingNames()).toEqual(["a"]);
  });

  test("TargetTally with a count takes the first distinct targets, up to the count", () => {
    const tally = new TargetTally({ count: 2 });
    expect(tally.receive({ result: "applied", target: "x" })).toBe("counted");
    expect(tally.receive({ result: "applied", target: "x" })).toBe("repeat");
    expect(tally.missingCount()).toBe(1);
    expect(tally.missingNames()).toEqual([]);
    expect(tally.receive({ result: "rejected", target: "y" })).toBe("counted");
    expect(tally.receive({ result: "applied", target: "z" })).toBe("unexpected");
    expect(tally.done()).toBe(true);
  });
});

describe("the exit code and the table of a topic publish", () => {
  const applied = { result: "applied" as const };

  test("waitExitCode() is 4 when an expected target gave no result and the others succeeded", () => {
    expect(waitExitCode(Array.from({ length: 10 }, () => applied), 1)).toBe(EXIT_TIMED_OUT);
    expect(waitExitCode(Array.from({ length: 10 }, () => applied), 0)).toBe(EXIT_SENT);
    expect(waitExitCode([applied, { result: "failed" }], 1)).toBe(EXIT_DEPLOY_FAILED);
  });

  test("formatTargetsTable() prints one row per target, a missing one as 'no result'", () => {
    const text = formatTargetsTable({
      expected: ["a", "b"],
      rows: [
        { target: "a", result: "applied", build: "b1", health: "Healthy", afterMs: 1_500 },
        { target: "b", result: "no result", build: "-", health: "-" },
      ],
      unexpected: ["z"],
      missingCount: 1,
    });
    expect(text).toBe(
      [
        "Targets: 1 of 2 expected answered; unexpected: z",
        "  TARGET  RESULT     BUILD  HEALTH   AFTER PUBLISH",
        "  a       applied    b1     Healthy  1.5 s",
        "  b       no result  -      -        -",
        "",
      ].join("\n"),
    );
  });
});
