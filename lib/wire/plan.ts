/**
 * A plan: what a build would do to the cluster, worked out from server-side dry runs
 * (lib/kube/dry-run.ts) without applying anything, as `flux diff`, `argocd app diff` and kapp
 * show before they apply. Pure: lib/listener/planner.ts gathers the dry runs, live objects and
 * prune candidates and sends the plan on the result queue (lib/wire/result.ts, `plan`).
 *
 * A plan holds, per object: an error (the server refuses it: every field error, with the file
 * it came from), "create", "change" with the changed fields (`path: old → new`), or
 * "unchanged"; and the objects prune would delete. A Secret's values are never in it, live or
 * new (whoever may plan need not read the app's Secrets): its changed keys say only
 * "(secret value added|removed|changed)", and its error texts lose what they quote. Neither is
 * kubectl's last-applied annotation (a whole earlier object) nor `managedFields`. It is
 * bounded: each object's diff keeps {@link MAX_DIFF_LINES_PER_OBJECT} lines, and the whole
 * plan {@link MAX_PLAN_LINES}, each cut with a count of what was left out.
 */
import type { DryRunResult } from "../kube/dry-run.ts";
import type { KubeObject } from "../manifests/bundle.ts";
import { isRecord } from "../manifests/bundle.ts";
import { groupOf } from "../manifests/object-ref.ts";

/** Changed fields shown per object; the rest is counted. */
export const MAX_DIFF_LINES_PER_OBJECT = 30;
/** Lines of errors, changes, creations and deletions in one plan; the rest is counted. */
export const MAX_PLAN_LINES = 400;
/** Longest value shown in a diff line, in characters. */
export const MAX_DIFF_VALUE_LENGTH = 120;

/** One object's part of a plan. */
export interface PlannedObject {
  /** `apps/Deployment web/api`. */
  object: string;
  /** Where it came from (`k8s/api.yaml:12:1`), when the bundle said. */
  source?: string | undefined;
  action: "create" | "change" | "unchanged" | "error" | "pending";
  /** error: each problem; change: each changed field; create: a Secret's keys only; pending: why it cannot be dry-run yet. */
  lines: string[];
  /** Lines left out of `lines`. */
  more?: number | undefined;
}

/** The plan of one build. */
export interface Plan {
  /** False when the server refuses any object (the build would fail). */
  ok: boolean;
  objects: PlannedObject[];
  /** Objects that prune would delete (`group/Kind namespace/name`). */
  prune: string[];
  /** Counts, before any cut. */
  counts: { create: number; change: number; unchanged: number; error: number; pending: number; prune: number };
  /** Objects (or prune entries) left out to keep the plan within {@link MAX_PLAN_LINES}. */
  omitted?: number | undefined;
}

/** `apps/Deployment web/api`, `ConfigMap web/settings`, `Namespace web`. */
export function describeObject(object: { apiVersion: string; kind: string; metadata: { name: string; namespace?: string | undefined } }): string {
  const group = groupOf(object.apiVersion);
  return `${group === "" ? "" : `${group}/`}${object.kind} ${object.metadata.namespace === undefined ? "" : `${object.metadata.namespace}/`}${object.metadata.name}`;
}

/** Fields the server sets or that always differ: never part of a diff. */
const IGNORED_METADATA = new Set(["managedFields", "resourceVersion", "generation", "uid", "creationTimestamp", "selfLink"]);

/** What of an object a diff compares: without `status` and the server's bookkeeping in `metadata`. */
export function comparable(object: unknown): unknown {
  if (!isRecord(object)) return object;
  const { status: _status, metadata, ...rest } = object;
  const meta = isRecord(metadata) ? Object.fromEntries(Object.entries(metadata).filter(([k]) => !IGNORED_METADATA.has(k))) : metadata;
  if (isRecord(meta) && isRecord(meta["annotations"])) {
    // kubectl's client-side apply record says nothing about the server-side state.
    const { "kubectl.kubernetes.io/last-applied-configuration": _last, ...annotations } = meta["annotations"];
    meta["annotations"] = annotations;
    if (Object.keys(annotations).length === 0) delete meta["annotations"];
  }
  return { ...rest, metadata: meta };
}

/** A core-group Secret: its `data` and `stringData` values are never shown in a plan. */
export function isSecret(object: { apiVersion?: unknown; kind?: unknown }): boolean {
  return object.kind === "Secret" && typeof object.apiVersion === "string" && groupOf(object.apiVersion) === "";
}

/**
 * A Secret's values by key, base64 as the API server stores them: `stringData` merged over
 * `data`, as the server merges it, so a bundle's `stringData` compares equal to the live
 * `data` it becomes. A non-string value (never from the server) is kept as its JSON, still
 * compared and never shown.
 */
function secretValues(object: unknown): Map<string, string> {
  const values = new Map<string, string>();
  if (!isRecord(object)) return values;
  const { data, stringData } = object;
  if (isRecord(data)) for (const [key, value] of Object.entries(data)) values.set(key, typeof value === "string" ? value : JSON.stringify(value));
  if (isRecord(stringData)) for (const [key, value] of Object.entries(stringData)) values.set(key, typeof value === "string" ? Buffer.from(value, "utf8").toString("base64") : JSON.stringify(value));
  return values;
}

/** A Secret without its values, for the diff of everything else (type, labels, immutable). */
function withoutValues(object: unknown): unknown {
  if (!isRecord(object)) return object;
  const { data: _data, stringData: _stringData, ...rest } = object;
  return rest;
}

/**
 * The changed keys from `before` to `after` (Secrets, either may be null), one line each,
 * saying only that a value was added, removed or changed: values are compared, never shown.
 */
export function secretDiffLines(before: unknown, after: unknown): string[] {
  const old = secretValues(before);
  const now = secretValues(after);
  const keys = [...new Set([...old.keys(), ...now.keys()])].sort();
  return keys.flatMap((key) => {
    const path = pathOf("data", key);
    if (!old.has(key)) return [`${path}: (secret value added)`];
    if (!now.has(key)) return [`${path}: (secret value removed)`];
    return old.get(key) === now.get(key) ? [] : [`${path}: (secret value changed)`];
  });
}

/**
 * The changed fields of one object, live to as it would be applied: {@link diffLines} of
 * what {@link comparable} keeps, except a Secret's values ({@link secretDiffLines}), whose
 * lines take the place of `data` in the sorted order.
 */
export function objectDiffLines(live: unknown, applied: unknown, secret: boolean): string[] {
  if (!secret) return diffLines(comparable(live), comparable(applied));
  const rest = diffLines(comparable(withoutValues(live)), comparable(withoutValues(applied)));
  const values = secretDiffLines(live, applied);
  const at = rest.findIndex((line) => line > "data");
  return at === -1 ? [...rest, ...values] : [...rest.slice(0, at), ...values, ...rest.slice(at)];
}

/**
 * A Secret's error text without the values the API server may quote back: field errors
 * (`Invalid value: "…"`), and the echo of a wrong type (`expected string, got &value…`).
 * Every quoted string goes, the object's name too: the line already names the object.
 */
export function maskSecretText(text: string): string {
  return text
    .replace(/"(?:[^"\\]|\\.)*"/g, REDACTED)
    .replace(/(Invalid value: )(?!\[redacted\])[^\s:,;]+/g, `$1${REDACTED}`)
    .replace(/(expected [^\n,;]*?, got )[^\n;]*/g, `$1${REDACTED}`);
}

/** What replaces a value cut out of a Secret's error text. */
export const REDACTED = "[redacted]";

function shown(value: unknown): string {
  if (value === undefined) return "(none)";
  const text = JSON.stringify(value);
  return text.length > MAX_DIFF_VALUE_LENGTH ? `${text.slice(0, MAX_DIFF_VALUE_LENGTH - 1)}…` : text;
}

function pathOf(parent: string, key: string | number): string {
  if (typeof key === "number") return `${parent}[${key}]`;
  return /^[A-Za-z_][A-Za-z0-9_-]*$/.test(key) ? (parent === "" ? key : `${parent}.${key}`) : `${parent}[${JSON.stringify(key)}]`;
}

/**
 * The changed fields from `before` to `after`, one line each, `path: old → new`, in a stable
 * order (keys sorted). Arrays of different lengths, or of scalars, are shown whole at their path.
 */
export function diffLines(before: unknown, after: unknown, path = ""): string[] {
  if (JSON.stringify(before) === JSON.stringify(after)) return [];
  if (isRecord(before) && isRecord(after)) {
    const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])].sort();
    return keys.flatMap((key) => diffLines(before[key], after[key], pathOf(path, key)));
  }
  if (Array.isArray(before) && Array.isArray(after) && before.length === after.length && before.some((item) => isRecord(item) || Array.isArray(item))) {
    return before.flatMap((item, i) => diffLines(item, after[i], pathOf(path, i)));
  }
  return [`${path || "(object)"}: ${shown(before)} → ${shown(after)}`];
}

/** Longest line of a plan, in characters (an API server's message may be long). */
export const MAX_PLAN_LINE_LENGTH = 300;

function cutLines(lines: string[], max: number): { lines: string[]; more?: number } {
  const short = lines.map((line) => {
    const one = line.replace(/\s*\n\s*/g, " ");
    return one.length > MAX_PLAN_LINE_LENGTH ? `${one.slice(0, MAX_PLAN_LINE_LENGTH - 1)}…` : one;
  });
  return short.length > max ? { lines: short.slice(0, max), more: short.length - max } : { lines: short };
}

/**
 * The plan of `objects` (as they would be applied: placed and marked) from their dry runs,
 * `sources` (one per object, when known), and the objects prune would delete.
 * `namespacesInBundle` are the Namespaces the bundle itself creates: an object waiting for one
 * of them is pending, not an error.
 */
export function buildPlan(input: {
  objects: readonly KubeObject[];
  results: readonly DryRunResult[];
  sources?: readonly string[] | undefined;
  prune: readonly string[];
  crdKindsInBundle: ReadonlySet<string>;
}): Plan {
  const { objects, results, sources, prune, crdKindsInBundle } = input;
  const namespacesInBundle = new Set(objects.filter((o) => o.kind === "Namespace" && groupOf(o.apiVersion) === "").map((o) => o.metadata.name));
  const planned: PlannedObject[] = objects.map((object, i) => {
    const result = results[i]!;
    const base = { object: describeObject(object), ...(sources?.[i] === undefined ? {} : { source: sources[i] }) };
    const secret = isSecret(object);
    // The API server's errors about a Secret may quote its values back.
    const errorLines = (lines: string[]) => (secret ? lines.map(maskSecretText) : lines);
    switch (result.state) {
      case "ok": {
        // A created Secret lists its keys (never values); other created objects are named only.
        if (result.live === null) return { ...base, action: "create", ...cutLines(secret ? secretDiffLines(null, result.object) : [], MAX_DIFF_LINES_PER_OBJECT) };
        const lines = objectDiffLines(result.live, result.object, secret);
        return lines.length === 0 ? { ...base, action: "unchanged", lines: [] } : { ...base, action: "change", ...cutLines(lines, MAX_DIFF_LINES_PER_OBJECT) };
      }
      case "invalid":
        return { ...base, action: "error", ...cutLines(errorLines(result.causes.length > 0 ? result.causes : [result.error]), MAX_DIFF_LINES_PER_OBJECT) };
      case "failed":
        return { ...base, action: "error", ...cutLines(errorLines([`cannot dry-run it: ${result.error}`]), 1) };
      case "no-namespace":
        return namespacesInBundle.has(result.namespace)
          ? { ...base, action: "pending", lines: [`its namespace ${result.namespace} is created by this build; checked only when applied`] }
          : { ...base, action: "error", lines: [`namespace ${result.namespace} does not exist, and this build does not create it`] };
      case "unserved": {
        const kind = `${groupOf(object.apiVersion)}/${object.kind}`;
        return crdKindsInBundle.has(kind)
          ? { ...base, action: "pending", lines: [`its kind is defined by a CustomResourceDefinition of this build; checked only when applied`] }
          : { ...base, action: "error", lines: [`the cluster serves no ${object.kind} in ${object.apiVersion}, and this build defines no such kind`] };
      }
    }
  });
  const counts = { create: 0, change: 0, unchanged: 0, error: 0, pending: 0, prune: prune.length };
  for (const p of planned) counts[p.action]++;
  // Within the line budget: errors first, then changes, creations, pending; unchanged objects are only counted.
  const order: PlannedObject["action"][] = ["error", "change", "create", "pending"];
  const kept: PlannedObject[] = [];
  let lines = 0;
  let omitted = 0;
  for (const action of order) {
    for (const p of planned.filter((x) => x.action === action)) {
      const cost = 1 + p.lines.length;
      if (lines + cost > MAX_PLAN_LINES) {
        omitted++;
        continue;
      }
      lines += cost;
      kept.push(p);
    }
  }
  const keptPrune = prune.slice(0, Math.max(0, MAX_PLAN_LINES - lines));
  omitted += prune.length - keptPrune.length;
  return { ok: counts.error === 0, objects: kept, prune: keptPrune, counts, ...(omitted > 0 ? { omitted } : {}) };
}

/** The plan as text for people: one summary line, then each object and its lines, then what prune would delete. */
export function renderPlan(plan: Plan): string[] {
  const c = plan.counts;
  const out = [
    `${plan.ok ? "plan" : "plan FAILED"}: ${c.create} to create, ${c.change} to change, ${c.unchanged} unchanged, ${c.prune} to prune${c.pending > 0 ? `, ${c.pending} checked only when applied` : ""}${c.error > 0 ? `, ${c.error} refused by the API server` : ""}`,
  ];
  const sign = { create: "+", change: "~", unchanged: "=", error: "!", pending: "?" } as const;
  for (const p of plan.objects) {
    out.push(`${sign[p.action]} ${p.object}${p.source === undefined ? "" : ` (${p.source})`}${p.action === "error" ? ": refused" : ""}`);
    for (const line of p.lines) out.push(`    ${line}`);
    if (p.more !== undefined) out.push(`    … and ${p.more} more`);
  }
  for (const name of plan.prune) out.push(`- ${name} (prune)`);
  if (plan.omitted !== undefined) out.push(`… and ${plan.omitted} more objects not shown`);
  return out;
}
