/**
 * Discovery: which REST resource serves a group and kind (`apps` `Deployment` →
 * `/apis/apps/v1/namespaces/<ns>/deployments`), read from the API server's discovery documents:
 *
 * - `GET /api`: the versions of the core group (`v1`);
 * - `GET /apis`: every other group, its versions and its preferred version;
 * - `GET /api/v1`, `GET /apis/<group>/<version>`: the resources of one group version, with
 *   kind, plural name and scope.
 *
 * A kind is looked up in its group's preferred version first, then in the group's other
 * versions, in the server's order. Answers are cached per client; a lookup that misses
 * reads the documents again once, because a CustomResourceDefinition applied a moment ago
 * adds a group or a kind. A kind the server does not serve is `null`, not an error.
 */
import { isRecord } from "../manifests/bundle.ts";
import { formatRef, type ObjectRef } from "../manifests/object-ref.ts";
import { KubePicoCdError } from "../errors.ts";
import { groupVersionPath, isNotFound, resourcePath, type KubeApi } from "./api.ts";

/** Where the objects of one kind live. */
export interface ApiResource {
  /** API group; "" for the core group. */
  group: string;
  /** The version this resource was found in: the group's preferred one when it serves the kind. */
  version: string;
  kind: string;
  /** The plural resource name of the path, e.g. `deployments`. */
  resource: string;
  /** True when objects of this kind live in a namespace. */
  namespaced: boolean;
  /** The verbs the server allows on it (`list`, `get`, …); absent when discovery named none. */
  verbs?: string[];
}

/** The versions of one group, preferred first, as discovery lists them. */
export interface ApiGroupVersions {
  group: string;
  /** The versions, the preferred one first. */
  versions: string[];
}

function strings(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === "string" && v !== "") : [];
}

/**
 * The groups of a `GET /apis` answer (an `APIGroupList`), each with its versions, preferred
 * first. Entries that are not of that shape are skipped.
 */
export function parseGroupList(document: unknown): ApiGroupVersions[] {
  if (!isRecord(document) || !Array.isArray(document["groups"])) return [];
  const out: ApiGroupVersions[] = [];
  for (const entry of document["groups"]) {
    if (!isRecord(entry) || typeof entry["name"] !== "string" || entry["name"] === "") continue;
    const versions = Array.isArray(entry["versions"])
      ? entry["versions"].flatMap((v: unknown) => (isRecord(v) && typeof v["version"] === "string" && v["version"] !== "" ? [v["version"]] : []))
      : [];
    const preferred = isRecord(entry["preferredVersion"]) && typeof entry["preferredVersion"]["version"] === "string" ? entry["preferredVersion"]["version"] : undefined;
    const ordered = preferred !== undefined && preferred !== "" ? [preferred, ...versions.filter((v) => v !== preferred)] : versions;
    if (ordered.length > 0) out.push({ group: entry["name"], versions: ordered });
  }
  return out;
}

/** The versions of the core group in a `GET /api` answer (an `APIVersions`), in the server's order. */
export function parseCoreVersions(document: unknown): string[] {
  return isRecord(document) ? strings(document["versions"]) : [];
}

/**
 * The resources of a `GET /api/v1` or `GET /apis/<group>/<version>` answer (an
 * `APIResourceList`). Subresources (`deployments/status`) are skipped.
 */
export function parseResourceList(document: unknown, group: string, version: string): ApiResource[] {
  if (!isRecord(document) || !Array.isArray(document["resources"])) return [];
  const out: ApiResource[] = [];
  for (const entry of document["resources"]) {
    if (!isRecord(entry)) continue;
    const { name, kind, namespaced } = entry;
    if (typeof name !== "string" || name === "" || name.includes("/") || typeof kind !== "string" || kind === "") continue;
    const verbs = strings(entry["verbs"]);
    out.push({ group, version, kind, resource: name, namespaced: namespaced === true, ...(verbs.length > 0 ? { verbs } : {}) });
  }
  return out;
}

/** Resolves like `promise`, or rejects with the signal's reason as soon as `signal` aborts. */
async function abortable<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return await promise;
  signal.throwIfAborted();
  let onAbort: (() => void) | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        onAbort = () => reject(signal.reason);
        signal.addEventListener("abort", onAbort, { once: true });
      }),
    ]);
  } finally {
    if (onAbort !== undefined) signal.removeEventListener("abort", onAbort);
  }
}

/**
 * Discovery documents of one API server, read on demand and cached. Get the shared instance
 * of a client with {@link discoveryOf}.
 *
 * Reads are shared by concurrent lookups and are not tied to one caller's signal (each ends
 * within the client's request timeout); an aborted caller stops waiting at once. A read that
 * fails is not cached.
 */
export class Discovery {
  readonly #api: KubeApi;
  readonly #timeoutMs: number | undefined;
  /** `GET /api` and `GET /apis` together: every group with its versions, preferred first. */
  #groups: Promise<Map<string, string[]>> | undefined;
  /** Resource lists by group, then version. */
  readonly #resources = new Map<string, Map<string, Promise<ApiResource[]>>>();

  /** @param options.timeoutMs Per discovery request, in ms. Default: the client's timeout. */
  constructor(api: KubeApi, options: { timeoutMs?: number } = {}) {
    this.#api = api;
    this.#timeoutMs = options.timeoutMs;
  }

  /**
   * The resource serving `kind` of `group` ("" for the core group), or null when the server
   * serves no such kind. Reads the discovery documents of the group again once when the
   * cache does not know the kind.
   *
   * @param options.version Look in this version of the group only. Default: the preferred
   *   version, then the others.
   *
   * @throws {KubeApiError | KubeUnreachableError} when a discovery document cannot be read.
   * @throws the signal's reason when `signal` aborts.
   */
  async resourceFor(group: string, kind: string, options: { version?: string | undefined; signal?: AbortSignal | undefined } = {}): Promise<ApiResource | null> {
    const { version, signal } = options;
    const cached = await abortable(this.#lookup(group, kind, version), signal);
    if (cached !== undefined) return cached;
    this.invalidate(group);
    return (await abortable(this.#lookup(group, kind, version), signal)) ?? null;
  }

  /**
   * Every kind the server serves, once each, in its group's preferred version that serves it:
   * what a search over all objects (an inventory rebuilt from ownership marks) must list.
   * The list of groups is read fresh, so that the groups of CRDs added since the cache was
   * filled are seen; the resource lists of groups already read come from the cache, since a
   * new app's first deploy asks for this and fifty apps must not read discovery fifty times.
   *
   * @throws {KubeApiError | KubeUnreachableError} when a discovery document cannot be read.
   */
  async everyResource(options: { signal?: AbortSignal | undefined } = {}): Promise<ApiResource[]> {
    this.#groups = undefined;
    const groups = await abortable(this.#groupVersions(), options.signal);
    const lists = await abortable(
      Promise.all([...groups].map(async ([group, versions]) => {
        const seen = new Set<string>();
        const out: ApiResource[] = [];
        for (const version of versions) {
          for (const resource of await this.#resourceList(group, version)) {
            if (seen.has(resource.kind)) continue;
            seen.add(resource.kind);
            out.push(resource);
          }
        }
        return out;
      })),
      options.signal,
    );
    return lists.flat();
  }

  /**
   * Forgets the list of groups and what is cached of `group` (of every group when none is
   * given), so the next lookup reads them again: for a caller that got a 404 for a path
   * discovery gave it (a CustomResourceDefinition deleted meanwhile).
   */
  invalidate(group?: string): void {
    this.#groups = undefined;
    if (group === undefined) this.#resources.clear();
    else this.#resources.delete(group);
  }

  async #lookup(group: string, kind: string, only: string | undefined): Promise<ApiResource | undefined> {
    const versions = (await this.#groupVersions()).get(group) ?? [];
    for (const version of only === undefined ? versions : versions.filter((v) => v === only)) {
      const found = (await this.#resourceList(group, version)).find((resource) => resource.kind === kind);
      if (found !== undefined) return found;
    }
    return undefined;
  }

  #groupVersions(): Promise<Map<string, string[]>> {
    if (this.#groups !== undefined) return this.#groups;
    const read = (async () => {
      const [core, apis] = await Promise.all([this.#get("/api"), this.#get("/apis")]);
      const groups = new Map<string, string[]>([["", parseCoreVersions(core)]]);
      for (const { group, versions } of parseGroupList(apis)) groups.set(group, versions);
      return groups;
    })();
    this.#groups = read;
    read.catch(() => {
      if (this.#groups === read) this.#groups = undefined;
    });
    return read;
  }

  #resourceList(group: string, version: string): Promise<ApiResource[]> {
    let byVersion = this.#resources.get(group);
    if (byVersion === undefined) {
      byVersion = new Map();
      this.#resources.set(group, byVersion);
    }
    const cached = byVersion.get(version);
    if (cached !== undefined) return cached;
    const read = (async () => {
      try {
        return parseResourceList(await this.#get(groupVersionPath(group, version)), group, version);
      } catch (error) {
        // The group version went away between the two reads (its CRD was deleted).
        if (isNotFound(error)) return [];
        throw error;
      }
    })();
    byVersion.set(version, read);
    read.catch(() => {
      if (byVersion.get(version) === read) byVersion.delete(version);
    });
    return read;
  }

  async #get(path: string): Promise<unknown> {
    return await this.#api.request({ method: "GET", path, timeoutMs: this.#timeoutMs });
  }
}

const shared = new WeakMap<KubeApi, Discovery>();

/** The {@link Discovery} of `api`, created on first use: one cache per client. */
export function discoveryOf(api: KubeApi): Discovery {
  let discovery = shared.get(api);
  if (discovery === undefined) {
    discovery = new Discovery(api);
    shared.set(api, discovery);
  }
  return discovery;
}

/**
 * The API path of the object `ref` names, served by `resource`. A cluster-scoped kind ignores
 * the namespace.
 *
 * @throws {KubePicoCdError} when the kind is namespaced and `ref` has no namespace.
 */
export function objectPath(resource: ApiResource, ref: ObjectRef): string {
  if (resource.namespaced && (ref.namespace === undefined || ref.namespace === "")) {
    throw new KubePicoCdError(`Cannot address ${formatRef(ref)} as ${resource.resource} of ${resource.group || "the core group"} are namespaced and it names no namespace`);
  }
  return resourcePath({ ...resource, namespace: resource.namespaced ? ref.namespace : undefined, name: ref.name });
}

/**
 * Reads the object `ref` names with its group's preferred version, or null when there is no
 * such object or the server serves no such kind (its CRD is gone). A 404 for a path that
 * discovery gave (the kind went away after it was cached) reads discovery again once.
 *
 * @param options.timeoutMs Per request, in ms. Default: the client's timeout.
 * @throws {KubeApiError | KubeUnreachableError} when it cannot be read.
 * @throws the signal's reason when `signal` aborts.
 */
export async function readObject(api: KubeApi, ref: ObjectRef, options: { signal?: AbortSignal | undefined; timeoutMs?: number | undefined } = {}): Promise<unknown> {
  const discovery = discoveryOf(api);
  for (let attempt = 1; ; attempt++) {
    const resource = await discovery.resourceFor(ref.group, ref.kind, { signal: options.signal });
    if (resource === null) return null;
    try {
      return await api.getOptional(objectPath(resource, ref), options);
    } catch (error) {
      if (!isNotFound(error) || attempt > 1) throw error;
      discovery.invalidate(ref.group);
    }
  }
}
