/**
 * Kubernetes Events for deploy outcomes, on the version record's ConfigMap, so that
 * `kubectl describe configmap kube-pico-cd-state` and `kubectl get events` show what the
 * listener did, as Flux's controllers do on their objects.
 *
 * One core/v1 Event per outcome, created with `kubectl create` (a generated name, count 1):
 * deploys are rare, so Events are not aggregated. Normal for applied (healthy or not
 * checked), superseded and duplicate; Warning for failed, rejected and an applied build whose
 * health is Degraded or Timeout. The message holds build names, counts and the outcome's
 * error text, which is already free of Secret data (lib/listener/policy.ts redacts it).
 */
import { hostname } from "node:os";
import { runKubectl, type KubectlTarget } from "./kubectl.ts";
import type { Outcome } from "./record.ts";
import { oneLine } from "../text.ts";

/** Longest Event message the API server keeps (core/v1 Event `message`: 1 KiB). */
export const MAX_EVENT_MESSAGE_LENGTH = 1024;

/** The `reportingComponent` and `source.component` of our Events. */
export const EVENT_COMPONENT = "kube-pico-cd";

/** The Event's type and reason for an outcome. */
export function eventReason(outcome: Pick<Outcome, "result" | "health">): { type: "Normal" | "Warning"; reason: string } {
  switch (outcome.result) {
    case "applied":
      if (outcome.health && outcome.health.status !== "Healthy") return { type: "Warning", reason: `Applied${outcome.health.status}` };
      return { type: "Normal", reason: "Applied" };
    case "failed":
      return { type: "Warning", reason: "ApplyFailed" };
    case "rejected":
      return { type: "Warning", reason: "Rejected" };
    case "superseded":
      return { type: "Normal", reason: "Superseded" };
    case "duplicate":
      return { type: "Normal", reason: "Duplicate" };
  }
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

/** The Event message: what happened to which build, in one line of at most 1 KiB. */
export function eventMessage(outcome: Outcome): string {
  const build = outcome.buildId === undefined ? "a message that could not be decoded" : `build ${outcome.buildId}`;
  const parts: string[] = [];
  switch (outcome.result) {
    case "applied": {
      parts.push(`${build} applied: ${outcome.objects ?? "?"} objects in ${seconds(outcome.durationMs ?? 0)}`);
      if (outcome.pruned && outcome.pruned.length > 0) parts.push(`${outcome.pruned.length} pruned`);
      const health = outcome.health;
      // A bundle without workloads has nothing whose health could be told.
      if (health && health.checked > 0) {
        parts.push(health.status === "Healthy" ? `healthy after ${seconds(health.durationMs)}` : `${health.status}: ${health.object ?? ""} ${health.reason ?? ""}`.trim());
      }
      if (outcome.warnings && outcome.warnings.length > 0) parts.push(`warnings: ${outcome.warnings.join("; ")}`);
      break;
    }
    case "failed":
      parts.push(`${build} failed and will be retried: ${outcome.error ?? "unknown error"}`);
      break;
    case "rejected":
      parts.push(`${build} rejected: ${outcome.error ?? "unknown reason"}`);
      break;
    case "superseded":
      parts.push(`${build} superseded by a newer build; not applied`);
      break;
    case "duplicate":
      parts.push(`${build} already applied; not applied again`);
      break;
  }
  return oneLine(parts.join("; "), MAX_EVENT_MESSAGE_LENGTH);
}

/** Where Events go: the record's ConfigMap. */
export interface EventTarget {
  namespace: string;
  /** The record's ConfigMap name. */
  name: string;
  /** Its uid, when known: `kubectl describe` matches Events on it. */
  uid?: string | undefined;
}

/** The core/v1 Event for an outcome. Exported for tests. */
export function outcomeEvent(outcome: Outcome, target: EventTarget, options: { nowMs?: number; instance?: string } = {}): Record<string, unknown> {
  const { nowMs = Date.now(), instance = hostname() } = options;
  const { type, reason } = eventReason(outcome);
  const time = new Date(nowMs).toISOString().replace(/\.\d{3}Z$/, "Z");
  return {
    apiVersion: "v1",
    kind: "Event",
    metadata: {
      generateName: `${target.name}.`,
      namespace: target.namespace,
      labels: { "app.kubernetes.io/managed-by": "kube-pico-cd" },
      annotations: {
        ...(outcome.buildId === undefined ? {} : { "kube-pico-cd.io/build-id": outcome.buildId }),
        ...(outcome.messageId === undefined ? {} : { "kube-pico-cd.io/message-id": outcome.messageId }),
      },
    },
    involvedObject: { apiVersion: "v1", kind: "ConfigMap", namespace: target.namespace, name: target.name, ...(target.uid ? { uid: target.uid } : {}) },
    type,
    reason,
    message: eventMessage(outcome),
    firstTimestamp: time,
    lastTimestamp: time,
    count: 1,
    source: { component: EVENT_COMPONENT },
    reportingComponent: EVENT_COMPONENT,
    reportingInstance: instance,
  };
}

/** Options of {@link createEventRecorder}. */
export interface EventRecorderOptions {
  kubectl: KubectlTarget;
  namespace: string;
  /** The record's ConfigMap name. */
  name: string;
  /** Per kubectl call, in ms. Default 10000. */
  timeoutMs?: number;
  signal?: AbortSignal | undefined;
}

/**
 * An outcome listener that creates an Event per outcome. It throws when kubectl fails; the
 * caller (lib/listener/operations.ts) logs that, since a missing Event must never undo a deploy.
 */
export function createEventRecorder(options: EventRecorderOptions): (outcome: Outcome) => Promise<void> {
  const { kubectl, namespace, name, timeoutMs = 10_000, signal } = options;
  let uid: string | undefined;
  return async (outcome) => {
    if (uid === undefined) {
      // The record exists once any outcome is recorded; its uid ties the Event to it.
      const got = await runKubectl(["get", "configmap", name, `--namespace=${namespace}`, "-o", "jsonpath={.metadata.uid}"], { ...kubectl, timeoutMs, signal }).catch(() => undefined);
      uid = got?.stdout.trim() || undefined;
    }
    const event = outcomeEvent(outcome, { namespace, name, uid });
    await runKubectl(["create", "-f", "-", "-o", "name"], { ...kubectl, stdin: JSON.stringify(event), timeoutMs, signal });
  };
}
