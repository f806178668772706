import { describe, expect, test } from "bun:test";
import { decide, markOf, type BuildKey, type DecideRecord } from "../../lib/listener/decide.ts";

const b = (timestampMs: number, digest = "d"): BuildKey => ({ timestampMs, digest });
const m = (messageId: string, build: BuildKey) => ({ messageId, build });
const record = (current: BuildKey | null, inflight: BuildKey | null = null): DecideRecord => ({ current, inflight });

describe("markOf()", () => {
  test("markOf() is null for an empty record", () => {
    expect(markOf(record(null))).toBeNull();
  });
  test("markOf() is the in-flight build when it is newer than the current one", () => {
    expect(markOf(record(b(1), b(3)))).toEqual(b(3));
  });
  test("markOf() is the current build when the in-flight one is older (an intent overtaken and never cleared)", () => {
    expect(markOf(record(b(5), b(3)))).toEqual(b(5));
  });
  test("markOf() orders builds of the same millisecond by digest", () => {
    expect(markOf(record(b(1, "a"), b(1, "b")))).toEqual(b(1, "b"));
  });
});

describe("decide()", () => {
  const cases: {
    name: string;
    messages: { messageId: string; build: BuildKey }[];
    record: DecideRecord;
    attempts: { build: BuildKey; messageIds: string[]; resumes: boolean }[];
    settled: [string, "duplicate" | "superseded"][];
  }[] = [
    { name: "an empty record: the one message is a candidate", messages: [m("a", b(1))], record: record(null), attempts: [{ build: b(1), messageIds: ["a"], resumes: false }], settled: [] },
    { name: "a build equal to the current one is a duplicate", messages: [m("a", b(2))], record: record(b(2)), attempts: [], settled: [["a", "duplicate"]] },
    { name: "a build older than the current one is superseded", messages: [m("a", b(1))], record: record(b(2)), attempts: [], settled: [["a", "superseded"]] },
    {
      name: "candidates are tried newest first, and older ones are not settled yet",
      messages: [m("b", b(2)), m("c", b(3)), m("a", b(1))],
      record: record(b(0)),
      attempts: [
        { build: b(3), messageIds: ["c"], resumes: false },
        { build: b(2), messageIds: ["b"], resumes: false },
        { build: b(1), messageIds: ["a"], resumes: false },
      ],
      settled: [],
    },
    {
      name: "a build older than the in-flight one but newer than the current one is superseded (never overtakes what may be live)",
      messages: [m("b", b(2))],
      record: record(b(1), b(3)),
      attempts: [],
      settled: [["b", "superseded"]],
    },
    {
      name: "the in-flight build itself is tried again: nothing confirmed it",
      messages: [m("c", b(3)), m("b", b(2))],
      record: record(b(1), b(3)),
      attempts: [{ build: b(3), messageIds: ["c"], resumes: true }],
      settled: [["b", "superseded"]],
    },
    {
      name: "a build newer than the in-flight one is a candidate",
      messages: [m("d", b(4))],
      record: record(b(1), b(3)),
      attempts: [{ build: b(4), messageIds: ["d"], resumes: false }],
      settled: [],
    },
    {
      name: "an in-flight intent older than the current build is not resumed",
      messages: [m("c", b(3))],
      record: record(b(5), b(3)),
      attempts: [],
      settled: [["c", "superseded"]],
    },
    {
      name: "two messages of one build form one attempt",
      messages: [m("a", b(2)), m("a2", b(2))],
      record: record(b(1)),
      attempts: [{ build: b(2), messageIds: ["a", "a2"], resumes: false }],
      settled: [],
    },
    {
      name: "builds of the same millisecond are ordered by digest",
      messages: [m("x", b(2, "a")), m("y", b(2, "b"))],
      record: record(null),
      attempts: [
        { build: b(2, "b"), messageIds: ["y"], resumes: false },
        { build: b(2, "a"), messageIds: ["x"], resumes: false },
      ],
      settled: [],
    },
    { name: "an empty batch decides nothing", messages: [], record: record(b(1)), attempts: [], settled: [] },
  ];
  for (const c of cases) {
    test(`decide(): ${c.name}`, () => {
      const d = decide(c.messages, c.record);
      expect(d.attempts).toEqual(c.attempts);
      expect([...d.settled]).toEqual(c.settled);
    });
  }

  test("decide() puts every message in exactly one attempt or in settled", () => {
    const messages = Array.from({ length: 40 }, (_, i) => m(`m${i}`, b(i % 13, i % 2 ? "a" : "b")));
    for (const rec of [record(null), record(b(5)), record(b(5), b(9)), record(b(9), b(5))]) {
      const d = decide(messages, rec);
      const ids = [...d.attempts.flatMap((a) => a.messageIds), ...d.settled.keys()].sort();
      expect(ids).toEqual(messages.map((x) => x.messageId).sort());
    }
  });
});
