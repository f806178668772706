/**
 * The deploy Lease: the pure decision (decideLease), MicroTime, option checks, and the timers
 * of a held Lease against an in-memory Lease store that behaves like the API server's
 * compare-and-swap (the real API server is in test/integration/lease.test.ts).
 */
import { describe, expect, test } from "bun:test";
import { delay } from "../../lib/backoff.ts";
import { KubeApiError, KubeUnreachableError, LockError, LockLostError } from "../../lib/errors.ts";
import { isNotFound, type KubeRequest } from "../../lib/kube/api.ts";
import {
  acquireLease,
  decideLease,
  defaultHolderIdentity,
  formatMicroTime,
  parseMicroTime,
  tryAcquireLease,
  type LeaseDecision,
  type LeaseApi,
  type LeaseDecisionInput,
  type LeaseOptions,
} from "../../lib/kube/lease.ts";

const t0 = Date.parse("2024-05-01T12:00:00.123Z");
const PATH = "/apis/coordination.k8s.io/v1/namespaces/ns/leases/kube-pico-cd-deploy";

describe("formatMicroTime() and parseMicroTime()", () => {
  test("formatMicroTime() writes six fractional digits, as the API server requires for a MicroTime", () => {
    expect(formatMicroTime(t0)).toBe("2024-05-01T12:00:00.123000Z");
  });

  test("parseMicroTime() reads six, three or no fractional digits", () => {
    expect(parseMicroTime("2024-05-01T12:00:00.123456Z")).toBe(t0);
    expect(parseMicroTime("2024-05-01T12:00:00.123Z")).toBe(t0);
    expect(parseMicroTime("2024-05-01T12:00:00Z")).toBe(t0 - 123);
  });

  test("parseMicroTime() reads an offset", () => {
    expect(parseMicroTime("2024-05-01T14:00:00.123000+02:00")).toBe(t0);
  });

  test("parseMicroTime() is NaN for text that is not a time", () => {
    expect(parseMicroTime("yesterday")).toBeNaN();
  });
});

describe("decideLease()", () => {
  const base: LeaseDecisionInput = { observed: null, observedChangedAtMs: 1_000, nowMs: 1_000, identity: "me", leaseDurationMs: 15_000 };
  const other = { holderIdentity: "other", leaseDurationSeconds: 15, leaseTransitions: 4 };
  const cases: Array<[string, Partial<LeaseDecisionInput>, LeaseDecision]> = [
    ["creates the Lease when there is none", {}, { action: "create" }],
    ["renews a Lease this identity holds, however old", { observed: { ...other, holderIdentity: "me" }, nowMs: 1_000_000 }, { action: "renew" }],
    ["takes a released Lease (no holderIdentity) at once, one more transition", { observed: { leaseTransitions: 4 } }, { action: "take", transitions: 5 }],
    ["takes a Lease whose holderIdentity is empty at once", { observed: { ...other, holderIdentity: "" } }, { action: "take", transitions: 5 }],
    ["takes a Lease without a spec at once, as the first transition", { observed: {} }, { action: "take", transitions: 1 }],
    ["waits for another holder until leaseDuration after its own observation", { observed: other, nowMs: 15_999 }, { action: "wait", holder: "other", untilMs: 16_000 }],
    ["takes from another holder once leaseDuration has passed since its own observation", { observed: other, nowMs: 16_000 }, { action: "take", transitions: 5 }],
    [
      "ignores a renewTime long past: only its own observation counts",
      { observed: { ...other, renewTime: "2000-01-01T00:00:00.000000Z", acquireTime: "2000-01-01T00:00:00.000000Z" }, nowMs: 1_001 },
      { action: "wait", holder: "other", untilMs: 16_000 },
    ],
    ["ignores a renewTime in the future", { observed: { ...other, renewTime: "2999-01-01T00:00:00.000000Z" }, nowMs: 16_000 }, { action: "take", transitions: 5 }],
    ["waits the holder's stated duration when it is longer than its own", { observed: { ...other, leaseDurationSeconds: 30 }, nowMs: 16_000 }, { action: "wait", holder: "other", untilMs: 31_000 }],
    ["waits its own duration when the holder states a shorter one", { observed: { ...other, leaseDurationSeconds: 5 }, nowMs: 15_999 }, { action: "wait", holder: "other", untilMs: 16_000 }],
    ["waits its own duration when the holder states none", { observed: { holderIdentity: "other" }, nowMs: 2_000 }, { action: "wait", holder: "other", untilMs: 16_000 }],
    ["counts an unreadable leaseTransitions as 0", { observed: { ...other, leaseTransitions: -3 }, nowMs: 16_000 }, { action: "take", transitions: 1 }],
  ];
  for (const [what, input, expected] of cases) {
    test(`decideLease() ${what}`, () => {
      expect(decideLease({ ...base, ...input })).toEqual(expected);
    });
  }
});

describe("defaultHolderIdentity()", () => {
  test("defaultHolderIdentity() is the host name and a random suffix, different per call", () => {
    const [a, b] = [defaultHolderIdentity(), defaultHolderIdentity()];
    expect(a).toMatch(/^.+-[0-9a-f]{8}$/);
    expect(a).not.toBe(b);
  });
});

interface StoredLease {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; resourceVersion?: string };
  spec?: Record<string, unknown>;
}

/** How the store answers a request: as the API server would, never, or with an error. */
type Mode = "serve" | "hang" | "fail";

/** A Lease store with the API server's compare-and-swap; requests are recorded. */
class FakeLeaseApi {
  lease: StoredLease | null = null;
  mode: Mode = "serve";
  slowMs = 1;
  readonly requests: Array<{ method: string; body?: StoredLease; aborted: boolean }> = [];
  #version = 100;

  /** Writes the Lease as another client would (a new resourceVersion). */
  put(spec: Record<string, unknown>): void {
    this.lease = { apiVersion: "coordination.k8s.io/v1", kind: "Lease", metadata: { name: "kube-pico-cd-deploy", namespace: "ns", resourceVersion: String(++this.#version) }, spec };
  }

  writes(): Array<{ method: string; body?: StoredLease; aborted: boolean }> {
    return this.requests.filter((r) => r.method !== "GET");
  }

  async request<T = unknown>(req: KubeRequest): Promise<T> {
    const entry: { method: string; body?: StoredLease; aborted: boolean } = { method: req.method, aborted: false };
    if (req.body !== undefined) entry.body = structuredClone(req.body) as StoredLease;
    this.requests.push(entry);
    if (this.mode === "hang") {
      // Never answers, whatever the timeout: only the signal ends it.
      return await new Promise<T>((_, reject) => {
        req.signal?.addEventListener("abort", () => {
          entry.aborted = true;
          reject(req.signal?.reason);
        });
      });
    }
    // An answer that takes this long comes whatever the signal says (it was already on its way).
    await delay(this.slowMs);
    if (this.mode === "fail") throw new KubeUnreachableError(req.method, req.path, "connect ECONNREFUSED 127.0.0.1:6443");
    const status = (code: number, reason: string) => new KubeApiError(req.method, req.path, { code, reason, message: reason, details: { name: "kube-pico-cd-deploy" } });
    if (req.method === "GET") {
      if (this.lease === null) throw status(404, "NotFound");
      return structuredClone(this.lease) as T;
    }
    const body = structuredClone(req.body) as StoredLease;
    if (req.method === "POST") {
      if (this.lease !== null) throw status(409, "AlreadyExists");
    } else {
      if (this.lease === null) throw status(404, "NotFound");
      if (body.metadata.resourceVersion !== this.lease.metadata.resourceVersion) throw status(409, "Conflict");
    }
    this.lease = { ...body, metadata: { ...body.metadata, resourceVersion: String(++this.#version) } };
    return structuredClone(this.lease) as T;
  }

  async getOptional<T = unknown>(path: string, options: { signal?: AbortSignal | undefined; timeoutMs?: number | undefined } = {}): Promise<T | null> {
    try {
      return await this.request<T>({ method: "GET", path, ...options });
    } catch (error) {
      if (isNotFound(error)) return null;
      throw error;
    }
  }
}

/** Short real durations: a 300 ms lease, 200 ms renew deadline, 40 ms retry period. */
function fast(api: LeaseApi, extra: Partial<LeaseOptions> = {}): LeaseOptions {
  return { api, namespace: "ns", identity: "a", leaseDurationSeconds: 0.3, renewDeadlineSeconds: 0.2, retryPeriodSeconds: 0.04, ...extra };
}

function lostAt(signal: AbortSignal): Promise<number> {
  return new Promise((resolve) => signal.addEventListener("abort", () => resolve(performance.now()), { once: true }));
}

describe("option checks", () => {
  const api = new FakeLeaseApi();
  const cases: Array<[Partial<LeaseOptions>, string]> = [
    [{ leaseDurationSeconds: 0 }, "Cannot use the lease as 'leaseDurationSeconds' must be a positive finite number: current value is 0"],
    [{ renewDeadlineSeconds: 20 }, "Cannot use the lease as 'renewDeadlineSeconds' must be below 'leaseDurationSeconds' (15): current value is 20"],
    [{ renewDeadlineSeconds: 15 }, "Cannot use the lease as 'renewDeadlineSeconds' must be below 'leaseDurationSeconds' (15): current value is 15"],
    [{ renewDeadlineSeconds: Number.NaN }, "Cannot use the lease as 'renewDeadlineSeconds' must be a positive finite number: current value is NaN"],
    [{ retryPeriodSeconds: 10 }, "Cannot use the lease as 'retryPeriodSeconds' must be below 'renewDeadlineSeconds' (10): current value is 10"],
    [{ leaseDurationSeconds: 3, retryPeriodSeconds: 2 }, "Cannot use the lease as 'retryPeriodSeconds' must be below 'renewDeadlineSeconds' (2): current value is 2"],
    [{ retryPeriodSeconds: -1 }, "Cannot use the lease as 'retryPeriodSeconds' must be a positive finite number: current value is -1"],
    [{ identity: "" }, `Cannot use the lease as 'identity' must not be empty: current value is ""`],
    [{ namespace: "" }, `Cannot use the lease as 'namespace' must not be empty: current value is ""`],
  ];
  for (const [options, message] of cases) {
    test(`tryAcquireLease() and acquireLease() refuse ${JSON.stringify(options)} before any request`, async () => {
      await expect(tryAcquireLease({ api, namespace: "ns", ...options })).rejects.toThrow(new RangeError(message));
      await expect(acquireLease({ api, namespace: "ns", ...options })).rejects.toThrow(new RangeError(message));
      expect(api.requests).toEqual([]);
    });
  }

  test("the renew deadline and retry period default to two thirds and a fifth of a lease below 15 s", async () => {
    const fake = new FakeLeaseApi();
    // 3 s lease: 2 s deadline, 0.4 s retry period; anything else would be refused or differ.
    await expect(tryAcquireLease({ api: fake, namespace: "ns", leaseDurationSeconds: 3, retryPeriodSeconds: 2 })).rejects.toThrow(RangeError);
    const held = await tryAcquireLease({ api: fake, namespace: "ns", identity: "a", leaseDurationSeconds: 3 });
    await delay(500);
    expect(fake.writes().map((w) => w.method)).toEqual(["POST", "PUT"]);
    await held?.release();
  });
});

describe("tryAcquireLease()", () => {
  test("tryAcquireLease() creates the Lease with this holder, the stated duration rounded up, and 0 transitions", async () => {
    const api = new FakeLeaseApi();
    const held = await tryAcquireLease({ api, namespace: "ns", identity: "a", leaseDurationSeconds: 2.5 });
    expect(held?.identity).toBe("a");
    expect(api.lease?.spec).toMatchObject({ holderIdentity: "a", leaseDurationSeconds: 3, leaseTransitions: 0 });
    expect(api.lease?.metadata).toMatchObject({ name: "kube-pico-cd-deploy", namespace: "ns" });
    await held?.release();
  });

  test("tryAcquireLease() takes over only after leaseDuration of its own observation, across calls", async () => {
    const api = new FakeLeaseApi();
    let now = 0;
    const options: LeaseOptions = { api, namespace: "ns", identity: "a", now: () => now };
    api.put({ holderIdentity: "b", leaseDurationSeconds: 15, renewTime: formatMicroTime(Date.now() - 3_600_000), leaseTransitions: 2 });
    expect(await tryAcquireLease(options)).toBeNull(); // first sighting at 0
    now = 10_000;
    expect(await tryAcquireLease(options)).toBeNull();
    api.put({ ...api.lease?.spec, renewTime: formatMicroTime(Date.now()) }); // b renews
    now = 15_000;
    expect(await tryAcquireLease(options)).toBeNull(); // first sighting of the renewal at 15000
    now = 29_999;
    expect(await tryAcquireLease(options)).toBeNull();
    now = 30_000;
    const held = await tryAcquireLease(options);
    expect(held?.identity).toBe("a");
    expect(api.lease?.spec).toMatchObject({ holderIdentity: "a", leaseTransitions: 3 });
    await held?.release();
  });

  test("tryAcquireLease() starts over with an API client of its own: its observation is per client", async () => {
    const api = new FakeLeaseApi();
    let now = 0;
    api.put({ holderIdentity: "b", leaseDurationSeconds: 15 });
    expect(await tryAcquireLease({ api, namespace: "ns", now: () => now })).toBeNull();
    const other = new FakeLeaseApi();
    other.lease = api.lease;
    now = 15_000;
    expect(await tryAcquireLease({ api: other, namespace: "ns", now: () => now })).toBeNull();
  });

  test("tryAcquireLease() throws a LockError naming the Lease when the API server cannot be reached", async () => {
    const api = new FakeLeaseApi();
    api.mode = "fail";
    const error = await tryAcquireLease({ api, namespace: "ns" }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LockError);
    expect((error as LockError).message).toBe(`Cannot read the deploy Lease ns/kube-pico-cd-deploy: Cannot reach the Kubernetes API server for GET ${PATH}: connect ECONNREFUSED 127.0.0.1:6443`);
    expect((error as LockError).cause).toBeInstanceOf(KubeUnreachableError);
  });

  test("tryAcquireLease() with the identity of a Lease this process holds waits instead of sharing it", async () => {
    const api = new FakeLeaseApi();
    const first = await tryAcquireLease(fast(api));
    expect(await tryAcquireLease(fast(api))).toBeNull();
    await first?.release();
    const second = await tryAcquireLease(fast(api));
    expect(second?.identity).toBe("a");
    await second?.release();
  });
});

describe("a held Lease", () => {
  test("it is renewed every retryPeriod while held", async () => {
    const api = new FakeLeaseApi();
    const held = await tryAcquireLease(fast(api));
    await delay(300);
    const renewals = api.writes().filter((w) => w.method === "PUT").length;
    expect(renewals).toBeGreaterThanOrEqual(5);
    expect(renewals).toBeLessThanOrEqual(8);
    expect(held?.lost.aborted).toBe(false);
    expect(held?.isHeld()).toBe(true);
    await held?.release();
  });

  test("its lost signal aborts at the renew deadline while a renewal hangs, and the hanging request is aborted", async () => {
    const api = new FakeLeaseApi();
    const held = (await tryAcquireLease(fast(api)))!;
    await delay(100);
    const hangAt = performance.now();
    api.mode = "hang";
    const at = await lostAt(held.lost);
    // The last success was sent at most one retry period (40 ms) before the hang began.
    expect(at - hangAt).toBeGreaterThanOrEqual(200 - 45);
    expect(at - hangAt).toBeLessThan(200 + 40);
    expect(held.lost.reason).toBeInstanceOf(LockLostError);
    expect((held.lost.reason as LockLostError).message).toBe("Lost the deploy Lease ns/kube-pico-cd-deploy held as a: no renewal succeeded within the renew deadline of 200 ms");
    expect(api.requests.at(-1)).toMatchObject({ method: "PUT", aborted: true });
    expect(held.isHeld()).toBe(false);
  });

  test("its lost signal names the last failure when renewals fail until the deadline", async () => {
    const api = new FakeLeaseApi();
    const errors: unknown[] = [];
    const held = (await tryAcquireLease(fast(api, { onRenewError: (e) => errors.push(e) })))!;
    api.mode = "fail";
    await lostAt(held.lost);
    expect(errors.length).toBeGreaterThanOrEqual(3);
    expect(errors[0]).toBeInstanceOf(LockError);
    expect((held.lost.reason as LockLostError).message).toBe(
      `Lost the deploy Lease ns/kube-pico-cd-deploy held as a: no renewal succeeded within the renew deadline of 200 ms; the last attempt failed: Cannot renew the deploy Lease ns/kube-pico-cd-deploy: Cannot reach the Kubernetes API server for PUT ${PATH}: connect ECONNREFUSED 127.0.0.1:6443`,
    );
  });

  test("it is lost as soon as a renewal finds another holder, and releasing it then writes nothing", async () => {
    const api = new FakeLeaseApi();
    const held = (await tryAcquireLease(fast(api)))!;
    api.put({ ...api.lease?.spec, holderIdentity: "b" });
    const at = performance.now();
    expect((await lostAt(held.lost)) - at).toBeLessThan(100);
    expect((held.lost.reason as LockLostError).message).toBe('Lost the deploy Lease ns/kube-pico-cd-deploy held as a: it is now held by "b"');
    expect((held.lost.reason as LockLostError).holderIdentity).toBe("a");
    const writes = api.writes().length;
    await held.release();
    expect(api.writes().length).toBe(writes);
    expect(api.lease?.spec?.["holderIdentity"]).toBe("b");
  });

  test("a renewal whose success arrives after the deadline does not undo the loss", async () => {
    const api = new FakeLeaseApi();
    const held = (await tryAcquireLease(fast(api)))!;
    api.slowMs = 300;
    await lostAt(held.lost);
    const version = api.lease?.metadata.resourceVersion;
    await delay(350);
    // The slow renewal landed after the loss ...
    expect(api.lease?.metadata.resourceVersion).not.toBe(version);
    // ... and changed nothing: still lost, and a release writes nothing.
    expect(held.lost.aborted).toBe(true);
    expect(held.isHeld()).toBe(false);
    const writes = api.writes().length;
    await held.release();
    expect(api.writes().length).toBe(writes);
    expect(api.lease?.spec?.["holderIdentity"]).toBe("a");
  });

  test("isHeld() is false, and lost aborts, once the deadline passed even before its timer ran", () => {
    const api = new FakeLeaseApi();
    let offset = 0;
    return (async () => {
      const held = (await tryAcquireLease(fast(api, { now: () => performance.now() + offset })))!;
      expect(held.isHeld()).toBe(true);
      offset = 10_000; // as if the process had been paused
      expect(held.isHeld()).toBe(false);
      expect(held.lost.aborted).toBe(true);
      expect((held.lost.reason as LockLostError).message).toBe("Lost the deploy Lease ns/kube-pico-cd-deploy held as a: no renewal succeeded within the renew deadline of 200 ms");
    })();
  });

  test("release() clears the holder with the resourceVersion last written, keeping the transitions", async () => {
    const api = new FakeLeaseApi();
    const held = (await tryAcquireLease(fast(api)))!;
    await delay(100);
    const version = api.lease?.metadata.resourceVersion;
    await held.release();
    const last = api.writes().at(-1);
    expect(last?.body?.metadata.resourceVersion).toBe(version);
    expect(api.lease?.spec?.["holderIdentity"]).toBeUndefined();
    expect(api.lease?.spec?.["leaseTransitions"]).toBe(0);
    expect(held.isHeld()).toBe(false);
    expect(held.lost.aborted).toBe(false);
    // The next replica takes it at once, as one more transition.
    const next = await tryAcquireLease(fast(api, { identity: "b" }));
    expect(api.lease?.spec).toMatchObject({ holderIdentity: "b", leaseTransitions: 1 });
    await next?.release();
  });

  test("release() after the Lease moved on clears nothing", async () => {
    const api = new FakeLeaseApi();
    const held = (await tryAcquireLease(fast(api)))!;
    api.put({ ...api.lease?.spec, holderIdentity: "b" });
    await held.release(); // may race the renewal that would notice
    expect(api.lease?.spec?.["holderIdentity"]).toBe("b");
  });
});

describe("acquireLease()", () => {
  test("acquireLease() keeps trying while the API server fails, telling onWait each time", async () => {
    const api = new FakeLeaseApi();
    api.mode = "fail";
    const waits: Array<{ holder?: string; error?: unknown }> = [];
    const acquiring = acquireLease(fast(api, { onWait: (why) => waits.push(why) }));
    await delay(150);
    api.mode = "serve";
    const held = await acquiring;
    expect(held.identity).toBe("a");
    expect(waits.length).toBeGreaterThanOrEqual(2);
    expect(waits.every((w) => w.error instanceof LockError && w.holder === undefined)).toBe(true);
    await held.release();
  });

  test("acquireLease() waits leaseDuration from its own first sighting of another holder's record", async () => {
    const api = new FakeLeaseApi();
    api.put({ holderIdentity: "b", leaseDurationSeconds: 0, renewTime: formatMicroTime(Date.now() - 3_600_000) });
    const holders: Array<string | undefined> = [];
    const started = performance.now();
    const held = await acquireLease(fast(api, { onWait: (why) => holders.push(why.holder) }));
    const waited = performance.now() - started;
    expect(waited).toBeGreaterThanOrEqual(300);
    expect(waited).toBeLessThan(300 + 60);
    expect(new Set(holders)).toEqual(new Set(["b"]));
    await held.release();
  });

  test("acquireLease() takes a released Lease within a retry period", async () => {
    const api = new FakeLeaseApi();
    const first = (await tryAcquireLease(fast(api, { identity: "b" })))!;
    const acquiring = acquireLease(fast(api));
    await delay(100);
    const releasedAt = performance.now();
    await first.release();
    const held = await acquiring;
    expect(performance.now() - releasedAt).toBeLessThan(40 * 1.2 + 30);
    await held.release();
  });

  test("acquireLease() rejects with the signal's reason when it aborts while waiting", async () => {
    const api = new FakeLeaseApi();
    api.put({ holderIdentity: "b", leaseDurationSeconds: 15 });
    const reason = new Error("stopping");
    const controller = new AbortController();
    setTimeout(() => controller.abort(reason), 100);
    await expect(acquireLease({ api, namespace: "ns", signal: controller.signal })).rejects.toBe(reason);
  });

  test("two holders on separate clients, each renewing, never hold at the same time", async () => {
    const store = new FakeLeaseApi();
    // Two "replicas": their own API clients (so their own observations) over one store.
    const replica = (): LeaseApi => ({
      request: <T = unknown>(req: KubeRequest) => store.request<T>(req),
      getOptional: <T = unknown>(path: string, options?: { signal?: AbortSignal | undefined; timeoutMs?: number | undefined }) => store.getOptional<T>(path, options),
    });
    let holding = 0;
    let most = 0;
    const run = async (identity: string) => {
      for (let i = 0; i < 3; i++) {
        const held = await acquireLease(fast(replica(), { identity }));
        holding += 1;
        most = Math.max(most, holding);
        await delay(60);
        holding -= 1;
        await held.release();
      }
    };
    await Promise.all([run("a"), run("b"), run("c")]);
    expect(most).toBe(1);
  });
});
