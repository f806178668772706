/**
 * Every way loadKubeConnection() finds credentials, proven against the real API server: each
 * form reads a ConfigMap through KubeApi. Client certificates are signed by the CA the test
 * control plane trusts (`--client-ca-file`); tokens are TokenRequest tokens of the
 * namespace's default ServiceAccount, which a Role lets read ConfigMaps. TLS is verified
 * against the API server's serving certificate wherever a kubeconfig names a CA.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { KubeApiError, KubeConfigError } from "../../lib/errors.ts";
import { KubeApi, resourcePath } from "../../lib/kube/api.ts";
import { loadKubeConnection } from "../../lib/kube/kubeconfig.ts";
import type { KubeConnection } from "../../lib/kube/api.ts";
import { createNamespace, kubectl, testEnv, type TestEnv } from "../env/testenv.ts";
import { until } from "../helpers/until.ts";

let env: TestEnv;
let ns: string;
let dir: string;
/** A TokenRequest token of `default` in `ns`, which may read ConfigMaps there. */
let saToken: string;

const b64File = (path: string) => readFileSync(path).toString("base64");

async function kubectlOk(args: string[], stdin?: string): Promise<string> {
  const result = await kubectl(args, stdin === undefined ? {} : { stdin });
  if (result.code !== 0) throw new Error(`kubectl ${args.join(" ")} failed: ${result.stderr}`);
  return result.stdout;
}

beforeAll(async () => {
  env = await testEnv();
  dir = mkdtempSync(join(tmpdir(), "kpcd-kubeconfig-it-"));
  ns = await createNamespace("kubeconfig");
  await kubectlOk(["create", "configmap", "probe", "-n", ns, "--from-literal=hello=world"]);
  await kubectlOk(["create", "role", "cm-reader", "-n", ns, "--verb=get,list", "--resource=configmaps"]);
  await kubectlOk(["create", "rolebinding", "cm-reader", "-n", ns, "--role=cm-reader", `--serviceaccount=${ns}:default`]);
  // The controller-manager creates the namespace's default ServiceAccount shortly after the namespace.
  await until("the default ServiceAccount", async () => (await kubectl(["get", "serviceaccount", "default", "-n", ns])).code === 0);
  saToken = (await kubectlOk(["create", "token", "default", "-n", ns, "--duration=1h"])).trim();
});

afterAll(async () => {
  rmSync(dir, { recursive: true, force: true });
  if (ns !== undefined) await kubectl(["delete", "namespace", ns, "--wait=false"]);
});

/** Reads the probe ConfigMap through a KubeApi on `connection`. */
async function readProbe(connection: KubeConnection): Promise<unknown> {
  const api = new KubeApi(connection, { timeoutMs: 10_000 });
  try {
    const cm = await api.request<{ data?: Record<string, string> }>({ method: "GET", path: resourcePath({ group: "", version: "v1", resource: "configmaps", namespace: ns, name: "probe" }) });
    return cm.data;
  } finally {
    api.close();
  }
}

/** Writes a kubeconfig with one context "it" (namespace `ns`) whose cluster verifies TLS against the serving certificate. */
function writeKubeconfig(name: string, user: Record<string, unknown>, cluster: Record<string, unknown> = { "certificate-authority-data": b64File(env.servingCertFile) }): string {
  const sub = join(dir, name);
  mkdirSync(sub, { recursive: true });
  const path = join(sub, "config");
  const config = {
    apiVersion: "v1",
    kind: "Config",
    "current-context": "it",
    clusters: [{ name: "test", cluster: { server: env.kubeServer, ...cluster } }],
    users: [{ name: "someone", user }],
    contexts: [{ name: "it", context: { cluster: "test", user: "someone", namespace: ns } }],
  };
  writeFileSync(path, JSON.stringify(config, null, 2));
  return path;
}

describe("loadKubeConnection() against the API server", () => {
  test("the test environment's admin kubeconfig (static token, insecure-skip-tls-verify) reads the ConfigMap", async () => {
    const connection = await loadKubeConnection({ kubeconfig: env.kubeconfig, env: {} });
    expect(connection.source).toBe(`kubeconfig ${env.kubeconfig}, context test`);
    expect(await readProbe(connection)).toEqual({ hello: "world" });
  });

  test("a client certificate given as data, signed by the cluster's client CA (group system:masters), reads the ConfigMap", async () => {
    const path = writeKubeconfig("cert-data", { "client-certificate-data": b64File(env.adminCertFile), "client-key-data": b64File(env.adminKeyFile) });
    const connection = await loadKubeConnection({ kubeconfig: path, env: {} });
    expect(connection.credentials).toBeUndefined();
    expect(connection.namespace).toBe(ns);
    expect(await readProbe(connection)).toEqual({ hello: "world" });
  });

  test("a client certificate and CA given as files relative to the kubeconfig read the ConfigMap", async () => {
    const path = writeKubeconfig("cert-files", { "client-certificate": "pki/admin.crt", "client-key": "pki/admin.key" }, { "certificate-authority": "pki/server-ca.crt" });
    mkdirSync(join(dir, "cert-files", "pki"));
    copyFileSync(env.adminCertFile, join(dir, "cert-files", "pki", "admin.crt"));
    copyFileSync(env.adminKeyFile, join(dir, "cert-files", "pki", "admin.key"));
    copyFileSync(env.servingCertFile, join(dir, "cert-files", "pki", "server-ca.crt"));
    expect(await readProbe(await loadKubeConnection({ kubeconfig: path, env: {} }))).toEqual({ hello: "world" });
  });

  test("without the client certificate the same request is refused (the certificate is what authenticates)", async () => {
    const path = writeKubeconfig("anonymous", {});
    const error = await readProbe(await loadKubeConnection({ kubeconfig: path, env: {} })).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(KubeApiError);
    expect((error as KubeApiError).status.code).toBe(403);
  });

  test("a token in the kubeconfig reads the ConfigMap, found through KUBECONFIG", async () => {
    const path = writeKubeconfig("token", { token: saToken });
    const connection = await loadKubeConnection({ env: { KUBECONFIG: path } });
    expect(connection.source).toBe(`kubeconfig ${path}, context it`);
    expect(await readProbe(connection)).toEqual({ hello: "world" });
  });

  test("a tokenFile is read again at once when the API server answers 401", async () => {
    const path = writeKubeconfig("token-file", { tokenFile: "token" });
    const tokenPath = join(dir, "token-file", "token");
    writeFileSync(tokenPath, "not-a-valid-token\n");
    const connection = await loadKubeConnection({ kubeconfig: path, env: {} });
    // Rotated after loading: the cached token is now stale, and only the 401 says so.
    writeFileSync(tokenPath, `${saToken}\n`);
    expect(await readProbe(connection)).toEqual({ hello: "world" });
  });

  describe("exec credential plugin", () => {
    /**
     * A plugin (a script run by this runtime) that appends KUBERNETES_EXEC_INFO to `calls`
     * and prints an ExecCredential with the token in `tokenFile`, expiring `lifetimeMs` from now.
     */
    function writePlugin(name: string, options: { lifetimeMs?: number; apiVersion?: string } = {}): { kubeconfig: string; calls: string; tokenFile: string } {
      const { lifetimeMs, apiVersion = "client.authentication.k8s.io/v1" } = options;
      const sub = join(dir, name);
      mkdirSync(sub, { recursive: true });
      const calls = join(sub, "calls.log");
      const tokenFile = join(sub, "token");
      writeFileSync(tokenFile, saToken);
      writeFileSync(
        join(sub, "plugin.mjs"),
        `import { appendFileSync, readFileSync } from "node:fs";
appendFileSync(${JSON.stringify(calls)}, process.env.KUBERNETES_EXEC_INFO + "\\n");
const status = { token: readFileSync(${JSON.stringify(tokenFile)}, "utf8").trim() };
${lifetimeMs === undefined ? "" : `status.expirationTimestamp = new Date(Date.now() + ${lifetimeMs}).toISOString().replace(/\\.\\d+Z$/, "Z");`}
process.stdout.write(JSON.stringify({ apiVersion: ${JSON.stringify(apiVersion)}, kind: "ExecCredential", status }));
`,
      );
      const kubeconfig = writeKubeconfig(name, { exec: { apiVersion, command: process.execPath, args: [join(sub, "plugin.mjs")], interactiveMode: "Never" } });
      return { kubeconfig, calls, tokenFile };
    }
    const runs = (calls: string) => readFileSync(calls, "utf8").trim().split("\n").map((line) => JSON.parse(line) as unknown);

    test("its token reads the ConfigMap; it runs once, with KUBERNETES_EXEC_INFO, and its answer is reused", async () => {
      const plugin = writePlugin("exec-once", { lifetimeMs: 3_600_000 });
      const connection = await loadKubeConnection({ kubeconfig: plugin.kubeconfig, env: { PATH: process.env.PATH } });
      for (let i = 0; i < 3; i++) expect(await readProbe(connection)).toEqual({ hello: "world" });
      expect(runs(plugin.calls)).toEqual([{ apiVersion: "client.authentication.k8s.io/v1", kind: "ExecCredential", spec: { interactive: false } }]);
    });

    test("a v1beta1 plugin is run again once its credential has (nearly) expired", async () => {
      const plugin = writePlugin("exec-expiry", { lifetimeMs: 4_000, apiVersion: "client.authentication.k8s.io/v1beta1" });
      const connection = await loadKubeConnection({ kubeconfig: plugin.kubeconfig, env: { PATH: process.env.PATH } });
      expect(await readProbe(connection)).toEqual({ hello: "world" });
      expect(runs(plugin.calls).length).toBe(1);
      // Refreshed at half of a short lifetime; the timestamp is whole seconds, so wait past all of it.
      await new Promise((r) => setTimeout(r, 4_100));
      expect(await readProbe(connection)).toEqual({ hello: "world" });
      expect(runs(plugin.calls).length).toBe(2);
    });

    test("after a 401 the plugin is run again and the request retried with the new token", async () => {
      const plugin = writePlugin("exec-401");
      writeFileSync(plugin.tokenFile, "revoked-token");
      const connection = await loadKubeConnection({ kubeconfig: plugin.kubeconfig, env: { PATH: process.env.PATH } });
      writeFileSync(plugin.tokenFile, saToken);
      expect(await readProbe(connection)).toEqual({ hello: "world" });
      expect(runs(plugin.calls).length).toBe(2);
    });

    test("a failing plugin gives a KubeConfigError naming the command, its exit code and stderr", async () => {
      const sub = join(dir, "exec-failing");
      mkdirSync(sub, { recursive: true });
      writeFileSync(join(sub, "plugin.mjs"), `console.error("error: the SSO session has expired");\nconsole.error("run: sso login");\nprocess.exit(2);\n`);
      const path = writeKubeconfig("exec-failing", { exec: { apiVersion: "client.authentication.k8s.io/v1", command: process.execPath, args: [join(sub, "plugin.mjs")] } });
      const error = await loadKubeConnection({ kubeconfig: path, env: { PATH: process.env.PATH } }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(KubeConfigError);
      expect((error as KubeConfigError).message).toBe(
        `Cannot get credentials from exec plugin \`${process.execPath} ${join(sub, "plugin.mjs")}\` (kubeconfig ${path}, context it, user someone): exit code 2: error: the SSO session has expired | run: sso login`,
      );
    });
  });

  test("the in-cluster service account (token, CA and namespace files) reads the ConfigMap of its namespace", async () => {
    const sa = join(dir, "serviceaccount");
    mkdirSync(sa);
    writeFileSync(join(sa, "token"), saToken);
    copyFileSync(env.servingCertFile, join(sa, "ca.crt"));
    writeFileSync(join(sa, "namespace"), ns);
    const port = new URL(env.kubeServer).port;
    const connection = await loadKubeConnection({ env: { KUBERNETES_SERVICE_HOST: "127.0.0.1", KUBERNETES_SERVICE_PORT: port }, serviceAccountDir: sa });
    expect(connection.source).toBe("in-cluster service account");
    expect(connection.namespace).toBe(ns);
    expect(connection.server).toBe(`https://127.0.0.1:${port}`);
    expect(await readProbe(connection)).toEqual({ hello: "world" });
  });
});
