/**
 * The version record: which build the cluster runs, which build may be half-applied, and what
 * happened to recent messages.
 *
 * It lives in a ConfigMap in the listener's namespace (default name "kube-pico-cd-state"),
 * apart from the applied bundle. Its data keys hold JSON strings:
 *
 * - `format`: "1", the layout of the keys below;
 * - `current`: the build applied last and confirmed (build info, digest, applied time,
 *   message id, object count); absent while no build was ever applied;
 * - `inflight`: the build being applied, written under the deploy Lease *before* kubectl
 *   starts, with the objects it may create. A crash, a lost Lease or a failed apply leaves it
 *   here, so the record always says at least as much as the cluster may hold: newest-wins
 *   compares against the newer of `current` and `inflight`, and the next prune sees every
 *   object either may have created. Absent when no deploy is under way. (Added after the first
 *   release of format 1; a record without it reads as "nothing in flight".)
 * - `inventory`: the objects that may be live and are ours to prune (the current build's,
 *   plus those of builds that were applied in part and never confirmed);
 * - `history`: the last N outcomes (default 20), newest first;
 * - `marks`: "1" when every object of the inventory was applied with its app's ownership mark
 *   (lib/listener/ownership.ts). A record written before marks existed has none: its
 *   inventory may hold unmarked objects, which its app's next prune may still delete
 *   ({@link VersionRecord.unmarkedInventory}); the first deploy after it marks what it applies.
 *
 * One record per app (lib/listener/apps.ts names them); each carries the label
 * `kube-pico-cd.io/record-of: <app>`, and the default app's record keeps the name a listener
 * serving one app used, so that record is adopted as it is.
 *
 * Never manifest contents or Secret data: only names, build metadata and error text.
 *
 * Every write fits (see {@link RECORD_LIMITS}), so no message can make the record unwritable:
 * text that came with a message (build id, ref, commit, repository, url, target, error text,
 * message id) is cut to a bounded length; long lists of an outcome (`pruned`, `kept`,
 * `warnings`) keep a bounded sample and their count (`prunedCount`, `keptCount`,
 * `warningsCount`); the history is trimmed, oldest first, until the whole data fits a byte
 * budget (512 KiB, half the ConfigMap limit of 1 MiB). The inventories (`inventory`, and the
 * intent's in `inflight`) must stay complete for prune, so they are never cut: a key whose JSON
 * is longer than 64 KiB is stored gzip-compressed and base64-encoded under `<key>.gz`
 * (`inventory.gz`, `inflight.gz`) instead; 5,000 objects take about 30 KiB that way. A record
 * that still does not fit without any history (an inventory of tens of thousands of objects
 * with long names) cannot be written: the write throws a {@link StateWriteError} that
 * {@link isPermanentWriteFailure} recognises, as it does the API server's 413 and 422.
 * Reading takes every record format 1 ever held, including ones written before these bounds.
 *
 * Reading distinguishes "no record yet" (the ConfigMap does not exist, or has no `current`:
 * version "none") from "cannot read the record" (forbidden, API server down, content that
 * does not parse): the latter throws {@link StateReadError}, and the caller must apply
 * nothing, since treating it as "none" could roll the cluster back.
 *
 * Writes are compare-and-swap: a replace carries the resourceVersion that was read, a first
 * write is a create; either losing a race throws {@link StateConflictError}.
 */
import { Buffer } from "node:buffer";
import { gunzipSync, gzipSync } from "node:zlib";
import { z } from "zod";
import { errorMessage, KubeApiError, StateConflictError, StateReadError, StateWriteError } from "../errors.ts";
import { isConflict, isNotFound, KubeApi } from "./api.ts";


/** The label on a version record ConfigMap naming its app (not the ownership mark: records are never pruned). */
export const RECORD_APP_LABEL = "kube-pico-cd.io/record-of";

/** Labels every version record ConfigMap carries (they select them all: `listener status`). */
export const RECORD_LABELS = { "app.kubernetes.io/managed-by": "kube-pico-cd", "app.kubernetes.io/component": "state" } as const;

/** Default name of the record's ConfigMap. */
export const DEFAULT_STATE_CONFIGMAP = "kube-pico-cd-state";
/** Default number of outcomes kept in the history. */
export const DEFAULT_HISTORY_LIMIT = 20;
/** Longest error text kept per outcome, in characters; the rest is cut. */
export const MAX_OUTCOME_ERROR_LENGTH = 2_000;
/** The `format` value this module writes and reads. */
export const STATE_FORMAT = "1";

/**
 * The bounds every write keeps (see the module comment). Lengths are in UTF-16 code units
 * (JavaScript string length), sizes in UTF-8 bytes; cut text ends with "…".
 */
export const RECORD_LIMITS = {
  /** The whole data (keys and values), in bytes: 512 KiB, half the ConfigMap limit of 1 MiB. */
  budgetBytes: 512 * 1024,
  /** `inventory` and `inflight` longer than this, in bytes of JSON, are stored as `<key>.gz`. */
  compressAboveBytes: 64 * 1024,
  /** Build id, run id, run attempt, actor, target, message id. */
  idLength: 256,
  /** Ref and repository. */
  refLength: 256,
  /** Commit (a SHA-1 or SHA-256 in hex is 40 or 64). */
  commitLength: 128,
  /** The build's url. */
  urlLength: 2_048,
  /** Digest (sha256 hex is 64). */
  digestLength: 128,
  /** Error text of an outcome: {@link MAX_OUTCOME_ERROR_LENGTH}. */
  errorLength: MAX_OUTCOME_ERROR_LENGTH,
  /** Each warning, the `why` of a kept object, and a health reason. */
  noteLength: 500,
  /** Each name of an object in an outcome's `pruned` or `kept` sample, and a health `object`. */
  nameLength: 512,
  /** Objects kept of an outcome's `pruned` and of its `kept`; the rest is only counted. */
  sampleObjects: 20,
  /** Warnings kept per outcome; the rest is only counted. */
  sampleWarnings: 10,
  /** Largest decompressed `<key>.gz` read back, in bytes. */
  maxInflatedBytes: 64 * 1024 * 1024,
} as const;

const buildInfoSchema = z.object({
  id: z.string(),
  timestampMs: z.number().int().nonnegative(),
  commit: z.string().optional(),
  ref: z.string().optional(),
  repository: z.string().optional(),
  runId: z.string().optional(),
  runAttempt: z.string().optional(),
  actor: z.string().optional(),
  url: z.string().optional(),
});

/** Build information as recorded; the `BuildInfo` of lib/wire/message.ts fits. */
export type RecordedBuildInfo = z.infer<typeof buildInfoSchema>;

const currentSchema = z.object({
  build: buildInfoSchema,
  digest: z.string(),
  /** ISO 8601 time the apply finished. */
  appliedAt: z.string(),
  messageId: z.string(),
  objectCount: z.number().int().nonnegative(),
});

/** The build the cluster runs, as recorded after its apply succeeded. */
export type CurrentBuild = z.infer<typeof currentSchema>;

const inventoryItemSchema = z.object({
  group: z.string(),
  kind: z.string(),
  namespace: z.string().optional(),
  name: z.string(),
});

/** One applied object: names only. Same shape as `InventoryItem` of lib/kube/apply.ts. */
export type RecordedObject = z.infer<typeof inventoryItemSchema>;

const inflightSchema = z.object({
  build: buildInfoSchema,
  digest: z.string(),
  messageId: z.string(),
  objectCount: z.number().int().nonnegative(),
  /** ISO 8601 time the intent was written, just before kubectl started. */
  startedAt: z.string(),
  /** holderIdentity of the Lease under which it is applied. */
  holder: z.string(),
  /** The objects this build may create (namespace as kubectl will place them). */
  inventory: z.array(inventoryItemSchema),
});

/** A build whose apply has started and not been confirmed (see the module comment). */
export type InFlightBuild = z.infer<typeof inflightSchema>;

export const outcomeResults = ["applied", "failed", "rejected", "superseded", "duplicate"] as const;
export type OutcomeResult = (typeof outcomeResults)[number];

const outcomeSchema = z.object({
  result: z.enum(outcomeResults),
  /** The app (lib/listener/apps.ts) whose stream the message belongs to; absent in records written before apps. */
  app: z.string().max(63).optional(),
  /** ISO 8601 time of the outcome. */
  time: z.string(),
  /** Absent when the message could not be decoded far enough to know its build. */
  buildId: z.string().optional(),
  timestampMs: z.number().int().nonnegative().optional(),
  /** The build's commit, so the history shows what each build was (a rollback reuses one). */
  commit: z.string().optional(),
  /** The message's target, when it named one (a rejection for another target shows which). */
  target: z.string().optional(),
  digest: z.string().optional(),
  messageId: z.string().optional(),
  durationMs: z.number().nonnegative().optional(),
  /** Why it failed or was rejected; cut to {@link MAX_OUTCOME_ERROR_LENGTH}. */
  error: z.string().optional(),
  // Added with prune and health (lib/kube/prune.ts, lib/kube/health.ts); optional, so records written
  // before them still decode, and older readers drop them (zod strips unknown keys).
  /** Objects applied ("applied" only). */
  objects: z.number().int().nonnegative().optional(),
  /** Sent (SQS SentTimestamp) to apply start, in ms. */
  pickupMs: z.number().nonnegative().optional(),
  /** Objects of the previous inventory deleted because they left the bundle. */
  pruned: z.array(inventoryItemSchema).optional(),
  /** Objects that left the bundle but were kept (annotation, CRD), and so left the inventory. */
  kept: z.array(inventoryItemSchema.extend({ why: z.string() })).optional(),
  /** How the applied workloads came up (lib/kube/health.ts); absent when not checked. */
  health: z
    .object({
      status: z.enum(["Healthy", "Degraded", "Timeout"]),
      durationMs: z.number().nonnegative(),
      /** Objects checked. */
      checked: z.number().int().nonnegative(),
      /** The object that is not healthy, as group/kind/namespace/name. */
      object: z.string().optional(),
      reason: z.string().optional(),
    })
    .optional(),
  /** What went wrong without failing the deploy (a prune that failed, a skipped step). */
  warnings: z.array(z.string()).optional(),
  // Added with the record's bounds: set when `pruned`, `kept` or `warnings` holds only a sample.
  /** How many objects were pruned, when `pruned` holds only the first of them. */
  prunedCount: z.number().int().nonnegative().optional(),
  /** How many objects were kept, when `kept` holds only the first of them. */
  keptCount: z.number().int().nonnegative().optional(),
  /** How many warnings there were, when `warnings` holds only the first of them. */
  warningsCount: z.number().int().nonnegative().optional(),
});

/** One entry of the history. */
export type Outcome = z.infer<typeof outcomeSchema>;

/** The content of the record. */
export interface VersionRecord {
  /** null: no build applied yet (version "none"). */
  current: CurrentBuild | null;
  /** null: no deploy under way, or the last one was confirmed or failed. */
  inflight: InFlightBuild | null;
  inventory: RecordedObject[];
  /** Newest first. */
  history: Outcome[];
  /**
   * True for a record written before ownership marks: its inventory's objects may carry no
   * mark, and its app's prune may delete those (they were applied before marks existed).
   * Cleared by the next confirmed apply, whose objects all carry the mark.
   */
  unmarkedInventory?: boolean;
}

/** The record as read, with what a conditional write needs. */
export interface StoredRecord extends VersionRecord {
  /** resourceVersion of the ConfigMap; null when it does not exist yet (the write creates it). */
  resourceVersion: string | null;
}

/** An empty record: nothing applied, no history. */
export function emptyRecord(): VersionRecord {
  return { current: null, inflight: null, inventory: [], history: [] };
}

/** `text` cut to `max` characters, ending with "…" when it was longer. */
function cut(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max)}…` : text;
}

function cutOptional(text: string | undefined, max: number): string | undefined {
  return text === undefined ? undefined : cut(text, max);
}

/** `value` without its undefined fields (exactOptionalPropertyTypes: absent, never undefined). */
function defined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}

/** Build information with every text field cut to {@link RECORD_LIMITS}. */
export function boundBuildInfo(build: RecordedBuildInfo): RecordedBuildInfo {
  const L = RECORD_LIMITS;
  return defined({
    id: cut(build.id, L.idLength),
    timestampMs: build.timestampMs,
    commit: cutOptional(build.commit, L.commitLength),
    ref: cutOptional(build.ref, L.refLength),
    repository: cutOptional(build.repository, L.refLength),
    runId: cutOptional(build.runId, L.idLength),
    runAttempt: cutOptional(build.runAttempt, L.idLength),
    actor: cutOptional(build.actor, L.idLength),
    url: cutOptional(build.url, L.urlLength),
  });
}

function boundSampleObject<T extends RecordedObject>(object: T): T {
  const n = RECORD_LIMITS.nameLength;
  return defined({ ...object, group: cut(object.group, n), kind: cut(object.kind, n), namespace: cutOptional(object.namespace, n), name: cut(object.name, n) });
}

/**
 * An outcome with every text field cut and every list cut to a sample (its count kept), as
 * {@link RECORD_LIMITS} says. A build timestamp that is not a safe integer is left out: the
 * outcome is still worth recording, the number is not.
 */
export function boundOutcome(outcome: Outcome): Outcome {
  const L = RECORD_LIMITS;
  const { pruned, kept, warnings, health, timestampMs } = outcome;
  const bounded: Outcome = {
    ...outcome,
    buildId: cutOptional(outcome.buildId, L.idLength),
    timestampMs: timestampMs !== undefined && Number.isSafeInteger(timestampMs) && timestampMs >= 0 ? timestampMs : undefined,
    commit: cutOptional(outcome.commit, L.commitLength),
    target: cutOptional(outcome.target, L.idLength),
    digest: cutOptional(outcome.digest, L.digestLength),
    messageId: cutOptional(outcome.messageId, L.idLength),
    error: cutOptional(outcome.error, L.errorLength),
  } as Outcome;
  if (pruned !== undefined) {
    bounded.pruned = pruned.slice(0, L.sampleObjects).map(boundSampleObject);
    if (pruned.length > L.sampleObjects) bounded.prunedCount = Math.max(outcome.prunedCount ?? 0, pruned.length);
  }
  if (kept !== undefined) {
    bounded.kept = kept.slice(0, L.sampleObjects).map((k) => ({ ...boundSampleObject(k), why: cut(k.why, L.noteLength) }));
    if (kept.length > L.sampleObjects) bounded.keptCount = Math.max(outcome.keptCount ?? 0, kept.length);
  }
  if (warnings !== undefined) {
    bounded.warnings = warnings.slice(0, L.sampleWarnings).map((w) => cut(w, L.noteLength));
    if (warnings.length > L.sampleWarnings) bounded.warningsCount = Math.max(outcome.warningsCount ?? 0, warnings.length);
  }
  if (health !== undefined) {
    bounded.health = defined({ ...health, object: cutOptional(health.object, L.nameLength), reason: cutOptional(health.reason, L.noteLength) });
  }
  return defined(bounded);
}

/** How many objects an outcome pruned: its count when `pruned` holds a sample; undefined when it says nothing. */
export function prunedCountOf(outcome: Outcome): number | undefined {
  return outcome.prunedCount ?? outcome.pruned?.length;
}

/**
 * The record with every field bounded (see {@link RECORD_LIMITS}); inventories are kept whole.
 * The deploy holder and times are the listener's own and are kept as they are, since the
 * deployer recognises its intent by them.
 */
export function boundRecord(record: VersionRecord): VersionRecord {
  const L = RECORD_LIMITS;
  const current =
    record.current === null
      ? null
      : { ...record.current, build: boundBuildInfo(record.current.build), digest: cut(record.current.digest, L.digestLength), messageId: cut(record.current.messageId, L.idLength) };
  const inflight =
    record.inflight === null
      ? null
      : { ...record.inflight, build: boundBuildInfo(record.inflight.build), digest: cut(record.inflight.digest, L.digestLength), messageId: cut(record.inflight.messageId, L.idLength) };
  return { current, inflight, inventory: record.inventory, history: record.history.map(boundOutcome), ...(record.unmarkedInventory ? { unmarkedInventory: true } : {}) };
}

const encoder = new TextEncoder();
const byteLength = (text: string) => encoder.encode(text).length;

/** Thrown (as the cause of a StateWriteError) when a record cannot be encoded to fit its budget. */
function tooLarge(message: string): RangeError {
  return new RangeError(message);
}

function encodeKey<T>(name: string, schema: z.ZodType<T>, value: unknown): string {
  const result = schema.safeParse(value);
  if (!result.success) {
    const issue = result.error.issues[0];
    throw tooLarge(`Cannot encode the version record as key '${name}' is invalid: ${issue?.path.join(".") || "(root)"}: ${issue?.message ?? "invalid"}`);
  }
  return JSON.stringify(result.data);
}

/** A key's JSON, compressed under `<name>.gz` when it is longer than the threshold. */
function putMaybeCompressed(data: Record<string, string>, name: string, json: string, compressAboveBytes: number): void {
  if (byteLength(json) <= compressAboveBytes) data[name] = json;
  else data[`${name}.gz`] = gzipSync(Buffer.from(json, "utf8"), { level: 9 }).toString("base64");
}

/** Bytes the data takes toward the ConfigMap's limit: every key and value, in UTF-8. */
export function recordDataBytes(data: Readonly<Record<string, string>>): number {
  let total = 0;
  for (const [key, value] of Object.entries(data)) total += byteLength(key) + byteLength(value);
  return total;
}

/** Options of {@link encodeRecord} and {@link fitRecord}. */
export interface EncodeOptions {
  /** Largest data, in bytes. Default {@link RECORD_LIMITS}.budgetBytes (512 KiB). */
  budgetBytes?: number;
  /** Inventories with longer JSON are stored compressed, in bytes. Default {@link RECORD_LIMITS}.compressAboveBytes (64 KiB). */
  compressAboveBytes?: number;
}

/**
 * The record as it will be stored, and its data: fields bounded, history trimmed oldest first
 * until the data fits the budget.
 *
 * @throws {RangeError} when a field does not fit the record's schema (a timestamp that is not
 * a safe integer), or when the record does not fit its budget even without history.
 */
export function fitRecord(record: VersionRecord, options: EncodeOptions = {}): { record: VersionRecord; data: Record<string, string> } {
  const { budgetBytes = RECORD_LIMITS.budgetBytes, compressAboveBytes = RECORD_LIMITS.compressAboveBytes } = options;
  const bounded = boundRecord(record);
  const data: Record<string, string> = { format: STATE_FORMAT, ...(bounded.unmarkedInventory ? {} : { marks: "1" }) };
  if (bounded.current !== null) data["current"] = encodeKey("current", currentSchema, bounded.current);
  if (bounded.inflight !== null) putMaybeCompressed(data, "inflight", encodeKey("inflight", inflightSchema, bounded.inflight), compressAboveBytes);
  putMaybeCompressed(data, "inventory", encodeKey("inventory", z.array(inventoryItemSchema), bounded.inventory), compressAboveBytes);
  const fixedBytes = recordDataBytes(data) + byteLength("history");
  // The newest outcomes that fit: "[" + entries joined by "," + "]".
  const entries = bounded.history.map((o, i) => encodeKey(`history.${i}`, outcomeSchema, o));
  let bytes = fixedBytes + 2;
  if (bytes > budgetBytes) {
    throw tooLarge(
      `Cannot encode the version record within its budget of ${budgetBytes} bytes: without any history it takes ${bytes} bytes (inventory of ${bounded.inventory.length} objects${bounded.inflight === null ? "" : `, in-flight inventory of ${bounded.inflight.inventory.length}`})`,
    );
  }
  let kept = 0;
  for (const entry of entries) {
    const more = byteLength(entry) + (kept === 0 ? 0 : 1);
    if (bytes + more > budgetBytes) break;
    bytes += more;
    kept++;
  }
  data["history"] = `[${entries.slice(0, kept).join(",")}]`;
  return { record: { ...bounded, history: bounded.history.slice(0, kept) }, data };
}

/**
 * The record's ConfigMap data (see {@link fitRecord}). Keys are written in a fixed order so
 * equal records give byte-identical data.
 *
 * @throws {RangeError} as {@link fitRecord} does.
 */
export function encodeRecord(record: VersionRecord, options: EncodeOptions = {}): Record<string, string> {
  return fitRecord(record, options).data;
}

/**
 * The record held by ConfigMap `data`; no data at all is the empty record. Takes `<key>.gz`
 * for `inflight` and `inventory` (gzip, base64), and records written before the bounds.
 *
 * @throws {Error} naming the first key that does not parse; {@link readRecord} turns it into
 * a StateReadError, since a record that cannot be understood must not count as "none".
 */
export function decodeRecord(data: Readonly<Record<string, string>> | undefined): VersionRecord {
  if (data === undefined || Object.keys(data).length === 0) return emptyRecord();
  const format = data["format"];
  // Data without our format key is someone else's ConfigMap (for example the original
  // implementation's BUILD_TIMESTAMP one under the same name): its version is unknown, and
  // reading it as "none" could roll the cluster back.
  if (format === undefined) {
    throw new Error(`Cannot decode the version record as it has no 'format' key: its keys are ${Object.keys(data).sort().join(", ")}`);
  }
  if (format !== STATE_FORMAT) {
    throw new Error(`Cannot decode the version record as its 'format' is not ${STATE_FORMAT}: current value is ${JSON.stringify(format)}`);
  }
  const textOf = (name: string): string | undefined => {
    const packed = data[`${name}.gz`];
    if (packed === undefined) return data[name];
    if (data[name] !== undefined) throw new Error(`Cannot decode the version record as it has both '${name}' and '${name}.gz'`);
    try {
      return gunzipSync(Buffer.from(packed, "base64"), { maxOutputLength: RECORD_LIMITS.maxInflatedBytes }).toString("utf8");
    } catch (error) {
      throw new Error(`Cannot decode the version record as key '${name}.gz' is not gzip in base64 of at most ${RECORD_LIMITS.maxInflatedBytes} bytes: ${errorMessage(error)}`);
    }
  };
  const key = <T>(name: string, schema: z.ZodType<T>, fallback: T): T => {
    const text = textOf(name);
    if (text === undefined) return fallback;
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (error) {
      throw new Error(`Cannot decode the version record as key '${name}' is not JSON: ${(error as Error).message}`);
    }
    const result = schema.safeParse(parsed);
    if (!result.success) {
      const issue = result.error.issues[0];
      throw new Error(`Cannot decode the version record as key '${name}' is invalid: ${issue?.path.join(".") || "(root)"}: ${issue?.message ?? "invalid"}`);
    }
    return result.data;
  };
  const inventory = key("inventory", z.array(inventoryItemSchema), []);
  const record: VersionRecord = {
    current: key<CurrentBuild | null>("current", currentSchema, null),
    inflight: key<InFlightBuild | null>("inflight", inflightSchema, null),
    inventory,
    history: key("history", z.array(outcomeSchema), []),
  };
  // Before marks, no key said so: an inventory without "marks" may hold unmarked objects.
  if (data["marks"] === undefined && inventory.length > 0) record.unmarkedInventory = true;
  return record;
}

/**
 * True when writing the record failed in a way that trying again cannot cure: the record does
 * not fit its budget or schema (see {@link fitRecord}), or the API server refused it as too
 * large (413 RequestEntityTooLarge) or invalid (422 Invalid). A caller must not hold work for it.
 */
export function isPermanentWriteFailure(error: unknown): boolean {
  if (!(error instanceof StateWriteError)) return false;
  const cause = error.cause;
  if (cause instanceof RangeError) return true;
  return cause instanceof KubeApiError && (cause.status.code === 413 || cause.status.code === 422);
}

/**
 * `history` with `outcome` added in front, cut to the newest `limit` entries; the outcome's
 * error text is cut to {@link MAX_OUTCOME_ERROR_LENGTH} characters.
 *
 * @throws {RangeError} when `limit` is not a positive integer.
 */
export function addOutcome(history: readonly Outcome[], outcome: Outcome, limit: number = DEFAULT_HISTORY_LIMIT): Outcome[] {
  if (!Number.isInteger(limit) || limit < 1) {
    throw new RangeError(`Cannot add an outcome to the history as 'limit' must be a positive integer: current value is ${limit}`);
  }
  const entry: Outcome = { ...outcome };
  if (entry.error !== undefined && entry.error.length > MAX_OUTCOME_ERROR_LENGTH) {
    entry.error = `${entry.error.slice(0, MAX_OUTCOME_ERROR_LENGTH)}…`;
  }
  return [entry, ...history].slice(0, limit);
}

/** The record after a successful apply: new current build and inventory, "applied" outcome added. */
export function recordApplied(
  record: VersionRecord,
  applied: { current: CurrentBuild; inventory: readonly RecordedObject[]; outcome: Outcome },
  historyLimit: number = DEFAULT_HISTORY_LIMIT,
): VersionRecord {
  return {
    current: applied.current,
    inflight: null,
    inventory: applied.inventory.map(({ group, kind, namespace, name }) => (namespace === undefined ? { group, kind, name } : { group, kind, namespace, name })),
    history: addOutcome(record.history, applied.outcome, historyLimit),
  };
}

/** The record with an outcome added and nothing else changed (failed, rejected, superseded, duplicate). */
export function recordOutcome(record: VersionRecord, outcome: Outcome, historyLimit: number = DEFAULT_HISTORY_LIMIT): VersionRecord {
  return { ...record, history: addOutcome(record.history, outcome, historyLimit) };
}

/** The ConfigMap object that {@link writeState} sends. Exported for tests. */
export function stateConfigMap(
  record: VersionRecord,
  where: { namespace: string; name: string; resourceVersion: string | null; app?: string | undefined },
): Record<string, unknown> {
  const labels: Record<string, string> = { ...RECORD_LABELS };
  if (where.app !== undefined) labels[RECORD_APP_LABEL] = where.app;
  const metadata: Record<string, unknown> = { name: where.name, namespace: where.namespace, labels };
  if (where.resourceVersion !== null) metadata["resourceVersion"] = where.resourceVersion;
  return { apiVersion: "v1", kind: "ConfigMap", metadata, data: encodeRecord(record) };
}

/** Where the record lives and how to reach it. */
export interface RecordOptions {
  api: KubeApi;
  /** The listener's namespace. */
  namespace: string;
  /** ConfigMap name. Default {@link DEFAULT_STATE_CONFIGMAP}. */
  name?: string | undefined;
  /** The app the record is of: written as its `kube-pico-cd.io/record-of` label. */
  app?: string | undefined;
  /** Per request, in milliseconds. Default 10000. */
  timeoutMs?: number | undefined;
  signal?: AbortSignal | undefined;
}

const defaults = { name: DEFAULT_STATE_CONFIGMAP, timeoutMs: 10_000 } as const;

const configMapSchema = z.object({ metadata: z.object({ resourceVersion: z.string() }), data: z.record(z.string(), z.string()).optional() });

function configMapPath(namespace: string, name?: string): string {
  const base = `/api/v1/namespaces/${encodeURIComponent(namespace)}/configmaps`;
  return name === undefined ? base : `${base}/${encodeURIComponent(name)}`;
}

/**
 * Reads the record. A missing ConfigMap is an empty record with `resourceVersion: null`.
 *
 * @throws {StateReadError} on any other failure: forbidden, API server unreachable, timeout,
 * abort, or content that does not decode. The cause holds the API error or parse error.
 */
export async function readRecord(options: RecordOptions): Promise<StoredRecord> {
  const { api, namespace, name = defaults.name, timeoutMs = defaults.timeoutMs, signal } = options;
  const where = { namespace, configMapName: name };
  let got: unknown;
  try {
    // getOptional is null only for a 404 that names the object: a wrong server URL or path
    // also answers 404, and must not count as "no record".
    got = await api.getOptional(configMapPath(namespace, name), { timeoutMs, signal });
  } catch (error) {
    throw new StateReadError(`Cannot read the version record ConfigMap ${namespace}/${name}: ${errorMessage(error)}`, where, { cause: error });
  }
  if (got === null) return { ...emptyRecord(), resourceVersion: null };
  try {
    const parsed = configMapSchema.parse(got);
    return { ...decodeRecord(parsed.data), resourceVersion: parsed.metadata.resourceVersion };
  } catch (error) {
    throw new StateReadError(`Cannot read the version record ConfigMap ${namespace}/${name}: ${errorMessage(error)}`, where, { cause: error });
  }
}

/**
 * Writes `record` if the ConfigMap is still at `resourceVersion` (null: if it still does
 * not exist) and resolves with the new resourceVersion.
 *
 * @throws {StateConflictError} when the ConfigMap changed, appeared or vanished since the read.
 * @throws {StateWriteError} on any other failure; {@link isPermanentWriteFailure} tells the
 * ones that no retry cures (the record does not fit, or the API server refused it).
 */
export async function writeRecord(record: VersionRecord, resourceVersion: string | null, options: RecordOptions): Promise<string> {
  const { api, namespace, name = defaults.name, timeoutMs = defaults.timeoutMs, signal, app } = options;
  const where = { namespace, configMapName: name };
  let body: Record<string, unknown>;
  try {
    body = stateConfigMap(record, { namespace, name, resourceVersion, app });
  } catch (error) {
    throw new StateWriteError(`Cannot write the version record ConfigMap ${namespace}/${name}: ${errorMessage(error)}`, where, { cause: error });
  }
  let written: unknown;
  try {
    written =
      resourceVersion === null
        ? await api.request({ method: "POST", path: configMapPath(namespace), body, timeoutMs, signal })
        : await api.request({ method: "PUT", path: configMapPath(namespace, name), body, timeoutMs, signal });
  } catch (error) {
    // 409: AlreadyExists for a create, Conflict for a stale resourceVersion; 404: deleted since read.
    if (isConflict(error) || (resourceVersion !== null && isNotFound(error) && error.status.details !== undefined)) {
      const what = resourceVersion === null ? "it was created by someone else" : `it changed since resourceVersion ${resourceVersion} was read`;
      throw new StateConflictError(`Cannot write the version record ConfigMap ${namespace}/${name} as ${what}`, where, { cause: error });
    }
    throw new StateWriteError(`Cannot write the version record ConfigMap ${namespace}/${name}: ${errorMessage(error)}`, where, { cause: error });
  }
  try {
    return configMapSchema.parse(written).metadata.resourceVersion;
  } catch (error) {
    throw new StateWriteError(`Cannot read the new resourceVersion of ConfigMap ${namespace}/${name} after writing it: ${errorMessage(error)}`, where, { cause: error });
  }
}

/**
 * Reads, changes and writes the record, retrying on a fresh read when another writer won the
 * race (up to `attempts` times). `change` returns null to write nothing.
 *
 * @returns the record as written, bounded and trimmed (or as read, when nothing was written).
 */
export async function updateRecord(
  change: (record: StoredRecord) => VersionRecord | null,
  options: RecordOptions & { attempts?: number; initial?: StoredRecord | undefined },
): Promise<VersionRecord> {
  const { attempts = 5, initial } = options;
  for (let attempt = 1; ; attempt++) {
    // A record the caller has just read saves the first read; a stale one only costs a conflict and a fresh read.
    const stored = attempt === 1 && initial !== undefined ? initial : await readRecord(options);
    const next = change(stored);
    if (next === null) return stored;
    try {
      await writeRecord(next, stored.resourceVersion, options);
      // What was stored: bounded and trimmed (fitRecord cannot throw here, the write encoded it).
      return fitRecord(next).record;
    } catch (error) {
      if (error instanceof StateConflictError && attempt < attempts) continue;
      throw error;
    }
  }
}
