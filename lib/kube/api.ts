/**
 * A small client of the Kubernetes API: JSON over `node:https` with one keep-alive agent, so
 * the listener's reads and writes (Lease, record, Events, health, prune) cost a request each
 * instead of a kubectl process each. `kubectl apply --server-side` stays the one child
 * process per apply phase (lib/kube/apply.ts).
 *
 * Where the server, the CA and the credentials come from is lib/kube/kubeconfig.ts's job; this
 * module only speaks HTTP. Errors are structured: the API server's `Status` becomes a
 * {@link KubeApiError} (callers match `status.reason` and `status.code`), and anything that is
 * not an answer of the API server (refused, reset, TLS, timeout, a proxy's HTML page) is a
 * {@link KubeUnreachableError}.
 *
 * Runs under Bun, Node and Deno: only `node:` built-ins.
 */
import { Buffer } from "node:buffer";
import { Agent, request as httpsRequest, type RequestOptions } from "node:https";
import { request as httpRequest, Agent as HttpAgent } from "node:http";
import { errorMessage, KubeApiError, KubeUnreachableError, type KubeStatus } from "../errors.ts";

/** A bearer token that may change (rotated service-account token, exec plugin). */
export interface CredentialSource {
  /** The token to send now; cached by the source until it expires or is invalidated. */
  token(signal?: AbortSignal): Promise<string>;
  /** Called after a 401: the next `token()` must fetch a fresh one. */
  invalidate(): void;
}

/** Where the API server is and how to prove who we are: what a kubeconfig context or a pod's service account says. */
export interface KubeConnection {
  /** Base URL, e.g. `https://127.0.0.1:6443` (a path prefix is kept). */
  server: string;
  /** PEM of the CA that signed the server's certificate; absent: the system's CAs. */
  ca?: string | undefined;
  /** PEM client certificate and key (client-certificate authentication). */
  cert?: string | undefined;
  key?: string | undefined;
  /** Skip verifying the server's certificate (kubeconfig `insecure-skip-tls-verify`). */
  insecureSkipTlsVerify?: boolean | undefined;
  /** SNI and certificate name to expect instead of the URL's host (kubeconfig `tls-server-name`). */
  tlsServerName?: string | undefined;
  /** Bearer token authentication. */
  credentials?: CredentialSource | undefined;
  /** Basic authentication (kubeconfig `username`/`password`; rare). */
  basicAuth?: { username: string; password: string } | undefined;
  /** The default namespace: the context's, or the service account's. */
  namespace: string;
  /** Where this came from, for messages (e.g. `kubeconfig /home/me/.kube/config, context prod`). */
  source: string;
}

/** One request. */
export interface KubeRequest {
  method: "GET" | "POST" | "PUT" | "PATCH" | "DELETE";
  /** Absolute API path, e.g. `/api/v1/namespaces/ns/configmaps/x`. */
  path: string;
  query?: Readonly<Record<string, string | number | boolean | undefined>> | undefined;
  /** Sent as JSON. */
  body?: unknown;
  /** Default `application/json`; `application/merge-patch+json` etc. for PATCH. */
  contentType?: string | undefined;
  /** "text": resolve with the body as text, not parsed (`/readyz` answers `ok`). Default "json". */
  responseType?: "json" | "text" | undefined;
  /** Give up after this many ms (the request is destroyed). Default: the client's `timeoutMs`. */
  timeoutMs?: number | undefined;
  signal?: AbortSignal | undefined;
}

/** Options of {@link KubeApi}. */
export interface KubeApiOptions {
  /** Default per-request timeout, in ms. Default 10000. */
  timeoutMs?: number;
  /** Largest response body accepted, in bytes. Default 64 MiB. */
  maxResponseBytes?: number;
  /** Told about every request when it ends (metrics, tests): the verb, path and HTTP status (0 when unreachable). */
  onResponse?: (method: string, path: string, code: number) => void;
  userAgent?: string;
}

/** Reasons and codes that mean "ask again later", not "this request is wrong". */
const TRANSIENT_REASONS: ReadonlySet<string> = new Set(["ServiceUnavailable", "Timeout", "ServerTimeout", "TooManyRequests", "InternalError"]);

/**
 * True when a failed call says nothing about what was asked: the API server was unreachable,
 * overloaded, timed out or restarting. Such failures are retried and never count against a build.
 */
export function isTransientKubeError(error: unknown): boolean {
  if (error instanceof KubeUnreachableError) return true;
  if (error instanceof KubeApiError) return error.status.code >= 500 || error.status.code === 429 || TRANSIENT_REASONS.has(error.status.reason);
  return false;
}

/** True when the API server answered 404 for the object itself (not for an unknown path: see {@link KubeApi.getOptional}). */
export function isNotFound(error: unknown): error is KubeApiError {
  return error instanceof KubeApiError && error.status.code === 404;
}

/** True for 409 Conflict (a stale resourceVersion or a failed precondition) and AlreadyExists. */
export function isConflict(error: unknown): error is KubeApiError {
  return error instanceof KubeApiError && error.status.code === 409;
}

/** `/api/v1` for the core group, `/apis/<group>/<version>` otherwise. */
export function groupVersionPath(group: string, version: string): string {
  return group === "" ? `/api/${version}` : `/apis/${group}/${version}`;
}

/** The path of a resource collection or object: `…/namespaces/<ns>/<resource>[/<name>]`. */
export function resourcePath(where: { group: string; version: string; resource: string; namespace?: string | undefined; name?: string | undefined }): string {
  const ns = where.namespace === undefined ? "" : `/namespaces/${encodeURIComponent(where.namespace)}`;
  const name = where.name === undefined ? "" : `/${encodeURIComponent(where.name)}`;
  return `${groupVersionPath(where.group, where.version)}${ns}/${where.resource}${name}`;
}

/** The Status in an error body, or one made from the HTTP code when the body is not a Status. */
export function statusOf(code: number, body: string): KubeStatus | undefined {
  try {
    const parsed = JSON.parse(body) as { kind?: unknown; reason?: unknown; message?: unknown; details?: unknown; code?: unknown };
    if (parsed !== null && typeof parsed === "object" && parsed.kind === "Status") {
      const status: KubeStatus = {
        code: typeof parsed.code === "number" ? parsed.code : code,
        reason: typeof parsed.reason === "string" ? parsed.reason : "",
        message: typeof parsed.message === "string" ? parsed.message : "",
      };
      if (parsed.details !== undefined) status.details = parsed.details;
      return status;
    }
  } catch {
    // Not JSON: not an answer of the API server.
  }
  return undefined;
}

export class KubeApi {
  readonly connection: KubeConnection;
  readonly #agent: Agent | HttpAgent;
  readonly #base: URL;
  readonly #timeoutMs: number;
  readonly #maxResponseBytes: number;
  readonly #onResponse: KubeApiOptions["onResponse"];
  readonly #userAgent: string;

  constructor(connection: KubeConnection, options: KubeApiOptions = {}) {
    const { timeoutMs = 10_000, maxResponseBytes = 64 * 1024 * 1024, onResponse, userAgent = "kube-pico-cd" } = options;
    if (!(Number.isFinite(timeoutMs) && timeoutMs > 0)) {
      throw new RangeError(`Cannot create the Kubernetes API client as 'timeoutMs' must be a positive finite number: current value is ${timeoutMs}`);
    }
    let base: URL;
    try {
      base = new URL(connection.server);
    } catch {
      throw new RangeError(`Cannot create the Kubernetes API client as the server is not a URL: current value is ${JSON.stringify(connection.server)} (from ${connection.source})`);
    }
    if (base.protocol !== "https:" && base.protocol !== "http:") {
      throw new RangeError(`Cannot create the Kubernetes API client as the server URL must be https: current value is ${JSON.stringify(connection.server)} (from ${connection.source})`);
    }
    this.connection = connection;
    this.#base = base;
    this.#timeoutMs = timeoutMs;
    this.#maxResponseBytes = maxResponseBytes;
    this.#onResponse = onResponse;
    this.#userAgent = userAgent;
    // One connection is reused across requests (keep-alive); a few in parallel for health and prune.
    this.#agent =
      base.protocol === "https:"
        ? new Agent({
            keepAlive: true,
            maxSockets: 8,
            ...(connection.ca === undefined ? {} : { ca: connection.ca }),
            ...(connection.cert === undefined ? {} : { cert: connection.cert }),
            ...(connection.key === undefined ? {} : { key: connection.key }),
            rejectUnauthorized: connection.insecureSkipTlsVerify !== true,
            ...(connection.tlsServerName === undefined ? {} : { servername: connection.tlsServerName }),
          })
        : new HttpAgent({ keepAlive: true, maxSockets: 8 });
  }

  /** The namespace of the context or service account. */
  get namespace(): string {
    return this.connection.namespace;
  }

  /**
   * Sends one request and resolves with the parsed JSON answer (undefined for an empty body).
   * A 401 is retried once with a fresh token (rotated token, expired exec credential).
   *
   * @throws {KubeApiError} when the API server answers with an error Status.
   * @throws {KubeUnreachableError} when it cannot be reached or does not answer as an API server.
   * @throws the signal's reason when `signal` aborts.
   */
  async request<T = unknown>(req: KubeRequest): Promise<T> {
    try {
      return await this.#once<T>(req);
    } catch (error) {
      if (error instanceof KubeApiError && error.status.code === 401 && this.connection.credentials !== undefined) {
        this.connection.credentials.invalidate();
        return await this.#once<T>(req);
      }
      throw error;
    }
  }

  /** GET; null when the object does not exist (404 with a Status naming it). */
  async getOptional<T = unknown>(path: string, options: { signal?: AbortSignal | undefined; timeoutMs?: number | undefined } = {}): Promise<T | null> {
    try {
      return await this.request<T>({ method: "GET", path, ...options });
    } catch (error) {
      // Only a 404 whose details name the object means "no such object". An unknown path (a
      // wrong server URL, a group or resource not served) answers without details or with
      // empty ones (`"details": {}`, "the server could not find the requested resource").
      const details = isNotFound(error) ? error.status.details : undefined;
      if (typeof details === "object" && details !== null && typeof (details as { name?: unknown }).name === "string") return null;
      throw error;
    }
  }

  /**
   * Resolves when the API server says it is ready (`GET /readyz` answers 200).
   *
   * @throws {KubeUnreachableError} or {@link KubeApiError} when it is not.
   */
  async ready(options: { signal?: AbortSignal | undefined; timeoutMs?: number | undefined } = {}): Promise<void> {
    await this.request<string>({ method: "GET", path: "/readyz", responseType: "text", ...options });
  }

  /** Closes idle keep-alive connections. */
  close(): void {
    this.#agent.destroy();
  }

  async #once<T>(req: KubeRequest): Promise<T> {
    const { method, path, query, body, contentType = "application/json", responseType = "json", timeoutMs = this.#timeoutMs, signal } = req;
    signal?.throwIfAborted();
    const url = new URL(this.#base.toString());
    url.pathname = `${this.#base.pathname.replace(/\/$/, "")}${path}`;
    for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined) url.searchParams.set(k, String(v));
    const headers: Record<string, string> = { Accept: "application/json", "User-Agent": this.#userAgent };
    const { credentials, basicAuth } = this.connection;
    if (credentials !== undefined) {
      const token = await credentials.token(signal);
      if (token !== "") headers["Authorization"] = `Bearer ${token}`;
    } else if (basicAuth !== undefined) {
      headers["Authorization"] = `Basic ${Buffer.from(`${basicAuth.username}:${basicAuth.password}`).toString("base64")}`;
    }
    let payload: Buffer | undefined;
    if (body !== undefined) {
      payload = Buffer.from(JSON.stringify(body), "utf8");
      headers["Content-Type"] = contentType;
      headers["Content-Length"] = String(payload.length);
    }
    const shownPath = path;
    const options: RequestOptions = { method, agent: this.#agent, headers };
    const send = url.protocol === "https:" ? httpsRequest : httpRequest;
    return await new Promise<T>((resolve, reject) => {
      let settled = false;
      const finish = (fn: () => void) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        fn();
      };
      const unreachable = (why: string, cause?: unknown) => {
        this.#onResponse?.(method, shownPath, 0);
        return new KubeUnreachableError(method, shownPath, why, cause === undefined ? undefined : { cause });
      };
      const r = send(url, options, (res) => {
        const chunks: Buffer[] = [];
        let bytes = 0;
        res.on("data", (chunk: Buffer) => {
          bytes += chunk.length;
          if (bytes > this.#maxResponseBytes) {
            r.destroy();
            finish(() => reject(unreachable(`the answer exceeded ${this.#maxResponseBytes} bytes`)));
            return;
          }
          chunks.push(chunk);
        });
        res.on("error", (error) => finish(() => reject(unreachable(errorMessage(error), error))));
        res.on("end", () => {
          const code = res.statusCode ?? 0;
          const text = Buffer.concat(chunks).toString("utf8");
          finish(() => {
            this.#onResponse?.(method, shownPath, code);
            if (code >= 200 && code < 300) {
              if (responseType === "text") return resolve(text as T);
              if (text.trim() === "") return resolve(undefined as T);
              try {
                resolve(JSON.parse(text) as T);
              } catch (error) {
                reject(new KubeUnreachableError(method, shownPath, `the answer (HTTP ${code}) is not JSON`, { cause: error }));
              }
              return;
            }
            const status = statusOf(code, text);
            if (status !== undefined) return reject(new KubeApiError(method, shownPath, status));
            // Not an API server's answer: a proxy, a load balancer, or a half-started server.
            const snippet = text.replace(/\s+/g, " ").trim().slice(0, 200);
            if (code === 401 || code === 403 || code === 404) {
              return reject(new KubeApiError(method, shownPath, { code, reason: code === 401 ? "Unauthorized" : code === 403 ? "Forbidden" : "NotFound", message: snippet || `HTTP ${code}` }));
            }
            reject(new KubeUnreachableError(method, shownPath, `HTTP ${code}${snippet === "" ? "" : `: ${snippet}`}`));
          });
        });
      });
      const timer = setTimeout(() => {
        r.destroy();
        finish(() => reject(unreachable(`no answer within ${timeoutMs} ms`)));
      }, timeoutMs);
      const onAbort = () => {
        r.destroy();
        finish(() => reject(signal?.reason ?? new Error("aborted")));
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      r.on("error", (error) => finish(() => reject(unreachable(errorMessage(error), error))));
      r.end(payload);
    });
  }
}
