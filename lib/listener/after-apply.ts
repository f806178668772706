/**
 * What the deployer does after a successful apply, still under the deploy lock:
 *
 * 1. wait for the applied workloads to become healthy (lib/kube/health.ts), unless disabled;
 * 2. prune the objects that left the bundle (lib/kube/prune.ts), unless disabled; never for an
 *    empty bundle;
 * 3. keep the bundle in the cluster for drift correction (lib/listener/drift.ts), when enabled.
 *
 * None of these fails the deploy: the objects are applied, so the record's current build
 * moves. A Degraded or Timeout health, a prune that failed, a bundle too large to keep: each
 * is recorded in the "applied" outcome (`health`, `warnings`), and pruning still happens
 * after a Degraded health, since the new inventory replaces the old one either way.
 */
import type { KubeApi } from "../kube/api.ts";
import type { Logger } from "../log.ts";
import type { DecodedMessage } from "../wire/message.ts";
import { formatRef } from "../manifests/object-ref.ts";
import { pruneCandidates, pruneObjects } from "../kube/prune.ts";
import { waitForHealth } from "../kube/health.ts";
import { pruneKeepReason, type Owner } from "./ownership.ts";
import type { Outcome, RecordedObject } from "../kube/record.ts";

/** What the deployer hands over after an apply. */
export interface AppliedBuild {
  decoded: DecodedMessage;
  /** What the apply reported, names only. */
  inventory: readonly RecordedObject[];
  /** The recorded inventory before this build. */
  previousInventory: readonly RecordedObject[];
  /** Whose objects these are: prune deletes only objects that carry this mark. */
  owner: Owner;
  /** The previous inventory predates marks: its unmarked objects may be pruned too. */
  unmarkedInventory: boolean;
  /** Where the build's kept bundle goes (drift correction): the app's Secret. */
  bundleSecret: string;
  /** Told what the step is doing, for `publish --wait` (lib/wire/result.ts progress). */
  onProgress?: ((phase: "health" | "pruning", text: string) => void) | undefined;
  log: Logger;
}

/** What goes into the record. */
export interface AfterApplyResult {
  /** The inventory to record. */
  inventory: RecordedObject[];
  /** Fields added to the "applied" outcome. */
  outcome: Partial<Outcome>;
}

/** Options of {@link createAfterApply}. */
export interface AfterApplyOptions {
  /** The cluster's API: health reads and prune's reads and deletes go through it. */
  api: KubeApi;
  fieldManager: string;
  /** Delete objects that left the bundle. Default true. */
  prune?: boolean;
  /** Also prune CustomResourceDefinitions. Default false. */
  pruneCrds?: boolean;
  /** Wait for workloads to become healthy. Default true. */
  waitHealth?: boolean;
  /** Health budget, in ms. Default 300000. */
  healthTimeoutMs?: number;
  /** Time between health polls, in ms. Default 2000. */
  healthIntervalMs?: number;
  /** Aborted when the listener is asked to stop: the health wait ends early (Timeout). */
  stopSignal?: AbortSignal;
  /** Keeps the applied bundle for drift correction; returns a warning when it could not. */
  keepBundle?: (decoded: DecodedMessage, secretName: string, signal: AbortSignal) => Promise<string | undefined>;
}

/** The `afterApply` step of the deployer. */
export function createAfterApply(options: AfterApplyOptions): (applied: AppliedBuild, signal: AbortSignal) => Promise<AfterApplyResult> {
  const { api, fieldManager, prune = true, pruneCrds = false, waitHealth = true, healthTimeoutMs = 300_000, healthIntervalMs = 2_000, stopSignal, keepBundle } = options;
  return async ({ decoded, inventory, previousInventory, owner, unmarkedInventory, bundleSecret, onProgress, log }, signal) => {
    const outcome: Partial<Outcome> = {};
    const warnings: string[] = [];
    let recorded: RecordedObject[];

    if (waitHealth) {
      // One progress line per change of what is waited for, not one per poll.
      let told = "";
      const onPoll = (p: { healthy: number; checked: number; waitingFor: { object: string; reason: string } }) => {
        const text = `waiting for health: ${p.healthy} of ${p.checked} healthy; ${p.waitingFor.object}: ${p.waitingFor.reason}`;
        if (text !== told) onProgress?.("health", text);
        told = text;
      };
      const health = await waitForHealth(inventory, { api, timeoutMs: healthTimeoutMs, intervalMs: healthIntervalMs, signal, stopSignal, onPoll });
      outcome.health = health;
      const fields = { health: health.status, checked: health.checked, durationMs: health.durationMs, object: health.object, reason: health.reason };
      if (health.status === "Healthy") log.info("workloads healthy", fields);
      else log.warn(`workloads not healthy: ${health.status}`, fields);
    }

    // With prune off, objects that left the bundle are orphaned: turning prune on later
    // does not delete what was removed long before.
    if (!prune) {
      recorded = [...inventory];
    } else if (decoded.objects.length === 0) {
      recorded = [...previousInventory];
      if (previousInventory.length > 0) warnings.push(`prune skipped: the bundle is empty, so the ${previousInventory.length} objects of the previous build were kept`);
    } else {
      const keep = (live: unknown) => pruneKeepReason(live, owner, unmarkedInventory);
      const leaving = pruneCandidates(previousInventory, inventory).length;
      if (leaving > 0) onProgress?.("pruning", `pruning: ${leaving} object${leaving === 1 ? "" : "s"} left the bundle`);
      const result = await pruneObjects(previousInventory, inventory, { api, fieldManager, pruneCrds, signal, keep });
      outcome.pruned = result.pruned;
      if (result.kept.length > 0) outcome.kept = result.kept;
      for (const f of result.failed) warnings.push(`prune of ${formatRef(f.object)} failed (kept in the inventory for the next deploy): ${f.error}`);
      recorded = [...inventory, ...result.failed.map((f) => f.object)];
      if (result.pruned.length + result.kept.length + result.failed.length > 0) {
        log.info("pruned objects that left the bundle", {
          pruned: result.pruned.map(formatRef),
          kept: result.kept.map((k) => `${formatRef(k)} (${k.why})`),
          failed: result.failed.map((f) => formatRef(f.object)),
          durationMs: result.durationMs,
        });
      }
    }

    if (keepBundle) {
      const warning = await keepBundle(decoded, bundleSecret, signal);
      if (warning !== undefined) warnings.push(warning);
    }
    for (const w of warnings) log.warn(w);
    if (warnings.length > 0) outcome.warnings = warnings;
    return { inventory: recorded, outcome };
  };
}
