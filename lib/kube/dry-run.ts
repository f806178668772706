/**
 * Server-side dry runs: what the API server would make of each object if it were applied now,
 * with the listener's field manager and strict field validation, changing nothing. A plan
 * (lib/listener/planner.ts) is built from them, and a failed deploy names its invalid objects
 * with them, since kubectl's text names neither the file nor always the object.
 *
 * One request per object (a server-side apply PATCH with `dryRun=All`), several at a time:
 * the API server validates each on its own, so one invalid object never hides another's error.
 */
import { KubeApiError } from "../errors.ts";
import { errorMessage } from "../errors.ts";
import { isRecord, type KubeObject } from "../manifests/bundle.ts";
import { groupOf } from "../manifests/object-ref.ts";
import type { KubeApi } from "./api.ts";
import { discoveryOf, objectPath } from "./discovery.ts";

/** What the dry run of one object found. */
export type DryRunResult =
  /** It would be applied: the object as the server would store it; `live` is what it holds now (null: it would be created). */
  | { state: "ok"; object: unknown; live: unknown | null }
  /** The server refuses it: its message and each field error. */
  | { state: "invalid"; error: string; causes: string[] }
  /** The server does not serve its kind (yet: a CRD of the same bundle is not installed). */
  | { state: "unserved" }
  /** Its namespace does not exist (yet: a Namespace of the same bundle, say). */
  | { state: "no-namespace"; namespace: string }
  /** The request failed for another reason (forbidden, unreachable). */
  | { state: "failed"; error: string };

/** Options of {@link dryRunObjects}. */
export interface DryRunOptions {
  fieldManager: string;
  /** Take fields other managers own, as the deploy's `--force-conflicts` does. Default true. */
  forceConflicts?: boolean;
  /** Namespace of namespaced objects that name none (kubectl's default). */
  defaultNamespace: string;
  /** Requests in flight at once. Default 8. */
  concurrency?: number;
  /** Read each live object too (for a diff). Default false. */
  readLive?: boolean;
  timeoutMs?: number;
  signal?: AbortSignal | undefined;
}

/** The field errors of a Status (`details.causes`): `field: message` each. */
export function causesOf(error: KubeApiError): string[] {
  const details = error.status.details;
  if (!isRecord(details) || !Array.isArray(details["causes"])) return [];
  return details["causes"].flatMap((cause: unknown) => {
    if (!isRecord(cause)) return [];
    const field = typeof cause["field"] === "string" && cause["field"] !== "" ? `${cause["field"]}: ` : "";
    return typeof cause["message"] === "string" ? [`${field}${cause["message"]}`] : [];
  });
}

/** The namespace a 404 says does not exist, or undefined when it is about something else. */
function namespaceNotFound(error: KubeApiError): string | undefined {
  const details = error.status.details;
  return isRecord(details) && details["kind"] === "namespaces" && typeof details["name"] === "string" ? details["name"] : undefined;
}

/** Dry-runs each of `objects` (in order); never throws for one object, only when `signal` aborts. */
export async function dryRunObjects(api: KubeApi, objects: readonly KubeObject[], options: DryRunOptions): Promise<DryRunResult[]> {
  const { fieldManager, forceConflicts = true, defaultNamespace, concurrency = 8, readLive = false, timeoutMs = 30_000, signal } = options;
  const discovery = discoveryOf(api);
  const results: DryRunResult[] = new Array(objects.length);
  let next = 0;
  const worker = async () => {
    while (next < objects.length) {
      const i = next++;
      const object = objects[i]!;
      try {
        const resource = await discovery.resourceFor(groupOf(object.apiVersion), object.kind, { signal });
        if (resource === null) {
          results[i] = { state: "unserved" };
          continue;
        }
        const namespace = resource.namespaced ? (object.metadata.namespace ?? defaultNamespace) : undefined;
        const path = objectPath(resource, { group: resource.group, kind: object.kind, name: object.metadata.name, ...(namespace === undefined ? {} : { namespace }) });
        const body = namespace === undefined || object.metadata.namespace !== undefined ? object : { ...object, metadata: { ...object.metadata, namespace } };
        const live = readLive ? await api.getOptional(path, { signal, timeoutMs }) : null;
        const applied = await api.request({
          method: "PATCH",
          path,
          query: { dryRun: "All", fieldManager, force: forceConflicts, fieldValidation: "Strict" },
          body,
          contentType: "application/apply-patch+yaml",
          signal,
          timeoutMs,
        });
        results[i] = { state: "ok", object: applied, live };
      } catch (error) {
        signal?.throwIfAborted();
        // 400 BadRequest (strict field validation), 422 Invalid; and 500 for a field the
        // schema does not declare ("failed to create typed patch object"), as server-side apply answers it.
        if (error instanceof KubeApiError && ([400, 422].includes(error.status.code) || (error.status.code === 500 && /typed patch object|not declared in schema/.test(error.status.message)))) {
          results[i] = { state: "invalid", error: error.status.message, causes: causesOf(error) };
        } else if (error instanceof KubeApiError && error.status.code === 404 && namespaceNotFound(error) !== undefined) {
          results[i] = { state: "no-namespace", namespace: namespaceNotFound(error)! };
        } else if (error instanceof KubeApiError && error.status.code === 404 && error.status.details === undefined) {
          results[i] = { state: "unserved" };
        } else {
          results[i] = { state: "failed", error: errorMessage(error) };
        }
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, Math.max(1, objects.length)) }, worker));
  return results;
}
