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
 * - `history`: the last N outcomes (default 20), newest first.
 *
 * Never manifest contents or Secret data: only names, build metadata and error text.
 *
 * Reading distinguishes "no record yet" (the ConfigMap does not exist, or has no `current`:
 * version "none") from "cannot read the record" (forbidden, API server down, content that
 * does not parse): the latter throws {@link StateReadError}, and the caller must apply
 * nothing, since treating it as "none" could roll the cluster back.
 *
 * Writes are compare-and-swap: a replace carries the resourceVersion that was read, a first
 * write is a create; either losing a race throws {@link StateConflictError}.
 */
import { z } from "zod";
import { errorMessage, StateConflictError, StateReadError, StateWriteError } from "../errors.ts";
import { isConflict, isNotFound, KubeApi } from "./api.ts";

/** Default name of the record's ConfigMap. */
export const DEFAULT_STATE_CONFIGMAP = "kube-pico-cd-state";
/** Default number of outcomes kept in the history. */
export const DEFAULT_HISTORY_LIMIT = 20;
/** Longest error text kept per outcome, in characters; the rest is cut. */
export const MAX_OUTCOME_ERROR_LENGTH = 2_000;
/** The `format` value this module writes and reads. */
export const STATE_FORMAT = "1";

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

/**
 * The record's ConfigMap data. Keys are written in a fixed order so equal records give
 * byte-identical data.
 */
export function encodeRecord(record: VersionRecord): Record<string, string> {
  const data: Record<string, string> = { format: STATE_FORMAT };
  if (record.current !== null) data["current"] = JSON.stringify(currentSchema.parse(record.current));
  if (record.inflight !== null) data["inflight"] = JSON.stringify(inflightSchema.parse(record.inflight));
  data["inventory"] = JSON.stringify(z.array(inventoryItemSchema).parse(record.inventory));
  data["history"] = JSON.stringify(z.array(outcomeSchema).parse(record.history));
  return data;
}

/**
 * The record held by ConfigMap `data`; no data at all is the empty record.
 *
 * @throws {Error} naming the first key that does not parse; {@link readState} turns it into
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
  const key = <T>(name: string, schema: z.ZodType<T>, fallback: T): T => {
    const text = data[name];
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
  return {
    current: key<CurrentBuild | null>("current", currentSchema, null),
    inflight: key<InFlightBuild | null>("inflight", inflightSchema, null),
    inventory: key("inventory", z.array(inventoryItemSchema), []),
    history: key("history", z.array(outcomeSchema), []),
  };
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
  where: { namespace: string; name: string; resourceVersion: string | null },
): Record<string, unknown> {
  const metadata: Record<string, unknown> = {
    name: where.name,
    namespace: where.namespace,
    labels: { "app.kubernetes.io/managed-by": "kube-pico-cd", "app.kubernetes.io/component": "state" },
  };
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
 * @throws {StateWriteError} on any other failure.
 */
export async function writeRecord(record: VersionRecord, resourceVersion: string | null, options: RecordOptions): Promise<string> {
  const { api, namespace, name = defaults.name, timeoutMs = defaults.timeoutMs, signal } = options;
  const where = { namespace, configMapName: name };
  const body = stateConfigMap(record, { namespace, name, resourceVersion });
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
 * @returns the record as written (or as read, when nothing was written).
 */
export async function updateRecord(
  change: (record: StoredRecord) => VersionRecord | null,
  options: RecordOptions & { attempts?: number },
): Promise<VersionRecord> {
  const { attempts = 5 } = options;
  for (let attempt = 1; ; attempt++) {
    const stored = await readRecord(options);
    const next = change(stored);
    if (next === null) return stored;
    try {
      await writeRecord(next, stored.resourceVersion, options);
      return next;
    } catch (error) {
      if (error instanceof StateConflictError && attempt < attempts) continue;
      throw error;
    }
  }
}
