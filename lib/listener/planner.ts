/**
 * Plan requests (`mode: "plan"`, docs/protocol.md "Plans"): CI asks what a build would do,
 * and the listener answers on the result queue with a plan (lib/wire/plan.ts) from
 * server-side dry runs, without cluster credentials in CI.
 *
 * A plan request passes the same checks as a deploy of its app (signature, clock, policy,
 * scope, target, the listener's own objects: lib/listener/deployer.ts createMessageDecoder),
 * then every object is dry-run as it would be applied (in the app's default namespace, with
 * its mark), compared with the live object, checked for another app's mark, and the app's
 * record tells what prune would delete. It applies nothing, writes no record, takes no Lease
 * and runs in a lane of its own, so it never waits for or delays the app's deploys.
 *
 * Its message is deleted once the plan (or the rejection) is on the result queue; when that
 * cannot be sent, it stays for a retry. Without a result queue there is no one to answer:
 * the plan is logged and the message deleted.
 */
import type { BatchHandler, Disposition, ReceivedMessage } from "../sqs/consumer.ts";
import { createMessageDecoder, type DeployerOptions } from "./deployer.ts";
import { dryRunObjects } from "../kube/dry-run.ts";
import { buildPlan, renderPlan, type Plan } from "../wire/plan.ts";
import { conflictOf, markObjects, pruneKeepReason, readLiveObjects, type Owner } from "./ownership.ts";
import { readRecord } from "../kube/record.ts";
import { intendedInventory, mergeInventories } from "./intent.ts";
import { pruneCandidates, keepReason } from "../kube/prune.ts";
import { readObject } from "../kube/discovery.ts";
import { DEFAULT_APP } from "./apps.ts";
import { groupOf } from "../manifests/object-ref.ts";
import type { KubeObject } from "../manifests/bundle.ts";
import { RESULT_KIND, RESULT_VERSION, type ResultMessage } from "../wire/result.ts";
import { errorMessage } from "../errors.ts";
import { oneLine } from "../text.ts";

/** Options of {@link createPlanner}. */
export interface PlannerOptions {
  /** The app's deployer options: the same checks, names and placement as its deploys. */
  deployer: DeployerOptions;
  /** Name of the deploy queue and the listener's namespace, for the result. */
  queue: string;
  /** Sends a result; resolves false when it could not. Undefined: no result queue. */
  send: ((result: ResultMessage, message: ReceivedMessage) => Promise<boolean>) | undefined;
  /** The deploy's kubectl applies may take this long; a plan's requests are bounded by the same. Default 300000. */
  timeoutMs?: number;
}

/** The `group/Kind` of each CustomResourceDefinition's kind in `objects`. */
function crdKinds(objects: readonly KubeObject[]): Set<string> {
  const kinds = new Set<string>();
  for (const o of objects) {
    if (o.kind !== "CustomResourceDefinition" || groupOf(o.apiVersion) !== "apiextensions.k8s.io") continue;
    const spec = (o as { spec?: { group?: unknown; names?: { kind?: unknown } } }).spec;
    if (typeof spec?.group === "string" && typeof spec.names?.kind === "string") kinds.add(`${spec.group}/${spec.names.kind}`);
  }
  return kinds;
}

/** The batch handler of an app's plan lane. */
export function createPlanner(options: PlannerOptions): BatchHandler {
  const { deployer, queue, send } = options;
  const { api, namespace, logger, fieldManager = "kube-pico-cd", forceConflicts = true, stateName, app = DEFAULT_APP, place = (objects) => [...objects], now = Date.now } = deployer;
  const decode = createMessageDecoder(deployer, "plan");
  const owner: Owner = { app, instance: namespace };

  const planOf = async (objects: KubeObject[], sources: readonly string[] | undefined, signal: AbortSignal): Promise<Plan> => {
    const [results, owners, record] = await Promise.all([
      dryRunObjects(api, objects, { fieldManager, forceConflicts, defaultNamespace: api.namespace, readLive: true, signal }),
      readLiveObjects(api, objects, { defaultNamespace: api.namespace, signal }),
      readRecord({ api, namespace, ...(stateName === undefined ? {} : { name: stateName }), signal }),
    ]);
    // Another app's object refuses the whole build, as the deploy would.
    owners.forEach((live, i) => {
      const why = conflictOf(live, owner);
      if (why !== undefined) results[i] = { state: "invalid", error: `ownership-conflict: ${why}`, causes: [`ownership-conflict: it is ${why}`] };
    });
    // What prune would delete: the app's inventory (and an interrupted build's) that leaves, and carries its mark.
    const previous = mergeInventories(record.inventory, record.inflight?.inventory ?? []);
    const candidates = pruneCandidates(previous, intendedInventory(objects, api.namespace));
    const prune: string[] = [];
    await Promise.all(
      candidates.map(async (ref) => {
        const live = await readObject(api, ref, { signal }).catch(() => undefined);
        if (live === null || live === undefined) return;
        if (keepReason(live, fieldManager) !== undefined || pruneKeepReason(live, owner, record.unmarkedInventory === true) !== undefined) return;
        prune.push(`${ref.group === "" ? "" : `${ref.group}/`}${ref.kind} ${ref.namespace === undefined ? "" : `${ref.namespace}/`}${ref.name}`);
      }),
    );
    prune.sort();
    return buildPlan({ objects, results, sources, prune, crdKindsInBundle: crdKinds(objects) });
  };

  return async (batch, signal) => {
    const dispositions = new Map<string, Disposition>();
    for (const message of batch) {
      const checked = decode(message);
      const base = {
        kind: RESULT_KIND,
        version: RESULT_VERSION,
        messageId: message.messageId,
        ...(app === DEFAULT_APP ? {} : { app }),
        queue,
        namespace,
        durations: {},
      } as const;
      let result: ResultMessage | undefined;
      if (!("decoded" in checked) && checked.reason === "other-targets") {
        // For other clusters of a fleet (see the deployer): theirs to answer, not this one's.
        logger.info("plan request for other targets; deleted", { messageId: message.messageId, error: checked.error });
      } else if (!("decoded" in checked)) {
        logger.warn("plan request rejected", { messageId: message.messageId, reason: checked.reason, error: checked.error });
        const refused = checked.refused;
        if (refused !== undefined) {
          result = {
            ...base,
            build: { id: refused.build.id, timestampMs: refused.build.timestampMs, ...(refused.build.commit ? { commit: refused.build.commit } : {}) },
            digest: refused.digest,
            result: "rejected",
            message: oneLine(`${checked.reason}: ${checked.error}`, 1_000),
            time: new Date(now()).toISOString(),
          };
        }
      } else {
        const { decoded } = checked;
        const started = now();
        try {
          const objects = markObjects(place(decoded.objects), owner);
          const plan = await planOf(objects, decoded.sources?.list, signal);
          const text = renderPlan(plan);
          logger.info("plan made", { app, build: decoded.build.id, messageId: message.messageId, ok: plan.ok, counts: plan.counts, durationMs: now() - started });
          result = {
            ...base,
            build: { id: decoded.build.id, timestampMs: decoded.build.timestampMs, ...(decoded.build.commit ? { commit: decoded.build.commit } : {}) },
            digest: decoded.digest,
            ...(decoded.target === undefined ? {} : { target: decoded.target }),
            result: "planned",
            message: oneLine(text[0] ?? "plan", 1_000),
            plan,
            durations: { applyMs: Math.round(now() - started) },
            time: new Date(now()).toISOString(),
          };
        } catch (error) {
          if (signal.aborted) break;
          // The cluster could not be read: not the build's fault; asked again later.
          logger.warn("cannot make the plan now; the request stays for a retry", { app, build: decoded.build.id, error: errorMessage(error) });
          dispositions.set(message.messageId, { action: "retry", delaySeconds: 10 });
          continue;
        }
      }
      if (result === undefined || send === undefined) {
        if (send === undefined) logger.warn("a plan request arrived, but the listener has no result queue to answer on (KUBE_PICO_CD_RESULT_QUEUE); it is deleted", { messageId: message.messageId });
        dispositions.set(message.messageId, { action: "delete" });
        continue;
      }
      const sent = await send(result, message);
      dispositions.set(message.messageId, sent ? { action: "delete" } : { action: "retry", delaySeconds: 10 });
    }
    return dispositions;
  };
}

