/**
 * Kubernetes Events for deploy outcomes, on the version record's ConfigMap, so that
 * `kubectl describe configmap kube-pico-cd-state` and `kubectl get events` show what the
 * listener did, as Flux's controllers do on their objects.
 *
 * One core/v1 Event per outcome, created with a POST to the API server (a generated name,
 * count 1): deploys are rare, so Events are not aggregated. Normal for applied (healthy or not
 * checked), superseded and duplicate; Warning for failed, rejected and an applied build whose
 * health is Degraded or Timeout. The message holds build names, counts and the outcome's
 * error text, which is already free of Secret data (lib/listener/policy.ts redacts it).
 */
import { hostname } from "node:os";
import { resourcePath, type KubeApi } from "./api.ts";
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
  api: KubeApi;
  namespace: string;
  /** The record's ConfigMap name. */
  name: string;
  /** Per request, in ms. Default 10000. */
  timeoutMs?: number;
  /**
   * How long the record's uid is trusted before it is read again, in ms. Default 600000 (10
   * minutes): a record deleted and created again by hand has a new uid, and Events with the
   * old one would not show in `kubectl describe`.
   */
  uidMaxAgeMs?: number;
  /** `reportingInstance` of the Events. Default the host name (the pod's name). */
  instance?: string;
  now?: () => number;
  signal?: AbortSignal | undefined;
}

function uidOf(object: unknown): string | undefined {
  const uid = (object as { metadata?: { uid?: unknown } } | null)?.metadata?.uid;
  return typeof uid === "string" && uid !== "" ? uid : undefined;
}

/**
 * An outcome listener that creates an Event per outcome. It throws when the Event cannot be
 * created; the caller (lib/listener/operations.ts) logs that, since a missing Event must never
 * undo a deploy.
 *
 * The record's uid ties the Event to it (`kubectl describe` matches on it). It is read once
 * and kept for `uidMaxAgeMs`; it is read again after a 404 (no record yet: that Event goes
 * without uid) and after a failed create. A failed read of the uid never keeps the Event back.
 */
export function createEventRecorder(options: EventRecorderOptions): (outcome: Outcome) => Promise<void> {
  const { api, namespace, name, timeoutMs = 10_000, uidMaxAgeMs = 600_000, instance = hostname(), now = Date.now, signal } = options;
  const configMapPath = resourcePath({ group: "", version: "v1", resource: "configmaps", namespace, name });
  const eventsPath = resourcePath({ group: "", version: "v1", resource: "events", namespace });
  let cached: { uid: string; readMs: number } | undefined;
  const recordUid = async (): Promise<string | undefined> => {
    if (cached !== undefined && now() - cached.readMs < uidMaxAgeMs) return cached.uid;
    cached = undefined;
    try {
      // null (no record yet) gives no uid, and the next outcome asks again.
      const uid = uidOf(await api.getOptional(configMapPath, { timeoutMs, signal }));
      if (uid !== undefined) cached = { uid, readMs: now() };
      return uid;
    } catch {
      // The Event still says what happened; only `kubectl describe` will not list it.
      return undefined;
    }
  };
  return async (outcome) => {
    const uid = await recordUid();
    const event = outcomeEvent(outcome, { namespace, name, uid }, { nowMs: now(), instance });
    try {
      await api.request({ method: "POST", path: eventsPath, body: event, timeoutMs, signal });
    } catch (error) {
      cached = undefined;
      throw error;
    }
  };
}
