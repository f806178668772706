/** The pure parts of the version record: encoding, decoding and the history. */
import { describe, expect, test } from "bun:test";
import { gzipSync } from "node:zlib";
import { KubeApiError, StateConflictError, StateWriteError } from "../../lib/errors.ts";
import {
  addOutcome,
  boundOutcome,
  boundRecord,
  decodeRecord,
  emptyRecord,
  encodeRecord,
  fitRecord,
  isPermanentWriteFailure,
  MAX_OUTCOME_ERROR_LENGTH,
  prunedCountOf,
  RECORD_LIMITS,
  recordDataBytes,
  recordApplied,
  recordOutcome,
  stateConfigMap,
  type CurrentBuild,
  type InFlightBuild,
  type Outcome,
  type RecordedObject,
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
    expect(Object.keys(data)).toEqual(["format", "marks", "current", "inventory", "history"]);
    expect(data["format"]).toBe("1");
    expect(JSON.parse(data["current"] ?? "")).toEqual(current);
  });

  test("encodeRecord() leaves out 'current' when nothing was applied yet", () => {
    expect(encodeRecord(emptyRecord())).toEqual({ format: "1", marks: "1", inventory: "[]", history: "[]" });
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
      data: { format: "1", marks: "1", inventory: "[]", history: "[]" },
    });
  });

  test("stateConfigMap() labels the record with its app", () => {
    const cm = stateConfigMap(emptyRecord(), { namespace: "ops", name: "kube-pico-cd-state-shop", resourceVersion: null, app: "shop" });
    expect((cm["metadata"] as { labels: Record<string, string> }).labels).toEqual({
      "app.kubernetes.io/managed-by": "kube-pico-cd",
      "app.kubernetes.io/component": "state",
      "kube-pico-cd.io/record-of": "shop",
    });
  });

  test("a record written before ownership marks has an unmarked inventory until a write says otherwise", () => {
    const before = { format: "1", inventory: JSON.stringify([{ group: "", kind: "ConfigMap", namespace: "a", name: "x" }]), history: "[]" };
    const read = decodeRecord(before);
    expect(read.unmarkedInventory).toBe(true);
    // Kept through writes that do not apply (an outcome added), so the next prune may still delete unmarked objects.
    expect(encodeRecord(read)["marks"]).toBeUndefined();
    expect(decodeRecord(encodeRecord(read)).unmarkedInventory).toBe(true);
    // A record with nothing in its inventory has nothing unmarked; a confirmed apply clears it.
    expect(decodeRecord({ format: "1", inventory: "[]", history: "[]" }).unmarkedInventory).toBeUndefined();
    const applied = recordApplied(read, { current: { build: { id: "b", timestampMs: 1 }, digest: "d", appliedAt: "t", messageId: "m", objectCount: 1 }, inventory: [], outcome: { result: "applied", time: "t" } });
    expect(encodeRecord(applied)["marks"]).toBe("1");
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

const where = { namespace: "ops", configMapName: "kube-pico-cd-state" };

/** `n` objects with names as long as real ones get (a namespace, a kind, a 40-character name). */
const objects = (n: number): RecordedObject[] =>
  Array.from({ length: n }, (_, i) => ({ group: i % 3 === 0 ? "apps" : "", kind: i % 3 === 0 ? "Deployment" : "ConfigMap", namespace: `team-${i % 17}`, name: `service-${String(i).padStart(5, "0")}-configuration-abcdef` }));

describe("the record's bounds", () => {
  test("boundOutcome() cuts a 300 KiB build id, commit, target, digest, message id and error text", () => {
    const huge = "x".repeat(300 * 1024);
    const bounded = boundOutcome({ result: "rejected", time: "t", buildId: huge, commit: huge, target: huge, digest: huge, messageId: huge, error: huge });
    expect(bounded).toEqual({
      result: "rejected",
      time: "t",
      buildId: `${"x".repeat(RECORD_LIMITS.idLength)}…`,
      commit: `${"x".repeat(RECORD_LIMITS.commitLength)}…`,
      target: `${"x".repeat(RECORD_LIMITS.idLength)}…`,
      digest: `${"x".repeat(RECORD_LIMITS.digestLength)}…`,
      messageId: `${"x".repeat(RECORD_LIMITS.idLength)}…`,
      error: `${"x".repeat(MAX_OUTCOME_ERROR_LENGTH)}…`,
    });
  });

  test("boundOutcome() keeps a sample of pruned, kept and warnings with their counts", () => {
    const pruned = objects(5_000);
    const bounded = boundOutcome({
      ...outcome(1),
      pruned,
      kept: pruned.map((o) => ({ ...o, why: "annotation" })),
      warnings: Array.from({ length: 50 }, (_, i) => `warning ${i} ${"w".repeat(1_000)}`),
    });
    expect(bounded.pruned).toEqual(pruned.slice(0, RECORD_LIMITS.sampleObjects));
    expect(bounded.prunedCount).toBe(5_000);
    expect(bounded.kept).toHaveLength(RECORD_LIMITS.sampleObjects);
    expect(bounded.keptCount).toBe(5_000);
    expect(bounded.warnings).toHaveLength(RECORD_LIMITS.sampleWarnings);
    expect(bounded.warnings?.[0]).toBe(`warning 0 ${"w".repeat(RECORD_LIMITS.noteLength - 10)}…`);
    expect(bounded.warningsCount).toBe(50);
    expect(prunedCountOf(bounded)).toBe(5_000);
  });

  test("boundOutcome() leaves short lists whole and adds no counts", () => {
    const small = { ...outcome(1), pruned: objects(2), warnings: ["one"] };
    expect(boundOutcome(small)).toEqual(small);
    expect(prunedCountOf(small)).toBe(2);
  });

  test("boundOutcome() leaves out a build timestamp that is not a safe integer, and keeps the outcome", () => {
    const bounded = boundOutcome({ result: "rejected", time: "t", buildId: "b", timestampMs: 2 ** 60, error: "x" });
    expect(bounded).toEqual({ result: "rejected", time: "t", buildId: "b", error: "x" });
    expect(() => encodeRecord({ ...emptyRecord(), history: [{ result: "rejected", time: "t", timestampMs: 2 ** 60 }] })).not.toThrow();
  });

  test("boundRecord() cuts the text of the current and in-flight builds but keeps inventories, holder and start time", () => {
    const huge = "r".repeat(10_000);
    const inflight: InFlightBuild = { build: { id: huge, timestampMs: 5, url: huge }, digest: "d", messageId: "m", objectCount: 1, startedAt: "s", holder: "pod-a-1234", inventory: objects(3) };
    const bounded = boundRecord({ ...record, current: { ...current, build: { ...current.build, ref: huge, repository: huge } }, inflight });
    expect(bounded.current?.build.ref).toBe(`${"r".repeat(RECORD_LIMITS.refLength)}…`);
    expect(bounded.current?.build.repository).toBe(`${"r".repeat(RECORD_LIMITS.refLength)}…`);
    expect(bounded.inflight?.build.id).toBe(`${"r".repeat(RECORD_LIMITS.idLength)}…`);
    expect(bounded.inflight?.build.url).toBe(`${"r".repeat(RECORD_LIMITS.urlLength)}…`);
    expect(bounded.inflight?.inventory).toEqual(objects(3));
    expect(bounded.inflight?.holder).toBe("pod-a-1234");
    expect(bounded.inventory).toEqual(record.inventory);
  });

  test("encodeRecord() of two rejections with 300 KiB build ids stays small", () => {
    const huge = (c: string) => c.repeat(300 * 1024);
    const filled = [{ result: "rejected" as const, time: "t", buildId: huge("a"), error: `target: ${huge("e")}` }, { result: "rejected" as const, time: "t", buildId: huge("b") }];
    const data = encodeRecord({ ...record, history: filled });
    expect(recordDataBytes(data)).toBeLessThan(8 * 1024);
    expect(decodeRecord(data).history.map((o) => o.buildId?.length)).toEqual([RECORD_LIMITS.idLength + 1, RECORD_LIMITS.idLength + 1]);
  });

  test("fitRecord() trims the history oldest first until the data fits the budget", () => {
    const history = Array.from({ length: 20 }, (_, i) => ({ ...outcome(20 - i, "failed"), error: "e".repeat(1_500) }));
    const { record: fitted, data } = fitRecord({ ...record, history }, { budgetBytes: 8 * 1024 });
    expect(recordDataBytes(data)).toBeLessThanOrEqual(8 * 1024);
    expect(fitted.history.length).toBeGreaterThan(0);
    expect(fitted.history.length).toBeLessThan(20);
    expect(fitted.history).toEqual(history.slice(0, fitted.history.length));
    expect(decodeRecord(data)).toEqual(fitted);
  });

  test("fitRecord() keeps the whole history while it fits, and every record stays under the default budget of 512 KiB", () => {
    let r: VersionRecord = { ...record, history: [] };
    const worst: Outcome = {
      ...outcome(1, "applied"),
      buildId: "b".repeat(1e5),
      error: "e".repeat(1e5),
      pruned: objects(100).map((o) => ({ ...o, name: "n".repeat(1_000) })),
      kept: objects(100).map((o) => ({ ...o, name: "n".repeat(1_000), why: "w".repeat(1_000) })),
      warnings: Array.from({ length: 100 }, () => "w".repeat(1_000)),
    };
    for (let n = 0; n < 20; n++) r = fitRecord(recordOutcome(r, worst)).record;
    expect(recordDataBytes(encodeRecord(r))).toBeLessThanOrEqual(RECORD_LIMITS.budgetBytes);
    expect(r.history.length).toBeGreaterThan(5);
    expect(fitRecord(record).record).toEqual(record);
  });

  test("encodeRecord() stores an inventory of 5,000 objects compressed under inventory.gz, complete, and decodeRecord() reads it back", () => {
    const inventory = objects(5_000);
    const inflight: InFlightBuild = { build: { id: "b", timestampMs: 9 }, digest: "d", messageId: "m", objectCount: 5_000, startedAt: "s", holder: "h", inventory: objects(5_000).reverse() };
    const big: VersionRecord = { ...record, inflight, inventory };
    const data = encodeRecord(big);
    expect(Object.keys(data)).toEqual(["format", "marks", "current", "inflight.gz", "inventory.gz", "history"]);
    expect(JSON.stringify(inventory).length).toBeGreaterThan(RECORD_LIMITS.budgetBytes / 2);
    expect(recordDataBytes(data)).toBeLessThan(128 * 1024);
    expect(decodeRecord(data)).toEqual(big);
  });

  test("encodeRecord() throws a RangeError when the inventory does not fit the budget even without history", () => {
    const huge = objects(20_000).map((o) => ({ ...o, name: `${o.name}-${Math.random().toString(36).repeat(8)}` }));
    expect(() => encodeRecord({ ...record, inventory: huge }, { budgetBytes: 64 * 1024 })).toThrow(RangeError);
    expect(() => encodeRecord({ ...record, inventory: huge }, { budgetBytes: 64 * 1024 })).toThrow(/^Cannot encode the version record within its budget of 65536 bytes: without any history it takes \d+ bytes \(inventory of 20000 objects\)$/);
  });

  test("decodeRecord() reads a record written before the bounds (format 1, no inflight, huge ids) and the next write fits", () => {
    const huge = "z".repeat(400 * 1024);
    const old = { format: "1", current: JSON.stringify(current), inventory: JSON.stringify(record.inventory), history: JSON.stringify([{ result: "rejected", time: "t", buildId: huge }, { result: "rejected", time: "t", buildId: huge }]) };
    const decoded = decodeRecord(old);
    expect(decoded.inflight).toBeNull();
    expect(decoded.history[0]?.buildId).toBe(huge);
    expect(recordDataBytes(encodeRecord(decoded))).toBeLessThan(4 * 1024);
  });

  test("decodeRecord() refuses a key stored both plain and compressed, and a .gz key that is not gzip", () => {
    const packed = gzipSync(Buffer.from("[]")).toString("base64");
    expect(() => decodeRecord({ format: "1", inventory: "[]", "inventory.gz": packed })).toThrow(new Error("Cannot decode the version record as it has both 'inventory' and 'inventory.gz'"));
    expect(() => decodeRecord({ format: "1", "inventory.gz": "bm90IGd6aXA=" })).toThrow(/^Cannot decode the version record as key 'inventory.gz' is not gzip in base64 of at most 67108864 bytes: /);
    expect(decodeRecord({ format: "1", "inventory.gz": packed }).inventory).toEqual([]);
  });

  test("isPermanentWriteFailure() is true for a record that does not fit and for the API server's 413 and 422, false for the rest", () => {
    const status = (code: number, reason: string) => new KubeApiError("PUT", "/api/v1/namespaces/ops/configmaps/s", { code, reason, message: "m" });
    expect(isPermanentWriteFailure(new StateWriteError("w", where, { cause: new RangeError("too large") }))).toBe(true);
    expect(isPermanentWriteFailure(new StateWriteError("w", where, { cause: status(422, "Invalid") }))).toBe(true);
    expect(isPermanentWriteFailure(new StateWriteError("w", where, { cause: status(413, "RequestEntityTooLarge") }))).toBe(true);
    expect(isPermanentWriteFailure(new StateWriteError("w", where, { cause: status(500, "InternalError") }))).toBe(false);
    expect(isPermanentWriteFailure(new StateWriteError("w", where, { cause: status(403, "Forbidden") }))).toBe(false);
    expect(isPermanentWriteFailure(new StateConflictError("c", where, { cause: new RangeError("x") }))).toBe(false);
    expect(isPermanentWriteFailure(new RangeError("x"))).toBe(false);
  });
});
