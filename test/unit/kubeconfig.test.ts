/**
 * Where the API client's connection comes from: kubeconfig parsing, merging and context
 * selection, the lookup order, the in-cluster service account, token files and exec
 * credential plugins (small shell scripts stand in for real plugins). Talking to a real API
 * server with each form is test/integration/kubeconfig.test.ts.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { KubeConfigError } from "../../lib/errors.ts";
import {
  execCredentialSource,
  fileTokenSource,
  loadKubeConnection,
  mergeKubeconfigs,
  parseExecCredential,
  parseKubeconfig,
  runExecPlugin,
  selectContext,
  type ExecPluginConfig,
} from "../../lib/kube/kubeconfig.ts";
import { thrown } from "../helpers/thrown.ts";

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "kpcd-kubeconfig-unit-"));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** A file in this test's directory (parents created). */
function file(name: string, text: string, mode = 0o644): string {
  const path = join(dir, name);
  mkdirSync(join(path, ".."), { recursive: true });
  writeFileSync(path, text);
  chmodSync(path, mode);
  return path;
}

/** What `promise` rejects with, checked to be a `type`. */
async function rejection<E extends Error>(promise: Promise<unknown>, type: abstract new (...args: never[]) => E): Promise<E> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(type);
    return error as E;
  }
  throw new Error(`expected a ${type.name}, but the promise resolved`);
}

const PEM_CA = "-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n";
const PEM_CERT = "-----BEGIN CERTIFICATE-----\nCLIENT\n-----END CERTIFICATE-----\n";
const PEM_KEY = "-----BEGIN PRIVATE KEY-----\nKEY\n-----END PRIVATE KEY-----\n";
const b64 = (text: string) => Buffer.from(text).toString("base64");

/** Two contexts (a, b) on two clusters with two users; current-context a. */
const TWO_CONTEXTS = `
apiVersion: v1
kind: Config
current-context: a
clusters:
- name: one
  cluster:
    server: https://one.example:6443
    certificate-authority-data: ${b64(PEM_CA)}
- name: two
  cluster:
    server: https://two.example:6443
    insecure-skip-tls-verify: true
    tls-server-name: api.two.example
users:
- name: alice
  user:
    token: alice-token
- name: bob
  user:
    username: bob
    password: secret
contexts:
- name: a
  context:
    cluster: one
    user: alice
    namespace: team-a
- name: b
  context:
    cluster: two
    user: bob
`;

const select = (text: string, context?: string, path = "/x") => selectContext(mergeKubeconfigs([parseKubeconfig(text, path)]), context);

describe("selectContext()", () => {
  test("selectContext() uses current-context when no context is given", () => {
    const selected = select(TWO_CONTEXTS);
    expect(selected.contextName).toBe("a");
    expect(selected.namespace).toBe("team-a");
    expect(selected.cluster).toEqual({
      name: "one",
      server: "https://one.example:6443",
      caData: PEM_CA,
      caFile: undefined,
      insecureSkipTlsVerify: false,
      tlsServerName: undefined,
      execExtension: undefined,
    });
    expect(selected.user?.token).toBe("alice-token");
    expect(selected.source).toBe("kubeconfig /x, context a");
  });

  test("selectContext() uses the given context over current-context, and namespace defaults to \"default\"", () => {
    const selected = select(TWO_CONTEXTS, "b");
    expect(selected.contextName).toBe("b");
    expect(selected.namespace).toBe("default");
    expect(selected.cluster.insecureSkipTlsVerify).toBe(true);
    expect(selected.cluster.tlsServerName).toBe("api.two.example");
    expect(selected.user?.basicAuth).toEqual({ username: "bob", password: "secret" });
  });

  test("selectContext() throws naming the file and the contexts when the context does not exist", () => {
    expect(thrown(() => select(TWO_CONTEXTS, "prod"), KubeConfigError).message).toBe('Cannot use kubeconfig /x: context "prod" does not exist (contexts: a, b)');
  });

  test("selectContext() throws when no context is given and current-context is not set", () => {
    const text = TWO_CONTEXTS.replace("current-context: a\n", "");
    expect(thrown(() => select(text), KubeConfigError).message).toBe("Cannot use kubeconfig /x: no context was given and current-context is not set (contexts: a, b)");
    expect(thrown(() => select(""), KubeConfigError).message).toBe("Cannot use kubeconfig /x: no context was given and current-context is not set (contexts: none)");
  });

  test("selectContext() throws when the context's cluster does not exist", () => {
    const text = TWO_CONTEXTS.replace("cluster: one\n    user: alice", "cluster: three\n    user: alice");
    expect(thrown(() => select(text), KubeConfigError).message).toBe('Cannot use kubeconfig /x: context "a" names cluster "three", which does not exist (clusters: one, two)');
  });

  test("selectContext() throws when the context's user does not exist", () => {
    const text = TWO_CONTEXTS.replace("user: alice\n    namespace", "user: carol\n    namespace");
    expect(thrown(() => select(text), KubeConfigError).message).toBe('Cannot use kubeconfig /x: context "a" names user "carol", which does not exist (users: alice, bob)');
  });

  test("selectContext() gives no user (anonymous) when the context names none", () => {
    const text = TWO_CONTEXTS.replace("    user: alice\n", "");
    expect(select(text).user).toBeUndefined();
  });

  test("selectContext() throws when the cluster has no server", () => {
    const text = TWO_CONTEXTS.replace("    server: https://one.example:6443\n", "");
    expect(thrown(() => select(text), KubeConfigError).message).toBe('Cannot use kubeconfig /x: cluster "one" has no server');
  });

  test("selectContext() resolves relative file paths against the kubeconfig's directory and keeps absolute ones", () => {
    const text = `
current-context: c
clusters:
- name: k
  cluster: { server: "https://k:6443", certificate-authority: certs/ca.crt }
users:
- name: u
  user: { client-certificate: ../pki/u.crt, client-key: /abs/u.key }
contexts:
- name: c
  context: { cluster: k, user: u }
`;
    const selected = select(text, undefined, "/home/me/.kube/config");
    expect(selected.cluster.caFile).toBe("/home/me/.kube/certs/ca.crt");
    expect(selected.user?.certFile).toBe("/home/me/pki/u.crt");
    expect(selected.user?.keyFile).toBe("/abs/u.key");
  });

  test("selectContext() resolves tokenFile like the other file paths", () => {
    const text = TWO_CONTEXTS.replace("token: alice-token", "tokenFile: tokens/alice");
    expect(select(text, undefined, "/etc/kube/config").user?.tokenFile).toBe("/etc/kube/tokens/alice");
  });

  test("selectContext() throws when a user has a client certificate but no key", () => {
    const text = TWO_CONTEXTS.replace("token: alice-token", `client-certificate-data: ${b64(PEM_CERT)}`);
    expect(thrown(() => select(text), KubeConfigError).message).toBe('Cannot use kubeconfig /x: user "alice" has a client certificate but no client key');
  });

  test("selectContext() throws when a user has more than one authentication method", () => {
    const text = TWO_CONTEXTS.replace("token: alice-token", "token: t\n    username: alice\n    password: p");
    expect(thrown(() => select(text), KubeConfigError).message).toBe(
      'Cannot use kubeconfig /x: user "alice" has more than one authentication method (token, username/password); only one is allowed',
    );
  });

  test("selectContext() throws when -data is not base64 of PEM", () => {
    const text = TWO_CONTEXTS.replace(`certificate-authority-data: ${b64(PEM_CA)}`, `certificate-authority-data: ${b64("not pem")}`);
    expect(thrown(() => select(text), KubeConfigError).message).toBe('Cannot use kubeconfig /x: cluster "one": certificate-authority-data is not base64 of PEM data');
  });

  test("selectContext() refuses proxy-url and auth-provider instead of ignoring them", () => {
    const proxied = TWO_CONTEXTS.replace("    server: https://one.example:6443\n", "    server: https://one.example:6443\n    proxy-url: http://proxy:3128\n");
    expect(thrown(() => select(proxied), KubeConfigError).message).toBe('Cannot use kubeconfig /x: cluster "one" sets proxy-url, which is not supported');
    const provider = TWO_CONTEXTS.replace("token: alice-token", "auth-provider:\n      name: oidc");
    expect(thrown(() => select(provider), KubeConfigError).message).toBe(
      'Cannot use kubeconfig /x: user "alice" uses auth-provider "oidc", which is not supported: use an exec credential plugin instead',
    );
  });

  test("selectContext() reads an exec plugin: args, env, installHint, provideClusterInfo", () => {
    const text = TWO_CONTEXTS.replace(
      "token: alice-token",
      `exec:
      apiVersion: client.authentication.k8s.io/v1
      command: aws
      args: [eks, get-token, --cluster-name, prod]
      env: [{ name: AWS_PROFILE, value: prod }]
      installHint: Install the AWS CLI.
      provideClusterInfo: true
      interactiveMode: Never`,
    );
    expect(select(text).user?.exec).toEqual({
      apiVersion: "client.authentication.k8s.io/v1",
      command: "aws",
      args: ["eks", "get-token", "--cluster-name", "prod"],
      env: { AWS_PROFILE: "prod" },
      installHint: "Install the AWS CLI.",
      provideClusterInfo: true,
    });
  });

  test("selectContext() resolves an exec command against the kubeconfig's directory only when it holds a path separator", () => {
    const withCommand = (command: string) =>
      TWO_CONTEXTS.replace("token: alice-token", `exec:\n      apiVersion: client.authentication.k8s.io/v1beta1\n      command: ${command}`);
    expect(select(withCommand("./bin/plugin"), undefined, "/etc/kube/config").user?.exec?.command).toBe("/etc/kube/bin/plugin");
    expect(select(withCommand("/usr/bin/plugin"), undefined, "/etc/kube/config").user?.exec?.command).toBe("/usr/bin/plugin");
    expect(select(withCommand("plugin"), undefined, "/etc/kube/config").user?.exec?.command).toBe("plugin");
  });

  test("selectContext() throws for an exec apiVersion it does not speak, and for interactiveMode Always", () => {
    const old = TWO_CONTEXTS.replace("token: alice-token", "exec:\n      apiVersion: client.authentication.k8s.io/v1alpha1\n      command: p");
    expect(thrown(() => select(old), KubeConfigError).message).toBe(
      'Cannot use kubeconfig /x: user "alice": exec: apiVersion "client.authentication.k8s.io/v1alpha1" is not supported (supported: client.authentication.k8s.io/v1, client.authentication.k8s.io/v1beta1)',
    );
    const interactive = TWO_CONTEXTS.replace("token: alice-token", "exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: p\n      interactiveMode: Always");
    expect(thrown(() => select(interactive), KubeConfigError).message).toBe(
      'Cannot use kubeconfig /x: user "alice": exec asks for an interactive terminal (interactiveMode: Always), which this program does not have',
    );
  });
});

describe("parseKubeconfig()", () => {
  test("parseKubeconfig() treats an empty file as an empty config", () => {
    expect(parseKubeconfig("", "/x")).toEqual({ path: "/x", currentContext: undefined, clusters: [], users: [], contexts: [] });
  });

  test("parseKubeconfig() throws naming the file when it is not YAML", () => {
    expect(thrown(() => parseKubeconfig("clusters: [", "/x"), KubeConfigError).message).toStartWith("Cannot use kubeconfig /x: it is not valid YAML: ");
  });

  test("parseKubeconfig() throws when a list has two entries of the same name", () => {
    const text = "clusters:\n- name: k\n  cluster: { server: a }\n- name: k\n  cluster: { server: b }\n";
    expect(thrown(() => parseKubeconfig(text, "/x"), KubeConfigError).message).toBe('Cannot use kubeconfig /x: clusters has two entries named "k"');
  });

  test("parseKubeconfig() accepts null lists, as kubectl writes them", () => {
    expect(parseKubeconfig("clusters: null\nusers: null\ncontexts: null\ncurrent-context: \"\"\n", "/x").clusters).toEqual([]);
  });
});

describe("mergeKubeconfigs()", () => {
  const first = parseKubeconfig(
    `current-context: from-first
clusters:
- name: shared
  cluster: { server: "https://first:6443" }
users:
- name: shared
  user: { token: first-token }
contexts:
- name: from-first
  context: { cluster: shared, user: shared }
`,
    "/first/config",
  );
  const second = parseKubeconfig(
    `current-context: from-second
clusters:
- name: shared
  cluster: { server: "https://second:6443", insecure-skip-tls-verify: true, certificate-authority: ca.crt }
- name: only-second
  cluster: { server: "https://only-second:6443", certificate-authority: ca.crt }
users:
- name: shared
  user: { username: u, password: p }
contexts:
- name: from-second
  context: { cluster: only-second, user: shared, namespace: two }
`,
    "/second/config",
  );

  test("mergeKubeconfigs() takes current-context from the first file that sets it", () => {
    expect(mergeKubeconfigs([first, second]).currentContext).toBe("from-first");
    expect(mergeKubeconfigs([{ ...first, currentContext: undefined }, second]).currentContext).toBe("from-second");
  });

  test("mergeKubeconfigs() keeps the first file's entry of a name whole, without merging fields of later ones", () => {
    const shared = selectContext(mergeKubeconfigs([first, second]), "from-first");
    expect(shared.cluster.server).toBe("https://first:6443");
    expect(shared.cluster.insecureSkipTlsVerify).toBe(false);
    expect(shared.cluster.caFile).toBeUndefined();
    expect(shared.user?.token).toBe("first-token");
    expect(shared.user?.basicAuth).toBeUndefined();
  });

  test("mergeKubeconfigs() adds entries of later files, with paths relative to the file that defined them", () => {
    const merged = selectContext(mergeKubeconfigs([first, second]), "from-second");
    expect(merged.cluster.server).toBe("https://only-second:6443");
    expect(merged.cluster.caFile).toBe("/second/ca.crt");
    // The user "shared" is the first file's, even in a context of the second file.
    expect(merged.user?.token).toBe("first-token");
    expect(merged.namespace).toBe("two");
    expect(merged.source).toBe("kubeconfig /first/config:/second/config, context from-second");
  });
});

describe("loadKubeConnection()", () => {
  const kubeconfigWithFiles = (sub: string) => {
    file(`${sub}/certs/ca.crt`, PEM_CA);
    file(`${sub}/certs/u.crt`, PEM_CERT);
    file(`${sub}/certs/u.key`, PEM_KEY);
    return file(
      `${sub}/config`,
      `current-context: c
clusters:
- name: k
  cluster: { server: "https://k.example:6443", certificate-authority: certs/ca.crt }
users:
- name: u
  user: { client-certificate: certs/u.crt, client-key: certs/u.key }
contexts:
- name: c
  context: { cluster: k, user: u, namespace: ns1 }
`,
    );
  };

  test("loadKubeConnection() reads the CA and client certificate files named relative to the kubeconfig", async () => {
    const path = kubeconfigWithFiles("files");
    expect(await loadKubeConnection({ kubeconfig: path, env: {} })).toEqual({
      server: "https://k.example:6443",
      namespace: "ns1",
      source: `kubeconfig ${path}, context c`,
      ca: PEM_CA,
      cert: PEM_CERT,
      key: PEM_KEY,
    });
  });

  test("loadKubeConnection() throws naming the file it cannot read", async () => {
    const path = kubeconfigWithFiles("missing-key");
    unlinkSync(join(dir, "missing-key/certs/u.key"));
    const error = await rejection(loadKubeConnection({ kubeconfig: path, env: {} }), KubeConfigError);
    expect(error.message).toStartWith(`Cannot use kubeconfig ${path}: cannot read client-key of user "u" ${join(dir, "missing-key/certs/u.key")}: `);
  });

  test("loadKubeConnection() throws when the explicit kubeconfig does not exist", async () => {
    const path = join(dir, "nope/config");
    const error = await rejection(loadKubeConnection({ kubeconfig: path, env: {} }), KubeConfigError);
    expect(error.message).toBe(`Cannot use kubeconfig ${path}: it does not exist`);
  });

  test("loadKubeConnection() takes the explicit kubeconfig over KUBECONFIG, and KUBECONFIG over the service account", async () => {
    const explicit = file("order/explicit", TWO_CONTEXTS);
    const listed = file("order/listed", TWO_CONTEXTS.replace("current-context: a", "current-context: b"));
    const inCluster = { KUBERNETES_SERVICE_HOST: "10.0.0.1", KUBERNETES_SERVICE_PORT: "443" };
    expect((await loadKubeConnection({ kubeconfig: explicit, env: { KUBECONFIG: listed, ...inCluster } })).source).toBe(`kubeconfig ${explicit}, context a`);
    expect((await loadKubeConnection({ env: { KUBECONFIG: listed, ...inCluster } })).source).toBe(`kubeconfig ${listed}, context b`);
  });

  test("loadKubeConnection() merges the KUBECONFIG list, skipping files that do not exist", async () => {
    const a = file("list/a", "current-context: b\n");
    const b = file("list/b", TWO_CONTEXTS);
    const connection = await loadKubeConnection({ env: { KUBECONFIG: [join(dir, "list/missing"), a, b].join(":") } });
    expect(connection.server).toBe("https://two.example:6443");
    expect(connection.source).toBe(`kubeconfig ${a}:${b}, context b`);
  });

  test("loadKubeConnection() throws when no file of KUBECONFIG exists", async () => {
    const list = `${join(dir, "none/a")}:${join(dir, "none/b")}`;
    expect((await rejection(loadKubeConnection({ env: { KUBECONFIG: list } }), KubeConfigError)).message).toBe(`Cannot use KUBECONFIG=${list}: none of its files exists`);
  });

  test("loadKubeConnection() takes the service account over ~/.kube/config when KUBERNETES_SERVICE_HOST and _PORT are set", async () => {
    const home = join(dir, "home-sa");
    file("home-sa/.kube/config", TWO_CONTEXTS);
    const sa = join(dir, "sa-order");
    file("sa-order/token", "sa-token\n");
    file("sa-order/ca.crt", PEM_CA);
    file("sa-order/namespace", "listener-ns");
    const connection = await loadKubeConnection({ env: { HOME: home, KUBERNETES_SERVICE_HOST: "10.96.0.1", KUBERNETES_SERVICE_PORT: "443" }, serviceAccountDir: sa });
    expect(connection.server).toBe("https://10.96.0.1:443");
    expect(connection.ca).toBe(PEM_CA);
    expect(connection.namespace).toBe("listener-ns");
    expect(connection.source).toBe("in-cluster service account");
    expect(await connection.credentials?.token()).toBe("sa-token");
    expect((await loadKubeConnection({ env: { HOME: home } })).source).toBe(`kubeconfig ${join(home, ".kube/config")}, context a`);
  });

  test("loadKubeConnection() in a pod: brackets an IPv6 host, POD_NAMESPACE wins over the namespace file, \"default\" without either", async () => {
    file("sa-v6/token", "t");
    file("sa-v6/ca.crt", PEM_CA);
    const env = { KUBERNETES_SERVICE_HOST: "fd00::1", KUBERNETES_SERVICE_PORT: "6443" };
    const plain = await loadKubeConnection({ env, serviceAccountDir: join(dir, "sa-v6") });
    expect(plain.server).toBe("https://[fd00::1]:6443");
    expect(plain.namespace).toBe("default");
    file("sa-v6/namespace", "from-file\n");
    expect((await loadKubeConnection({ env, serviceAccountDir: join(dir, "sa-v6") })).namespace).toBe("from-file");
    expect((await loadKubeConnection({ env: { ...env, POD_NAMESPACE: "from-env" }, serviceAccountDir: join(dir, "sa-v6") })).namespace).toBe("from-env");
  });

  test("loadKubeConnection() throws naming the service-account token file when it is missing", async () => {
    file("sa-no-token/ca.crt", PEM_CA);
    const sa = join(dir, "sa-no-token");
    const error = await rejection(loadKubeConnection({ env: { KUBERNETES_SERVICE_HOST: "10.96.0.1", KUBERNETES_SERVICE_PORT: "443" }, serviceAccountDir: sa }), KubeConfigError);
    expect(error.message).toStartWith(`Cannot read ${sa}/token (in-cluster service account token): ENOENT`);
  });

  test("loadKubeConnection() throws naming the CA file of the service account when it is missing", async () => {
    file("sa-no-ca/token", "t");
    const sa = join(dir, "sa-no-ca");
    const error = await rejection(loadKubeConnection({ env: { KUBERNETES_SERVICE_HOST: "10.96.0.1", KUBERNETES_SERVICE_PORT: "443" }, serviceAccountDir: sa }), KubeConfigError);
    expect(error.message).toBe(`Cannot use the in-cluster service account (${sa}): ${sa}/ca.crt does not exist`);
  });

  test("loadKubeConnection() throws naming every place it looked when there is nothing", async () => {
    const home = join(dir, "empty-home");
    const error = await rejection(loadKubeConnection({ env: { HOME: home } }), KubeConfigError);
    expect(error.message).toBe(
      `Cannot find Kubernetes credentials: no kubeconfig was given, KUBECONFIG is not set, KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set (not in a pod), and ${home}/.kube/config does not exist`,
    );
  });

  test("loadKubeConnection() runs an exec plugin once at load and uses its client certificate", async () => {
    const calls = join(dir, "exec-cert.calls");
    file(
      "exec-cert/plugin",
      `#!/bin/sh\necho run >> ${calls}\nprintf '%s' '${JSON.stringify({ apiVersion: "client.authentication.k8s.io/v1", kind: "ExecCredential", status: { clientCertificateData: PEM_CERT, clientKeyData: PEM_KEY } })}'\n`,
      0o755,
    );
    const path = file(
      "exec-cert/config",
      `current-context: c
clusters: [{ name: k, cluster: { server: "https://k:6443" } }]
users: [{ name: u, user: { exec: { apiVersion: client.authentication.k8s.io/v1, command: ./plugin, interactiveMode: Never } } }]
contexts: [{ name: c, context: { cluster: k, user: u } }]
`,
    );
    const connection = await loadKubeConnection({ kubeconfig: path, env: { PATH: process.env.PATH } });
    expect(connection.cert).toBe(PEM_CERT);
    expect(connection.key).toBe(PEM_KEY);
    expect(connection.credentials).toBeUndefined();
    expect(readFileSync(calls, "utf8")).toBe("run\n");
  });
});

describe("parseExecCredential()", () => {
  const V1 = "client.authentication.k8s.io/v1";
  const cred = (status: unknown, extra: Record<string, unknown> = {}) => JSON.stringify({ apiVersion: V1, kind: "ExecCredential", status, ...extra });
  const why = (stdout: string) => thrown(() => parseExecCredential(stdout, V1, "`p`"), KubeConfigError).message;

  test("parseExecCredential() reads a token and its expiry", () => {
    expect(parseExecCredential(cred({ token: "t", expirationTimestamp: "2030-01-02T03:04:05Z" }), V1, "`p`")).toEqual({ token: "t", expiresAtMs: Date.UTC(2030, 0, 2, 3, 4, 5) });
  });

  test("parseExecCredential() reads a client certificate and key without expiry", () => {
    expect(parseExecCredential(cred({ clientCertificateData: PEM_CERT, clientKeyData: PEM_KEY }), V1, "`p`")).toEqual({ cert: PEM_CERT, key: PEM_KEY });
  });

  test("parseExecCredential() throws for output that is not an ExecCredential of the configured version", () => {
    expect(why("token")).toBe("Cannot use the credential of exec plugin `p`: its output is not JSON");
    expect(why(cred({ token: "t" }, { kind: "Status" }))).toBe('Cannot use the credential of exec plugin `p`: its output has kind "Status", expected "ExecCredential"');
    expect(why(cred({ token: "t" }, { apiVersion: "client.authentication.k8s.io/v1beta1" }))).toBe(
      'Cannot use the credential of exec plugin `p`: its output has apiVersion "client.authentication.k8s.io/v1beta1", but the kubeconfig asks for "client.authentication.k8s.io/v1"',
    );
    expect(why(JSON.stringify({ apiVersion: V1, kind: "ExecCredential" }))).toBe("Cannot use the credential of exec plugin `p`: its ExecCredential has no status");
  });

  test("parseExecCredential() throws when the status has no usable credential", () => {
    expect(why(cred({}))).toBe("Cannot use the credential of exec plugin `p`: its status has neither a token nor clientCertificateData and clientKeyData");
    expect(why(cred({ clientCertificateData: PEM_CERT }))).toBe("Cannot use the credential of exec plugin `p`: its status has clientCertificateData but no clientKeyData");
    expect(why(cred({ token: 7 }))).toBe("Cannot use the credential of exec plugin `p`: status.token must be a string");
  });

  test("parseExecCredential() throws for an expirationTimestamp that is not RFC 3339", () => {
    expect(why(cred({ token: "t", expirationTimestamp: "tomorrow" }))).toBe(
      'Cannot use the credential of exec plugin `p`: status.expirationTimestamp is not an RFC 3339 time: current value is "tomorrow"',
    );
  });
});

describe("execCredentialSource()", () => {
  const config: ExecPluginConfig = { apiVersion: "client.authentication.k8s.io/v1beta1", command: "p", args: [], env: {}, installHint: undefined, provideClusterInfo: false };
  /** A plugin that answers token-1, token-2, … with the given expiry (ms since the epoch, or none). */
  const counting = (expiresAt: () => number | undefined) => {
    let runs = 0;
    const run = () => {
      runs++;
      const at = expiresAt();
      const status = at === undefined ? { token: `token-${runs}` } : { token: `token-${runs}`, expirationTimestamp: new Date(at).toISOString() };
      return Promise.resolve(JSON.stringify({ apiVersion: config.apiVersion, kind: "ExecCredential", status }));
    };
    return { run, runs: () => runs };
  };

  test("execCredentialSource() runs the plugin once and reuses the token until shortly before it expires", async () => {
    let now = 1_000_000;
    const plugin = counting(() => now + 60_000);
    const source = execCredentialSource(config, { run: plugin.run, describe: "test", now: () => now });
    expect(await source.token()).toBe("token-1");
    now += 49_999; // Refreshed 10 s before expiry.
    expect(await source.token()).toBe("token-1");
    expect(plugin.runs()).toBe(1);
    now += 1;
    expect(await source.token()).toBe("token-2");
    expect(plugin.runs()).toBe(2);
  });

  test("execCredentialSource() refreshes a short-lived token at half its lifetime", async () => {
    let now = 0;
    const plugin = counting(() => now + 4_000);
    const source = execCredentialSource(config, { run: plugin.run, describe: "test", now: () => now });
    expect(await source.token()).toBe("token-1");
    now = 1_999;
    expect(await source.token()).toBe("token-1");
    now = 2_000;
    expect(await source.token()).toBe("token-2");
  });

  test("execCredentialSource() keeps a token without expiry until invalidate(), then runs the plugin again", async () => {
    let now = 0;
    const plugin = counting(() => undefined);
    const source = execCredentialSource(config, { run: plugin.run, describe: "test", now: () => now });
    expect(await source.token()).toBe("token-1");
    now = 365 * 24 * 3600 * 1000;
    expect(await source.token()).toBe("token-1");
    source.invalidate();
    expect(await source.token()).toBe("token-2");
    expect(plugin.runs()).toBe(2);
  });

  test("execCredentialSource() shares one run between callers that ask at the same time", async () => {
    const plugin = counting(() => undefined);
    const source = execCredentialSource(config, { run: plugin.run, describe: "test" });
    expect(await Promise.all([source.token(), source.token(), source.token()])).toEqual(["token-1", "token-1", "token-1"]);
    expect(plugin.runs()).toBe(1);
  });

  test("execCredentialSource() names the command and where it is configured when the answer is unusable", async () => {
    const source = execCredentialSource({ ...config, args: ["get-token"] }, { run: () => Promise.resolve("{}"), describe: "kubeconfig /x, context c, user u" });
    expect((await rejection(source.token(), KubeConfigError)).message).toBe(
      'Cannot use the credential of exec plugin `p get-token` (kubeconfig /x, context c, user u): its output has kind null, expected "ExecCredential"',
    );
  });
});

describe("fileTokenSource()", () => {
  test("fileTokenSource() reads the file again at most every minute, and at once after invalidate()", async () => {
    const path = file("rotating/token", "one\n");
    let now = 0;
    const source = fileTokenSource(path, { now: () => now });
    expect(await source.token()).toBe("one");
    writeFileSync(path, "two\n");
    now = 59_999;
    expect(await source.token()).toBe("one");
    now = 60_000;
    expect(await source.token()).toBe("two");
    writeFileSync(path, "three");
    expect(await source.token()).toBe("two");
    source.invalidate();
    expect(await source.token()).toBe("three");
  });

  test("fileTokenSource() keeps the last token when the file cannot be read again", async () => {
    const path = file("vanishing/token", "kept");
    let now = 0;
    const source = fileTokenSource(path, { now: () => now });
    expect(await source.token()).toBe("kept");
    unlinkSync(path);
    now = 120_000;
    expect(await source.token()).toBe("kept");
  });

  test("fileTokenSource() throws naming the file when it was never readable, or is empty", async () => {
    const missing = join(dir, "no-such-token");
    expect((await rejection(fileTokenSource(missing, { describe: "tokenFile of user \"u\"" }).token(), KubeConfigError)).message).toStartWith(
      `Cannot read ${missing} (tokenFile of user "u"): ENOENT`,
    );
    const empty = file("empty-token", "\n");
    expect((await rejection(fileTokenSource(empty).token(), KubeConfigError)).message).toBe(`Cannot read ${empty} (token file): the file is empty`);
  });
});

describe("runExecPlugin()", () => {
  const plugin = (name: string, body: string): ExecPluginConfig => ({
    apiVersion: "client.authentication.k8s.io/v1",
    command: file(`plugins/${name}`, `#!/bin/sh\n${body}\n`, 0o755),
    args: ["--flag", "two words"],
    env: { PLUGIN_SETTING: "on" },
    installHint: undefined,
    provideClusterInfo: false,
  });
  const env = { PATH: process.env.PATH, FROM_PARENT: "yes" };

  test("runExecPlugin() passes args, the environment and KUBERNETES_EXEC_INFO (spec.interactive false), and resolves with stdout", async () => {
    const config = plugin("echo", `printf '%s|' "$@" "$FROM_PARENT" "$PLUGIN_SETTING"; printf '%s' "$KUBERNETES_EXEC_INFO"`);
    expect(await runExecPlugin(config, { env })).toBe(`--flag|two words|yes|on|${JSON.stringify({ apiVersion: "client.authentication.k8s.io/v1", kind: "ExecCredential", spec: { interactive: false } })}`);
  });

  test("runExecPlugin() adds spec.cluster when the plugin asks for cluster information", async () => {
    const config = { ...plugin("info", `printf '%s' "$KUBERNETES_EXEC_INFO"`), provideClusterInfo: true };
    const cluster = { name: "k", server: "https://k:6443", caData: PEM_CA, caFile: undefined, insecureSkipTlsVerify: false, tlsServerName: "k.example", execExtension: { region: "eu" } };
    expect(JSON.parse(await runExecPlugin(config, { env, cluster }))).toEqual({
      apiVersion: "client.authentication.k8s.io/v1",
      kind: "ExecCredential",
      spec: { interactive: false, cluster: { server: "https://k:6443", "tls-server-name": "k.example", "certificate-authority-data": b64(PEM_CA), config: { region: "eu" } } },
    });
  });

  test("runExecPlugin() throws naming the command, exit code and stderr's first lines when it fails", async () => {
    const config = plugin("failing", "echo 'line 1' >&2; echo 'line 2' >&2; echo 'line 3' >&2; echo 'line 4' >&2; exit 3");
    expect((await rejection(runExecPlugin(config, { env, describe: "kubeconfig /x, context c, user u" }), KubeConfigError)).message).toBe(
      `Cannot get credentials from exec plugin \`${config.command} --flag "two words"\` (kubeconfig /x, context c, user u): exit code 3: line 1 | line 2 | line 3`,
    );
  });

  test("runExecPlugin() throws with the installHint when the command is not found", async () => {
    const config: ExecPluginConfig = { ...plugin("unused", ""), command: "kpcd-no-such-plugin", args: [], installHint: "Install it with:\n  brew install kpcd-plugin\n" };
    const error = await rejection(runExecPlugin(config, { env }), KubeConfigError);
    expect(error.message).toStartWith('Cannot get credentials from exec plugin `kpcd-no-such-plugin`: the command "kpcd-no-such-plugin" was not found (');
    expect(error.message).toEndWith("). Install it with: brew install kpcd-plugin");
  });

  test("runExecPlugin() kills a plugin that does not finish within the timeout", async () => {
    const config = plugin("slow", "echo waiting >&2; exec sleep 30");
    const started = Date.now();
    expect((await rejection(runExecPlugin(config, { env, timeoutMs: 300 }), KubeConfigError)).message).toBe(
      `Cannot get credentials from exec plugin \`${config.command} --flag "two words"\`: it did not finish within 300 ms: waiting`,
    );
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  test("runExecPlugin() rejects with the signal's reason when aborted", async () => {
    const config = plugin("aborted", "exec sleep 30");
    const controller = new AbortController();
    const running = runExecPlugin(config, { env, signal: controller.signal });
    setTimeout(() => controller.abort(new Error("stopping")), 100);
    expect(await running.then(() => "resolved", (error: unknown) => (error as Error).message)).toBe("stopping");
  });
});
