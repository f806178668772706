/**
 * deploy/ as a user combines it: each RBAC variant with the network-policy, metrics and
 * apps-config components is accepted by `kubectl apply --server-side -k` on the test API
 * server; switching variants with the commands of deploy/README.md ("Switching the RBAC
 * variant") leaves no broader right behind (`kubectl auth can-i`); and the README's uninstall
 * commands remove every right and find what the listener left behind on purpose.
 *
 * The README's command blocks are read from deploy/README.md and run as they stand, with the
 * test's overlay directory, names and namespace put in for `my-cluster/`, `kube-pico-cd-apply`
 * and `kube-pico-cd` (the shared API server serves the whole test run, so every install here
 * has a namespace and name suffix of its own, as in deploy-manifests.test.ts).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { parseAllDocuments, stringify } from "yaml";
import { createNamespace, kubectl, testEnv } from "../env/testenv.ts";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const deployDir = join(root, "deploy");
const serviceMonitorCrd = join(root, "test", "fixtures", "crds", "servicemonitor.yaml");

type Variant = "cluster-wide" | "namespaced";

interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  [key: string]: unknown;
}

const dirs: string[] = [];
const cleanups: Array<() => Promise<unknown>> = [];

afterAll(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "kube-pico-cd-variants-"));
  dirs.push(dir);
  return dir;
}

/** Writes `kustomization` into `dir` (created if missing); deploy/ paths are given relative to the repository's deploy/. */
function writeKustomization(dir: string, kustomization: Record<string, unknown>): string {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "kustomization.yaml"), stringify({ apiVersion: "kustomize.config.k8s.io/v1beta1", kind: "Kustomization", ...kustomization }));
  return dir;
}

/** kustomize accepts only relative paths to other kustomizations and components. */
const fromDeploy = (dir: string, path: string) => relative(dir, join(deployDir, path));

async function must(args: readonly string[], what: string, stdin?: string): Promise<string> {
  const result = await kubectl(args, stdin === undefined ? {} : { stdin });
  if (result.code !== 0) throw new Error(`${what} failed (kubectl ${args.join(" ")}): ${result.stderr}`);
  return result.stdout;
}

async function render(dir: string): Promise<KubeObject[]> {
  return parseAllDocuments(await must(["kustomize", dir], `kubectl kustomize ${dir}`)).map((doc) => doc.toJSON() as KubeObject);
}

const summary = (objects: readonly KubeObject[]) =>
  objects.map((o) => `${o.kind} ${o.metadata.namespace ? `${o.metadata.namespace}/` : ""}${o.metadata.name}`.replace(/-[a-z0-9]{10}$/, "-<hash>"));

/** `kubectl auth can-i` as a service account, with the groups a real token carries. */
async function canI(namespace: string, serviceAccount: string, args: readonly string[]): Promise<boolean> {
  const result = await kubectl([
    "auth",
    "can-i",
    ...args,
    `--as=system:serviceaccount:${namespace}:${serviceAccount}`,
    "--as-group=system:serviceaccounts",
    `--as-group=system:serviceaccounts:${namespace}`,
    "--as-group=system:authenticated",
  ]);
  const answer = result.stdout.trim();
  if (answer !== "yes" && answer !== "no") throw new Error(`kubectl auth can-i ${args.join(" ")} answered neither yes nor no: ${result.stdout}${result.stderr}`);
  return answer === "yes";
}

/** The lines of the ```sh block that follows `<!-- marker -->` in deploy/README.md. */
function readmeBlock(marker: string): string[] {
  const readme = readFileSync(join(deployDir, "README.md"), "utf8");
  const at = readme.indexOf(`<!-- ${marker} -->`);
  if (at < 0) throw new Error(`deploy/README.md has no block marked <!-- ${marker} -->`);
  const block = /```sh\n([\s\S]*?)```/.exec(readme.slice(at));
  if (!block?.[1]) throw new Error(`deploy/README.md has no sh block after <!-- ${marker} -->`);
  return block[1].split("\n").filter((line) => line.trim() !== "");
}

/** Where the test's install differs from deploy/'s names. */
interface Install {
  id: string;
  namespace: string;
  overlay: string;
}

/** A README command with the test's overlay, names and namespace in place of deploy/'s. */
function substitute(line: string, install: Install): string {
  return line
    .replaceAll("my-cluster/", `${install.overlay}/`)
    .replaceAll(/\bkube-pico-cd-apply\b/g, `kube-pico-cd-apply-${install.id}`)
    .replaceAll("system:serviceaccount:kube-pico-cd:kube-pico-cd", `system:serviceaccount:${install.namespace}:kube-pico-cd-${install.id}`)
    .replaceAll("kube-pico-cd.io/instance=kube-pico-cd ", `kube-pico-cd.io/instance=${install.namespace} `);
}

/** Runs one README kubectl command (no shell: split on spaces, as the README writes them) and returns its result. */
async function runReadmeCommand(line: string, install: Install) {
  const [command, ...args] = substitute(line, install).split(" ");
  if (command !== "kubectl") throw new Error(`deploy/README.md command is not a kubectl command: ${line}`);
  return await kubectl(args);
}

beforeAll(async () => {
  // The ServiceMonitor of deploy/metrics needs its CRD, as in a cluster with the Prometheus Operator.
  await must(["apply", "--server-side", "--field-manager=kube-pico-cd-test", "-f", serviceMonitorCrd], "installing the ServiceMonitor CRD fixture");
  await must(["wait", "--for=condition=Established", "--timeout=30s", "crd/servicemonitors.monitoring.coreos.com"], "waiting for the ServiceMonitor CRD");
  cleanups.push(() => kubectl(["delete", "--ignore-not-found", "--wait=false", "-f", serviceMonitorCrd]));
});

describe("every RBAC variant with the network-policy, metrics and apps-config components", () => {
  const expected = (variant: Variant, ns: string, id: string) => [
    `Namespace ${ns}`,
    `ServiceAccount ${ns}/kube-pico-cd-${id}`,
    `Role ${ns}/kube-pico-cd-${id}`,
    `ClusterRole kube-pico-cd-apply-${id}`,
    // kustomize orders by kind, then namespace and name: the namespaced variant's example binding (moved into the test's namespace) sorts first.
    ...(variant === "cluster-wide"
      ? [`RoleBinding ${ns}/kube-pico-cd-${id}`, `ClusterRoleBinding kube-pico-cd-apply-${id}`]
      : [`RoleBinding ${ns}/kube-pico-cd-apply-${id}`, `RoleBinding ${ns}/kube-pico-cd-${id}`]),
    `ConfigMap ${ns}/kube-pico-cd-apps-${id}`,
    `ConfigMap ${ns}/kube-pico-cd-config-${id}-<hash>`,
    `Service ${ns}/kube-pico-cd-metrics-${id}`,
    `Deployment ${ns}/kube-pico-cd-${id}`,
    `ServiceMonitor ${ns}/kube-pico-cd-${id}`,
    `NetworkPolicy ${ns}/kube-pico-cd-${id}`,
  ];

  for (const variant of ["cluster-wide", "namespaced"] as const) {
    test(`kubectl apply --server-side -k accepts deploy/rbac/${variant} with all three components, and the pod is selected by the policy and the Service`, async () => {
      const id = randomBytes(4).toString("hex");
      const ns = `kpcd-${id}`;
      const dir = tempDir();
      writeKustomization(dir, {
        namespace: ns,
        nameSuffix: `-${id}`,
        resources: [fromDeploy(dir, `rbac/${variant}`)],
        components: ["network-policy", "metrics", "apps-config"].map((c) => fromDeploy(dir, c)),
      });
      const objects = await render(dir);
      // Sorted: kustomize orders objects of a kind by name, and the random suffix decides which of the two RoleBindings comes first.
      expect(summary(objects).sort()).toEqual(expected(variant, ns, id).sort());
      cleanups.push(() => kubectl(["delete", "--ignore-not-found", "--wait=false", "-k", dir]));

      const applied = await kubectl(["apply", "--server-side", "-k", dir]);
      expect(applied.stderr).toBe("");
      expect(applied.code).toBe(0);
      const lines = applied.stdout.trim().split("\n");
      expect(lines).toHaveLength(objects.length);
      expect(lines.filter((line) => !line.endsWith(" serverside-applied"))).toEqual([]);

      await must(["wait", "--for=condition=Available", "--timeout=60s", `--namespace=${ns}`, `deployment/kube-pico-cd-${id}`], "waiting for the Deployment");
      const pods = JSON.parse(await must(["get", "pods", `--namespace=${ns}`, "-o", "json"], "listing the pods")) as { items: KubeObject[] };
      expect(pods.items).toHaveLength(1);
      const pod = pods.items[0]!;

      // The NetworkPolicy's podSelector selects the listener's pod (and would select nothing if the labels drifted apart).
      const policy = objects.find((o) => o.kind === "NetworkPolicy")!;
      const selector = (policy["spec"] as { podSelector: { matchLabels: Record<string, string> } }).podSelector.matchLabels;
      const selected = await must(["get", "pods", `--namespace=${ns}`, "-l", Object.entries(selector).map(([k, v]) => `${k}=${v}`).join(","), "-o", "name"], "listing the policy's pods");
      expect(selected.trim()).toBe(`pod/${pod.metadata.name}`);

      // The metrics Service finds the pod on 8080: its EndpointSlice lists the pod, ready.
      let slices: { items: Array<{ ports?: Array<{ name: string; port: number; protocol: string }>; endpoints?: Array<{ targetRef?: { name: string }; conditions?: { ready?: boolean } }> }> } = { items: [] };
      for (let attempt = 0; attempt < 50; attempt++) {
        slices = JSON.parse(await must(["get", "endpointslices", `--namespace=${ns}`, "-l", `kubernetes.io/service-name=kube-pico-cd-metrics-${id}`, "-o", "json"], "listing the EndpointSlices"));
        if (slices.items[0]?.endpoints?.[0]?.conditions?.ready === true) break;
        await Bun.sleep(200);
      }
      expect(slices.items.map((s) => ({ ports: s.ports, endpoints: s.endpoints?.map((e) => ({ pod: e.targetRef?.name, ready: e.conditions?.ready })) }))).toEqual([
        { ports: [{ name: "http", port: 8080, protocol: "TCP" }], endpoints: [{ pod: pod.metadata.name, ready: true }] },
      ]);

      // The ServiceMonitor selects the metrics Service by its labels, on its named port.
      const monitor = JSON.parse(await must(["get", "servicemonitors.monitoring.coreos.com", `kube-pico-cd-${id}`, `--namespace=${ns}`, "-o", "json"], "reading the ServiceMonitor")) as {
        spec: { selector: { matchLabels: Record<string, string> }; endpoints: unknown[] };
      };
      expect(monitor.spec.endpoints).toEqual([{ port: "http", path: "/metrics", interval: "30s" }]);
      const services = await must(["get", "services", `--namespace=${ns}`, "-l", Object.entries(monitor.spec.selector.matchLabels).map(([k, v]) => `${k}=${v}`).join(","), "-o", "name"], "listing the monitored Services");
      expect(services.trim()).toBe(`service/kube-pico-cd-metrics-${id}`);
    }, 120_000);
  }
});

describe("switching variants and uninstalling as deploy/README.md says", () => {
  const id = randomBytes(4).toString("hex");
  const ns = `kpcd-${id}`;
  const sa = `kube-pico-cd-${id}`;
  let allowedNamespace: string;
  let otherNamespace: string;
  let clusterWide: Install;
  let namespaced: Install;

  beforeAll(async () => {
    allowedNamespace = await createNamespace("kpcd-app");
    otherNamespace = await createNamespace("kpcd-other");
    cleanups.push(() => kubectl(["delete", "namespace", allowedNamespace, otherNamespace, "--ignore-not-found", "--wait=false"]));
    const dir = tempDir();
    // What a user's overlay is, with this test's namespace and suffix.
    const cw = writeKustomization(join(dir, "cluster-wide"), { namespace: ns, nameSuffix: `-${id}`, resources: [fromDeploy(join(dir, "cluster-wide"), "rbac/cluster-wide")] });
    const inner = writeKustomization(join(dir, "namespaced-inner"), { namespace: ns, nameSuffix: `-${id}`, resources: [fromDeploy(join(dir, "namespaced-inner"), "rbac/namespaced")] });
    // The user's edit of rolebindings.yaml, naming the namespace to deploy to: done by a patch
    // one layer up, since the test's `namespace:` moved the example binding into the listener's namespace.
    const nsOverlay = writeKustomization(join(dir, "namespaced"), {
      resources: [relative(join(dir, "namespaced"), inner)],
      patches: [
        {
          target: { kind: "RoleBinding", name: `kube-pico-cd-apply-${id}` },
          patch: stringify([
            { op: "replace", path: "/metadata/namespace", value: allowedNamespace },
            { op: "replace", path: "/subjects/0/namespace", value: ns },
          ]),
        },
      ],
    });
    clusterWide = { id, namespace: ns, overlay: cw };
    namespaced = { id, namespace: ns, overlay: nsOverlay };
    cleanups.push(() => kubectl(["delete", "--ignore-not-found", "--wait=false", "-k", nsOverlay]));
    cleanups.push(() => kubectl(["delete", "--ignore-not-found", "--wait=false", "-k", cw]));
  });

  test("the README's blocks are the commands this test runs", () => {
    expect(readmeBlock("switch: cluster-wide to namespaced")).toEqual([
      "kubectl apply --server-side -k my-cluster/",
      "kubectl delete clusterrolebinding kube-pico-cd-apply",
      "kubectl auth can-i create deployments.apps --namespace=kube-system --as=system:serviceaccount:kube-pico-cd:kube-pico-cd",
    ]);
    expect(readmeBlock("switch: namespaced to cluster-wide")).toEqual([
      "kubectl apply --server-side -k my-cluster/",
      "kubectl delete rolebindings --all-namespaces --field-selector=metadata.name=kube-pico-cd-apply",
    ]);
    expect(readmeBlock("uninstall")).toEqual(["kubectl delete -k my-cluster/"]);
    expect(readmeBlock("uninstall: list applied objects")).toEqual([
      'kubectl get "$(kubectl api-resources --verbs=list -o name | paste -sd, -)" --all-namespaces -l kube-pico-cd.io/instance=kube-pico-cd -o name',
    ]);
  });

  test("cluster-wide, then namespaced as the README says: no right outside the listed namespaces is left", async () => {
    // The Quick install's command, for cluster-wide.
    const installed = await runReadmeCommand("kubectl apply --server-side -k my-cluster/", clusterWide);
    expect(installed.code).toBe(0);
    expect(await canI(ns, sa, ["create", "deployments.apps", `--namespace=${otherNamespace}`])).toBe(true);
    expect(await canI(ns, sa, ["list", "secrets", "--all-namespaces"])).toBe(true);

    const [apply, deleteBinding, check] = readmeBlock("switch: cluster-wide to namespaced");
    const applied = await runReadmeCommand(apply!, namespaced);
    expect(applied.stderr).toBe("");
    expect(applied.code).toBe(0);
    // Why the README's second command exists: apply alone left the cluster-wide binding.
    expect(await canI(ns, sa, ["create", "deployments.apps", `--namespace=${otherNamespace}`])).toBe(true);

    const deleted = await runReadmeCommand(deleteBinding!, namespaced);
    expect(deleted.stdout.trim()).toBe(`clusterrolebinding.rbac.authorization.k8s.io "kube-pico-cd-apply-${id}" deleted`);
    expect(deleted.code).toBe(0);
    const checked = await runReadmeCommand(check!, namespaced);
    expect(checked.stdout.trim()).toBe("no");

    for (const args of [
      ["create", "deployments.apps", `--namespace=${otherNamespace}`],
      ["create", "deployments.apps", "--namespace=kube-system"],
      ["list", "deployments.apps", `--namespace=${otherNamespace}`],
      ["get", "secrets", `--namespace=${otherNamespace}`],
      ["list", "secrets", "--all-namespaces"],
      ["list", "configmaps", "--all-namespaces"],
      ["create", "namespaces"],
      ["create", "customresourcedefinitions.apiextensions.k8s.io"],
      ["create", "clusterroles.rbac.authorization.k8s.io"],
      ["create", "clusterrolebindings.rbac.authorization.k8s.io"],
      ["update", "configmaps/kube-pico-cd-config", `--namespace=${ns}`],
    ]) {
      expect({ args, allowed: await canI(ns, sa, args) }).toEqual({ args, allowed: false });
    }
    // What namespaced grants is still there.
    for (const args of [
      ["create", "deployments.apps", `--namespace=${allowedNamespace}`],
      ["delete", "services", `--namespace=${allowedNamespace}`],
      ["update", "configmaps/kube-pico-cd-state", `--namespace=${ns}`],
      ["update", "leases.coordination.k8s.io/kube-pico-cd-deploy", `--namespace=${ns}`],
    ]) {
      expect({ args, allowed: await canI(ns, sa, args) }).toEqual({ args, allowed: true });
    }
  }, 60_000);

  test("namespaced, then cluster-wide as the README says: the RoleBindings in the listed namespaces are gone", async () => {
    const [apply, deleteBindings] = readmeBlock("switch: namespaced to cluster-wide");
    const applied = await runReadmeCommand(apply!, clusterWide);
    expect(applied.code).toBe(0);
    const deleted = await runReadmeCommand(deleteBindings!, clusterWide);
    expect(deleted.stdout.trim()).toBe(`rolebinding.rbac.authorization.k8s.io "kube-pico-cd-apply-${id}" deleted from ${allowedNamespace} namespace`);
    expect(deleted.code).toBe(0);
    const left = await kubectl(["get", "rolebindings", "--all-namespaces", `--field-selector=metadata.name=kube-pico-cd-apply-${id}`, "-o", "name"]);
    expect(left.stdout).toBe("");
    // The listener's own RoleBinding, also labelled part-of kube-pico-cd, stays.
    expect((await must(["get", "rolebindings", `--namespace=${ns}`, "-o", "name"], "listing the listener's RoleBindings")).trim()).toBe(`rolebinding.rbac.authorization.k8s.io/kube-pico-cd-${id}`);
    expect(await canI(ns, sa, ["create", "deployments.apps", `--namespace=${otherNamespace}`])).toBe(true);
  }, 60_000);

  test("the README's listing finds objects the listener applied, and its uninstall removes every right and the listener's namespace", async () => {
    // Objects as the listener leaves them: marked with its instance (its namespace), one namespaced, one cluster-scoped.
    const marked = { "kube-pico-cd.io/app": "shop", "kube-pico-cd.io/instance": ns };
    const manifests = [
      { apiVersion: "v1", kind: "ConfigMap", metadata: { name: `shop-settings-${id}`, namespace: allowedNamespace, labels: marked }, data: { a: "1" } },
      { apiVersion: "rbac.authorization.k8s.io/v1", kind: "ClusterRole", metadata: { name: `shop-reader-${id}`, labels: marked }, rules: [] },
    ].map((o) => stringify(o)).join("---\n");
    await must(["apply", "--server-side", "--field-manager=kube-pico-cd", "-f", "-"], "creating the marked objects", manifests);
    cleanups.push(() => kubectl(["delete", "--ignore-not-found", "--wait=false", "-f", "-"], { stdin: manifests }));

    const env = await testEnv();
    const [listing] = readmeBlock("uninstall: list applied objects");
    const listed = await shell(substitute(listing!, clusterWide), { PATH: `${dirname(env.kubectl)}:${process.env.PATH ?? ""}`, KUBECONFIG: env.kubeconfig });
    expect(listed.code).toBe(0);
    expect(listed.stdout.trim().split("\n").sort()).toEqual([`clusterrole.rbac.authorization.k8s.io/shop-reader-${id}`, `configmap/shop-settings-${id}`]);

    const [uninstall] = readmeBlock("uninstall");
    const removed = await runReadmeCommand(uninstall!, clusterWide);
    expect(removed.code).toBe(0);
    for (const object of [`clusterrolebinding/kube-pico-cd-apply-${id}`, `clusterrole/kube-pico-cd-apply-${id}`, `namespace/${ns}`]) {
      const got = await kubectl(["get", object, "--ignore-not-found", "-o", "name"]);
      expect({ object, left: got.stdout.trim() }).toEqual({ object, left: "" });
    }
    expect(await canI(ns, sa, ["create", "deployments.apps", `--namespace=${allowedNamespace}`])).toBe(false);
    expect(await canI(ns, sa, ["update", "configmaps/kube-pico-cd-state", `--namespace=${ns}`])).toBe(false);
    // Left behind on purpose: the applied objects.
    expect((await must(["get", "configmap", `shop-settings-${id}`, `--namespace=${allowedNamespace}`, "-o", "name"], "reading the applied ConfigMap")).trim()).toBe(`configmap/shop-settings-${id}`);
  }, 120_000);
});

/** Runs a README line that is a shell pipeline, with `env` added to the environment. */
async function shell(line: string, env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  return await new Promise((resolve, reject) => {
    const child = spawn("bash", ["-c", line], { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.once("error", reject);
    child.once("exit", (code) => resolve({ code: code ?? 1, stdout, stderr }));
  });
}
