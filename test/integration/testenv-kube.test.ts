/**
 * Proves the Kubernetes side of the test environment is a real control plane: server-side
 * apply works, and a Deployment really rolls out (controller-manager creates the ReplicaSet
 * and Pods, the scheduler binds them to the kwok Node, kwok makes them Ready).
 */
import { describe, expect, test } from "bun:test";
import { kubectl } from "../env/testenv.ts";

const manifests = (ns: string) =>
  JSON.stringify({
    apiVersion: "v1",
    kind: "List",
    items: [
      { apiVersion: "v1", kind: "Namespace", metadata: { name: ns } },
      { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "smoke", namespace: ns }, data: { hello: "world" } },
      {
        apiVersion: "apps/v1",
        kind: "Deployment",
        metadata: { name: "smoke", namespace: ns },
        spec: {
          replicas: 2,
          selector: { matchLabels: { app: "smoke" } },
          template: { metadata: { labels: { app: "smoke" } }, spec: { containers: [{ name: "app", image: "example.invalid/smoke:1" }] } },
        },
      },
    ],
  });

describe("test environment: Kubernetes control plane", () => {
  const ns = `smoke-${Date.now().toString(36)}`;

  test("kubectl apply --server-side of a Namespace, a ConfigMap and a Deployment succeeds", async () => {
    const applied = await kubectl(["apply", "--server-side", "--field-manager=smoke", "-f", "-"], { stdin: manifests(ns) });
    expect(applied.stderr).toBe("");
    expect(applied.code).toBe(0);
    expect(applied.stdout.split("\n").filter(Boolean).sort()).toEqual([
      `configmap/smoke serverside-applied`,
      `deployment.apps/smoke serverside-applied`,
      `namespace/${ns} serverside-applied`,
    ]);
    const cm = await kubectl(["get", "configmap", "smoke", "-n", ns, "-o", "jsonpath={.data.hello}"]);
    expect(cm.stdout).toBe("world");
  });

  test("the Deployment becomes Available and kubectl rollout status succeeds", async () => {
    const rollout = await kubectl(["rollout", "status", `deployment/smoke`, "-n", ns, "--timeout=90s"]);
    expect(rollout.code).toBe(0);
    expect(rollout.stdout).toContain(`deployment "smoke" successfully rolled out`);
    const available = await kubectl(["get", "deployment", "smoke", "-n", ns, "-o", "jsonpath={.status.conditions[?(@.type==\"Available\")].status} {.status.readyReplicas}"]);
    expect(available.stdout).toBe("True 2");
  }, 120_000);
});
