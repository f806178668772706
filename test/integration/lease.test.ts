/**
 * The deploy Lease against the real kube-apiserver: compare-and-swap between replicas, the wait
 * measured from each replica's own observation, and a holder that loses its API server (stopped,
 * hanging) or is frozen (SIGSTOP) giving up before another replica takes over.
 *
 * Each "replica" has an API client of its own, as separate processes would: observations are
 * kept per client.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawn, type ChildProcess } from "node:child_process";
import { createServer, connect, type Server, type Socket } from "node:net";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { delay } from "../../lib/backoff.ts";
import { LockError, LockLostError } from "../../lib/errors.ts";
import { KubeApi } from "../../lib/kube/api.ts";
import { acquireLease, formatMicroTime, tryAcquireLease, type HeldLease, type LeaseOptions } from "../../lib/kube/lease.ts";
import { createNamespace, kubectl, startDedicatedControlPlane, testEnv } from "../env/testenv.ts";
import { testKubeConnection } from "../helpers/kube-api.ts";
import { until } from "../helpers/until.ts";

const LEASE = "kube-pico-cd-deploy";
const clients: KubeApi[] = [];
let adminKubeconfig: string;
let nobodyKubeconfig: string;

beforeAll(async () => {
  const env = await testEnv();
  adminKubeconfig = env.kubeconfig;
  nobodyKubeconfig = env.unprivilegedKubeconfig;
}, 300_000);

afterAll(() => {
  for (const c of clients) c.close();
});

/** A replica's own API client (admin unless told otherwise). */
function replica(kubeconfig = adminKubeconfig, server?: string): KubeApi {
  const connection = testKubeConnection(kubeconfig);
  const api = new KubeApi(server === undefined ? connection : { ...connection, server });
  clients.push(api);
  return api;
}

async function leaseSpec(namespace: string, kubeconfig?: string): Promise<Record<string, unknown>> {
  const got = await kubectl(["get", "lease", LEASE, "-n", namespace, "-o", "json"], kubeconfig === undefined ? {} : { kubeconfig });
  expect(got.code).toBe(0);
  return JSON.parse(got.stdout).spec;
}

function lostAt(lease: HeldLease): Promise<number> {
  return new Promise((resolve) => lease.lost.addEventListener("abort", () => resolve(performance.now()), { once: true }));
}

/** A TCP relay to the API server that can be made to swallow everything: requests through it hang. */
async function startFreezableRelay(server: string): Promise<{ url: string; freeze(): void; close(): void }> {
  const target = new URL(server);
  let frozen = false;
  const sockets = new Set<Socket>();
  const relay: Server = createServer((client) => {
    const upstream = connect(Number(target.port), target.hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on("error", () => {});
      s.on("close", () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.on("data", (d) => frozen || upstream.write(d));
    upstream.on("data", (d) => frozen || client.write(d));
  });
  await new Promise<void>((resolve) => relay.listen(0, "127.0.0.1", resolve));
  const { port } = relay.address() as { port: number };
  return {
    url: `https://127.0.0.1:${port}`,
    freeze: () => {
      frozen = true;
    },
    close: () => {
      for (const s of sockets) s.destroy();
      relay.close();
    },
  };
}

describe("the deploy Lease against kube-apiserver", () => {
  test("tryAcquireLease() creates the Lease with this holder, and another replica is excluded", async () => {
    const namespace = await createNamespace("lease");
    const a = await tryAcquireLease({ api: replica(), namespace, identity: "pod-a" });
    expect(a?.identity).toBe("pod-a");
    const spec = await leaseSpec(namespace);
    expect(spec).toMatchObject({ holderIdentity: "pod-a", leaseDurationSeconds: 15, leaseTransitions: 0 });
    expect(spec["renewTime"]).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/);
    expect(await tryAcquireLease({ api: replica(), namespace, identity: "pod-b" })).toBeNull();
    await a?.release();
  });

  test("release() clears the holder so another replica takes the Lease at once, as one more transition", async () => {
    const namespace = await createNamespace("lease");
    const a = await tryAcquireLease({ api: replica(), namespace, identity: "pod-a" });
    await a?.release();
    expect((await leaseSpec(namespace))["holderIdentity"]).toBeUndefined();
    const b = await tryAcquireLease({ api: replica(), namespace, identity: "pod-b" });
    expect(b?.identity).toBe("pod-b");
    expect(await leaseSpec(namespace)).toMatchObject({ holderIdentity: "pod-b", leaseTransitions: 1 });
    await b?.release();
  });

  test("of five replicas racing for a free Lease exactly one wins", async () => {
    const namespace = await createNamespace("lease");
    const results = await Promise.all([1, 2, 3, 4, 5].map((n) => tryAcquireLease({ api: replica(), namespace, identity: `pod-${n}` })));
    const winners = results.filter((r) => r !== null);
    expect(winners.length).toBe(1);
    expect((await leaseSpec(namespace))["holderIdentity"]).toBe(winners[0]?.identity);
    await winners[0]?.release();
  }, 30_000);

  test("replicas taking turns with acquireLease() never hold it at the same time", async () => {
    const namespace = await createNamespace("lease");
    const options = { namespace, leaseDurationSeconds: 2, renewDeadlineSeconds: 1.5, retryPeriodSeconds: 0.2 };
    let holding = 0;
    let most = 0;
    const turns: string[] = [];
    const run = async (identity: string) => {
      const api = replica();
      for (let i = 0; i < 3; i++) {
        const held = await acquireLease({ ...options, api, identity });
        holding += 1;
        most = Math.max(most, holding);
        turns.push(identity);
        expect((await leaseSpec(namespace))["holderIdentity"]).toBe(identity);
        await delay(300);
        expect(held.isHeld()).toBe(true);
        holding -= 1;
        await held.release();
      }
    };
    await Promise.all([run("pod-a"), run("pod-b"), run("pod-c")]);
    expect(most).toBe(1);
    expect(turns.length).toBe(9);
  }, 60_000);

  test("a replica takes over from a holder that stopped only leaseDuration after its own first sighting, whatever renewTime says", async () => {
    const namespace = await createNamespace("lease");
    const longAgo = formatMicroTime(Date.now() - 3_600_000);
    const stale = {
      apiVersion: "coordination.k8s.io/v1",
      kind: "Lease",
      metadata: { name: LEASE, namespace },
      spec: { holderIdentity: "crashed-pod", leaseDurationSeconds: 2, acquireTime: longAgo, renewTime: longAgo, leaseTransitions: 4 },
    };
    expect((await kubectl(["create", "-f", "-"], { stdin: JSON.stringify(stale) })).code).toBe(0);
    const holders = new Set<string | undefined>();
    const started = performance.now();
    const b = await acquireLease({ api: replica(), namespace, identity: "pod-b", leaseDurationSeconds: 2, retryPeriodSeconds: 0.2, onWait: (why) => holders.add(why.holder) });
    const waited = performance.now() - started;
    expect(waited).toBeGreaterThanOrEqual(2_000);
    expect(waited).toBeLessThan(2_000 + 1_000);
    expect([...holders]).toEqual(["crashed-pod"]);
    expect(await leaseSpec(namespace)).toMatchObject({ holderIdentity: "pod-b", leaseTransitions: 5 });
    await b.release();
  }, 20_000);

  test("a write to the Lease while a replica waits starts its wait over", async () => {
    const namespace = await createNamespace("lease");
    const lease = { apiVersion: "coordination.k8s.io/v1", kind: "Lease", metadata: { name: LEASE, namespace }, spec: { holderIdentity: "slow-pod", leaseDurationSeconds: 2 } };
    expect((await kubectl(["create", "-f", "-"], { stdin: JSON.stringify(lease) })).code).toBe(0);
    const started = performance.now();
    const taking = acquireLease({ api: replica(), namespace, identity: "pod-b", leaseDurationSeconds: 2, retryPeriodSeconds: 0.2 });
    await delay(1_200);
    // The holder renews once (as a slow but live holder would).
    const renewed = await kubectl(["patch", "lease", LEASE, "-n", namespace, "--type=merge", "-p", JSON.stringify({ spec: { renewTime: formatMicroTime(Date.now()) } })]);
    expect(renewed.code).toBe(0);
    const renewedAt = performance.now();
    const b = await taking;
    expect(performance.now() - renewedAt).toBeGreaterThanOrEqual(2_000 - 300);
    expect(performance.now() - started).toBeGreaterThanOrEqual(3_200 - 300);
    await b.release();
  }, 20_000);

  test("a holder whose Lease another replica took sees lost, and its release leaves the new holder", async () => {
    const namespace = await createNamespace("lease");
    const a = (await tryAcquireLease({ api: replica(), namespace, identity: "pod-a", leaseDurationSeconds: 3, retryPeriodSeconds: 0.2 }))!;
    const spec = await leaseSpec(namespace);
    const taken = await kubectl(["patch", "lease", LEASE, "-n", namespace, "--type=merge", "-p", JSON.stringify({ spec: { ...spec, holderIdentity: "pod-b" } })]);
    expect(taken.code).toBe(0);
    await lostAt(a);
    expect(a.lost.reason).toBeInstanceOf(LockLostError);
    expect((a.lost.reason as LockLostError).message).toBe(`Lost the deploy Lease ${namespace}/${LEASE} held as pod-a: it is now held by "pod-b"`);
    await a.release();
    expect((await leaseSpec(namespace))["holderIdentity"]).toBe("pod-b");
  }, 20_000);

  test("a holder whose requests hang sees lost at its renew deadline, before another replica may take over", async () => {
    const namespace = await createNamespace("lease");
    const relay = await startFreezableRelay(testKubeConnection(adminKubeconfig).server);
    try {
      const durations = { leaseDurationSeconds: 4, renewDeadlineSeconds: 3, retryPeriodSeconds: 0.5 };
      // Requests time out after 1.5 s, so one is in flight when the 3 s deadline passes.
      const a = (await tryAcquireLease({ api: replica(adminKubeconfig, relay.url), namespace, identity: "pod-a", ...durations }))!;
      await delay(700);
      relay.freeze();
      const frozenAt = performance.now();
      const aLost = lostAt(a);
      const b = acquireLease({ api: replica(), namespace, identity: "pod-b", ...durations }).then((held) => ({ held, at: performance.now() }));
      const lost = await aLost;
      expect(lost - frozenAt).toBeLessThan(3_000 + 300);
      expect(lost - frozenAt).toBeGreaterThan(3_000 - 500 - 200);
      expect((a.lost.reason as LockLostError).message).toStartWith(`Lost the deploy Lease ${namespace}/${LEASE} held as pod-a: no renewal succeeded within the renew deadline of 3000 ms`);
      const taken = await b;
      // B waited leaseDuration from its own first sighting, which came after the freeze.
      expect(taken.at - frozenAt).toBeGreaterThanOrEqual(4_000);
      expect(taken.at - lost).toBeGreaterThan(500);
      expect((await leaseSpec(namespace))["holderIdentity"]).toBe("pod-b");
      // Released after the loss: no request (the relay would swallow it), the new holder stays.
      const releasing = performance.now();
      await a.release();
      expect(performance.now() - releasing).toBeLessThan(100);
      expect((await leaseSpec(namespace))["holderIdentity"]).toBe("pod-b");
      await taken.held.release();
    } finally {
      relay.close();
    }
  }, 30_000);

  test("a frozen holder (SIGSTOP) is taken over after leaseDuration, sees lost when it resumes, and its release leaves the new holder", async () => {
    const namespace = await createNamespace("lease");
    const script = join(dirname(fileURLToPath(import.meta.url)), "..", "helpers", "lease-holder.ts");
    const child: ChildProcess = spawn(process.execPath, ["run", script], {
      stdio: ["pipe", "pipe", "inherit"],
      env: { ...process.env, LEASE_KUBECONFIG: adminKubeconfig, LEASE_NAMESPACE: namespace, LEASE_IDENTITY: "pod-a", LEASE_DURATION: "3", LEASE_RENEW_DEADLINE: "2", LEASE_RETRY_PERIOD: "0.3" },
    });
    const events: Array<{ event: string; message?: string }> = [];
    createInterface({ input: child.stdout! }).on("line", (line) => events.push(JSON.parse(line)));
    const event = (name: string, timeoutMs = 20_000) => until(`the holder's "${name}"`, async () => events.find((e) => e.event === name), timeoutMs);
    try {
      await event("held");
      expect((await leaseSpec(namespace))["holderIdentity"]).toBe("pod-a");
      child.kill("SIGSTOP");
      const frozenAt = performance.now();
      const b = await acquireLease({ api: replica(), namespace, identity: "pod-b", leaseDurationSeconds: 3, retryPeriodSeconds: 0.3 });
      expect(performance.now() - frozenAt).toBeGreaterThanOrEqual(3_000);
      expect((await leaseSpec(namespace))["holderIdentity"]).toBe("pod-b");
      child.kill("SIGCONT");
      const resumedAt = performance.now();
      const lost = await event("lost", 5_000);
      expect(performance.now() - resumedAt).toBeLessThan(1_000);
      expect(lost.message).toStartWith(`Lost the deploy Lease ${namespace}/${LEASE} held as pod-a: `);
      child.stdin!.write("release\n");
      await event("released", 10_000);
      expect((await leaseSpec(namespace))["holderIdentity"]).toBe("pod-b");
      await b.release();
    } finally {
      child.kill("SIGCONT");
      child.kill("SIGKILL");
    }
  }, 60_000);

  test("tryAcquireLease() by a user without rights throws a LockError, and acquireLease() keeps waiting, telling onWait", async () => {
    const namespace = await createNamespace("lease");
    const api = replica(nobodyKubeconfig);
    const error = await tryAcquireLease({ api, namespace }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LockError);
    expect((error as LockError).message).toStartWith(`Cannot read the deploy Lease ${namespace}/${LEASE}: Kubernetes API GET /apis/coordination.k8s.io/v1/namespaces/${namespace}/leases/${LEASE} failed: 403 Forbidden: `);
    const errors: unknown[] = [];
    const reason = new Error("stopping");
    const controller = new AbortController();
    setTimeout(() => controller.abort(reason), 1_000);
    const options: LeaseOptions = { api, namespace, leaseDurationSeconds: 3, retryPeriodSeconds: 0.2, signal: controller.signal, onWait: (why) => errors.push(why.error) };
    await expect(acquireLease(options)).rejects.toBe(reason);
    expect(errors.length).toBeGreaterThanOrEqual(3);
    expect(errors.every((e) => e instanceof LockError)).toBe(true);
  }, 20_000);
});

describe("the deploy Lease when the API server goes away", () => {
  test("a holder sees lost within its renew deadline, and a replica waiting through the outage takes over only leaseDuration after it sees the Lease again", async () => {
    const cp = await startDedicatedControlPlane();
    const namespace = "default";
    const durations = { leaseDurationSeconds: 4, renewDeadlineSeconds: 2, retryPeriodSeconds: 0.3 };
    const a = (await tryAcquireLease({ api: replica(cp.kubeconfig), namespace, identity: "pod-a", ...durations }))!;
    await delay(600);
    const aLost = lostAt(a);
    const stopping = performance.now();
    const stopped = cp.stopApiServer();
    const lost = await aLost;
    expect(lost - stopping).toBeLessThan(2_000 + 300);
    expect((a.lost.reason as LockLostError).message).toStartWith(`Lost the deploy Lease ${namespace}/${LEASE} held as pod-a: no renewal succeeded within the renew deadline of 2000 ms`);
    await stopped;

    const errors: unknown[] = [];
    let firstSightingAt: number | undefined;
    const onWait = (why: { holder?: string; error?: unknown }) => {
      if (why.error !== undefined) errors.push(why.error);
      if (why.holder === "pod-a") firstSightingAt ??= performance.now();
    };
    const waitingFrom = performance.now();
    const b = acquireLease({ api: replica(cp.kubeconfig), namespace, identity: "pod-b", ...durations, onWait }).then((held) => ({ held, at: performance.now() }));
    await until("failed attempts while the API server is down", async () => errors.length >= 2, 20_000);
    const releasing = performance.now();
    await a.release(); // after the loss: writes nothing, so it does not wait for the API server
    expect(performance.now() - releasing).toBeLessThan(100);
    await cp.startApiServer();
    const taken = await Promise.race([b, delay(20_000).then(() => Promise.reject(new Error("pod-b did not take the Lease within 20 s of the API server's restart")))]);
    // The outage does not count as expiry: B's wait starts when it first reads the Lease after it.
    expect(firstSightingAt).toBeGreaterThan(waitingFrom);
    expect(taken.at - firstSightingAt!).toBeGreaterThanOrEqual(4_000 - 50);
    expect(errors.every((e) => e instanceof LockError)).toBe(true);
    expect((await leaseSpec(namespace, cp.kubeconfig))["holderIdentity"]).toBe("pod-b");
    await taken.held.release();
  }, 300_000);
});
