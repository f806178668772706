/**
 * What the listener does with a batch of messages: the effects around the pure decision of
 * lib/listener/decide.ts.
 *
 * 1. Decode and admit every message, one at a time. One that can never succeed (not JSON,
 *    wrong schema, digest mismatch, another target, refused by trust or policy) is rejected.
 * 2. Read the version record and decide: duplicates and superseded builds are settled without
 *    the Lease (the record's in-flight intent makes that safe while another replica deploys).
 * 3. For the newest candidate, under the deploy Lease: write the intent (the build and the
 *    objects it may create) into the record, run `kubectl apply --server-side`, wait for
 *    health, prune, and commit the outcome, each write a compare-and-swap. A commit that finds
 *    the record moved on (another replica took over) changes nothing.
 * 4. If the newest fails by its own fault, its failure is recorded and it is retried later
 *    with a growing delay; the next newest that is still newer than the record is tried.
 * 5. Only once outcomes are recorded are messages deleted; older candidates of the batch are
 *    deleted only once a newer build is recorded as applied.
 *
 * Retries are spent only on a build's own faults. While the API server cannot be reached, the
 * record cannot be read or written, or another replica holds the Lease, the batch is held
 * (the consumer's heartbeat keeps it invisible) and tried again with backoff, so a good build
 * never reaches the dead-letter queue because of an outage, a Lease wait or a restart. A stop
 * request ends the waiting: unfinished messages go back to the queue at once.
 */
import type { AfterApplyResult, AppliedBuild } from "./after-apply.ts";
import { applyObjects, type ApplyResult } from "../kube/apply.ts";
import type { KubeApi } from "../kube/api.ts";
import { createBackoff, delay } from "../backoff.ts";
import { DEFAULT_BUNDLE_SECRET } from "./drift.ts";
import type { BatchHandler, Disposition, ReceivedMessage } from "../sqs/consumer.ts";
import { errorMessage, KubePicoCdError, LockLostError, MessageRejectedError, StateReadError, StateWriteError, StateConflictError } from "../errors.ts";
import type { KubectlTarget } from "../kube/kubectl.ts";
import type { KubeObject } from "../manifests/bundle.ts";
import { acquireLease, DEFAULT_LOCK_LEASE, type HeldLease } from "../kube/lease.ts";
import type { Logger } from "../log.ts";
import { compareBuilds, decodeMessage, DEFAULT_MAX_FUTURE_SKEW_MS, type DecodedMessage, type DecodeLimits, type MessageEnvelope } from "../wire/message.ts";
import { checkListObjects, everyObject, redactError, redactSecretValues } from "./policy.ts";
import { dryRunObjects } from "../kube/dry-run.ts";
import { describeObject, isSecret, maskSecretText } from "../wire/plan.ts";
import { rejectionDisposition } from "./rejections.ts";
import { decide, type Attempt, type BuildKey } from "./decide.ts";
import {
  DEFAULT_STATE_CONFIGMAP,
  isPermanentWriteFailure,
  readRecord,
  recordApplied,
  recordOutcome,
  updateRecord,
  type InFlightBuild,
  type Outcome,
  type RecordedObject,
  type StoredRecord,
  type VersionRecord,
} from "../kube/record.ts";
import { intendedInventory, mergeInventories } from "./intent.ts";
import { appOfObjectName, DEFAULT_APP } from "./apps.ts";
import { checkOwnership, describeOwner, inventoryFromMarks, markObjects, readLiveObjects, type Owner } from "./ownership.ts";
import type { Limiter } from "../limiter.ts";

export interface DeployerOptions {
  api: KubeApi;
  kubectl: KubectlTarget;
  /** The listener's namespace: the record and the Lease live there. */
  namespace: string;
  logger: Logger;
  /**
   * The app whose stream this deployer handles (lib/listener/apps.ts): its outcomes name it,
   * and every object it applies carries its ownership mark (lib/listener/ownership.ts).
   * `stateName`, `lockName` and `bundleSecret` are then that app's. Default the default app.
   */
  app?: string;
  /** The app named by the record's label: `app`, except for refused apps, whose rejections go to the default app's record. */
  recordApp?: string;
  /**
   * The base names of the listener's own objects (`--state-configmap`, `--lock-lease`,
   * `--bundle-secret`): a bundle may overwrite no app's record, Lease or kept bundle.
   * Default: `stateName`, `lockName`, `bundleSecret`.
   */
  protectedBases?: { state: string; lock: string; bundle: string };
  /**
   * The objects as they will be applied, before any check: the app's default namespace set on
   * namespaced objects that name none (lib/listener/scope.ts). Default: as they are.
   */
  place?: (objects: readonly KubeObject[]) => KubeObject[];
  /** Namespaces an inventory rebuilt from marks is searched in (the app's scope); default all. */
  markSearchNamespaces?: readonly string[] | undefined;
  /** Shared by the deployers of every app: kubectl applies that may run at once. Default: no limit. */
  applySlots?: Limiter;
  /** Only messages without a target, with this one, or whose `targets` include it are applied. */
  target?: string | undefined;
  /**
   * Refuse a bundle that names no target (reason `require-target`), so that a bundle signed
   * for no cluster in particular cannot be replayed here (docs/security.md). Needs `target`.
   * Default false.
   */
  requireTarget?: boolean;
  stateName?: string;
  lockName?: string;
  /** The Secret keeping the bundle for drift correction (lib/listener/drift.ts); a bundle may not overwrite it. Default "kube-pico-cd-bundle". */
  bundleSecret?: string;
  /** holderIdentity in the Lease and the intent. Default: the Lease module's (hostname and random digits). */
  identity?: string;
  leaseDurationSeconds?: number;
  historyLimit?: number;
  fieldManager?: string;
  forceConflicts?: boolean;
  applyTimeoutMs?: number;
  maxDecompressedBytes?: number;
  /** The other limits of decoding (lib/wire/message.ts `DecodeLimits`); each one left out is its default. */
  decodeLimits?: Partial<DecodeLimits>;
  /**
   * Called with every message's envelope before its manifests are inflated (the signature:
   * lib/listener/trust.ts `checkEnvelopeSignature`); throws a MessageRejectedError to refuse it.
   */
  checkEnvelope?: (envelope: MessageEnvelope) => void;
  /** A build stamped more than this after SQS sent it, or after `now()`, is rejected as future-build, in ms. Default 600,000 (10 minutes). */
  maxFutureSkewMs?: number;
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
  /** Backoff while the API server, the record or the Lease cannot be had, in ms. Defaults 500 and 15000. */
  holdBackoffBaseMs?: number;
  holdBackoffMaxMs?: number;
  /**
   * Told what a deploy is doing while it runs, for `publish --wait` (lib/wire/result.ts
   * progress): picked up, applied, waiting for health (with ready counts), pruning. Never
   * part of the deploy: it must not throw or wait.
   */
  onProgress?: (progress: DeployProgress, decoded: DecodedMessage, message: ReceivedMessage) => void;
  /** Told about every outcome once it is recorded (metrics, events, the result queue), with its message when known. */
  onOutcome?: (outcome: Outcome, message?: ReceivedMessage) => void;
  /**
   * Told about every outcome that could not be recorded because no retry can write it
   * (lib/kube/record.ts isPermanentWriteFailure): it is logged and dropped, and its message is
   * disposed as if it had been recorded (metrics count it).
   */
  onUnrecorded?: (outcome: Outcome, message?: ReceivedMessage) => void;
  /**
   * Runs after a successful apply, still under the Lease (lib/listener/after-apply.ts: health,
   * prune, the bundle kept for drift). Returns the inventory to record and fields of the outcome.
   */
  afterApply?: (applied: AppliedBuild, signal: AbortSignal) => Promise<AfterApplyResult>;
  /** Apply a bundle of zero objects (it prunes nothing). Default false: it is rejected as "empty-bundle". */
  allowEmptyBundle?: boolean;
  /** Told whether the Kubernetes API answered (for readiness). */
  onApiStatus?: (reachable: boolean) => void;
  /** Aborted when the listener is asked to stop: waiting for the API or the Lease ends, unfinished messages go back. */
  stopping?: AbortSignal;
  /**
   * Do not hold a batch that cannot be deployed now (`--once`: a single pass must end): its
   * messages go back to the queue after `holdRetrySeconds` instead. Default false.
   */
  noHold?: boolean;
  /** With `noHold`, the delay before such messages are visible again, in seconds. Default 10. */
  holdRetrySeconds?: number;
  now?: () => number;
}

/** One step of a deploy in progress. */
export interface DeployProgress {
  phase: "picked-up" | "applied" | "health" | "pruning";
  /** One line for people. */
  text: string;
  /** ms since the deploy started. */
  elapsedMs: number;
}

export interface Accepted {
  message: ReceivedMessage;
  decoded: DecodedMessage;
}

export interface Rejected {
  message: ReceivedMessage;
  reason: string;
  error: string;
  /** When it decoded before being refused: its outcome then names the build. */
  refused?: DecodedMessage | undefined;
}

/** The cluster, the record or the Lease could not be had: not the build's fault; hold and try again. */
class HoldError extends KubePicoCdError {
  override name = "HoldError";
}

/** Another replica moved the record on while this one worked: re-decide from a fresh read. */
class MovedOnError extends KubePicoCdError {
  override name = "MovedOnError";
}

/**
 * Decodes a received message and runs every check that needs no cluster: the signature
 * (`checkEnvelope`, before inflating), the clock, the policy and scope (`admit`), lists, the
 * target, an empty bundle, the listener's own objects. `expect`: the kind of request this
 * path handles (a plan request on the deploy path, or the reverse, is rejected).
 */
export function createMessageDecoder(options: DeployerOptions, expect: "deploy" | "plan" = "deploy"): (message: ReceivedMessage) => Accepted | Rejected {
  const {
    namespace,
    target,
    requireTarget = false,
    stateName = DEFAULT_STATE_CONFIGMAP,
    lockName = DEFAULT_LOCK_LEASE,
    bundleSecret = DEFAULT_BUNDLE_SECRET,
    maxDecompressedBytes,
    decodeLimits,
    checkEnvelope,
    maxFutureSkewMs = DEFAULT_MAX_FUTURE_SKEW_MS,
    now = Date.now,
    admit,
    allowEmptyBundle = false,
    protectedBases = { state: stateName, lock: lockName, bundle: bundleSecret },
    place = (objects) => [...objects],
  } = options;
  return (message: ReceivedMessage): Accepted | Rejected => {
    let decoded: DecodedMessage | undefined;
    try {
      decoded = decodeMessage(message.body, {
        ...(maxDecompressedBytes === undefined ? {} : { maxDecompressedBytes }),
        ...(decodeLimits === undefined ? {} : { limits: decodeLimits }),
        ...(checkEnvelope === undefined ? {} : { checkEnvelope }),
        time: { nowMs: now(), sentTimestampMs: message.sentTimestampMs, maxFutureSkewMs },
      });
      // Every check sees the objects as they will be applied, in the namespace they will land in.
      const placed = place(decoded.objects);
      // A plan request is never applied, and a deploy never planned only: each has its own path.
      if ((decoded.mode ?? "deploy") !== expect) {
        return { message, reason: "schema", error: `The message is a ${decoded.mode ?? "deploy"} request where a ${expect} request was expected`, refused: decoded };
      }
      admit?.({ ...decoded, objects: placed });
      // Whatever admit checks: kubectl would apply a list's items past every check below.
      checkListObjects(placed);
      if (decoded.target !== undefined && decoded.target !== target) {
        const mine = target === undefined ? "no target" : `target ${JSON.stringify(target)}`;
        return { message, reason: "target", error: `The message is for target ${JSON.stringify(decoded.target)} but this listener has ${mine}`, refused: decoded };
      }
      if (decoded.targets !== undefined && target === undefined) {
        return { message, reason: "target", error: `The message is for targets ${targetsText(decoded.targets)} but this listener has no target`, refused: decoded };
      }
      if (decoded.targets !== undefined && target !== undefined && !decoded.targets.includes(target)) {
        return { message, reason: "other-targets", error: `The message is for targets ${targetsText(decoded.targets)}, not for this listener's target ${JSON.stringify(target)}`, refused: decoded };
      }
      if (decoded.target === undefined && decoded.targets === undefined && requireTarget) {
        return {
          message,
          reason: "require-target",
          error: `The message names no target, and this listener (target ${JSON.stringify(target ?? "")}) applies only bundles made for it, so that a bundle signed for no cluster in particular cannot be replayed here (publish with --target ${target ?? "NAME"}, or start the listener with KUBE_PICO_CD_REQUIRE_TARGET=false)`,
          refused: decoded,
        };
      }
      if (decoded.objects.length === 0 && !allowEmptyBundle) {
        return { message, reason: "empty-bundle", error: "The bundle holds no objects; applying it would leave the cluster as it is and prune nothing, so it is refused (start the listener with --allow-empty-bundle to accept it)", refused: decoded };
      }
      const protectedObject = everyObject(placed).find((o) => isProtected(o, namespace, protectedBases));
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
}

/** Creates the batch handler the consumer calls. */
export function createDeployer(options: DeployerOptions): BatchHandler {
  const {
    api,
    kubectl,
    namespace,
    logger,
    stateName = DEFAULT_STATE_CONFIGMAP,
    lockName = DEFAULT_LOCK_LEASE,
    bundleSecret = DEFAULT_BUNDLE_SECRET,
    identity,
    leaseDurationSeconds = 15,
    historyLimit = 20,
    fieldManager = "kube-pico-cd",
    forceConflicts = true,
    applyTimeoutMs = 300_000,
    retryBaseSeconds = 30,
    retryMaxSeconds = 900,
    holdBackoffBaseMs = 500,
    holdBackoffMaxMs = 15_000,
    onOutcome,
    onUnrecorded,
    onApiStatus,
    stopping,
    noHold = false,
    holdRetrySeconds = 10,
    now = Date.now,
    afterApply,
    app = DEFAULT_APP,
    recordApp = app,
    place = (objects) => [...objects],
    markSearchNamespaces,
    applySlots,
    onProgress,
    protectedBases = { state: stateName, lock: lockName, bundle: bundleSecret },
  } = options;
  const iso = () => new Date(now()).toISOString();
  const owner: Owner = { app, instance: namespace };

  const decode = createMessageDecoder(options);

  const retryDelaySeconds = (message: ReceivedMessage) => Math.min(retryMaxSeconds, retryBaseSeconds * 2 ** Math.min(20, message.receiveCount - 1));
  const recordOptions = (signal: AbortSignal) => ({ api, namespace, name: stateName, app: recordApp, signal });
  const outcomeOf = (a: Accepted, result: Outcome["result"], extra: Partial<Outcome> = {}): Outcome => ({
    result,
    time: iso(),
    app,
    ...buildFields(a.decoded),
    messageId: a.message.messageId,
    ...extra,
  });

  /**
   * The objects of a failed apply that the API server refuses, with their source files and
   * field errors, one `;`-separated entry each ("" when the dry run finds none: the failure
   * was of another kind). Bounded: at most ten objects are named.
   */
  const invalidObjectsOf = async (objects: readonly KubeObject[], sources: readonly string[] | undefined, signal: AbortSignal): Promise<string> => {
    const results = await dryRunObjects(api, objects, { fieldManager, forceConflicts, defaultNamespace: api.namespace, signal, timeoutMs: 10_000 });
    const named = results.flatMap((result, i) => {
      if (result.state !== "invalid") return [];
      const o = objects[i]!;
      const where = sources?.[i] === undefined ? "" : ` (${sources[i]})`;
      const causes = (result.causes.length > 0 ? result.causes : [result.error]).join(", ");
      // A Secret's field errors may quote values the bundle-wide redaction does not know (shorter than 4 characters, say).
      return [`${describeObject(o)}${where}: ${isSecret(o) ? maskSecretText(causes) : causes}`];
    });
    if (named.length === 0) return "";
    return `${named.length} object${named.length === 1 ? "" : "s"} refused by the API server: ${named.slice(0, 10).join("; ")}${named.length > 10 ? `; and ${named.length - 10} more` : ""}`;
  };

  /** Logs and counts outcomes that no retry can record, so that they never hold a batch. */
  const dropUnrecordable = (outcomes: readonly { outcome: Outcome; message?: ReceivedMessage | undefined }[], error: unknown) => {
    logger.error("cannot record outcomes and no retry can; they are dropped and their messages disposed as if recorded", {
      error: error as Error,
      outcomes: outcomes.map((o) => ({ result: o.outcome.result, messageId: o.message?.messageId ?? null })),
    });
    for (const o of outcomes) onUnrecorded?.(o.outcome, o.message);
  };

  /**
   * Adds outcomes to the history (CAS), then tells the listeners of outcomes. A write that no
   * retry can cure drops them (logged, counted) instead of holding the batch.
   */
  const recordOutcomes = async (outcomes: readonly { outcome: Outcome; message?: ReceivedMessage | undefined }[], signal: AbortSignal, where = recordOptions(signal)) => {
    if (outcomes.length === 0) return;
    try {
      await updateRecord((record) => outcomes.reduce<VersionRecord>((r, o) => recordOutcome(r, o.outcome, historyLimit), record), where);
    } catch (error) {
      if (!isPermanentWriteFailure(error)) throw error;
      dropUnrecordable(outcomes, error);
      return;
    }
    for (const o of outcomes) onOutcome?.(o.outcome, o.message);
  };

  /**
   * Applies one candidate under the Lease: intent, apply, health and prune, commit.
   * Resolves "applied" or "failed" (the build's own fault, recorded, and told to `onOutcome`
   * once: only after the write, never for an outcome that could not be written); throws HoldError or
   * MovedOnError when it was not the build's fault.
   */
  const tryAttempt = async (held: Accepted, attempt: Attempt, lease: HeldLease, signal: AbortSignal, seen?: StoredRecord): Promise<{ result: "applied" | "failed" | "rejected"; outcome: Outcome; reason?: string }> => {
    // The batch keeps only what orders builds; the one being applied is decoded again here, so
    // ten large bundles in one receive never sit in memory at once.
    const again = decode(held.message);
    if (!("decoded" in again)) throw new Error(`Build ${held.decoded.build.id} decoded once but not twice: ${again.reason}: ${again.error}`);
    const a: Accepted = again;
    const { decoded, message } = a;
    const log = logger.child({ build: decoded.build.id, buildTimestampMs: decoded.build.timestampMs, digest: decoded.digest, messageId: message.messageId });
    const leaseSignal = AbortSignal.any([signal, lease.lost]);
    // What kubectl gets: in the app's default namespace, each object with the app's mark.
    const objects = markObjects(place(decoded.objects), owner);

    // 0. Nothing of another app's may be taken (lib/listener/ownership.ts), before any write.
    try {
      checkOwnership(objects, await readLiveObjects(api, objects, { defaultNamespace: api.namespace, signal: leaseSignal }), owner);
    } catch (error) {
      if (!(error instanceof MessageRejectedError)) {
        if (leaseSignal.aborted) throw new HoldError(`Reading the owners of build ${decoded.build.id}'s objects was interrupted: ${errorMessage(leaseSignal.reason)}`, { cause: error });
        throw new HoldError(`Cannot read the owners of build ${decoded.build.id}'s objects: ${errorMessage(error)}`, { cause: error });
      }
      const keep = rejectionDisposition(error.reason) === "dead-letter";
      log.warn("message rejected", { reason: error.reason, disposition: keep ? "dead-letter" : "delete", error: error.message });
      const fate = keep ? "the message goes to the dead-letter queue for redrive" : "the message is deleted";
      const outcome = outcomeOf(a, "rejected", { error: `${error.reason}: ${cut(error.message, 1_800)} (${fate})` });
      await recordOutcomes([{ outcome, message }], signal).catch(asHold("record the rejection"));
      return { result: "rejected", outcome, reason: error.reason };
    }

    // A record that knows of no live object (never written, or deleted by hand and written
    // again by a rejection since): what the app owns is found by its marks, so that this build
    // still prunes it.
    const stored = seen ?? (await readRecord(recordOptions(leaseSignal)).catch(asHold("read the version record")));
    let rebuilt: RecordedObject[] = [];
    if (knowsNothingLive(stored)) {
      const found = await inventoryFromMarks(api, owner, { namespaces: markSearchNamespaces, signal: leaseSignal }).catch(asHold("search the objects that carry the app's mark"));
      rebuilt = found.inventory;
      if (rebuilt.length > 0) log.warn("the app has no version record; its inventory was rebuilt from the objects that carry its mark", { app, objects: rebuilt.length, owner: describeOwner(owner) });
      if (found.unsearched.length > 0) log.warn("some kinds could not be searched for the app's mark; their objects are not pruned by this build", { app, unsearched: found.unsearched.slice(0, 20) });
    }
    const intent: InFlightBuild = {
      build: decoded.build,
      digest: decoded.digest,
      messageId: message.messageId,
      objectCount: objects.length,
      startedAt: iso(),
      holder: lease.identity,
      inventory: intendedInventory(objects, api.namespace),
    };
    // 1. The intent, before kubectl starts: from here on the record says this build may be live.
    let previousInventory: RecordedObject[] = [];
    let recordedBuild: string | undefined;
    let unmarkedInventory = false;
    const intentWritten = await updateRecord((record) => {
      const again = decide([{ messageId: message.messageId, build: keyOf(decoded) }], keysOf(record));
      if (again.attempts.length === 0) throw new MovedOnError(`The record moved past build ${decoded.build.id} before its apply started`);
      // Objects of an interrupted build (ours resumed, or one that this build overtakes) may be live: prune sees them.
      previousInventory = mergeInventories(mergeInventories(record.inventory, record.inflight?.inventory ?? []), knowsNothingLive(record) ? rebuilt : []);
      recordedBuild = record.current?.build.id;
      unmarkedInventory = record.unmarkedInventory === true;
      return { ...record, inflight: intent, inventory: previousInventory };
    }, { ...recordOptions(leaseSignal), initial: stored }).catch((error: unknown) => {
      // The intent does not fit the record (an inventory too large for it): the build's own
      // fault, and nothing was applied. It fails like a bad apply and ends in the dead-letter queue.
      if (isPermanentWriteFailure(error)) return error as Error;
      return asHold("write the deploy intent")(error);
    });
    if (intentWritten instanceof Error) {
      const delaySeconds = retryDelaySeconds(message);
      log.error("the deploy intent cannot be recorded; nothing applied, the message stays for a retry", { error: intentWritten, retryInSeconds: delaySeconds, receiveCount: message.receiveCount });
      const outcome = outcomeOf(a, "failed", { error: `record: ${intentWritten.message}` });
      await recordOutcomes([{ outcome }], signal).catch(asHold("record the failed apply"));
      return { result: "failed", outcome };
    }

    // 2. Apply.
    const pickupMs = message.sentTimestampMs === undefined ? undefined : Math.max(0, now() - message.sentTimestampMs);
    const pickup = pickupMs === undefined ? {} : { pickupMs };
    log.info("applying build", { objects: decoded.objects.length, recordedBuild: recordedBuild ?? null, resumes: attempt.resumes, pickupMs, receiveCount: message.receiveCount });
    const started = now();
    const progress = (phase: DeployProgress["phase"], text: string) => {
      try {
        onProgress?.({ phase, text, elapsedMs: now() - started }, decoded, message);
      } catch (error) {
        log.warn("a listener of deploy progress failed", { error: error as Error });
      }
    };
    progress("picked-up", `applying ${objects.length} object${objects.length === 1 ? "" : "s"}${recordedBuild === undefined ? "" : ` over build ${recordedBuild}`}`);
    // A process paused past its renew deadline (SIGSTOP, a long GC, a frozen node) may resume
    // here before the Lease's timer has run: ask the clock, not the timer, before kubectl starts.
    if (!lease.isHeld()) throw new HoldError(`Lost the deploy Lease before build ${decoded.build.id} was applied: ${errorMessage(lease.lost.reason)}`);
    let applied: ApplyResult;
    try {
      const apply = () => applyObjects(objects, { api, kubectl, fieldManager, forceConflicts, timeoutMs: applyTimeoutMs, signal: leaseSignal });
      applied = await (applySlots === undefined ? apply() : applySlots.run(apply, leaseSignal));
    } catch (error) {
      if (leaseSignal.aborted) throw new HoldError(`The apply of build ${decoded.build.id} was interrupted: ${errorMessage(leaseSignal.reason)}`, { cause: error });
      // kubectl failed: whose fault? If the API server does not answer now, not the build's.
      const reachable = await api.ready({ signal: leaseSignal, timeoutMs: 3_000 }).then(
        () => true,
        () => false,
      );
      if (!reachable) throw new HoldError(`The apply of build ${decoded.build.id} failed while the API server was unreachable: ${errorMessage(error)}`, { cause: error });
      // kubectl's errors may echo Secret values of the bundle: never into logs or the record.
      const redacted = redactError(error, decoded.objects);
      // kubectl's text names neither the file nor always the object: a dry run of each says which.
      const invalid = await invalidObjectsOf(objects, decoded.sources?.list, leaseSignal).catch(() => "");
      const because = invalid === "" ? redacted.message : `${redactSecretValues(invalid, decoded.objects)}; kubectl: ${redacted.message}`;
      const delaySeconds = retryDelaySeconds(message);
      log.error("applying build failed; the message stays for a retry", { error: redacted, invalidObjects: invalid === "" ? null : redactSecretValues(invalid, decoded.objects), retryInSeconds: delaySeconds, receiveCount: message.receiveCount });
      const outcome = outcomeOf(a, "failed", { durationMs: now() - started, error: because, ...pickup });
      // The intent is cleared (the next older candidate may be tried), and what it may have
      // created stays in the inventory for the next prune.
      await updateRecord((record) => {
        if (!isOurs(record.inflight, intent)) return recordOutcome(record, outcome, historyLimit);
        return recordOutcome({ ...record, inflight: null, inventory: mergeInventories(record.inventory, intent.inventory) }, outcome, historyLimit);
      }, recordOptions(signal)).then(
        () => onOutcome?.(outcome, message),
        (error: unknown) => {
          if (!isPermanentWriteFailure(error)) return asHold("record the failed apply")(error);
          dropUnrecordable([{ outcome, message }], error);
        },
      );
      return { result: "failed", outcome };
    }
    log.info("build applied", { objects: applied.inventory.length, durationMs: applied.durationMs, phases: applied.phases.map((p) => `${p.phase}:${p.durationMs}`) });
    progress("applied", `applied ${applied.inventory.length} object${applied.inventory.length === 1 ? "" : "s"} in ${applied.durationMs} ms`);

    // 3. Health, prune, the kept bundle.
    let after: AfterApplyResult | undefined;
    try {
      after = await afterApply?.({ decoded, inventory: applied.inventory, previousInventory, owner, unmarkedInventory, bundleSecret, onProgress: progress, log }, leaseSignal);
    } catch (error) {
      // Health and prune never fail a deploy; they throw only when the Lease was lost or the listener aborted.
      if (leaseSignal.aborted) throw new HoldError(`The health wait or prune of build ${decoded.build.id} was interrupted: ${errorMessage(leaseSignal.reason)}`, { cause: error });
      throw error;
    }
    if (!lease.isHeld()) throw new HoldError(`Lost the deploy Lease before build ${decoded.build.id} was recorded: ${errorMessage(lease.lost.reason)}`);

    // 4. Commit, only over our own intent.
    const outcome = outcomeOf(a, "applied", { durationMs: applied.durationMs, objects: applied.inventory.length, ...pickup, ...after?.outcome });
    let moved = false;
    await updateRecord((record) => {
      if (!isOurs(record.inflight, intent)) {
        moved = true;
        return null;
      }
      return recordApplied(
        record,
        {
          current: { build: decoded.build, digest: decoded.digest, appliedAt: iso(), messageId: message.messageId, objectCount: decoded.objects.length },
          inventory: after?.inventory ?? applied.inventory,
          outcome,
        },
        historyLimit,
      );
    }, recordOptions(leaseSignal)).then(
      () => {
        if (!moved) onOutcome?.(outcome, message);
      },
      (error: unknown) => {
        // The intent, written before kubectl started, stays in the record and names this build
        // and its objects: newest-wins and the next prune still see it.
        if (!isPermanentWriteFailure(error)) return asHold("record the applied build")(error);
        dropUnrecordable([{ outcome, message }], error);
      },
    );
    if (moved) throw new MovedOnError(`The record moved on while build ${decoded.build.id} was applied (another replica took over); nothing recorded`);
    return { result: "applied", outcome };
  };

  return async (batch, signal) => {
    const dispositions = new Map<string, Disposition>();
    const accepted = new Map<string, Accepted>();
    const pendingRejections: { outcome: Outcome; message: ReceivedMessage; disposition: Disposition }[] = [];
    // One message at a time: a hostile body cannot multiply its inflated size by ten.
    for (const message of batch) {
      const result = decode(message);
      if ("decoded" in result) {
        accepted.set(message.messageId, { message, decoded: { ...result.decoded, objects: [] } });
        continue;
      }
      if (result.reason === "other-targets") {
        // A topic delivers a message for some clusters of a fleet to every cluster's queue: for
        // the others it is no deploy of theirs (as if a subscription filter had held it back), so
        // it goes without a record entry or a result, which would crowd out the app's own history
        // and warn every publish --wait.
        logger.info("message for other targets; deleted", { messageId: message.messageId, build: result.refused?.build.id ?? null, error: result.error });
        dispositions.set(message.messageId, { action: "delete" });
        continue;
      }
      // Curable rejections are kept for redrive, the rest deleted (lib/listener/rejections.ts); the record says which.
      const keep = rejectionDisposition(result.reason) === "dead-letter";
      const disposition: Disposition = keep ? { action: "dead-letter", reason: result.reason } : { action: "delete" };
      const fate = keep ? "the message goes to the dead-letter queue for redrive" : "the message is deleted";
      logger.warn("message rejected", { messageId: message.messageId, reason: result.reason, disposition: keep ? "dead-letter" : "delete", error: result.error });
      pendingRejections.push({
        message,
        disposition,
        outcome: { result: "rejected", time: iso(), app, ...(result.refused ? buildFields(result.refused) : {}), messageId: message.messageId, error: `${result.reason}: ${cut(result.error, 1_800)} (${fate})` },
      });
    }
    const waiting = stopping ? AbortSignal.any([signal, stopping]) : signal;
    const backoff = createBackoff({ baseMs: holdBackoffBaseMs, maxMs: holdBackoffMaxMs });
    let held = false;

    while (!waiting.aborted) {
      let lease: HeldLease | undefined;
      try {
        if (pendingRejections.length > 0) {
          // A rejected body's app is not proven (it may be unsigned or forged): rejections create
          // no record, so a sender cannot fill the namespace with names. Into the app's record
          // once it exists (made by a deploy that passed the checks), else into the default app's.
          const own = stateName === protectedBases.state ? undefined : await readRecord(recordOptions(signal)).catch(asHold("read the version record"));
          const where = own !== undefined && own.resourceVersion === null ? { api, namespace, name: protectedBases.state, app: DEFAULT_APP, signal } : recordOptions(signal);
          await recordOutcomes(pendingRejections, signal, where).catch(asHold("record the rejections"));
          for (const r of pendingRejections.splice(0)) dispositions.set(r.message.messageId, r.disposition);
        }
        if (accepted.size === 0) break;
        const stored = await readRecord(recordOptions(waiting)).catch(asHold("read the version record"));
        onApiStatus?.(true);
        const settle = async (record: StoredRecord) => {
          const { settled, attempts } = decide([...accepted.values()].map(toDecideMessage), keysOf(record));
          const outcomes = [...settled].map(([id, result]) => ({ outcome: outcomeOf(accepted.get(id)!, result), message: accepted.get(id)!.message }));
          for (const o of outcomes) logger.info(o.outcome.result === "duplicate" ? "build already applied; duplicate delivery" : "build older than the recorded one; superseded", { build: o.outcome.buildId, messageId: o.message.messageId, recordedBuild: record.current?.build.id ?? null, inflightBuild: record.inflight?.build.id ?? null });
          await recordOutcomes(outcomes, signal).catch(asHold("record the settled outcomes"));
          for (const o of outcomes) {
            dispositions.set(o.message.messageId, { action: "delete" });
            accepted.delete(o.message.messageId);
          }
          return attempts;
        };
        const attempts = await settle(stored);
        if (attempts.length === 0) break;

        lease = await acquireLease({
          api,
          namespace,
          name: lockName,
          leaseDurationSeconds,
          ...(identity === undefined ? {} : { identity }),
          signal: waiting,
          onWait: (why) => {
            if (!held) logger.info("waiting for the deploy Lease; the batch is held", { holder: why.holder ?? null, error: why.error === undefined ? null : errorMessage(why.error) });
            held = true;
          },
        });
        // Under the Lease the intent's compare-and-swap write decides again: it starts from the
        // record read above, and a record that changed meanwhile costs a conflict and a re-read
        // (MovedOnError when another replica moved past the build), not an extra read per deploy.
        let seen: StoredRecord | undefined = stored;
        for (const attempt of attempts) {
          const primary = accepted.get(attempt.messageIds[0]!)!;
          // tryAttempt has told the outcome's listeners once it was recorded.
          const { result, reason } = await tryAttempt(primary, attempt, lease, signal, seen);
          seen = undefined;
          if (result === "rejected") {
            // Refused whole before anything was written (another app's object): as a rejection at decoding.
            const disposition: Disposition = rejectionDisposition(reason ?? "") === "dead-letter" ? { action: "dead-letter", reason: reason ?? "rejected" } : { action: "delete" };
            for (const id of attempt.messageIds) {
              dispositions.set(id, disposition);
              accepted.delete(id);
            }
            continue;
          }
          if (result === "failed") {
            for (const id of attempt.messageIds) {
              dispositions.set(id, { action: "retry", delaySeconds: retryDelaySeconds(accepted.get(id)!.message) });
              accepted.delete(id);
            }
            continue;
          }
          for (const id of attempt.messageIds) {
            dispositions.set(id, { action: "delete" });
            accepted.delete(id);
          }
          // Everything older in the batch is now superseded: one more read only when something is left.
          if (accepted.size > 0) await settle(await readRecord(recordOptions(signal)).catch(asHold("read the version record")));
          break;
        }
        // Every candidate was either applied, superseded by it, or failed on its own.
        break;
      } catch (error) {
        if (!(error instanceof HoldError || error instanceof MovedOnError) || signal.aborted) {
          if (waiting.aborted) break;
          throw error;
        }
        if (error instanceof HoldError) onApiStatus?.(false);
        if (noHold && error instanceof HoldError) {
          logger.warn("cannot deploy now; the batch goes back to the queue", { error: error as Error, retryInSeconds: holdRetrySeconds, messageIds: [...accepted.keys(), ...pendingRejections.map((r) => r.message.messageId)] });
          for (const m of batch) if (!dispositions.has(m.messageId)) dispositions.set(m.messageId, { action: "retry", delaySeconds: holdRetrySeconds });
          return dispositions;
        }
        const waitMs = error instanceof MovedOnError ? 0 : backoff.next();
        logger.warn(error instanceof MovedOnError ? "the record moved on; deciding again" : "cannot deploy now; the batch is held and tried again", {
          error: error as Error,
          retryInMs: waitMs,
          messageIds: [...accepted.keys(), ...pendingRejections.map((r) => r.message.messageId)],
        });
        await delay(waitMs, { signal: waiting }).catch(() => {});
      } finally {
        await lease?.release().catch((error: unknown) => logger.warn("releasing the deploy Lease failed; it expires by itself", { error: error as Error }));
      }
    }
    // Stopping (or aborted) with messages in hand: they go back to the queue for the next listener.
    for (const m of batch) if (!dispositions.has(m.messageId)) dispositions.set(m.messageId, { action: "retry", delaySeconds: 0 });
    if (waiting.aborted && accepted.size + pendingRejections.length > 0) {
      logger.warn("stopping; messages in hand go back to the queue", { messageIds: [...accepted.keys(), ...pendingRejections.map((r) => r.message.messageId)] });
    }
    return dispositions;
  };
}

/** `text` cut to `length` characters, so that what follows it survives the record's cut of error texts. */
function cut(text: string, length: number): string {
  return text.length > length ? `${text.slice(0, length)}…` : text;
}

/** Turns a failure of the record or the API into a HoldError (not the build's fault), keeping other errors. */
function asHold(what: string): (error: unknown) => never {
  return (error: unknown) => {
    if (error instanceof MovedOnError || error instanceof HoldError) throw error;
    if (error instanceof StateReadError || error instanceof StateWriteError || error instanceof StateConflictError || error instanceof LockLostError) {
      throw new HoldError(`Cannot ${what}: ${errorMessage(error)}`, { cause: error });
    }
    throw error;
  };
}

function keyOf(decoded: DecodedMessage): BuildKey {
  return { timestampMs: decoded.build.timestampMs, digest: decoded.digest };
}

function toDecideMessage(a: Accepted) {
  return { messageId: a.message.messageId, build: keyOf(a.decoded) };
}

function keysOf(record: VersionRecord): { current: BuildKey | null; inflight: BuildKey | null } {
  return {
    current: record.current === null ? null : { timestampMs: record.current.build.timestampMs, digest: record.current.digest },
    inflight: record.inflight === null ? null : { timestampMs: record.inflight.build.timestampMs, digest: record.inflight.digest },
  };
}

/** True when the record names no object that may be live: no build applied or in flight, an empty inventory. */
function knowsNothingLive(record: VersionRecord): boolean {
  return record.current === null && record.inflight === null && record.inventory.length === 0;
}

/** True when the record's intent is the one this attempt wrote (same build, same holder, same start). */
function isOurs(inflight: InFlightBuild | null, intent: InFlightBuild): boolean {
  return (
    inflight !== null &&
    inflight.holder === intent.holder &&
    inflight.startedAt === intent.startedAt &&
    compareBuilds({ timestampMs: inflight.build.timestampMs, digest: inflight.digest }, { timestampMs: intent.build.timestampMs, digest: intent.digest }) === 0
  );
}

/** A `targets` list for an error: the first 10 names, and how many more. */
function targetsText(targets: readonly string[]): string {
  const shown = targets.slice(0, 10).map((name) => JSON.stringify(name)).join(", ");
  return targets.length > 10 ? `${shown} and ${targets.length - 10} more` : shown;
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
 * True for the listener's own records, Leases and kept bundles, of any app: a bundle that
 * overwrote them could fake a recorded version (the original's defect 6), or plant what drift
 * correction re-applies. An object without a namespace counts, since in the listener's pod
 * kubectl puts it into the listener's namespace.
 */
function isProtected(object: KubeObject, namespace: string, bases: { state: string; lock: string; bundle: string }): boolean {
  const ns = object.metadata.namespace;
  if (ns !== undefined && ns !== namespace) return false;
  const name = object.metadata.name;
  if (object.kind === "ConfigMap" && object.apiVersion === "v1") return appOfObjectName(bases.state, name) !== undefined;
  if (object.kind === "Secret" && object.apiVersion === "v1") return appOfObjectName(bases.bundle, name) !== undefined;
  if (object.kind === "Lease" && object.apiVersion.startsWith("coordination.k8s.io/")) return appOfObjectName(bases.lock, name) !== undefined;
  return false;
}
