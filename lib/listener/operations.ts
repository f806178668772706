/**
 * The listener's operations around a deploy, wired from its configuration in one place so
 * listener.ts stays a short list of steps:
 *
 * - the after-apply step (health, prune, the bundle kept for drift correction);
 * - what every recorded outcome is told to: metrics, Kubernetes Events, the result queue.
 *
 * The listeners of an outcome run side by side, and none of them throws into the deployer: the
 * outcome is already recorded, so a failure here is logged and the deploy stands.
 */
import { createAfterApply, type AfterApplyResult, type AppliedBuild } from "./after-apply.ts";
import type { ReceivedMessage } from "../sqs/consumer.ts";
import { createBundleKeeper } from "./drift.ts";
import { createEventRecorder } from "../kube/events.ts";
import type { KubectlTarget } from "../kube/kubectl.ts";
import type { KubeApi } from "../kube/api.ts";
import type { ListenerConfig } from "./config.ts";
import type { Logger } from "../log.ts";
import { createListenerMetrics, MAX_APP_LABELS, observeOutcome, type ListenerMetrics } from "./metrics.ts";
import type { Outcome } from "../kube/record.ts";
import { appObjectName, DEFAULT_APP } from "./apps.ts";

/** Options of {@link createOperations}. */
export interface OperationsOptions {
  config: ListenerConfig;
  kubectl: KubectlTarget;
  /** The API client: health, prune, Events and the kept bundle's Secret. */
  api: KubeApi;
  logger: Logger;
  /** Aborted when the listener is asked to stop (SIGTERM): ends a health wait early. */
  stopping?: AbortSignal;
}

/** Told about an outcome once it is recorded; may be async, never throws into the deployer. */
export type OutcomeListener = (outcome: Outcome, message: ReceivedMessage | undefined) => void | Promise<void>;

/** What the listener hands to the deployer and the servers. */
export interface Operations {
  afterApply: (applied: AppliedBuild, signal: AbortSignal) => Promise<AfterApplyResult>;
  /** The deployer's `onOutcome`: tells every outcome listener. */
  onOutcome: (outcome: Outcome, message?: ReceivedMessage) => void;
  /** Adds a listener of outcomes (metrics, events, the result queue). */
  addOutcomeListener(listener: OutcomeListener): void;
  /** Resolves when every outcome listener started so far has finished (before exit). */
  settled(): Promise<void>;
  /** The listener's metrics, served on /metrics. */
  metrics: ListenerMetrics;
}

export function createOperations(options: OperationsOptions): Operations {
  const { config, kubectl, api, logger, stopping } = options;
  const afterApply = createAfterApply({
    api,
    fieldManager: config.fieldManager,
    prune: config.prune,
    pruneCrds: config.pruneCrds,
    waitHealth: config.waitHealth,
    healthTimeoutMs: config.healthTimeoutMs,
    ...(stopping ? { stopSignal: stopping } : {}),
    // Kept only for drift correction: with it off, no Secret is written.
    ...(config.driftIntervalMs === undefined
      ? {}
      : { keepBundle: createBundleKeeper({ api, namespace: config.namespace, fieldManager: config.fieldManager, limitBytes: config.bundleSecretMaxBytes }) }),
  });

  const listeners: OutcomeListener[] = [];
  const pending = new Set<Promise<void>>();
  const onOutcome = (outcome: Outcome, message?: ReceivedMessage): void => {
    for (const listener of listeners) {
      const run = (async () => {
        try {
          await listener(outcome, message);
        } catch (error) {
          logger.warn("a listener of deploy outcomes failed; the outcome stays recorded", { result: outcome.result, build: outcome.buildId ?? null, error: error as Error });
        }
      })();
      pending.add(run);
      void run.finally(() => pending.delete(run));
    }
  };

  const metrics = createListenerMetrics();
  listeners.push((outcome) => observeOutcome(metrics, outcome));
  if (config.events) {
    // Each app's Events are about its own record (lib/listener/apps.ts names it).
    const recorders = new Map<string, (outcome: Outcome) => Promise<void>>();
    listeners.push((outcome) => {
      const app = outcome.app ?? DEFAULT_APP;
      let recordEvent = recorders.get(app);
      if (recordEvent === undefined) {
        recordEvent = createEventRecorder({ api, namespace: config.namespace, name: appObjectName(config.stateConfigMap, app) });
        // Each caches its record's uid; any sender may name new apps, so the cache is bounded.
        if (recorders.size < MAX_APP_LABELS) recorders.set(app, recordEvent);
      }
      return recordEvent(outcome);
    });
  }

  return {
    afterApply,
    onOutcome,
    metrics,
    addOutcomeListener: (listener) => void listeners.push(listener),
    settled: async () => {
      while (pending.size > 0) await Promise.all([...pending]);
    },
  };
}
