/** The pure parts of the version record: encoding, decoding and the history. */
import { describe, expect, test } from "bun:test";
import {
  addOutcome,
  decodeRecord,
  emptyRecord,
  encodeRecord,
  MAX_OUTCOME_ERROR_LENGTH,
  recordApplied,
  recordOutcome,
  stateConfigMap,
  type CurrentBuild,
  type Outcome,
  type VersionRecord,
} from "../../lib/kube/record.ts";

const current: CurrentBuild = {
  build: { id: "build-7", timestampMs: 1_700_000_000_000, commit: "0123abcd", ref: "refs/heads/main" },
  digest: "sha256:aa",
  appliedAt: "2024-01-01T00:00:00.000Z",
  messageId: "m-7",
  objectCount: 2,
};

const outcome = (n: number, result: Outcome["result"] = "applied"): Outcome => ({
  result,
  time: `2024-01-01T00:00:${String(n).padStart(2, "0")}.000Z`,
  buildId: `build-${n}`,
  timestampMs: 1_700_000_000_000 + n,
  digest: `sha256:${n}`,
  messageId: `m-${n}`,
  durationMs: n,
});

const record: VersionRecord = {
  current,
  inflight: null,
  inventory: [
    { group: "", kind: "Namespace", name: "app" },
    { group: "apps", kind: "Deployment", namespace: "app", name: "web" },
  ],
  history: [outcome(7), outcome(6, "failed")],
};

describe("encodeRecord() and decodeRecord()", () => {
  test("decodeRecord() returns what encodeRecord() stored", () => {
    expect(decodeRecord(encodeRecord(record))).toEqual(record);
  });

  test("encodeRecord() writes JSON strings under format, current, inventory and history", () => {
    const data = encodeRecord(record);
    expect(Object.keys(data)).toEqual(["format", "current", "inventory", "history"]);
    expect(data["format"]).toBe("1");
    expect(JSON.parse(data["current"] ?? "")).toEqual(current);
  });

  test("encodeRecord() leaves out 'current' when nothing was applied yet", () => {
    expect(encodeRecord(emptyRecord())).toEqual({ format: "1", inventory: "[]", history: "[]" });
  });

  test("encodeRecord() drops fields outside the record's schema, so manifests cannot slip in", () => {
    const sneaky = {
      ...record,
      current: { ...current, objects: [{ kind: "Secret", data: { password: "aHVudGVyMg==" } }] },
      inventory: [{ group: "", kind: "Secret", namespace: "app", name: "creds", data: { password: "aHVudGVyMg==" } }],
    } as unknown as VersionRecord;
    const data = JSON.stringify(encodeRecord(sneaky));
    expect(data).not.toContain("aHVudGVyMg==");
    expect(data).toContain('\\"name\\":\\"creds\\"');
  });

  test("decodeRecord() of a ConfigMap without data is the empty record", () => {
    expect(decodeRecord(undefined)).toEqual(emptyRecord());
  });

  test("decodeRecord() of data without 'current' has no current build (version none) but keeps the history", () => {
    const data = encodeRecord({ current: null, inflight: null, inventory: [], history: [outcome(1, "rejected")] });
    expect(decodeRecord(data)).toEqual({ current: null, inflight: null, inventory: [], history: [outcome(1, "rejected")] });
  });

  test("decodeRecord() throws naming the key when a key is not JSON", () => {
    expect(() => decodeRecord({ format: "1", current: "{not json" })).toThrow(/^Cannot decode the version record as key 'current' is not JSON: /);
  });

  test("decodeRecord() throws naming the key and field when a key does not fit the schema", () => {
    expect(() => decodeRecord({ format: "1", current: JSON.stringify({ ...current, digest: 5 }) })).toThrow(
      /^Cannot decode the version record as key 'current' is invalid: digest: /,
    );
  });

  test("decodeRecord() throws on a format it does not know", () => {
    expect(() => decodeRecord({ format: "2" })).toThrow(new Error("Cannot decode the version record as its 'format' is not 1: current value is \"2\""));
  });

  test("decodeRecord() of empty data is the empty record", () => {
    expect(decodeRecord({})).toEqual(emptyRecord());
  });

  test("decodeRecord() refuses data without a format key (such as the original's BUILD_TIMESTAMP ConfigMap) rather than read it as version none", () => {
    expect(() => decodeRecord({ BUILD_TIMESTAMP: "1700000000", COMMIT_HASH: "abc" })).toThrow(
      new Error("Cannot decode the version record as it has no 'format' key: its keys are BUILD_TIMESTAMP, COMMIT_HASH"),
    );
  });
});

describe("addOutcome()", () => {
  test("addOutcome() puts the new outcome first", () => {
    expect(addOutcome([outcome(1)], outcome(2)).map((o) => o.buildId)).toEqual(["build-2", "build-1"]);
  });

  test("addOutcome() keeps the newest 20 outcomes by default", () => {
    let history: Outcome[] = [];
    for (let n = 1; n <= 25; n++) history = addOutcome(history, outcome(n));
    expect(history.length).toBe(20);
    expect(history[0]?.buildId).toBe("build-25");
    expect(history[19]?.buildId).toBe("build-6");
  });

  test("addOutcome() keeps the given number of outcomes", () => {
    expect(addOutcome([outcome(1), outcome(2)], outcome(3), 2).map((o) => o.buildId)).toEqual(["build-3", "build-1"]);
  });

  test("addOutcome() cuts long error text", () => {
    const [first] = addOutcome([], { ...outcome(1, "failed"), error: "x".repeat(5_000) });
    expect(first?.error).toBe(`${"x".repeat(MAX_OUTCOME_ERROR_LENGTH)}…`);
  });

  test("addOutcome() throws when the limit is not a positive integer", () => {
    expect(() => addOutcome([], outcome(1), 0)).toThrow(
      new RangeError("Cannot add an outcome to the history as 'limit' must be a positive integer: current value is 0"),
    );
  });
});

describe("recordApplied() and recordOutcome()", () => {
  test("recordApplied() replaces the current build and inventory and adds the outcome", () => {
    const next = recordApplied(record, {
      current: { ...current, build: { id: "build-8", timestampMs: 1_700_000_000_008 }, objectCount: 1 },
      inventory: [{ group: "", kind: "ConfigMap", namespace: "app", name: "settings" }],
      outcome: outcome(8),
    });
    expect(next.current?.build.id).toBe("build-8");
    expect(next.inventory).toEqual([{ group: "", kind: "ConfigMap", namespace: "app", name: "settings" }]);
    expect(next.history.map((o) => o.buildId)).toEqual(["build-8", "build-7", "build-6"]);
  });

  test("recordOutcome() adds the outcome and keeps the current build and inventory", () => {
    const next = recordOutcome(record, outcome(5, "superseded"));
    expect(next.current).toEqual(current);
    expect(next.inventory).toEqual(record.inventory);
    expect(next.history[0]).toEqual(outcome(5, "superseded"));
  });
});

describe("stateConfigMap()", () => {
  test("stateConfigMap() carries the resourceVersion that was read, for a conditional replace", () => {
    const cm = stateConfigMap(emptyRecord(), { namespace: "ops", name: "kube-pico-cd-state", resourceVersion: "42" });
    expect(cm).toEqual({
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: {
        name: "kube-pico-cd-state",
        namespace: "ops",
        resourceVersion: "42",
        labels: { "app.kubernetes.io/managed-by": "kube-pico-cd", "app.kubernetes.io/component": "state" },
      },
      data: { format: "1", inventory: "[]", history: "[]" },
    });
  });

  test("stateConfigMap() has no resourceVersion for a first write", () => {
    const cm = stateConfigMap(emptyRecord(), { namespace: "ops", name: "s", resourceVersion: null });
    expect((cm["metadata"] as Record<string, unknown>)["resourceVersion"]).toBeUndefined();
  });
});

describe("the in-flight intent", () => {
  const inflight = {
    build: { id: "build-9", timestampMs: 9 },
    digest: "d9",
    messageId: "m-9",
    objectCount: 2,
    startedAt: "2024-01-01T00:00:09.000Z",
    holder: "pod-a-1234",
    inventory: [{ group: "", kind: "ConfigMap", namespace: "app", name: "x" }],
  };
  test("encodeRecord() writes an 'inflight' key only while a build is in flight, and decodeRecord() reads it back", () => {
    expect(Object.keys(encodeRecord(record))).not.toContain("inflight");
    const data = encodeRecord({ ...record, inflight });
    expect(JSON.parse(data["inflight"]!)).toEqual(inflight);
    expect(decodeRecord(data).inflight).toEqual(inflight);
  });
  test("decodeRecord() of a record written before the intent existed has nothing in flight", () => {
    const { inflight: _, ...data } = encodeRecord(record);
    expect(decodeRecord(data).inflight).toBeNull();
  });
  test("recordApplied() clears the intent; recordOutcome() keeps it", () => {
    const withIntent = { ...record, inflight };
    expect(recordOutcome(withIntent, outcome(3, "rejected")).inflight).toEqual(inflight);
    expect(recordApplied(withIntent, { current, inventory: [], outcome: outcome(4) }).inflight).toBeNull();
  });
});
