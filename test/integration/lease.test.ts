/** The Lease mutex against the real kube-apiserver. */
import { beforeAll, describe, expect, test } from "bun:test";
import { delay } from "../../lib/backoff.ts";
import { LockError, LockLostError } from "../../lib/errors.ts";
import type { KubectlTarget } from "../../lib/kube/kubectl.ts";
import { acquireLock, formatMicroTime, tryAcquireLock } from "../../lib/kube/lease.ts";
import { createNamespace, kubectl, testEnv } from "../env/testenv.ts";

let admin: KubectlTarget;
let nobody: KubectlTarget;

beforeAll(async () => {
  const env = await testEnv();
  admin = { kubectlPath: env.kubectl, kubeconfig: env.kubeconfig };
  nobody = { kubectlPath: env.kubectl, kubeconfig: env.unprivilegedKubeconfig };
}, 300_000);

async function leaseSpec(namespace: string, name = "kube-pico-cd-deploy"): Promise<Record<string, unknown>> {
  const got = await kubectl(["get", "lease", name, "-n", namespace, "-o", "json"]);
  expect(got.code).toBe(0);
  return JSON.parse(got.stdout).spec;
}

describe("Lease lock against kube-apiserver", () => {
  test("tryAcquireLock() creates the Lease with this holder, and a second holder is excluded", async () => {
    const namespace = await createNamespace("lock");
    const a = await tryAcquireLock({ kubectl: admin, namespace, identity: "pod-a" });
    expect(a?.identity).toBe("pod-a");
    const spec = await leaseSpec(namespace);
    expect(spec["holderIdentity"]).toBe("pod-a");
    expect(spec["leaseDurationSeconds"]).toBe(30);
    expect(await tryAcquireLock({ kubectl: admin, namespace, identity: "pod-b" })).toBeNull();
    await a?.release();
  });

  test("release() clears the holder so another replica takes the lock at once", async () => {
    const namespace = await createNamespace("lock");
    const a = await tryAcquireLock({ kubectl: admin, namespace, identity: "pod-a" });
    await a?.release();
    expect((await leaseSpec(namespace))["holderIdentity"]).toBeUndefined();
    const b = await tryAcquireLock({ kubectl: admin, namespace, identity: "pod-b" });
    expect(b?.identity).toBe("pod-b");
    expect((await leaseSpec(namespace))["leaseTransitions"]).toBe(0);
    await b?.release();
  });

  test("tryAcquireLock() takes over a Lease whose holder stopped renewing before it expired", async () => {
    const namespace = await createNamespace("lock");
    const dead = {
      apiVersion: "coordination.k8s.io/v1",
      kind: "Lease",
      metadata: { name: "kube-pico-cd-deploy", namespace },
      spec: { holderIdentity: "crashed-pod", leaseDurationSeconds: 10, renewTime: formatMicroTime(Date.now() - 11_000), leaseTransitions: 4 },
    };
    expect((await kubectl(["create", "-f", "-"], { stdin: JSON.stringify(dead) })).code).toBe(0);
    const b = await tryAcquireLock({ kubectl: admin, namespace, identity: "pod-b" });
    expect(b?.identity).toBe("pod-b");
    const spec = await leaseSpec(namespace);
    expect(spec["holderIdentity"]).toBe("pod-b");
    expect(spec["leaseTransitions"]).toBe(5);
    await b?.release();
  });

  test("tryAcquireLock() does not take a Lease whose holder renewed within its duration", async () => {
    const namespace = await createNamespace("lock");
    const alive = {
      apiVersion: "coordination.k8s.io/v1",
      kind: "Lease",
      metadata: { name: "kube-pico-cd-deploy", namespace },
      spec: { holderIdentity: "live-pod", leaseDurationSeconds: 10, renewTime: formatMicroTime(Date.now() - 5_000) },
    };
    expect((await kubectl(["create", "-f", "-"], { stdin: JSON.stringify(alive) })).code).toBe(0);
    expect(await tryAcquireLock({ kubectl: admin, namespace, identity: "pod-b" })).toBeNull();
  });

  test("a held lock is renewed in the background, so it does not expire while held", async () => {
    const namespace = await createNamespace("lock");
    const a = await tryAcquireLock({ kubectl: admin, namespace, identity: "pod-a", leaseDurationSeconds: 2, renewIntervalMs: 400 });
    const firstRenew = (await leaseSpec(namespace))["renewTime"];
    await delay(3_000);
    expect((await leaseSpec(namespace))["renewTime"]).not.toBe(firstRenew);
    expect(await tryAcquireLock({ kubectl: admin, namespace, identity: "pod-b", leaseDurationSeconds: 2 })).toBeNull();
    expect(a?.lost.aborted).toBe(false);
    await a?.release();
  }, 20_000);

  test("a holder whose Lease was taken over sees its lost signal abort with LockLostError", async () => {
    const namespace = await createNamespace("lock");
    // A's clock runs a minute behind, so the renewTime it writes already looks expired to B.
    const a = await tryAcquireLock({ kubectl: admin, namespace, identity: "pod-a", leaseDurationSeconds: 5, renewIntervalMs: 500, now: () => Date.now() - 60_000 });
    const b = await tryAcquireLock({ kubectl: admin, namespace, identity: "pod-b" });
    expect(b?.identity).toBe("pod-b");
    await new Promise<void>((resolve) => a?.lost.addEventListener("abort", () => resolve(), { once: true }));
    expect(a?.lost.reason).toBeInstanceOf(LockLostError);
    expect((a?.lost.reason as LockLostError).message).toBe(`Lost the deploy lock Lease ${namespace}/kube-pico-cd-deploy held as pod-a: it is now held by "pod-b"`);
    await a?.release();
    expect((await leaseSpec(namespace))["holderIdentity"]).toBe("pod-b");
    await b?.release();
  }, 20_000);

  test("of five replicas racing for a free lock exactly one wins", async () => {
    const namespace = await createNamespace("lock");
    const results = await Promise.all([1, 2, 3, 4, 5].map((n) => tryAcquireLock({ kubectl: admin, namespace, identity: `pod-${n}` })));
    const winners = results.filter((r) => r !== null);
    expect(winners.length).toBe(1);
    expect((await leaseSpec(namespace))["holderIdentity"]).toBe(winners[0]?.identity);
    await winners[0]?.release();
  }, 30_000);

  test("acquireLock() waits while another replica holds the lock and takes it when released", async () => {
    const namespace = await createNamespace("lock");
    const a = await tryAcquireLock({ kubectl: admin, namespace, identity: "pod-a" });
    let bHeld = false;
    const waiting = acquireLock({ kubectl: admin, namespace, identity: "pod-b" }).then((held) => {
      bHeld = true;
      return held;
    });
    await delay(1_000);
    expect(bHeld).toBe(false);
    await a?.release();
    const b = await waiting;
    expect(b.identity).toBe("pod-b");
    await b.release();
  }, 20_000);

  test("acquireLock() stops waiting with the signal's reason when it aborts", async () => {
    const namespace = await createNamespace("lock");
    const a = await tryAcquireLock({ kubectl: admin, namespace, identity: "pod-a" });
    const reason = new Error("shutting down");
    await expect(acquireLock({ kubectl: admin, namespace, identity: "pod-b", signal: AbortSignal.timeout(700) })).rejects.toBeDefined();
    const controller = new AbortController();
    setTimeout(() => controller.abort(reason), 300);
    await expect(acquireLock({ kubectl: admin, namespace, identity: "pod-b", signal: controller.signal })).rejects.toBe(reason);
    await a?.release();
  }, 20_000);

  test("tryAcquireLock() by a user without rights throws LockError", async () => {
    const namespace = await createNamespace("lock");
    const error = await tryAcquireLock({ kubectl: nobody, namespace }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LockError);
    expect((error as LockError).message).toStartWith(`Cannot read the deploy lock Lease ${namespace}/kube-pico-cd-deploy: `);
  });
});
