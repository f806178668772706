/**
 * A real Kubernetes control plane on 127.0.0.1: etcd, kube-apiserver and, where rollouts
 * matter, kube-controller-manager, kube-scheduler and kwok with one fake Node (kwok plays
 * the kubelet, so Pods become Running and Ready). Flags follow controller-runtime's envtest
 * and kwok's own cluster setup.
 */
import { spawn } from "node:child_process";
import { generateKeyPairSync, randomBytes } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { get as httpsGet } from "node:https";
import { join } from "node:path";
import { ensureKubeBinaries, MissingPrerequisiteError, type KubeBinaries } from "./prerequisites.ts";
import { freePort, startProcess, waitUntil, type ManagedProcess } from "./process.ts";

export const FAKE_NODE_NAME = "kwok-node-0";

export interface ControlPlaneOptions {
  /** Also run controller-manager, scheduler and kwok, so Deployments roll out. Default true. */
  controllers?: boolean;
}

export interface ControlPlane {
  server: string;
  /** PEM files of the CA the API server trusts for client certificates (`--client-ca-file`). */
  clientCaCertFile: string;
  clientCaKeyFile: string;
  /** PEM files of a client certificate that CA signed: CN admin-cert, O system:masters. */
  adminCertFile: string;
  adminKeyFile: string;
  /**
   * The API server's self-signed serving certificate (for 127.0.0.1), followed by the CA that
   * signed it: a CA bundle for clients that verify TLS. Written when the API server starts.
   */
  servingCertFile: string;
  /** Admin (system:masters) kubeconfig. */
  kubeconfig: string;
  /** A user that authenticates but has no RBAC rights at all: every request is Forbidden. */
  unprivilegedKubeconfig: string;
  kubectl: string;
  binaries: KubeBinaries;
  /** Stops only kube-apiserver (etcd and the rest stay), to simulate an API outage. */
  stopApiServer(): Promise<void>;
  /** Starts kube-apiserver again on the same port and waits until it is ready. */
  startApiServer(): Promise<void>;
  stop(): Promise<void>;
}

function kubeconfigYaml(server: string, user: string, token: string): string {
  // The API server's certificate is self-signed (--cert-dir); loopback only, so TLS
  // verification is skipped rather than shipping a CA into every test.
  return `apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: ${server}
    insecure-skip-tls-verify: true
users:
- name: ${user}
  user:
    token: ${token}
contexts:
- name: test
  context:
    cluster: test
    user: ${user}
    namespace: default
current-context: test
`;
}

interface ClientPki {
  clientCaCertFile: string;
  clientCaKeyFile: string;
  adminCertFile: string;
  adminKeyFile: string;
}

/**
 * A CA for client certificates and an admin certificate it signed (group system:masters),
 * made with the openssl CLI: node:crypto makes keys but not certificates.
 */
async function makeClientPki(dir: string): Promise<ClientPki> {
  mkdirSync(dir, { recursive: true });
  const file = (name: string) => join(dir, name);
  writeFileSync(file("ca.ext"), "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n");
  writeFileSync(file("client.ext"), "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n");
  const newKey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  const steps = [
    ["req", "-new", ...newKey, "-keyout", file("client-ca.key"), "-out", file("client-ca.csr"), "-subj", "/CN=kube-pico-cd test client CA"],
    ["x509", "-req", "-in", file("client-ca.csr"), "-signkey", file("client-ca.key"), "-out", file("client-ca.crt"), "-days", "30", "-extfile", file("ca.ext")],
    ["req", "-new", ...newKey, "-keyout", file("admin.key"), "-out", file("admin.csr"), "-subj", "/O=system:masters/CN=admin-cert"],
    ["x509", "-req", "-in", file("admin.csr"), "-CA", file("client-ca.crt"), "-CAkey", file("client-ca.key"), "-set_serial", "2", "-out", file("admin.crt"), "-days", "30", "-extfile", file("client.ext")],
  ];
  for (const args of steps) {
    let result: { code: number; stderr: string };
    try {
      result = await run("openssl", args);
    } catch (error) {
      throw new MissingPrerequisiteError(`The test environment needs 'openssl', which is not usable here (${error instanceof Error ? error.message : String(error)}). Install it (for example 'apt-get install openssl').`);
    }
    if (result.code !== 0) throw new Error(`openssl ${args.join(" ")} failed (exit ${result.code}): ${result.stderr}`);
  }
  return { clientCaCertFile: file("client-ca.crt"), clientCaKeyFile: file("client-ca.key"), adminCertFile: file("admin.crt"), adminKeyFile: file("admin.key") };
}

function readyz(server: string, token: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = httpsGet(`${server}/readyz`, { headers: { authorization: `Bearer ${token}` }, rejectUnauthorized: false, timeout: 2000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.once("error", () => resolve(false));
    req.once("timeout", () => req.destroy());
  });
}

function run(cmd: string, args: string[], stdin?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.once("error", reject);
    child.once("exit", (code) => resolve({ code: code ?? 1, stdout, stderr }));
    child.stdin.end(stdin ?? "");
  });
}

export async function startControlPlane(dir: string, options: ControlPlaneOptions = {}): Promise<ControlPlane> {
  const { controllers = true } = options;
  const bin = await ensureKubeBinaries();
  const logs = join(dir, "logs");
  mkdirSync(logs, { recursive: true });
  const started: ManagedProcess[] = [];
  const stopAll = async () => {
    for (const p of started.reverse()) await p.stop();
    started.length = 0;
  };

  try {
    // etcd
    const [etcdClient, etcdPeer] = [await freePort(), await freePort()];
    const etcd = startProcess(
      "etcd",
      bin.etcd,
      [
        "--name=default",
        `--data-dir=${join(dir, "etcd")}`,
        `--listen-client-urls=http://127.0.0.1:${etcdClient}`,
        `--advertise-client-urls=http://127.0.0.1:${etcdClient}`,
        `--listen-peer-urls=http://127.0.0.1:${etcdPeer}`,
        `--initial-advertise-peer-urls=http://127.0.0.1:${etcdPeer}`,
        `--initial-cluster=default=http://127.0.0.1:${etcdPeer}`,
        "--unsafe-no-fsync",
        "--log-level=warn",
      ],
      { logFile: join(logs, "etcd.log") },
    );
    started.push(etcd);
    await waitUntil("etcd", async () => (await fetch(`http://127.0.0.1:${etcdClient}/health`)).ok, { timeoutMs: 30_000, process: etcd });

    // Credentials: a service-account signing key, and static tokens for an admin and a
    // user without rights.
    const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const saKey = join(dir, "sa.key");
    const saPub = join(dir, "sa.pub");
    writeFileSync(saKey, privateKey.export({ type: "pkcs8", format: "pem" }));
    writeFileSync(saPub, publicKey.export({ type: "spki", format: "pem" }));
    const adminToken = randomBytes(24).toString("hex");
    const nobodyToken = randomBytes(24).toString("hex");
    const tokens = join(dir, "tokens.csv");
    writeFileSync(tokens, `${adminToken},admin,admin-uid,system:masters\n${nobodyToken},nobody,nobody-uid\n`);
    const pki = await makeClientPki(join(dir, "client-pki"));
    const certDir = join(dir, "apiserver-certs");

    // An empty kwok configuration, so a ~/.kwok/kwok.yaml on the machine cannot change it.
    writeFileSync(join(dir, "kwok-none.yaml"), "");

    const apiPort = await freePort();
    const server = `https://127.0.0.1:${apiPort}`;
    const kubeconfig = join(dir, "admin.kubeconfig");
    const unprivilegedKubeconfig = join(dir, "nobody.kubeconfig");
    writeFileSync(kubeconfig, kubeconfigYaml(server, "admin", adminToken));
    writeFileSync(unprivilegedKubeconfig, kubeconfigYaml(server, "nobody", nobodyToken));

    const apiserverArgs = [
      `--etcd-servers=http://127.0.0.1:${etcdClient}`,
      `--cert-dir=${certDir}`,
      `--secure-port=${apiPort}`,
      "--bind-address=127.0.0.1",
      "--advertise-address=127.0.0.1",
      "--service-cluster-ip-range=10.96.0.0/24",
      "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
      `--service-account-key-file=${saPub}`,
      `--service-account-signing-key-file=${saKey}`,
      "--authorization-mode=RBAC",
      `--token-auth-file=${tokens}`,
      `--client-ca-file=${pki.clientCaCertFile}`,
      "--endpoint-reconciler-type=none",
      "--allow-privileged=true",
      "--enable-priority-and-fairness=false",
      "--profiling=false",
    ];
    let apiserver: ManagedProcess | undefined;
    const startApiServer = async () => {
      apiserver = startProcess("kube-apiserver", bin.kubeApiserver, apiserverArgs, { logFile: join(logs, "kube-apiserver.log") });
      started.push(apiserver);
      await waitUntil("kube-apiserver", () => readyz(server, adminToken), { timeoutMs: 90_000, process: apiserver, intervalMs: 200 });
    };
    await startApiServer();

    if (controllers) {
      const cm = startProcess(
        "kube-controller-manager",
        bin.kubeControllerManager,
        [
          `--kubeconfig=${kubeconfig}`,
          "--leader-elect=false",
          "--secure-port=0",
          "--bind-address=127.0.0.1",
          `--service-account-private-key-file=${saKey}`,
          "--use-service-account-credentials=false",
          "--controllers=*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller,-node-route-controller,-persistentvolume-attach-detach-controller",
          "--concurrent-deployment-syncs=10",
        ],
        { logFile: join(logs, "kube-controller-manager.log") },
      );
      started.push(cm);
      const scheduler = startProcess(
        "kube-scheduler",
        bin.kubeScheduler,
        [`--kubeconfig=${kubeconfig}`, `--authentication-kubeconfig=${kubeconfig}`, `--authorization-kubeconfig=${kubeconfig}`, "--leader-elect=false", "--secure-port=0", "--bind-address=127.0.0.1"],
        { logFile: join(logs, "kube-scheduler.log") },
      );
      started.push(scheduler);
      const kwokPort = await freePort();
      const kwok = startProcess(
        "kwok",
        bin.kwok,
        [
          `--kubeconfig=${kubeconfig}`,
          `--config=${join(dir, "kwok-none.yaml")}`,
          "--manage-all-nodes=false",
          "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
          "--manage-nodes-with-label-selector=",
          "--disregard-status-with-annotation-selector=kwok.x-k8s.io/status=custom",
          "--disregard-status-with-label-selector=",
          "--cidr=10.0.0.1/24",
          "--node-ip=10.0.0.1",
          "--node-lease-duration-seconds=40",
          `--server-address=127.0.0.1:${kwokPort}`,
        ],
        { logFile: join(logs, "kwok.log") },
      );
      started.push(kwok);
      const node = await run(bin.kubectl, ["--kubeconfig", kubeconfig, "apply", "-f", "-"], fakeNode());
      if (node.code !== 0) throw new Error(`creating the fake Node failed: ${node.stderr}`);
      await waitUntil(
        "fake Node Ready",
        async () => (await run(bin.kubectl, ["--kubeconfig", kubeconfig, "wait", "--for=condition=Ready", `node/${FAKE_NODE_NAME}`, "--timeout=1s"])).code === 0,
        { timeoutMs: 60_000, process: kwok, intervalMs: 250 },
      );
      // Pods are admitted only once the default ServiceAccount exists (controller-manager).
      await waitUntil(
        "default ServiceAccount",
        async () => (await run(bin.kubectl, ["--kubeconfig", kubeconfig, "get", "serviceaccount", "default", "-n", "default"])).code === 0,
        { timeoutMs: 60_000, process: cm, intervalMs: 250 },
      );
    }

    return {
      server,
      ...pki,
      servingCertFile: join(certDir, "apiserver.crt"),
      kubeconfig,
      unprivilegedKubeconfig,
      kubectl: bin.kubectl,
      binaries: bin,
      async stopApiServer() {
        await apiserver?.stop();
      },
      startApiServer,
      stop: stopAll,
    };
  } catch (error) {
    await stopAll();
    throw error;
  }
}

function fakeNode(): string {
  return JSON.stringify({
    apiVersion: "v1",
    kind: "Node",
    metadata: {
      name: FAKE_NODE_NAME,
      annotations: { "node.alpha.kubernetes.io/ttl": "0", "kwok.x-k8s.io/node": "fake" },
      labels: { "kubernetes.io/hostname": FAKE_NODE_NAME, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64", type: "kwok" },
    },
    spec: {},
    status: {
      allocatable: { cpu: "32", memory: "256Gi", pods: "110" },
      capacity: { cpu: "32", memory: "256Gi", pods: "110" },
      nodeInfo: { architecture: "amd64", operatingSystem: "linux", kubeletVersion: "fake", kubeProxyVersion: "fake" },
      phase: "Running",
    },
  });
}
