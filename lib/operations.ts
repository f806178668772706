/**
 * The listener's operations around a deploy, wired from its configuration in one place so
 * listener.ts stays a short list of steps: the after-apply step (health, prune, the bundle
 * kept for drift correction).
 */
import { createAfterApply, type AfterApplyResult, type AppliedBuild } from "./after-apply.ts";
import type { KubectlTarget } from "./kubectl.ts";
import type { ListenerConfig } from "./listener-config.ts";
import type { Logger } from "./log.ts";

/** Options of {@link createOperations}. */
export interface OperationsOptions {
  config: ListenerConfig;
  kubectl: KubectlTarget;
  logger: Logger;
}

/** What the listener hands to the deployer and the servers. */
export interface Operations {
  afterApply: (applied: AppliedBuild, signal: AbortSignal) => Promise<AfterApplyResult>;
}

export function createOperations(options: OperationsOptions): Operations {
  const { config, kubectl } = options;
  const afterApply = createAfterApply({
    kubectl,
    fieldManager: config.fieldManager,
    prune: config.prune,
    pruneCrds: config.pruneCrds,
    waitHealth: config.waitHealth,
    healthTimeoutMs: config.healthTimeoutMs,
  });
  return { afterApply };
}
