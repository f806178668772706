/**
 * What the listener does with a batch of messages: the deploy decision.
 *
 * 1. Decode every message. One that can never succeed (not JSON, wrong schema, unknown
 *    version, digest mismatch, another target) is rejected: recorded, then deleted.
 * 2. Take the deploy lock (a Lease), so that replicas deploy one at a time, and read the
 *    version record. If either fails, nothing is applied and every message stays for a
 *    retry: an unreadable record is never taken for "nothing deployed yet".
 * 3. Newest wins, by the total order of lib/wire/message.ts (timestamp, then digest). Only the
 *    newest build of the batch is applied, and only if it is strictly newer than the
 *    recorded one. Older builds of the batch are superseded; a build equal to the recorded
 *    one is a duplicate.
 * 4. Apply with server-side apply. On success the record gets the new build, its inventory
 *    and the outcomes; on failure the history gets the failure and the message stays, to
 *    be retried with a growing delay until the queue's dead-letter queue takes it.
 * 5. Only once the record is written are messages deleted.
 */
import type { AfterApplyResult, AppliedBuild } from "./after-apply.ts";
import { applyObjects, type ApplyResult } from "../kube/apply.ts";
import { DEFAULT_BUNDLE_SECRET } from "./drift.ts";
import type { BatchHandler, Disposition, ReceivedMessage } from "../sqs/consumer.ts";
import { errorMessage, KubePicoCdError, LockError, MessageRejectedError, StateConflictError } from "../errors.ts";
import type { KubectlTarget } from "../kube/kubectl.ts";
import type { KubeObject } from "../manifests/bundle.ts";
import { acquireLock, DEFAULT_LOCK_LEASE, type HeldLock } from "../kube/lease.ts";
import type { Logger } from "../log.ts";
import { compareBuilds, decodeMessage, type DecodedMessage } from "../wire/message.ts";
import { redactError } from "./policy.ts";
import { DEFAULT_STATE_CONFIGMAP, readState, recordApplied, recordOutcome, writeState, type Outcome, type StoredRecord, type VersionRecord } from "../kube/record.ts";

export interface DeployerOptions {
  kubectl: KubectlTarget;
  /** The listener's namespace: the record and the lock live there. */
  namespace: string;
  logger: Logger;
  /** Only messages without a target or with this one are applied. */
  target?: string | undefined;
  stateName?: string;
  lockName?: string;
  /** The Secret keeping the bundle for drift correction (lib/listener/drift.ts); a bundle may not overwrite it. Default "kube-pico-cd-bundle". */
  bundleSecret?: string;
  leaseDurationSeconds?: number;
  /** How long to wait for another replica's deploy to finish, in ms. Default 120000. */
  lockWaitMs?: number;
  historyLimit?: number;
  fieldManager?: string;
  forceConflicts?: boolean;
  applyTimeoutMs?: number;
  maxDecompressedBytes?: number;
  /**
   * Called with every decoded message before anything else looks at it; throws a
   * MessageRejectedError when the message must not be applied (an untrusted signature, a
   * policy violation: lib/listener/trust.ts, lib/listener/policy.ts). Default: every message is admitted.
   */
  admit?: (decoded: DecodedMessage) => void;
  /** Delay before the first retry of a failed apply, in seconds; doubles per receive. Default 30. */
  retryBaseSeconds?: number;
  /** Largest retry delay, in seconds. Default 900. */
  retryMaxSeconds?: number;
  /** Delay before retrying when the API server cannot be reached, in seconds. Default 10. */
  unavailableRetrySeconds?: number;
  /** Told about every outcome once it is recorded (metrics, events, the result queue), with its message when known. */
  onOutcome?: (outcome: Outcome, message?: ReceivedMessage) => void;
  /**
   * Runs after a successful apply, still under the lock (lib/listener/after-apply.ts: health, prune,
   * the bundle kept for drift). Returns the inventory to record and fields of the outcome.
   */
  afterApply?: (applied: AppliedBuild, signal: AbortSignal) => Promise<AfterApplyResult>;
  /** Apply a bundle of zero objects (it prunes nothing). Default false: it is rejected as "empty-bundle". */
  allowEmptyBundle?: boolean;
  /** Told whether the Kubernetes API answered (for readiness). */
  onApiStatus?: (reachable: boolean) => void;
  /** The process lifetime signal: aborting it during an apply kills kubectl. */
  now?: () => number;
}

interface Accepted {
  message: ReceivedMessage;
  decoded: DecodedMessage;
}

interface Rejected {
  message: ReceivedMessage;
  reason: string;
  error: string;
  /** When it decoded before being refused: its outcome then names the build. */
  refused?: DecodedMessage | undefined;
}

/** Errors that mean "the cluster could not be asked", not "this deploy is bad". */
class UnavailableError extends KubePicoCdError {
  override name = "UnavailableError";
}

/** Creates the batch handler the consumer calls. */
export function createDeployer(options: DeployerOptions): BatchHandler {
  const {
    kubectl,
    namespace,
    logger,
    target,
    stateName,
    lockName,
    bundleSecret = DEFAULT_BUNDLE_SECRET,
    leaseDurationSeconds = 30,
    lockWaitMs = 120_000,
    historyLimit = 20,
    fieldManager = "kube-pico-cd",
    forceConflicts = true,
    applyTimeoutMs = 300_000,
    maxDecompressedBytes,
    retryBaseSeconds = 30,
    retryMaxSeconds = 900,
    unavailableRetrySeconds = 10,
    onOutcome,
    onApiStatus,
    now = Date.now,
    admit,
    afterApply,
    allowEmptyBundle = false,
  } = options;
  const stateOptions = { kubectl, namespace, ...(stateName === undefined ? {} : { name: stateName }) };
  const iso = () => new Date(now()).toISOString();

  const decode = (message: ReceivedMessage): Accepted | Rejected => {
    let decoded: DecodedMessage | undefined;
    try {
      decoded = decodeMessage(message.body, maxDecompressedBytes === undefined ? {} : { maxDecompressedBytes });
      admit?.(decoded);
      if (decoded.target !== undefined && decoded.target !== target) {
        const mine = target === undefined ? "no target" : `target ${JSON.stringify(target)}`;
        return { message, reason: "target", error: `The message is for target ${JSON.stringify(decoded.target)} but this listener has ${mine}`, refused: decoded };
      }
      if (decoded.objects.length === 0 && !allowEmptyBundle) {
        return { message, reason: "empty-bundle", error: "The bundle holds no objects; applying it would leave the cluster as it is and prune nothing, so it is refused (start the listener with --allow-empty-bundle to accept it)", refused: decoded };
      }
      const protectedObject = decoded.objects.find((o) => isProtected(o, namespace, stateName ?? DEFAULT_STATE_CONFIGMAP, lockName ?? DEFAULT_LOCK_LEASE, bundleSecret));
      if (protectedObject) {
        return {
          message,
          reason: "protected-object",
          error: `The bundle holds ${protectedObject.kind} ${protectedObject.metadata.namespace ?? namespace}/${protectedObject.metadata.name}, which is the listener's own ${protectedObject.kind === "Lease" ? "deploy lock" : protectedObject.kind === "Secret" ? "kept bundle for drift correction" : "version record"}; a bundle may not overwrite it`,
          refused: decoded,
        };
      }
      return { message, decoded };
    } catch (error) {
      if (error instanceof MessageRejectedError) return { message, reason: error.reason, error: error.message, refused: decoded };
      throw error;
    }
  };

  const retryDelaySeconds = (message: ReceivedMessage) => Math.min(retryMaxSeconds, retryBaseSeconds * 2 ** Math.min(20, message.receiveCount - 1));

  /** Read, change, write; a conflicting write is retried on a fresh read. */
  const commit = async (change: (record: StoredRecord) => VersionRecord, signal: AbortSignal): Promise<void> => {
    for (let attempt = 1; ; attempt++) {
      const stored = await readState({ ...stateOptions, signal });
      try {
        await writeState(change(stored), stored.resourceVersion, { ...stateOptions, signal });
        return;
      } catch (error) {
        if (error instanceof StateConflictError && attempt < 5) continue;
        throw error;
      }
    }
  };

  return async (batch, signal) => {
    const decisions = new Map<string, Disposition>();
    const accepted: Accepted[] = [];
    const rejected: Rejected[] = [];
    for (const message of batch) {
      const result = decode(message);
      if ("decoded" in result) accepted.push(result);
      else rejected.push(result);
    }
    for (const r of rejected) {
      logger.warn("message rejected", { messageId: r.message.messageId, reason: r.reason, error: r.error });
    }
    const rejectedOutcomes: Outcome[] = rejected.map((r) => ({
      result: "rejected",
      time: iso(),
      ...(r.refused ? buildFields(r.refused) : {}),
      messageId: r.message.messageId,
      error: `${r.reason}: ${r.error}`,
    }));

    let lock: HeldLock | undefined;
    try {
      const waitLimit = AbortSignal.any([signal, AbortSignal.timeout(lockWaitMs)]);
      try {
        lock = await acquireLock({ kubectl, namespace, leaseDurationSeconds, signal: waitLimit, ...(lockName === undefined ? {} : { name: lockName }) });
      } catch (error) {
        if (signal.aborted) throw error;
        throw new UnavailableError(`Cannot take the deploy lock: ${errorMessage(error)}`, { cause: error });
      }
      const lockSignal = AbortSignal.any([signal, lock.lost]);

      let stored: StoredRecord;
      try {
        stored = await readState({ ...stateOptions, signal: lockSignal });
      } catch (error) {
        throw new UnavailableError(`Cannot read the version record, so nothing is applied: ${errorMessage(error)}`, { cause: error });
      }
      onApiStatus?.(true);

      const ordered = [...accepted].sort((a, b) => compareBuilds(key(a), key(b)));
      const newest = ordered.at(-1);
      const current = stored.current ? { timestampMs: stored.current.build.timestampMs, digest: stored.current.digest } : undefined;
      const outcomes: Outcome[] = [...rejectedOutcomes];
      const outcomeOf = (a: Accepted, result: Outcome["result"], extra: Partial<Outcome> = {}): Outcome => ({
        result,
        time: iso(),
        ...buildFields(a.decoded),
        messageId: a.message.messageId,
        ...extra,
      });
      // Everything but the newest: superseded by it, or a second delivery of it or of the record.
      for (const a of ordered.slice(0, -1)) {
        const sameAsNewest = newest !== undefined && compareBuilds(key(a), key(newest)) === 0;
        const sameAsCurrent = current !== undefined && compareBuilds(key(a), current) === 0;
        outcomes.push(outcomeOf(a, sameAsNewest || sameAsCurrent ? "duplicate" : "superseded"));
        decisions.set(a.message.messageId, { action: "delete" });
      }

      let applied: { newest: Accepted; result: ApplyResult; after: AfterApplyResult | undefined; extra: Partial<Outcome> } | undefined;
      if (newest) {
        const order = current === undefined ? 1 : compareBuilds(key(newest), current);
        const log = logger.child({ build: newest.decoded.build.id, buildTimestampMs: newest.decoded.build.timestampMs, digest: newest.decoded.digest, messageId: newest.message.messageId });
        if (order <= 0) {
          log.info(order === 0 ? "build already applied; duplicate delivery" : "build older than the recorded one; superseded", { recordedBuild: stored.current?.build.id });
          outcomes.push(outcomeOf(newest, order === 0 ? "duplicate" : "superseded"));
          decisions.set(newest.message.messageId, { action: "delete" });
        } else {
          const pickupMs = newest.message.sentTimestampMs === undefined ? undefined : Math.max(0, now() - newest.message.sentTimestampMs);
          const pickup = pickupMs === undefined ? {} : { pickupMs };
          log.info("applying build", { objects: newest.decoded.objects.length, recordedBuild: stored.current?.build.id ?? null, pickupMs, receiveCount: newest.message.receiveCount });
          const started = now();
          try {
            const result = await applyObjects(newest.decoded.objects, { kubectl, fieldManager, forceConflicts, timeoutMs: applyTimeoutMs, signal: lockSignal });
            log.info("build applied", { objects: result.inventory.length, durationMs: result.durationMs, phases: result.phases.map((p) => `${p.phase}:${p.durationMs}`) });
            const after = await afterApply?.({ decoded: newest.decoded, inventory: result.inventory, previousInventory: stored.inventory, log }, lockSignal);
            const extra: Partial<Outcome> = { durationMs: result.durationMs, objects: result.inventory.length, ...pickup, ...after?.outcome };
            applied = { newest, result, after, extra };
            decisions.set(newest.message.messageId, { action: "delete" });
          } catch (error) {
            if (lockSignal.aborted) throw error; // Shutdown or lost lock: not this build's fault.
            // kubectl's errors may echo Secret values of the bundle: never into logs or the record.
            const redacted = redactError(error, newest.decoded.objects);
            const text = redacted.message;
            const delaySeconds = retryDelaySeconds(newest.message);
            log.error("applying build failed; the message stays for a retry", { error: redacted, retryInSeconds: delaySeconds, receiveCount: newest.message.receiveCount });
            outcomes.push(outcomeOf(newest, "failed", { durationMs: now() - started, error: text, ...pickup }));
            decisions.set(newest.message.messageId, { action: "retry", delaySeconds });
          }
        }
      }

      // What the record finally says of the applied build: listeners are told the same.
      let appliedOutcome: Outcome | undefined;
      await commit((record) => {
        let next: VersionRecord = record;
        if (applied) {
          // The conditional write and the lock make this the newest build; a record that
          // moved past it meanwhile (lock lost) must not be moved back.
          const recorded = record.current ? { timestampMs: record.current.build.timestampMs, digest: record.current.digest } : undefined;
          if (recorded !== undefined && compareBuilds(key(applied.newest), recorded) <= 0) {
            appliedOutcome = outcomeOf(applied.newest, "superseded");
            next = recordOutcome(next, appliedOutcome, historyLimit);
          } else {
            appliedOutcome = outcomeOf(applied.newest, "applied", applied.extra);
            next = recordApplied(
              next,
              {
                current: {
                  build: applied.newest.decoded.build,
                  digest: applied.newest.decoded.digest,
                  appliedAt: iso(),
                  messageId: applied.newest.message.messageId,
                  objectCount: applied.newest.decoded.objects.length,
                },
                inventory: applied.after?.inventory ?? applied.result.inventory,
                outcome: appliedOutcome,
              },
              historyLimit,
            );
          }
        }
        for (const o of outcomes) next = recordOutcome(next, o, historyLimit);
        return next;
      }, lockSignal);

      logger.info("outcomes recorded", { build: applied?.newest.decoded.build.id ?? newest?.decoded.build.id, outcomes: outcomes.length + (applied ? 1 : 0) });
      for (const r of rejected) decisions.set(r.message.messageId, { action: "delete" });
      const messageOf = (id: string | undefined) => batch.find((m) => m.messageId === id);
      if (applied && appliedOutcome) onOutcome?.(appliedOutcome, applied.newest.message);
      for (const o of outcomes) onOutcome?.(o, messageOf(o.messageId));
      return decisions;
    } catch (error) {
      // Nothing is deleted whose outcome is not recorded: the whole batch comes back.
      const unavailable = error instanceof UnavailableError || error instanceof LockError || !(error instanceof KubePicoCdError);
      if (error instanceof UnavailableError) onApiStatus?.(false);
      logger.warn(signal.aborted ? "stopping; the batch stays in the queue" : "the batch could not be handled; its messages stay for a retry", {
        error: error as Error,
        messageIds: batch.map((m) => m.messageId),
      });
      const delaySeconds = signal.aborted ? 0 : unavailable ? unavailableRetrySeconds : Math.min(retryMaxSeconds, retryBaseSeconds);
      const keep = new Map<string, Disposition>();
      for (const m of batch) {
        // A failed apply keeps its own, longer delay.
        const earlier = decisions.get(m.messageId);
        keep.set(m.messageId, earlier?.action === "retry" ? earlier : { action: "retry", delaySeconds });
      }
      return keep;
    } finally {
      await lock?.release().catch((error: unknown) => logger.warn("releasing the deploy lock failed; it expires by itself", { error: error as Error }));
    }
  };
}

/** What an outcome says of a decoded message's build, so the history and results name it. */
function buildFields(decoded: DecodedMessage): Pick<Outcome, "buildId" | "timestampMs" | "commit" | "target" | "digest"> {
  const { build, digest, target } = decoded;
  return {
    buildId: build.id,
    timestampMs: build.timestampMs,
    ...(build.commit === undefined ? {} : { commit: build.commit }),
    ...(target === undefined ? {} : { target }),
    digest,
  };
}

/**
 * True for the listener's own record, lock and kept bundle: a bundle that overwrote them
 * could fake the recorded version (the original's defect 6), or plant what drift correction
 * re-applies. An object without a namespace counts, since in the listener's pod kubectl puts
 * it into the listener's namespace.
 */
function isProtected(object: KubeObject, namespace: string, stateName: string, lockName: string, bundleSecretName: string): boolean {
  const ns = object.metadata.namespace;
  if (ns !== undefined && ns !== namespace) return false;
  if (object.kind === "ConfigMap" && object.apiVersion === "v1") return object.metadata.name === stateName;
  if (object.kind === "Secret" && object.apiVersion === "v1") return object.metadata.name === bundleSecretName;
  if (object.kind === "Lease" && object.apiVersion.startsWith("coordination.k8s.io/")) return object.metadata.name === lockName;
  return false;
}

function key(a: Accepted): { timestampMs: number; digest: string } {
  return { timestampMs: a.decoded.build.timestampMs, digest: a.decoded.digest };
}
