/**
 * The listener's policy and Secret hygiene end to end, against ElasticMQ and the real API
 * server: a bundle that breaks the policy is rejected whole with nothing applied, and a
 * Secret the API server refuses leaves none of its values in the record or the log.
 */
import { describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import type { KubeObject } from "../../lib/manifests/bundle.ts";
import { createNamespace, createQueue, kubectl } from "../env/testenv.ts";
import { configMap, queueDepth, sendBundle } from "../helpers/bundles.ts";
import { runListenerOnce } from "../helpers/listener-process.ts";
import { readRecord } from "../helpers/record.ts";

async function exists(args: string[]): Promise<boolean> {
  const got = await kubectl(["get", ...args, "-o", "name"]);
  if (got.code !== 0 && got.stderr.includes("NotFound")) return false;
  if (got.code !== 0) throw new Error(got.stderr);
  return true;
}

describe("policy", () => {
  test("a bundle with a ClusterRoleBinding sent to a listener that denies cluster-scoped objects is rejected, none of it is applied, and it is kept in the dead-letter queue", async () => {
    const ns = await createNamespace("policy");
    const queue = await createQueue({ deadLetter: { maxReceiveCount: 5 } });
    const bindingName = `pwn-${randomBytes(4).toString("hex")}`;
    const binding = {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "ClusterRoleBinding",
      metadata: { name: bindingName },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "cluster-admin" },
      subjects: [{ kind: "ServiceAccount", name: "default", namespace: ns }],
    } as KubeObject;
    const sent = await sendBundle(queue.url, [configMap(ns, "app", { color: "blue" }), binding], { timestampMs: 1_700_000_000_000 });

    const run = await runListenerOnce({ queueUrl: queue.url, namespace: ns, env: { KUBE_PICO_CD_DENY_CLUSTER_SCOPED: "true" } });

    expect(run.code).toBe(0);
    expect(await exists(["configmap", "app", "-n", ns])).toBe(false);
    expect(await exists(["clusterrolebinding", bindingName])).toBe(false);
    const record = await readRecord(ns);
    expect(record?.current).toBeNull();
    expect(record?.history).toHaveLength(1);
    expect(record?.history[0]).toMatchObject({ result: "rejected", messageId: sent.messageId });
    expect(record?.history[0]?.error).toBe(
      `policy: Rejected message: 1 of 2 objects break the listener's policy, so nothing is applied: rbac.authorization.k8s.io/ClusterRoleBinding ${bindingName}: cluster-scoped objects are not allowed (the message goes to the dead-letter queue for redrive)`,
    );
    expect(run.lines.find((l) => l.msg === "message rejected")?.["reason"]).toBe("policy");
    expect(await queueDepth(queue.url)).toEqual({ visible: 0, inFlight: 0, delayed: 0 });
    expect(await queueDepth(queue.deadLetterUrl!)).toEqual({ visible: 1, inFlight: 0, delayed: 0 });
  });

  test("a bundle outside the allowed namespaces and with a denied kind lists every violating object", async () => {
    const ns = await createNamespace("policy");
    const queue = await createQueue();
    const secret = { apiVersion: "v1", kind: "Secret", metadata: { name: "db", namespace: ns }, stringData: { password: "x" } } as KubeObject;
    await sendBundle(queue.url, [configMap(ns, "app", { color: "blue" }), configMap("kube-system", "sneaky", {}), secret], { timestampMs: 1_700_000_000_000 });

    const run = await runListenerOnce({ queueUrl: queue.url, namespace: ns, env: { KUBE_PICO_CD_ALLOW_NAMESPACES: "policy-*", KUBE_PICO_CD_DENY_KINDS: "core/Secret" } });

    expect(run.code).toBe(0);
    expect(await exists(["configmap", "app", "-n", ns])).toBe(false);
    expect(await exists(["configmap", "sneaky", "-n", "kube-system"])).toBe(false);
    expect((await readRecord(ns))?.history[0]?.error).toBe(
      `policy: Rejected message: 2 of 3 objects break the listener's policy, so nothing is applied: ConfigMap kube-system/sneaky: namespace "kube-system" not in the allowed namespaces; Secret ${ns}/db: kind denied by "core/Secret" (the message goes to the dead-letter queue for redrive)`,
    );
  });
});

describe("Secret hygiene", () => {
  test("a Secret the API server refuses leaves none of its values in the record or the log", async () => {
    const ns = await createNamespace("hygiene");
    const queue = await createQueue();
    const pin = 31_415_926_535 + Math.floor(Math.random() * 1000);
    // An unquoted number under stringData (`pin: 31415926535` in YAML) is what the API server
    // echoes back in its error: "expected string, got &value.valueUnstructured{Value:…}".
    const secret = { apiVersion: "v1", kind: "Secret", metadata: { name: "db", namespace: ns }, stringData: { pin } } as unknown as KubeObject;
    await sendBundle(queue.url, [secret], { timestampMs: 1_700_000_000_000 });

    const run = await runListenerOnce({ queueUrl: queue.url, namespace: ns });

    expect(run.code).toBe(0);
    const record = await readRecord(ns);
    expect(record?.history[0]?.result).toBe("failed");
    const error = record?.history[0]?.error ?? "";
    expect(error).toContain(".stringData.pin: expected string, got [redacted]");
    const everything = `${JSON.stringify(record)}\n${JSON.stringify(run.lines)}\n${run.other.join("")}`;
    expect(everything).not.toContain(String(pin));
    expect(run.lines.some((l) => l.msg === "applying build failed; the message stays for a retry")).toBe(true);
  });
});
