/** The pure parts of the Lease lock: MicroTime and expiry. */
import { describe, expect, test } from "bun:test";
import { defaultHolderIdentity, formatMicroTime, leaseStatus, parseMicroTime } from "../../lib/kube/lease.ts";

const t0 = Date.parse("2024-05-01T12:00:00.123Z");

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

describe("leaseStatus()", () => {
  const spec = { holderIdentity: "pod-a-1234", leaseDurationSeconds: 30, renewTime: formatMicroTime(t0) };

  test("leaseStatus() is 'held' until renewTime + leaseDurationSeconds has passed", () => {
    expect(leaseStatus(spec, t0 + 30_000)).toBe("held");
  });

  test("leaseStatus() is 'expired' once renewTime + leaseDurationSeconds is in the past", () => {
    expect(leaseStatus(spec, t0 + 30_001)).toBe("expired");
  });

  test("leaseStatus() is 'free' when no one holds the lease", () => {
    expect(leaseStatus({ leaseDurationSeconds: 30, renewTime: formatMicroTime(t0) }, t0)).toBe("free");
    expect(leaseStatus({ ...spec, holderIdentity: "" }, t0)).toBe("free");
    expect(leaseStatus(undefined, t0)).toBe("free");
  });

  test("leaseStatus() falls back to acquireTime when renewTime is missing", () => {
    expect(leaseStatus({ holderIdentity: "x", leaseDurationSeconds: 30, acquireTime: formatMicroTime(t0) }, t0 + 1_000)).toBe("held");
  });

  test("leaseStatus() treats a held lease without a readable time or duration as expired", () => {
    expect(leaseStatus({ holderIdentity: "x", leaseDurationSeconds: 30 }, t0)).toBe("expired");
    expect(leaseStatus({ holderIdentity: "x", renewTime: formatMicroTime(t0) }, t0)).toBe("expired");
  });
});

describe("defaultHolderIdentity()", () => {
  test("defaultHolderIdentity() is the host name and a random suffix, different per call", () => {
    const [a, b] = [defaultHolderIdentity(), defaultHolderIdentity()];
    expect(a).toMatch(/^.+-[0-9a-f]{8}$/);
    expect(a).not.toBe(b);
  });
});
