/**
 * Every app's version record in the listener's namespace, for the overview of
 * `listener status`: one list of the ConfigMaps that carry the record labels
 * ({@link RECORD_SELECTOR}), each decoded as lib/kube/record.ts reads a record.
 *
 * The labels select more than this listener's records: another listener in the same
 * namespace with another base name (`--state-configmap`) labels its records the same way.
 * A ConfigMap counts as the record of app A only when its name is the one the listener gives
 * A's record ({@link appObjectName}), so each app has at most one record and the overview
 * shows what `listener status A` and the listener itself read. The others are skipped with a
 * note, never an error.
 *
 * A record that does not decode is returned with its error, beside the others: one bad
 * ConfigMap must not hide every other app.
 */
import { z } from "zod";
import { errorMessage, KubeApiError, StateReadError } from "../errors.ts";
import { resourcePath, type KubeApi } from "../kube/api.ts";
import { decodeRecord, DEFAULT_STATE_CONFIGMAP, type StoredRecord } from "../kube/record.ts";
import { appObjectName, appOfRecord, RECORD_APP_LABEL, RECORD_SELECTOR } from "./apps.ts";

/** ConfigMaps asked for per page: a record may take 512 KiB, so a page stays below 32 MiB. */
export const RECORD_LIST_PAGE_SIZE = 50;

/** One app's record as listed: decoded, or the reason it could not be. */
export type ListedRecord =
  | { app: string; /** ConfigMap name. */ name: string; record: StoredRecord }
  | { app: string; /** ConfigMap name. */ name: string; /** Why the record could not be read, as `listener status APP` says it. */ error: string };

/** What {@link listRecords} found. */
export interface RecordListing {
  /** One per app, sorted by app. */
  records: ListedRecord[];
  /** ConfigMaps with the record labels that are no record of this listener, one line each. */
  notes: string[];
}

/** Options of {@link listRecords}. */
export interface ListRecordsOptions {
  api: KubeApi;
  /** The listener's namespace. */
  namespace: string;
  /** Base name of the records (`--state-configmap`). Default {@link DEFAULT_STATE_CONFIGMAP}. */
  base?: string;
  /** Per request, in milliseconds. Default 30000. */
  timeoutMs?: number;
  signal?: AbortSignal | undefined;
}

const itemSchema = z.object({
  metadata: z.object({ name: z.string(), resourceVersion: z.string(), labels: z.record(z.string(), z.string()).optional() }),
  data: z.record(z.string(), z.string()).optional(),
});

const pageSchema = z.object({
  metadata: z.object({ continue: z.string().optional() }).optional(),
  items: z.array(z.unknown()).nullable().optional(),
});

/**
 * What one listed ConfigMap is: an app's record (decoded, or with its error), or a note on
 * why it is skipped. Pure; exported for tests.
 */
export function recordOfItem(item: unknown, where: { namespace: string; base: string }): ListedRecord | { note: string } {
  const { namespace, base } = where;
  const parsed = itemSchema.safeParse(item);
  if (!parsed.success) {
    const name = (item as { metadata?: { name?: unknown } } | null)?.metadata?.name;
    return { note: `ConfigMap ${namespace}/${typeof name === "string" ? name : "(no name)"} carries the version record labels but its metadata or data is not a ConfigMap's: skipped` };
  }
  const { metadata, data } = parsed.data;
  const name = metadata.name;
  const app = appOfRecord(metadata, base);
  if (app === undefined) {
    return {
      note: `ConfigMap ${namespace}/${name} carries the version record labels but is no record of base name ${base} (neither ${base} nor ${base}-<app>, and no valid ${RECORD_APP_LABEL} label): skipped; another listener's? (--state-configmap names the base)`,
    };
  }
  const expected = appObjectName(base, app);
  if (name !== expected) {
    return { note: `ConfigMap ${namespace}/${name} is labelled ${RECORD_APP_LABEL}=${app}, but app ${app}'s record is ${expected}: skipped` };
  }
  try {
    return { app, name, record: { ...decodeRecord(data), resourceVersion: metadata.resourceVersion } };
  } catch (error) {
    return { app, name, error: `Cannot read the version record ConfigMap ${namespace}/${name}: ${errorMessage(error)}` };
  }
}

/**
 * Lists every app's version record in `namespace`, page by page, sorted by app.
 *
 * @throws {StateReadError} when the ConfigMaps cannot be listed (forbidden: the listener's
 * Role grants `list` on ConfigMaps in its namespace; API server unreachable; an answer that is
 * not a list). The cause holds the API error.
 */
export async function listRecords(options: ListRecordsOptions): Promise<RecordListing> {
  const { api, namespace, base = DEFAULT_STATE_CONFIGMAP, timeoutMs = 30_000, signal } = options;
  const path = resourcePath({ group: "", version: "v1", resource: "configmaps", namespace });
  const records: ListedRecord[] = [];
  const notes: string[] = [];
  let token: string | undefined;
  do {
    let page: z.infer<typeof pageSchema>;
    try {
      const answer = await api.request({ method: "GET", path, query: { labelSelector: RECORD_SELECTOR, limit: RECORD_LIST_PAGE_SIZE, continue: token }, timeoutMs, signal });
      page = pageSchema.parse(answer);
    } catch (error) {
      const hint =
        error instanceof KubeApiError && error.status.code === 403
          ? ` (the overview needs 'list' on ConfigMaps in ${namespace}; listener status APP reads one record with 'get' only)`
          : "";
      throw new StateReadError(`Cannot list the version records in namespace ${namespace} (ConfigMaps labelled ${RECORD_SELECTOR}): ${errorMessage(error)}${hint}`, { namespace, configMapName: base }, { cause: error });
    }
    for (const item of page.items ?? []) {
      const listed = recordOfItem(item, { namespace, base });
      if ("note" in listed) notes.push(listed.note);
      else records.push(listed);
    }
    token = page.metadata?.continue === "" ? undefined : page.metadata?.continue;
  } while (token !== undefined);
  // Names are unique in a namespace and each app has one name, so apps are unique too.
  records.sort((a, b) => (a.app < b.app ? -1 : a.app > b.app ? 1 : 0));
  return { records, notes };
}
