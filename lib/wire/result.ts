/**
 * The result message, `kube-pico-cd.result` version 1: what a listener tells the publisher
 * about one deploy message, through an optional result queue (docs/protocol.md, "Results").
 *
 * The listener builds it from a recorded outcome ({@link resultFromOutcome}) and sends
 * {@link encodeResult}'s body; `publish --wait` reads it with {@link decodeResult}, which
 * rejects anything it does not fully understand (another kind, another version, unknown
 * keys), and decides with {@link resultSucceeded} whether the deploy went well.
 */
import { z } from "zod";
import { errorMessage, ResultRejectedError } from "../errors.ts";
import { outcomeResults, type Outcome } from "../kube/record.ts";
import { oneLine } from "../text.ts";
import { appNameProblem, appNameSchema } from "./app.ts";

export { ResultRejectedError, type ResultRejectedReason } from "../errors.ts";

/** The `kind` of every result message. */
export const RESULT_KIND = "kube-pico-cd.result";
/** The only `version` this module writes and reads. */
export const RESULT_VERSION = 1;
/** Longest `message` text, in characters; the rest is cut and ends in "…". */
export const MAX_RESULT_TEXT_LENGTH = 1_000;
/** Most pruned objects a result names; its message counts them all. */
export const MAX_RESULT_PRUNED = 50;

const duration = z.number().int().nonnegative();

const planSchema = z.strictObject({
  ok: z.boolean(),
  objects: z.array(
    z.strictObject({
      object: z.string(),
      source: z.string().optional(),
      action: z.enum(["create", "change", "unchanged", "error", "pending"]),
      lines: z.array(z.string()),
      more: z.int().nonnegative().optional(),
    }),
  ),
  prune: z.array(z.string()),
  counts: z.strictObject({ create: duration, change: duration, unchanged: duration, error: duration, pending: duration, prune: duration }),
  omitted: z.int().nonnegative().optional(),
});

const resultSchema = z.strictObject({
  kind: z.literal(RESULT_KIND),
  version: z.literal(RESULT_VERSION),
  /** The SQS MessageId of the deploy message (what SendMessage returned to the publisher). */
  messageId: z.string().min(1),
  /** The app the deploy message belongs to (lib/wire/app.ts); absent from listeners before apps. */
  app: appNameSchema.optional(),
  build: z.strictObject({
    id: z.string().min(1),
    timestampMs: z.int().nonnegative(),
    commit: z.string().min(1).optional(),
  }),
  /** Lowercase hex SHA-256 of the bundle's payload. */
  digest: z.string().min(1),
  /** The deploy message's target, when it had one. */
  target: z.string().min(1).optional(),
  /** Name of the deploy queue the listener received the message from. */
  queue: z.string().min(1),
  /** The listener's namespace (where its version record lives). */
  namespace: z.string().min(1),
  /**
   * An outcome's result; `planned` for the answer to a plan request (`plan` then holds it);
   * `progress` for a step of a deploy still running (`progress` then holds it; more results follow).
   */
  result: z.enum([...outcomeResults, "planned", "progress"]),
  /** `progress` only: the step. */
  progress: z
    .strictObject({
      phase: z.enum(["picked-up", "applied", "health", "pruning"]),
      /** ms since the deploy started. */
      elapsedMs: duration,
    })
    .optional(),
  /** `applied` only: the objects prune deleted (`group/Kind namespace/name`), at most {@link MAX_RESULT_PRUNED}. */
  pruned: z.array(z.string()).max(50).optional(),
  /** `planned` only: what the build would do (lib/wire/plan.ts). */
  plan: planSchema.optional(),
  /** Present when the listener checked the health of the applied workloads. */
  health: z
    .strictObject({
      status: z.enum(["Healthy", "Degraded", "Timeout"]),
      object: z.string().min(1).optional(),
      reason: z.string().min(1).optional(),
    })
    .optional(),
  /** One line for people: the error, or what was applied and pruned. */
  message: z.string(),
  durations: z.strictObject({
    pickupMs: duration.optional(),
    applyMs: duration.optional(),
    healthMs: duration.optional(),
  }),
  /** ISO 8601 time of the outcome. */
  time: z.iso.datetime({ offset: true }),
  /** "failed" only: the deploy message's ApproximateReceiveCount (1 on the first attempt). */
  receiveCount: z.int().min(1).optional(),
  /** "failed" only: true, the message stays in the deploy queue and is retried. */
  willRetry: z.boolean().optional(),
});

/** A result message, as encoded and decoded. */
export type ResultMessage = z.infer<typeof resultSchema>;

/**
 * The JSON body of a result, keys in the documented order.
 *
 * @throws {ResultRejectedError} when `result` does not satisfy the schema (a bug in the caller).
 */
export function encodeResult(result: ResultMessage): string {
  const checked = resultSchema.safeParse(result);
  if (!checked.success) {
    throw new ResultRejectedError("schema", `Cannot encode the result of message ${result.messageId}: ${issuesText(checked.error)}`);
  }
  return JSON.stringify(checked.data);
}

/**
 * Reads a result body. Rejects (in this order) what is not JSON, not an object, another
 * `kind`, another `version`, and any field of the wrong type or not in version 1.
 *
 * @throws {ResultRejectedError} for anything it does not accept, and never anything else.
 */
export function decodeResult(body: string): ResultMessage {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch (error) {
    throw new ResultRejectedError("invalid-json", `Cannot read the result: the body is not JSON (${errorMessage(error)})`);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new ResultRejectedError("schema", `Cannot read the result: the body is ${parsed === null ? "null" : Array.isArray(parsed) ? "an array" : typeof parsed}, not a JSON object`);
  }
  const { kind, version } = parsed as { kind?: unknown; version?: unknown };
  if (kind !== RESULT_KIND) {
    throw new ResultRejectedError("unsupported-kind", `Cannot read the result: kind must be "${RESULT_KIND}": current value is ${JSON.stringify(kind) ?? "absent"}`);
  }
  if (version !== RESULT_VERSION) {
    throw new ResultRejectedError("unsupported-version", `Cannot read the result: version must be ${RESULT_VERSION}: current value is ${JSON.stringify(version) ?? "absent"}`);
  }
  const checked = resultSchema.safeParse(parsed);
  if (!checked.success) throw new ResultRejectedError("schema", `Cannot read the result: ${issuesText(checked.error)}`);
  return checked.data;
}

function issuesText(error: z.ZodError): string {
  return error.issues
    .slice(0, 5)
    .map((issue) => {
      const where = issue.path.length > 0 ? issue.path.join(".") : "body";
      return issue.code === "unrecognized_keys" ? `${where}: unknown keys ${issue.keys.map((k) => JSON.stringify(k)).join(", ")}` : `${where}: ${issue.message}`;
    })
    .join("; ");
}

/** What the listener knows besides the outcome. */
export interface ResultContext {
  /** Name of the deploy queue. */
  queue: string;
  /** The listener's namespace. */
  namespace: string;
  /** ApproximateReceiveCount of the deploy message; 1 when unknown. */
  receiveCount?: number | undefined;
  /** The deploy queue's redrive maxReceiveCount, when known: no retry after that many receives. */
  maxReceiveCount?: number | undefined;
}

/**
 * The result of an outcome, or undefined when the outcome names no build (a message that did
 * not decode far enough): its publisher cannot be told apart, and would not wait for it.
 */
export function resultFromOutcome(outcome: Outcome, context: ResultContext): ResultMessage | undefined {
  const { buildId, timestampMs, digest, messageId } = outcome;
  if (buildId === undefined || buildId === "" || timestampMs === undefined || digest === undefined || digest === "" || messageId === undefined || messageId === "") return undefined;
  const durations: ResultMessage["durations"] = {};
  if (outcome.pickupMs !== undefined) durations.pickupMs = Math.round(outcome.pickupMs);
  if (outcome.durationMs !== undefined) durations.applyMs = Math.round(outcome.durationMs);
  if (outcome.health !== undefined) durations.healthMs = Math.round(outcome.health.durationMs);
  const result: ResultMessage = {
    kind: RESULT_KIND,
    version: RESULT_VERSION,
    messageId,
    // An outcome's app is checked only for length; encodeResult would refuse one that is no app name.
    ...(outcome.app !== undefined && appNameProblem(outcome.app) === undefined ? { app: outcome.app } : {}),
    build: { id: buildId, timestampMs, ...(outcome.commit ? { commit: outcome.commit } : {}) },
    digest,
    ...(outcome.target ? { target: outcome.target } : {}),
    queue: context.queue,
    namespace: context.namespace,
    result: outcome.result,
    message: oneLine(summaryOf(outcome), MAX_RESULT_TEXT_LENGTH),
    durations,
    time: outcome.time,
  };
  if (outcome.health !== undefined) {
    const { status, object, reason } = outcome.health;
    result.health = { status, ...(object ? { object } : {}), ...(reason ? { reason: oneLine(reason, MAX_RESULT_TEXT_LENGTH) } : {}) };
  }
  if (outcome.result === "applied" && outcome.pruned !== undefined && outcome.pruned.length > 0) {
    result.pruned = outcome.pruned.slice(0, MAX_RESULT_PRUNED).map((p) => `${p.group === "" ? "" : `${p.group}/`}${p.kind} ${p.namespace === undefined ? "" : `${p.namespace}/`}${p.name}`);
  }
  if (outcome.result === "failed") {
    result.receiveCount = Math.max(1, context.receiveCount ?? 1);
    // The last receive before the dead-letter queue: the listener will not see it again.
    result.willRetry = context.maxReceiveCount === undefined || result.receiveCount < context.maxReceiveCount;
  }
  return result;
}

/** A progress result: one step of a deploy still running, for `publish --wait` to print. */
export function progressResult(
  progress: { phase: NonNullable<ResultMessage["progress"]>["phase"]; text: string; elapsedMs: number },
  build: { app: string; id: string; timestampMs: number; commit?: string | undefined; digest: string; target?: string | undefined; messageId: string },
  context: Pick<ResultContext, "queue" | "namespace">,
  time: string,
): ResultMessage {
  return {
    kind: RESULT_KIND,
    version: RESULT_VERSION,
    messageId: build.messageId,
    ...(appNameProblem(build.app) === undefined && build.app !== "default" ? { app: build.app } : {}),
    build: { id: build.id, timestampMs: build.timestampMs, ...(build.commit ? { commit: build.commit } : {}) },
    digest: build.digest,
    ...(build.target ? { target: build.target } : {}),
    queue: context.queue,
    namespace: context.namespace,
    result: "progress",
    progress: { phase: progress.phase, elapsedMs: Math.max(0, Math.round(progress.elapsedMs)) },
    message: oneLine(progress.text, MAX_RESULT_TEXT_LENGTH),
    durations: {},
    time,
  };
}

function summaryOf(outcome: Outcome): string {
  switch (outcome.result) {
    case "applied": {
      const parts = [`applied ${outcome.objects ?? 0} object${outcome.objects === 1 ? "" : "s"}`];
      if (outcome.pruned !== undefined) parts.push(`pruned ${outcome.pruned.length}`);
      if (outcome.kept !== undefined && outcome.kept.length > 0) parts.push(`kept ${outcome.kept.length} that left the bundle`);
      if (outcome.health !== undefined && outcome.health.status !== "Healthy") {
        parts.push(`health ${outcome.health.status}${outcome.health.object ? ` at ${outcome.health.object}` : ""}${outcome.health.reason ? `: ${outcome.health.reason}` : ""}`);
      }
      if (outcome.warnings !== undefined && outcome.warnings.length > 0) parts.push(`${outcome.warnings.length} warning${outcome.warnings.length === 1 ? "" : "s"}: ${outcome.warnings[0]}`);
      return parts.join(", ");
    }
    case "failed":
    case "rejected":
      return outcome.error ?? `${outcome.result} without an error text`;
    case "superseded":
      return "not applied: a newer build was already recorded or arrived in the same batch";
    case "duplicate":
      return "not applied again: this build is already the recorded one";
  }
}

/**
 * Whether a result means the deploy went well, for the publisher's exit code: applied with
 * health Healthy or not checked, a duplicate (already applied), or superseded (a newer build
 * replaced it). Failed, rejected, and applied with Degraded or Timeout health did not.
 */
export function resultSucceeded(result: Pick<ResultMessage, "result" | "health" | "plan">): boolean {
  switch (result.result) {
    case "applied":
      return result.health === undefined || result.health.status === "Healthy";
    case "duplicate":
    case "superseded":
      return true;
    case "planned":
      return result.plan?.ok === true;
    case "progress":
      // Not an end: a publisher waits on for the outcome.
      return true;
    case "failed":
    case "rejected":
      return false;
  }
}
