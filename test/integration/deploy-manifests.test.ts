/**
 * deploy/: both RBAC variants render with `kubectl kustomize`, install with
 * `kubectl apply --server-side` on the test API server, the listener's pod is admitted under
 * the namespace's "restricted" Pod Security level, and the listener's service account may do
 * exactly what it needs (`kubectl auth can-i --as=system:serviceaccount:…`).
 *
 * The shared API server serves the whole test run, so each variant is installed through an
 * overlay that moves the listener into a namespace of its own and suffixes cluster-scoped
 * names (the same kind of overlay a user writes to install into another namespace).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { parseAllDocuments, stringify } from "yaml";
import { createNamespace, kubectl } from "../env/testenv.ts";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const deployDir = join(root, "deploy");

type Variant = "cluster-wide" | "namespaced";

interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string };
  [key: string]: unknown;
}

async function kustomize(dir: string): Promise<KubeObject[]> {
  const result = await kubectl(["kustomize", dir]);
  if (result.code !== 0) throw new Error(`kubectl kustomize ${dir} failed: ${result.stderr}`);
  return parseAllDocuments(result.stdout).map((doc) => doc.toJSON() as KubeObject);
}

function summary(objects: readonly KubeObject[]): string[] {
  return objects.map((o) => `${o.kind} ${o.metadata.namespace ? `${o.metadata.namespace}/` : ""}${o.metadata.name}`);
}

function toYaml(objects: readonly KubeObject[]): string {
  return objects.map((o) => stringify(o)).join("---\n");
}

/** An installed variant: where the listener lives and who it is. */
interface Installed {
  namespace: string;
  serviceAccount: string;
  deployment: string;
  manifests: string;
}

const dirs: string[] = [];
const cleanups: Array<() => Promise<unknown>> = [];

/**
 * Renders `variant` through an overlay that moves the listener into namespace kpcd-<id> and
 * suffixes names with -<id>, with the overlay's `patches` if given; `edit` may change the
 * rendered objects before they are applied.
 */
async function install(variant: Variant, edit: (objects: KubeObject[], id: string) => void = () => {}, patches?: readonly unknown[]): Promise<Installed> {
  const id = randomBytes(4).toString("hex");
  const dir = mkdtempSync(join(tmpdir(), "kube-pico-cd-deploy-"));
  dirs.push(dir);
  writeFileSync(
    join(dir, "kustomization.yaml"),
    stringify({
      apiVersion: "kustomize.config.k8s.io/v1beta1",
      kind: "Kustomization",
      namespace: `kpcd-${id}`,
      nameSuffix: `-${id}`,
      // kustomize accepts only relative paths to other kustomizations.
      resources: [relative(dir, join(deployDir, "rbac", variant))],
      ...(patches === undefined ? {} : { patches }),
    }),
  );
  const objects = await kustomize(dir);
  edit(objects, id);
  const manifests = toYaml(objects);
  cleanups.push(() => kubectl(["delete", "--ignore-not-found", "--wait=false", "-f", "-"], { stdin: manifests }));
  const applied = await kubectl(["apply", "--server-side", "--field-manager=kube-pico-cd-test", "-f", "-"], { stdin: manifests });
  if (applied.code !== 0) throw new Error(`kubectl apply --server-side of deploy/rbac/${variant} failed: ${applied.stderr}`);
  return { namespace: `kpcd-${id}`, serviceAccount: `kube-pico-cd-${id}`, deployment: `kube-pico-cd-${id}`, manifests };
}

/** `kubectl auth can-i` as the listener's service account, with the groups a real token carries. */
async function canI(who: Installed, args: readonly string[]): Promise<boolean> {
  const result = await kubectl([
    "auth",
    "can-i",
    ...args,
    `--as=system:serviceaccount:${who.namespace}:${who.serviceAccount}`,
    "--as-group=system:serviceaccounts",
    `--as-group=system:serviceaccounts:${who.namespace}`,
    "--as-group=system:authenticated",
  ]);
  const answer = result.stdout.trim();
  if (answer !== "yes" && answer !== "no") throw new Error(`kubectl auth can-i ${args.join(" ")} answered neither yes nor no: ${result.stdout}${result.stderr}`);
  return answer === "yes";
}

afterAll(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** Permissions every variant must grant in the listener's own namespace (`own` is replaced by it). */
const ownNamespaceAllowed: ReadonlyArray<readonly string[]> = [
  // `listener status` lists every app's record.
  ["list", "configmaps"],
  ["get", "configmaps/kube-pico-cd-state"],
  ["update", "configmaps/kube-pico-cd-state"],
  ["patch", "configmaps/kube-pico-cd-state"],
  ["create", "configmaps"],
  ["get", "leases.coordination.k8s.io/kube-pico-cd-deploy"],
  ["update", "leases.coordination.k8s.io/kube-pico-cd-deploy"],
  ["patch", "leases.coordination.k8s.io/kube-pico-cd-deploy"],
  ["create", "leases.coordination.k8s.io"],
  ["get", "secrets/kube-pico-cd-bundle"],
  ["update", "secrets/kube-pico-cd-bundle"],
  ["patch", "secrets/kube-pico-cd-bundle"],
  ["delete", "secrets/kube-pico-cd-bundle"],
  ["create", "secrets"],
  ["create", "events"],
  ["create", "events.events.k8s.io"],
];

describe("deploy/rbac/cluster-wide", () => {
  let listener: Installed;
  beforeAll(async () => {
    listener = await install("cluster-wide");
  });

  test("kubectl kustomize renders the listener and a ClusterRoleBinding to its apply role", async () => {
    const objects = await kustomize(join(deployDir, "rbac", "cluster-wide"));
    expect(summary(objects).map((line) => line.replace(/-config-[a-z0-9]{10}$/, "-config-<hash>"))).toEqual([
      "Namespace kube-pico-cd",
      "ServiceAccount kube-pico-cd/kube-pico-cd",
      "Role kube-pico-cd/kube-pico-cd",
      "ClusterRole kube-pico-cd-apply",
      "RoleBinding kube-pico-cd/kube-pico-cd",
      "ClusterRoleBinding kube-pico-cd-apply",
      "ConfigMap kube-pico-cd/kube-pico-cd-config-<hash>",
      "Deployment kube-pico-cd/kube-pico-cd",
    ]);
  });

  test("the Deployment becomes Available: its pod is admitted under Pod Security 'restricted'", async () => {
    const waited = await kubectl(["wait", "--for=condition=Available", "--timeout=60s", `--namespace=${listener.namespace}`, `deployment/${listener.deployment}`]);
    expect(`${waited.stdout}${waited.stderr}`).toContain("condition met");
    expect(waited.code).toBe(0);
  }, 70_000);

  for (const args of ownNamespaceAllowed) {
    test(`the listener can ${args.join(" ")} in its own namespace`, async () => {
      expect(await canI(listener, [...args, `--namespace=${listener.namespace}`])).toBe(true);
    });
  }

  const allowed: ReadonlyArray<readonly string[]> = [
    ["create", "deployments.apps", "--namespace=any-app"],
    ["patch", "deployments.apps", "--namespace=any-app"],
    ["delete", "services", "--namespace=any-app"],
    ["create", "namespaces"],
    ["patch", "customresourcedefinitions.apiextensions.k8s.io"],
    ["list", "customresourcedefinitions.apiextensions.k8s.io"],
    ["create", "clusterroles.rbac.authorization.k8s.io"],
    ["get", "/readyz"],
    // Ownership checks list what they apply by label, and a lost record's inventory is rebuilt from every namespace.
    ["list", "deployments.apps", "--all-namespaces"],
    ["list", "configmaps", "--all-namespaces"],
  ];
  for (const args of allowed) {
    test(`the listener can ${args.join(" ")}`, async () => {
      expect(await canI(listener, args)).toBe(true);
    });
  }

  const denied: ReadonlyArray<readonly string[]> = [
    ["impersonate", "users"],
    ["impersonate", "serviceaccounts", "--namespace=kube-system"],
    ["escalate", "clusterroles.rbac.authorization.k8s.io"],
    ["bind", "clusterroles.rbac.authorization.k8s.io"],
    ["deletecollection", "pods", "--namespace=any-app"],
  ];
  for (const args of denied) {
    test(`the listener cannot ${args.join(" ")}`, async () => {
      expect(await canI(listener, args)).toBe(false);
    });
  }

  test("the listener may write any app's record, Lease and kept bundle in its own namespace without naming them", async () => {
    const own = `--namespace=${listener.namespace}`;
    expect(await canI(listener, ["update", "configmaps/kube-pico-cd-state-shop", own])).toBe(true);
    expect(await canI(listener, ["update", "leases.coordination.k8s.io/kube-pico-cd-deploy-shop", own])).toBe(true);
    expect(await canI(listener, ["get", "secrets/kube-pico-cd-bundle-shop", own])).toBe(true);
  });
});

/** The overlay patch deploy/README.md gives for a further app with the namespaced variant ("More than one app"). */
const appShopPatch = {
  target: { kind: "Role", name: "kube-pico-cd" },
  patch: [
    "- { op: add, path: /rules/0/resourceNames/-, value: kube-pico-cd-state-shop }",
    "- { op: add, path: /rules/1/resourceNames/-, value: kube-pico-cd-deploy-shop }",
    "- { op: add, path: /rules/2/resourceNames/-, value: kube-pico-cd-bundle-shop }",
    "",
  ].join("\n"),
};

describe("deploy/rbac/namespaced", () => {
  let listener: Installed;
  let allowedNamespace: string;
  let otherNamespace: string;
  beforeAll(async () => {
    allowedNamespace = await createNamespace("kpcd-app");
    otherNamespace = await createNamespace("kpcd-other");
    cleanups.push(() => kubectl(["delete", "namespace", allowedNamespace, otherNamespace, "--ignore-not-found", "--wait=false"]));
    listener = await install("namespaced", (objects, id) => {
      // What a user does in rolebindings.yaml: name the namespace to deploy to. (The test
      // overlay's `namespace:` moved the example binding into the listener's namespace.)
      const binding = objects.find((o) => o.kind === "RoleBinding" && o.metadata.name === `kube-pico-cd-apply-${id}`);
      if (!binding) throw new Error(`the namespaced variant has no RoleBinding kube-pico-cd-apply: ${summary(objects).join(", ")}`);
      binding.metadata.namespace = allowedNamespace;
    }, [appShopPatch]);
  });

  test("kubectl kustomize renders the listener and a RoleBinding to its apply role in the example namespace", async () => {
    const objects = await kustomize(join(deployDir, "rbac", "namespaced"));
    expect(summary(objects).map((line) => line.replace(/-config-[a-z0-9]{10}$/, "-config-<hash>"))).toEqual([
      "Namespace kube-pico-cd",
      "ServiceAccount kube-pico-cd/kube-pico-cd",
      "Role kube-pico-cd/kube-pico-cd",
      "ClusterRole kube-pico-cd-apply",
      "RoleBinding kube-pico-cd/kube-pico-cd",
      "RoleBinding my-app/kube-pico-cd-apply",
      "ConfigMap kube-pico-cd/kube-pico-cd-config-<hash>",
      "Deployment kube-pico-cd/kube-pico-cd",
    ]);
  });

  test("the Deployment becomes Available: its pod is admitted under Pod Security 'restricted'", async () => {
    const waited = await kubectl(["wait", "--for=condition=Available", "--timeout=60s", `--namespace=${listener.namespace}`, `deployment/${listener.deployment}`]);
    expect(`${waited.stdout}${waited.stderr}`).toContain("condition met");
    expect(waited.code).toBe(0);
  }, 70_000);

  for (const args of ownNamespaceAllowed) {
    test(`the listener can ${args.join(" ")} in its own namespace`, async () => {
      expect(await canI(listener, [...args, `--namespace=${listener.namespace}`])).toBe(true);
    });
  }

  const allowedInListed: ReadonlyArray<readonly string[]> = [
    ["create", "deployments.apps"],
    ["patch", "deployments.apps"],
    ["create", "services"],
    ["patch", "configmaps"],
    ["create", "secrets"],
    ["delete", "deployments.apps"],
    // Ownership checks list what they apply by label.
    ["list", "deployments.apps"],
    ["list", "configmaps"],
  ];
  test("the listener can get /readyz (its readiness check of the API server)", async () => {
    expect(await canI(listener, ["get", "/readyz"])).toBe(true);
  });

  for (const args of allowedInListed) {
    test(`the listener can ${args.join(" ")} in a listed namespace`, async () => {
      expect(await canI(listener, [...args, `--namespace=${allowedNamespace}`])).toBe(true);
    });
  }

  const deniedInOther: ReadonlyArray<readonly string[]> = [
    ["create", "deployments.apps"],
    ["patch", "deployments.apps"],
    ["get", "secrets"],
    ["list", "deployments.apps"],
  ];
  for (const args of deniedInOther) {
    test(`the listener cannot ${args.join(" ")} in a namespace that is not listed`, async () => {
      expect(await canI(listener, [...args, `--namespace=${otherNamespace}`])).toBe(false);
    });
  }

  const denied: ReadonlyArray<readonly string[]> = [
    ["get", "secrets", "--namespace=kube-system"],
    ["create", "namespaces"],
    ["create", "customresourcedefinitions.apiextensions.k8s.io"],
    ["create", "clusterroles.rbac.authorization.k8s.io"],
    ["create", "clusterrolebindings.rbac.authorization.k8s.io"],
    ["impersonate", "serviceaccounts"],
  ];
  for (const args of denied) {
    test(`the listener cannot ${args.join(" ")}`, async () => {
      expect(await canI(listener, args)).toBe(false);
    });
  }

  test("with the overlay patch for app shop, the listener may write shop's record, Lease and kept bundle, and no other app's", async () => {
    const own = `--namespace=${listener.namespace}`;
    for (const args of [
      ["update", "configmaps/kube-pico-cd-state-shop"],
      ["patch", "configmaps/kube-pico-cd-state-shop"],
      ["get", "leases.coordination.k8s.io/kube-pico-cd-deploy-shop"],
      ["update", "leases.coordination.k8s.io/kube-pico-cd-deploy-shop"],
      ["get", "secrets/kube-pico-cd-bundle-shop"],
      ["delete", "secrets/kube-pico-cd-bundle-shop"],
    ]) {
      expect({ args, allowed: await canI(listener, [...args, own]) }).toEqual({ args, allowed: true });
    }
    for (const args of [
      ["update", "configmaps/kube-pico-cd-state-web"],
      ["update", "leases.coordination.k8s.io/kube-pico-cd-deploy-web"],
      ["get", "secrets/kube-pico-cd-bundle-web"],
    ]) {
      expect({ args, allowed: await canI(listener, [...args, own]) }).toEqual({ args, allowed: false });
    }
  });

  test("in its own namespace the listener reads every ConfigMap and writes no ConfigMap, Lease or Secret other than its own", async () => {
    const own = `--namespace=${listener.namespace}`;
    expect(await canI(listener, ["get", "configmaps/kube-pico-cd-config", own])).toBe(true);
    expect(await canI(listener, ["update", "configmaps/kube-pico-cd-config", own])).toBe(false);
    expect(await canI(listener, ["patch", "configmaps/kube-pico-cd-config", own])).toBe(false);
    expect(await canI(listener, ["delete", "configmaps/kube-pico-cd-state", own])).toBe(false);
    expect(await canI(listener, ["update", "leases.coordination.k8s.io/another-lock", own])).toBe(false);
    expect(await canI(listener, ["get", "secrets", own])).toBe(false);
    expect(await canI(listener, ["list", "secrets", own])).toBe(false);
    expect(await canI(listener, ["get", "secrets/another-secret", own])).toBe(false);
    expect(await canI(listener, ["update", "secrets/another-secret", own])).toBe(false);
    expect(await canI(listener, ["delete", "secrets/another-secret", own])).toBe(false);
  });
});
