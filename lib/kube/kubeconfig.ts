/**
 * Where the API client's connection comes from: a kubeconfig (one file, or the `KUBECONFIG`
 * list merged the way kubectl merges it) or the pod's service account. The result is a
 * {@link KubeConnection} for lib/kube/api.ts: server, CA, client certificate, and a
 * {@link CredentialSource} for tokens that change (a rotated service-account token, an exec
 * credential plugin's short-lived token).
 *
 * The lookup order is controller-runtime's (kubectl's, with the pod's service account ahead
 * of `~/.kube/config`): an explicit path, then `KUBECONFIG`, then the in-cluster service
 * account when `KUBERNETES_SERVICE_HOST` and `KUBERNETES_SERVICE_PORT` are set, then
 * `~/.kube/config`.
 *
 * Not supported, and refused with a {@link KubeConfigError} rather than ignored: `proxy-url`
 * (ignoring it would bypass the proxy) and `auth-provider` (kubectl has dropped its in-tree
 * providers; use an exec plugin such as kubelogin).
 *
 * Runs under Bun, Node and Deno: only `node:` built-ins and `yaml`.
 */
import { Buffer } from "node:buffer";
import { spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import { homedir } from "node:os";
import { delimiter, dirname, isAbsolute, join, resolve, sep } from "node:path";
import { parse as parseYaml } from "yaml";
import { errorMessage, KubeConfigError } from "../errors.ts";
import type { CredentialSource, KubeConnection } from "./api.ts";

/** Where a pod's service account is mounted. */
export const DEFAULT_SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";

/** The ExecCredential API versions this client speaks (v1alpha1 was removed from kubectl). */
export const EXEC_API_VERSIONS = ["client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1"] as const;
export type ExecApiVersion = (typeof EXEC_API_VERSIONS)[number];

const defaults = {
  /** A token file is read again at most this often (the kubelet rotates projected tokens well before they expire). */
  tokenFileReReadMs: 60_000,
  /** An exec credential plugin that has not finished after this long is killed. */
  execTimeoutMs: 60_000,
  /** An exec credential is replaced this long before it expires (at most half its lifetime). */
  execRefreshBeforeMs: 10_000,
  /** Between SIGTERM and SIGKILL of a plugin that is being stopped. */
  execKillGraceMs: 2_000,
  /** Largest ExecCredential accepted on a plugin's stdout. */
  execMaxStdoutBytes: 1024 * 1024,
  /** How much of a plugin's stderr is kept for the error message. */
  execMaxStderrBytes: 16 * 1024,
} as const;

/** Options of {@link loadKubeConnection}. */
export interface LoadKubeConnectionOptions {
  /** A kubeconfig file to use (and nothing else); relative to the working directory. Default: look it up (see the module). */
  kubeconfig?: string | undefined;
  /** The context to use instead of the kubeconfig's `current-context`. Ignored for the in-cluster service account. */
  context?: string | undefined;
  /** The environment: `KUBECONFIG`, `KUBERNETES_SERVICE_HOST`/`_PORT`, `POD_NAMESPACE`, `HOME`; also the base environment of exec plugins. */
  env: Readonly<Record<string, string | undefined>>;
  /** Aborts reading files and a running exec plugin. */
  signal?: AbortSignal | undefined;
  /** Where the pod's service account is mounted. Default {@link DEFAULT_SERVICE_ACCOUNT_DIR}. */
  serviceAccountDir?: string | undefined;
  /** Kill an exec credential plugin after this many ms. Default 60000. */
  execTimeoutMs?: number | undefined;
  /** The clock, in ms since the epoch, for expiry and re-read decisions. Default `Date.now`. */
  now?: (() => number) | undefined;
}

/**
 * Finds out where the Kubernetes API server is and how to authenticate to it, the way
 * kubectl would (see the module for the order), and reads every file it names. An exec
 * credential plugin is run once here, so a broken one fails at start-up. Tokens (token
 * files, exec plugins) are renewed as they rotate or expire; a client certificate from an
 * exec plugin is used as first returned (renewing it takes a new connection and client).
 *
 * @throws {KubeConfigError} naming what is missing or invalid and where (file, context, user).
 * @throws the signal's reason when `signal` aborts.
 */
export async function loadKubeConnection(options: LoadKubeConnectionOptions): Promise<KubeConnection> {
  const { kubeconfig, context, env, signal, serviceAccountDir = DEFAULT_SERVICE_ACCOUNT_DIR, execTimeoutMs = defaults.execTimeoutMs, now = Date.now } = options;
  if (!(Number.isFinite(execTimeoutMs) && execTimeoutMs > 0)) {
    throw new RangeError(`Cannot load the Kubernetes connection as 'execTimeoutMs' must be a positive finite number: current value is ${execTimeoutMs}`);
  }
  signal?.throwIfAborted();
  const io = { env, signal, execTimeoutMs, now };
  if (kubeconfig !== undefined && kubeconfig !== "") {
    const path = resolve(kubeconfig);
    const text = await readKubeconfigFile(path, signal);
    if (text === undefined) throw new KubeConfigError(`Cannot use kubeconfig ${path}: it does not exist`);
    return await connectionFromSelection(selectContext(mergeKubeconfigs([parseKubeconfig(text, path)]), context), io);
  }
  const list = env["KUBECONFIG"];
  if (list !== undefined && list !== "") {
    const paths = [...new Set(list.split(delimiter).filter((p) => p !== "").map((p) => resolve(p)))];
    const files: ParsedKubeconfig[] = [];
    // kubectl skips the files of the list that do not exist.
    for (const path of paths) {
      const text = await readKubeconfigFile(path, signal);
      if (text !== undefined) files.push(parseKubeconfig(text, path));
    }
    if (files.length === 0) throw new KubeConfigError(`Cannot use KUBECONFIG=${list}: none of its files exists`);
    return await connectionFromSelection(selectContext(mergeKubeconfigs(files), context), io);
  }
  const host = env["KUBERNETES_SERVICE_HOST"];
  const port = env["KUBERNETES_SERVICE_PORT"];
  if (host !== undefined && host !== "" && port !== undefined && port !== "") {
    return await inClusterConnection({ host, port, dir: serviceAccountDir, podNamespace: env["POD_NAMESPACE"], signal, now });
  }
  const home = env["HOME"] !== undefined && env["HOME"] !== "" ? env["HOME"] : homedir();
  const path = join(home, ".kube", "config");
  const text = await readKubeconfigFile(path, signal);
  if (text === undefined) {
    throw new KubeConfigError(
      `Cannot find Kubernetes credentials: no kubeconfig was given, KUBECONFIG is not set, KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set (not in a pod), and ${path} does not exist`,
    );
  }
  return await connectionFromSelection(selectContext(mergeKubeconfigs([parseKubeconfig(text, path)]), context), io);
}

// ---------------------------------------------------------------------------------------------
// Kubeconfig files: parse, merge, select (pure)

/** A named entry of a kubeconfig (`clusters[]`, `users[]`, `contexts[]`) and the file it came from. */
export interface KubeconfigEntry {
  name: string;
  /** The entry's body (`cluster:`, `user:` or `context:`), as parsed. */
  body: Readonly<Record<string, unknown>>;
  /** The absolute path of the file that defined it: relative paths in it are relative to this file's directory. */
  file: string;
}

/** One kubeconfig file, parsed. */
export interface ParsedKubeconfig {
  path: string;
  currentContext: string | undefined;
  clusters: readonly KubeconfigEntry[];
  users: readonly KubeconfigEntry[];
  contexts: readonly KubeconfigEntry[];
}

/** Several kubeconfig files as one, the way kubectl merges `KUBECONFIG`. */
export interface MergedKubeconfig {
  /** The files read, in order. */
  files: readonly string[];
  currentContext: string | undefined;
  clusters: ReadonlyMap<string, KubeconfigEntry>;
  users: ReadonlyMap<string, KubeconfigEntry>;
  contexts: ReadonlyMap<string, KubeconfigEntry>;
}

/**
 * Parses the text of one kubeconfig file (YAML or JSON). An empty file is an empty config,
 * as for kubectl.
 *
 * @throws {KubeConfigError} when it is not YAML, not a mapping, or a list is malformed.
 */
export function parseKubeconfig(text: string, path: string): ParsedKubeconfig {
  const fail = (why: string) => new KubeConfigError(`Cannot use kubeconfig ${path}: ${why}`);
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (error) {
    throw fail(`it is not valid YAML: ${errorMessage(error).split("\n")[0]}`);
  }
  if (doc === null || doc === undefined) return { path, currentContext: undefined, clusters: [], users: [], contexts: [] };
  if (!isRecord(doc)) throw fail("it is not a YAML mapping");
  const currentContext = doc["current-context"];
  if (currentContext !== undefined && currentContext !== null && typeof currentContext !== "string") throw fail("current-context must be a string");
  const list = (key: "clusters" | "users" | "contexts", bodyKey: "cluster" | "user" | "context"): KubeconfigEntry[] => {
    const items = doc[key];
    if (items === undefined || items === null) return [];
    if (!Array.isArray(items)) throw fail(`${key} must be a list`);
    const seen = new Set<string>();
    return items.map((item: unknown, i) => {
      if (!isRecord(item) || typeof item["name"] !== "string" || item["name"] === "") throw fail(`${key}[${i}] has no name`);
      const name = item["name"];
      if (seen.has(name)) throw fail(`${key} has two entries named "${name}"`);
      seen.add(name);
      const body = item[bodyKey] ?? {};
      if (!isRecord(body)) throw fail(`${key}[${i}] ("${name}"): ${bodyKey} must be a mapping`);
      return { name, body, file: path };
    });
  };
  return {
    path,
    currentContext: typeof currentContext === "string" && currentContext !== "" ? currentContext : undefined,
    clusters: list("clusters", "cluster"),
    users: list("users", "user"),
    contexts: list("contexts", "context"),
  };
}

/**
 * Merges kubeconfig files as kubectl merges a `KUBECONFIG` list: the first file that sets a
 * value wins — `current-context`, and each cluster, user and context by name, whole (entries
 * of the same name are never merged field by field).
 */
export function mergeKubeconfigs(files: readonly ParsedKubeconfig[]): MergedKubeconfig {
  const clusters = new Map<string, KubeconfigEntry>();
  const users = new Map<string, KubeconfigEntry>();
  const contexts = new Map<string, KubeconfigEntry>();
  let currentContext: string | undefined;
  for (const file of files) {
    currentContext ??= file.currentContext;
    for (const [map, entries] of [[clusters, file.clusters], [users, file.users], [contexts, file.contexts]] as const) {
      for (const entry of entries) if (!map.has(entry.name)) map.set(entry.name, entry);
    }
  }
  return { files: files.map((f) => f.path), currentContext, clusters, users, contexts };
}

/** An exec credential plugin, as a kubeconfig user names it (`user.exec`), with its command resolved. */
export interface ExecPluginConfig {
  apiVersion: ExecApiVersion;
  /** The command: a name looked up on PATH, or an absolute path (a relative path with a `/` is resolved against the kubeconfig's directory). */
  command: string;
  args: readonly string[];
  /** Extra environment variables for the plugin, on top of the process's. */
  env: Readonly<Record<string, string>>;
  /** Printed when the command is not found: how to install it. */
  installHint: string | undefined;
  /** Pass the cluster (server, CA, `extensions["client.authentication.k8s.io/exec"]`) in `KUBERNETES_EXEC_INFO`. */
  provideClusterInfo: boolean;
}

/** The cluster of the selected context: where the API server is and how to trust it. */
export interface SelectedCluster {
  name: string;
  server: string;
  /** PEM of the CA, from `certificate-authority-data` (which wins over the file). */
  caData: string | undefined;
  /** Absolute path of `certificate-authority`. */
  caFile: string | undefined;
  insecureSkipTlsVerify: boolean;
  tlsServerName: string | undefined;
  /** `extensions[name=client.authentication.k8s.io/exec].extension`, passed to exec plugins with provideClusterInfo. */
  execExtension: unknown;
}

/** The user of the selected context: how to authenticate. */
export interface SelectedUser {
  name: string;
  /** PEM client certificate and key from the `-data` fields (which win over the files). */
  certData: string | undefined;
  keyData: string | undefined;
  /** Absolute paths of `client-certificate` and `client-key`. */
  certFile: string | undefined;
  keyFile: string | undefined;
  token: string | undefined;
  /** Absolute path of `tokenFile`; when set it wins over `token`, as in kubectl. */
  tokenFile: string | undefined;
  basicAuth: { username: string; password: string } | undefined;
  exec: ExecPluginConfig | undefined;
}

/** What a context of a (merged) kubeconfig says: the result of {@link selectContext}. */
export interface KubeconfigSelection {
  /** The files read, in order. */
  files: readonly string[];
  contextName: string;
  /** The context's namespace; "default" when it names none. */
  namespace: string;
  cluster: SelectedCluster;
  /** Absent when the context names no user (anonymous requests). */
  user: SelectedUser | undefined;
  /** For messages and `KubeConnection.source`: `kubeconfig <files>, context <name>`. */
  source: string;
}

/**
 * Picks a context (the given one, else `current-context`) and resolves its cluster and
 * user, with relative file paths made absolute against the directory of the file that
 * defined each entry. Reads no file.
 *
 * @throws {KubeConfigError} when the context, its cluster or its user does not exist, or a field is invalid.
 */
export function selectContext(config: MergedKubeconfig, context?: string): KubeconfigSelection {
  const files = config.files.join(delimiter);
  const fail = (why: string) => new KubeConfigError(`Cannot use kubeconfig ${files}: ${why}`);
  const names = (map: ReadonlyMap<string, unknown>) => (map.size === 0 ? "none" : [...map.keys()].sort().join(", "));
  const contextName = context !== undefined && context !== "" ? context : config.currentContext;
  if (contextName === undefined) throw fail(`no context was given and current-context is not set (contexts: ${names(config.contexts)})`);
  const ctx = config.contexts.get(contextName);
  if (ctx === undefined) throw fail(`context "${contextName}" does not exist (contexts: ${names(config.contexts)})`);
  const where = `context "${contextName}"`;
  const clusterName = optionalString(ctx.body, "cluster", where, fail);
  if (clusterName === undefined) throw fail(`${where} names no cluster`);
  const clusterEntry = config.clusters.get(clusterName);
  if (clusterEntry === undefined) throw fail(`${where} names cluster "${clusterName}", which does not exist (clusters: ${names(config.clusters)})`);
  const userName = optionalString(ctx.body, "user", where, fail);
  let userEntry: KubeconfigEntry | undefined;
  if (userName !== undefined) {
    userEntry = config.users.get(userName);
    if (userEntry === undefined) throw fail(`${where} names user "${userName}", which does not exist (users: ${names(config.users)})`);
  }
  return {
    files: config.files,
    contextName,
    namespace: optionalString(ctx.body, "namespace", where, fail) ?? "default",
    cluster: selectedCluster(clusterEntry, fail),
    user: userEntry === undefined ? undefined : selectedUser(userEntry, fail),
    source: `kubeconfig ${files}, context ${contextName}`,
  };
}

function selectedCluster(entry: KubeconfigEntry, fail: (why: string) => KubeConfigError): SelectedCluster {
  const { body } = entry;
  const where = `cluster "${entry.name}"`;
  const server = optionalString(body, "server", where, fail);
  if (server === undefined) throw fail(`${where} has no server`);
  if (optionalString(body, "proxy-url", where, fail) !== undefined) throw fail(`${where} sets proxy-url, which is not supported`);
  const insecure = body["insecure-skip-tls-verify"];
  if (insecure !== undefined && insecure !== null && typeof insecure !== "boolean") throw fail(`${where}: insecure-skip-tls-verify must be true or false`);
  const caData = optionalString(body, "certificate-authority-data", where, fail);
  return {
    name: entry.name,
    server,
    caData: caData === undefined ? undefined : pemFromBase64(caData, `${where}: certificate-authority-data`, fail),
    caFile: optionalPath(body, "certificate-authority", entry, where, fail),
    insecureSkipTlsVerify: insecure === true,
    tlsServerName: optionalString(body, "tls-server-name", where, fail),
    execExtension: execExtensionOf(body),
  };
}

function execExtensionOf(body: Readonly<Record<string, unknown>>): unknown {
  const extensions = body["extensions"];
  if (!Array.isArray(extensions)) return undefined;
  const found: unknown = extensions.find((e: unknown) => isRecord(e) && e["name"] === "client.authentication.k8s.io/exec");
  return isRecord(found) ? found["extension"] : undefined;
}

function selectedUser(entry: KubeconfigEntry, fail: (why: string) => KubeConfigError): SelectedUser {
  const { body } = entry;
  const where = `user "${entry.name}"`;
  const str = (key: string) => optionalString(body, key, where, fail);
  const path = (key: string) => optionalPath(body, key, entry, where, fail);
  if (body["auth-provider"] !== undefined && body["auth-provider"] !== null) {
    const provider = isRecord(body["auth-provider"]) && typeof body["auth-provider"]["name"] === "string" ? ` "${body["auth-provider"]["name"]}"` : "";
    throw fail(`${where} uses auth-provider${provider}, which is not supported: use an exec credential plugin instead`);
  }
  const certData = str("client-certificate-data");
  const keyData = str("client-key-data");
  const username = str("username");
  const password = str("password");
  const selected: SelectedUser = {
    name: entry.name,
    certData: certData === undefined ? undefined : pemFromBase64(certData, `${where}: client-certificate-data`, fail),
    keyData: keyData === undefined ? undefined : pemFromBase64(keyData, `${where}: client-key-data`, fail),
    certFile: path("client-certificate"),
    keyFile: path("client-key"),
    token: str("token"),
    tokenFile: path("tokenFile"),
    basicAuth: username === undefined && password === undefined ? undefined : { username: username ?? "", password: password ?? "" },
    exec: execConfigOf(entry, fail),
  };
  const hasCert = selected.certData !== undefined || selected.certFile !== undefined;
  const hasKey = selected.keyData !== undefined || selected.keyFile !== undefined;
  if (hasCert !== hasKey) throw fail(`${where} has a client ${hasCert ? "certificate but no client key" : "key but no client certificate"}`);
  const methods = [
    ...(selected.token !== undefined || selected.tokenFile !== undefined ? ["token"] : []),
    ...(selected.basicAuth !== undefined ? ["username/password"] : []),
    ...(selected.exec !== undefined ? ["exec"] : []),
  ];
  if (methods.length > 1) throw fail(`${where} has more than one authentication method (${methods.join(", ")}); only one is allowed`);
  return selected;
}

function execConfigOf(entry: KubeconfigEntry, fail: (why: string) => KubeConfigError): ExecPluginConfig | undefined {
  const exec = entry.body["exec"];
  if (exec === undefined || exec === null) return undefined;
  const where = `user "${entry.name}": exec`;
  if (!isRecord(exec)) throw fail(`${where} must be a mapping`);
  const apiVersion = optionalString(exec, "apiVersion", where, fail);
  if (apiVersion === undefined) throw fail(`${where} has no apiVersion (supported: ${EXEC_API_VERSIONS.join(", ")})`);
  if (!(EXEC_API_VERSIONS as readonly string[]).includes(apiVersion)) {
    throw fail(`${where}: apiVersion "${apiVersion}" is not supported (supported: ${EXEC_API_VERSIONS.join(", ")})`);
  }
  const command = optionalString(exec, "command", where, fail);
  if (command === undefined) throw fail(`${where} has no command`);
  const args = exec["args"] ?? [];
  if (!Array.isArray(args) || !args.every((a: unknown) => typeof a === "string")) throw fail(`${where}: args must be a list of strings`);
  const envList = exec["env"] ?? [];
  if (!Array.isArray(envList)) throw fail(`${where}: env must be a list of {name, value}`);
  const env: Record<string, string> = {};
  for (const item of envList as unknown[]) {
    if (!isRecord(item) || typeof item["name"] !== "string" || typeof item["value"] !== "string") throw fail(`${where}: env must be a list of {name, value}`);
    env[item["name"]] = item["value"];
  }
  const interactiveMode = optionalString(exec, "interactiveMode", where, fail);
  if (interactiveMode === "Always") throw fail(`${where} asks for an interactive terminal (interactiveMode: Always), which this program does not have`);
  const provide = exec["provideClusterInfo"];
  // kubectl resolves a command against the kubeconfig's directory only when it holds a path separator.
  const resolvedCommand = !isAbsolute(command) && command.includes(sep) ? resolve(dirname(entry.file), command) : command;
  return {
    apiVersion: apiVersion as ExecApiVersion,
    command: resolvedCommand,
    args: args as string[],
    env,
    installHint: optionalString(exec, "installHint", where, fail),
    provideClusterInfo: provide === true,
  };
}

function optionalString(body: Readonly<Record<string, unknown>>, key: string, where: string, fail: (why: string) => KubeConfigError): string | undefined {
  const value = body[key];
  if (value === undefined || value === null || value === "") return undefined;
  if (typeof value !== "string") throw fail(`${where}: ${key} must be a string`);
  return value;
}

function optionalPath(body: Readonly<Record<string, unknown>>, key: string, entry: KubeconfigEntry, where: string, fail: (why: string) => KubeConfigError): string | undefined {
  const value = optionalString(body, key, where, fail);
  return value === undefined ? undefined : resolve(dirname(entry.file), value);
}

function pemFromBase64(value: string, what: string, fail: (why: string) => KubeConfigError): string {
  const text = Buffer.from(value, "base64").toString("utf8");
  if (!text.includes("-----BEGIN ")) throw fail(`${what} is not base64 of PEM data`);
  return text;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

// ---------------------------------------------------------------------------------------------
// From a selection to a connection (reads files, runs the exec plugin)

interface ConnectionIo {
  env: Readonly<Record<string, string | undefined>>;
  signal: AbortSignal | undefined;
  execTimeoutMs: number;
  now: () => number;
}

async function connectionFromSelection(selection: KubeconfigSelection, io: ConnectionIo): Promise<KubeConnection> {
  const { cluster, user, source } = selection;
  const files = selection.files.join(delimiter);
  const read = async (path: string, what: string) => {
    try {
      return await readFile(path, { encoding: "utf8", signal: io.signal });
    } catch (error) {
      io.signal?.throwIfAborted();
      throw new KubeConfigError(`Cannot use kubeconfig ${files}: cannot read ${what} ${path}: ${errorMessage(error)}`, { cause: error });
    }
  };
  const connection: KubeConnection = { server: cluster.server, namespace: selection.namespace, source };
  if (cluster.caData !== undefined) connection.ca = cluster.caData;
  else if (cluster.caFile !== undefined) connection.ca = await read(cluster.caFile, `certificate-authority of cluster "${cluster.name}"`);
  if (cluster.insecureSkipTlsVerify) connection.insecureSkipTlsVerify = true;
  if (cluster.tlsServerName !== undefined) connection.tlsServerName = cluster.tlsServerName;
  if (user === undefined) return connection;

  const certWhat = `client-certificate of user "${user.name}"`;
  const keyWhat = `client-key of user "${user.name}"`;
  if (user.certData !== undefined) connection.cert = user.certData;
  else if (user.certFile !== undefined) connection.cert = await read(user.certFile, certWhat);
  if (user.keyData !== undefined) connection.key = user.keyData;
  else if (user.keyFile !== undefined) connection.key = await read(user.keyFile, keyWhat);
  if (user.basicAuth !== undefined) connection.basicAuth = user.basicAuth;
  if (user.tokenFile !== undefined) {
    const tokens = fileTokenSource(user.tokenFile, { now: io.now, describe: `tokenFile of user "${user.name}", ${source}` });
    await tokens.token(io.signal); // A missing file fails now, not at the first request.
    connection.credentials = tokens;
  } else if (user.token !== undefined) {
    connection.credentials = staticToken(user.token);
  }
  if (user.exec !== undefined) {
    const exec = execCredentialSource(user.exec, {
      describe: `${source}, user ${user.name}`,
      now: io.now,
      run: (config, signal) =>
        runExecPlugin(config, { env: io.env, cluster: { ...cluster, caData: connection.ca }, describe: `${source}, user ${user.name}`, signal, timeoutMs: io.execTimeoutMs }),
    });
    // Run it now: a broken plugin fails at start-up, and a certificate it returns must be in
    // the connection before the API client builds its TLS agent.
    const first = await exec.credential(io.signal);
    if (first.cert !== undefined && first.key !== undefined) {
      connection.cert = first.cert;
      connection.key = first.key;
    }
    if (first.token !== undefined) connection.credentials = exec;
  }
  return connection;
}

function staticToken(token: string): CredentialSource {
  return { token: () => Promise.resolve(token), invalidate: () => {} };
}

/** The text of a kubeconfig file; undefined when it does not exist. */
async function readKubeconfigFile(path: string, signal: AbortSignal | undefined): Promise<string | undefined> {
  try {
    return await readFile(path, { encoding: "utf8", signal });
  } catch (error) {
    signal?.throwIfAborted();
    if ((error as { code?: unknown }).code === "ENOENT") return undefined;
    throw new KubeConfigError(`Cannot use kubeconfig ${path}: cannot read it: ${errorMessage(error)}`, { cause: error });
  }
}

// ---------------------------------------------------------------------------------------------
// Token files (kubeconfig tokenFile, the pod's service-account token)

/** Options of {@link fileTokenSource}. */
export interface FileTokenSourceOptions {
  /** Read the file again when the last read is this many ms old. Default 60000. */
  reReadMs?: number | undefined;
  /** The clock, in ms. Default `Date.now`. */
  now?: (() => number) | undefined;
  /** What the file is, for messages (e.g. `in-cluster service account token`). Default "token file". */
  describe?: string | undefined;
}

/**
 * A bearer token read from a file that may be replaced at any time (the kubelet rotates a
 * projected service-account token): read again at most every `reReadMs`, and at once after
 * `invalidate()` (a 401). When a re-read fails, the last token is kept, as client-go does.
 *
 * @throws {KubeConfigError} from `token()` when the file cannot be read (or is empty) and no token was read before.
 */
export function fileTokenSource(path: string, options: FileTokenSourceOptions = {}): CredentialSource {
  const { reReadMs = defaults.tokenFileReReadMs, now = Date.now, describe = "token file" } = options;
  let cached: string | undefined;
  let readAt = 0;
  let stale = true;
  return {
    async token(signal?: AbortSignal): Promise<string> {
      if (cached !== undefined && !stale && now() - readAt < reReadMs) return cached;
      let text: string;
      try {
        text = (await readFile(path, { encoding: "utf8", signal })).trim();
        if (text === "") throw new Error("the file is empty");
      } catch (error) {
        signal?.throwIfAborted();
        if (cached !== undefined) return cached;
        throw new KubeConfigError(`Cannot read ${path} (${describe}): ${errorMessage(error)}`, { cause: error });
      }
      cached = text;
      readAt = now();
      stale = false;
      return text;
    },
    invalidate(): void {
      stale = true;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// In-cluster service account

async function inClusterConnection(options: {
  host: string;
  port: string;
  dir: string;
  podNamespace: string | undefined;
  signal: AbortSignal | undefined;
  now: () => number;
}): Promise<KubeConnection> {
  const { host, port, dir, podNamespace, signal, now } = options;
  const fail = (why: string, cause?: unknown) =>
    new KubeConfigError(`Cannot use the in-cluster service account (${dir}): ${why}`, cause === undefined ? undefined : { cause });
  const read = async (name: string): Promise<string | undefined> => {
    try {
      return await readFile(join(dir, name), { encoding: "utf8", signal });
    } catch (error) {
      signal?.throwIfAborted();
      if ((error as { code?: unknown }).code === "ENOENT") return undefined;
      throw fail(`cannot read ${join(dir, name)}: ${errorMessage(error)}`, error);
    }
  };
  const ca = await read("ca.crt");
  if (ca === undefined) throw fail(`${join(dir, "ca.crt")} does not exist`);
  const tokens = fileTokenSource(join(dir, "token"), { now, describe: "in-cluster service account token" });
  await tokens.token(signal); // A missing token fails now, not at the first request.
  // Like client-go: the downward API's POD_NAMESPACE, then the mounted namespace file.
  const namespace = podNamespace !== undefined && podNamespace !== "" ? podNamespace : ((await read("namespace"))?.trim() || "default");
  const hostPart = host.includes(":") ? `[${host}]` : host;
  return { server: `https://${hostPart}:${port}`, ca, credentials: tokens, namespace, source: "in-cluster service account" };
}

// ---------------------------------------------------------------------------------------------
// Exec credential plugins (client.authentication.k8s.io ExecCredential)

/** What an exec plugin answered: a token, a client certificate and key, or both. */
export interface ExecCredentialResult {
  token?: string | undefined;
  /** PEM. */
  cert?: string | undefined;
  /** PEM. */
  key?: string | undefined;
  /** `status.expirationTimestamp` in ms since the epoch; absent: valid until a 401. */
  expiresAtMs?: number | undefined;
}

/**
 * Parses what an exec plugin printed on stdout: an ExecCredential of `apiVersion`, with a
 * `status` holding `token` and/or `clientCertificateData` + `clientKeyData`. `plugin` names
 * the plugin in messages. The output is never quoted in errors: it holds secrets.
 *
 * @throws {KubeConfigError} when it is not such an ExecCredential.
 */
export function parseExecCredential(stdout: string, apiVersion: ExecApiVersion, plugin: string): ExecCredentialResult {
  const fail = (why: string) => new KubeConfigError(`Cannot use the credential of exec plugin ${plugin}: ${why}`);
  let doc: unknown;
  try {
    doc = JSON.parse(stdout);
  } catch {
    throw fail("its output is not JSON");
  }
  if (!isRecord(doc)) throw fail("its output is not a JSON object");
  if (doc["kind"] !== "ExecCredential") throw fail(`its output has kind ${JSON.stringify(doc["kind"] ?? null)}, expected "ExecCredential"`);
  if (doc["apiVersion"] !== apiVersion) throw fail(`its output has apiVersion ${JSON.stringify(doc["apiVersion"] ?? null)}, but the kubeconfig asks for "${apiVersion}"`);
  const status = doc["status"];
  if (!isRecord(status)) throw fail("its ExecCredential has no status");
  const field = (key: string): string | undefined => {
    const value = status[key];
    if (value === undefined || value === null || value === "") return undefined;
    if (typeof value !== "string") throw fail(`status.${key} must be a string`);
    return value;
  };
  const token = field("token");
  const cert = field("clientCertificateData");
  const key = field("clientKeyData");
  if (cert !== undefined && key === undefined) throw fail("its status has clientCertificateData but no clientKeyData");
  if (key !== undefined && cert === undefined) throw fail("its status has clientKeyData but no clientCertificateData");
  if (token === undefined && cert === undefined) throw fail("its status has neither a token nor clientCertificateData and clientKeyData");
  const expiration = field("expirationTimestamp");
  const result: ExecCredentialResult = {};
  if (token !== undefined) result.token = token;
  if (cert !== undefined && key !== undefined) {
    result.cert = cert;
    result.key = key;
  }
  if (expiration !== undefined) {
    const ms = Date.parse(expiration);
    if (!/^\d{4}-\d\d-\d\dT/.test(expiration) || Number.isNaN(ms)) throw fail(`status.expirationTimestamp is not an RFC 3339 time: current value is ${JSON.stringify(expiration)}`);
    result.expiresAtMs = ms;
  }
  return result;
}

/** Options of {@link execCredentialSource}. */
export interface ExecCredentialSourceOptions {
  /** Runs the plugin and resolves with its stdout: {@link runExecPlugin}, or a stand-in in tests. */
  run: (config: ExecPluginConfig, signal: AbortSignal | undefined) => Promise<string>;
  /** Where the plugin is configured, for messages (e.g. `kubeconfig /x, context prod, user admin`). */
  describe: string;
  /** The clock, in ms. Default `Date.now`. */
  now?: (() => number) | undefined;
  /** Fetch a new credential this many ms before it expires (at most half its lifetime). Default 10000. */
  refreshBeforeMs?: number | undefined;
}

/** A {@link CredentialSource} backed by an exec plugin; `credential()` gives the whole answer. */
export interface ExecCredentialSource extends CredentialSource {
  credential(signal?: AbortSignal): Promise<ExecCredentialResult>;
}

/**
 * Runs an exec plugin when a credential is needed and caches its answer until shortly
 * before `status.expirationTimestamp` (without one: until `invalidate()`). Callers that ask
 * while the plugin runs share that run.
 */
export function execCredentialSource(config: ExecPluginConfig, options: ExecCredentialSourceOptions): ExecCredentialSource {
  const { run, describe, now = Date.now, refreshBeforeMs = defaults.execRefreshBeforeMs } = options;
  const plugin = `${describeCommand(config)} (${describe})`;
  let cached: { result: ExecCredentialResult; refreshAtMs: number } | undefined;
  let running: Promise<ExecCredentialResult> | undefined;
  const fetchNew = async (signal: AbortSignal | undefined): Promise<ExecCredentialResult> => {
    const fetchedAt = now();
    const result = parseExecCredential(await run(config, signal), config.apiVersion, plugin);
    const { expiresAtMs } = result;
    const refreshAtMs = expiresAtMs === undefined ? Infinity : expiresAtMs - Math.min(refreshBeforeMs, Math.max(0, (expiresAtMs - fetchedAt) / 2));
    cached = { result, refreshAtMs };
    return result;
  };
  const credential = async (signal?: AbortSignal): Promise<ExecCredentialResult> => {
    if (cached !== undefined && now() < cached.refreshAtMs) return cached.result;
    running ??= fetchNew(signal).finally(() => (running = undefined));
    return await running;
  };
  return {
    credential,
    async token(signal?: AbortSignal): Promise<string> {
      return (await credential(signal)).token ?? "";
    },
    invalidate(): void {
      cached = undefined;
    },
  };
}

/** Options of {@link runExecPlugin}. */
export interface RunExecPluginOptions {
  /** The base environment of the plugin (the plugin's `env` entries and KUBERNETES_EXEC_INFO are added). */
  env: Readonly<Record<string, string | undefined>>;
  /** The cluster, passed in KUBERNETES_EXEC_INFO when the plugin asks for it (provideClusterInfo). */
  cluster?: SelectedCluster | undefined;
  /** Where the plugin is configured, for messages (e.g. `kubeconfig /x, context prod, user admin`). */
  describe?: string | undefined;
  /** Kill the plugin after this many ms. Default 60000. */
  timeoutMs?: number | undefined;
  /** Aborting kills the plugin. */
  signal?: AbortSignal | undefined;
}

/**
 * Runs an exec credential plugin (argv array, no shell; stdin is not a terminal) and
 * resolves with its stdout. `KUBERNETES_EXEC_INFO` tells it the protocol version,
 * `spec.interactive: false`, and the cluster when it has `provideClusterInfo`.
 *
 * @throws {KubeConfigError} naming the command when it cannot be started (with its
 * `installHint`), exits non-zero (with the exit code and stderr's first lines), times out,
 * or prints too much.
 * @throws the signal's reason when `signal` aborts.
 */
export function runExecPlugin(config: ExecPluginConfig, options: RunExecPluginOptions): Promise<string> {
  const { env, cluster, describe, timeoutMs = defaults.execTimeoutMs, signal } = options;
  const { execKillGraceMs, execMaxStdoutBytes, execMaxStderrBytes } = defaults;
  signal?.throwIfAborted();
  const spec: Record<string, unknown> = { interactive: false };
  if (config.provideClusterInfo && cluster !== undefined) spec["cluster"] = execClusterInfo(cluster);
  const childEnv: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined) childEnv[k] = v;
  Object.assign(childEnv, config.env, { KUBERNETES_EXEC_INFO: JSON.stringify({ apiVersion: config.apiVersion, kind: "ExecCredential", spec }) });
  const command = `${describeCommand(config)}${describe === undefined ? "" : ` (${describe})`}`;

  return new Promise<string>((resolvePromise, reject) => {
    const child = spawn(config.command, [...config.args], { env: childEnv, stdio: ["ignore", "pipe", "pipe"], windowsHide: true });
    const stdout: Buffer[] = [];
    let stdoutBytes = 0;
    let stderr = "";
    let ended: "timeout" | "aborted" | "output-limit" | undefined;
    let settled = false;
    let killTimer: ReturnType<typeof setTimeout> | undefined;
    let drainTimer: ReturnType<typeof setTimeout> | undefined;
    const kill = (why: "timeout" | "aborted" | "output-limit") => {
      if (ended !== undefined) return;
      ended = why;
      child.kill("SIGTERM");
      killTimer = setTimeout(() => child.kill("SIGKILL"), execKillGraceMs);
    };
    const timer = setTimeout(() => kill("timeout"), timeoutMs);
    const onAbort = () => kill("aborted");
    signal?.addEventListener("abort", onAbort, { once: true });
    const settle = (fn: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      clearTimeout(killTimer);
      clearTimeout(drainTimer);
      signal?.removeEventListener("abort", onAbort);
      fn();
    };
    const fail = (why: string, cause?: unknown) =>
      new KubeConfigError(`Cannot get credentials from exec plugin ${command}: ${why}`, cause === undefined ? undefined : { cause });

    child.stdout.on("data", (chunk: Buffer) => {
      stdoutBytes += chunk.length;
      if (stdoutBytes > execMaxStdoutBytes) return kill("output-limit");
      stdout.push(chunk);
    });
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
      if (stderr.length < execMaxStderrBytes) stderr += chunk.slice(0, execMaxStderrBytes - stderr.length);
    });
    child.on("error", (error: Error & { code?: unknown }) => {
      // A process that never started emits no reliable "close" on every runtime.
      if (child.pid !== undefined) return;
      settle(() => {
        if (error.code === "ENOENT") {
          const hint = config.installHint === undefined ? "" : ` ${config.installHint.trim().replace(/\s*\n\s*/g, " ")}`;
          reject(fail(`the command ${JSON.stringify(config.command)} was not found (${error.message}).${hint}`, error));
        } else {
          reject(fail(`cannot start it: ${error.message}`, error));
        }
      });
    });
    // A grandchild that inherited stdout can keep "close" from coming; once the plugin
    // itself has exited, give the pipes a moment, then close them from our side.
    child.on("exit", () => {
      drainTimer = setTimeout(() => {
        child.stdout.destroy();
        child.stderr.destroy();
      }, 1_000);
    });
    child.on("close", (code, killedBy) => {
      settle(() => {
        const firstLines = stderr.trim().split("\n").slice(0, 3).join(" | ");
        const withStderr = firstLines === "" ? "" : `: ${firstLines}`;
        if (ended === "aborted") reject(signal?.reason ?? new Error("aborted"));
        else if (ended === "timeout") reject(fail(`it did not finish within ${timeoutMs} ms${withStderr}`));
        else if (ended === "output-limit") reject(fail(`it printed more than ${execMaxStdoutBytes} bytes`));
        else if (code !== 0) reject(fail(`${code === null ? `killed by ${killedBy}` : `exit code ${code}`}${withStderr}`));
        else resolvePromise(Buffer.concat(stdout).toString("utf8"));
      });
    });
  });
}

/** `spec.cluster` of KUBERNETES_EXEC_INFO (client.authentication.k8s.io Cluster). */
function execClusterInfo(cluster: SelectedCluster): Record<string, unknown> {
  const info: Record<string, unknown> = { server: cluster.server };
  if (cluster.tlsServerName !== undefined) info["tls-server-name"] = cluster.tlsServerName;
  if (cluster.insecureSkipTlsVerify) info["insecure-skip-tls-verify"] = true;
  if (cluster.caData !== undefined) info["certificate-authority-data"] = Buffer.from(cluster.caData, "utf8").toString("base64");
  if (cluster.execExtension !== undefined) info["config"] = cluster.execExtension;
  return info;
}

/** The plugin's argv as one readable line, in backquotes. */
function describeCommand(config: ExecPluginConfig): string {
  const words = [config.command, ...config.args].map((arg) => (/^[\w@%+=:,./-]+$/.test(arg) ? arg : JSON.stringify(arg)));
  return `\`${words.join(" ")}\``;
}
