import { describe, expect, test } from "bun:test";
import { backoffDelayMs, createBackoff, delay } from "../../lib/backoff.ts";

describe("backoffDelayMs()", () => {
  test("backoffDelayMs() scales the random draw by baseMs * multiplier ** attempt", () => {
    const half = () => 0.5;
    expect([0, 1, 2, 3].map((attempt) => backoffDelayMs(attempt, { baseMs: 100, random: half }))).toEqual([50, 100, 200, 400]);
  });

  test("backoffDelayMs() never exceeds maxMs", () => {
    const almostOne = () => 0.999999;
    expect(backoffDelayMs(40, { baseMs: 100, maxMs: 5_000, random: almostOne })).toBe(5_000);
  });

  test("backoffDelayMs() can return 0 (full jitter)", () => {
    expect(backoffDelayMs(5, { random: () => 0 })).toBe(0);
  });

  test("backoffDelayMs() stays finite for huge attempts", () => {
    expect(backoffDelayMs(100_000, { random: () => 0.5 })).toBe(30_000);
  });

  test("backoffDelayMs() uses 1000 ms base, 60000 ms cap and doubling by default", () => {
    expect(backoffDelayMs(0, { random: () => 0.5 })).toBe(500);
    expect(backoffDelayMs(3, { random: () => 0.5 })).toBe(4_000);
    expect(backoffDelayMs(10, { random: () => 0.5 })).toBe(30_000);
  });

  test("backoffDelayMs() throws when attempt is negative", () => {
    expect(() => backoffDelayMs(-1)).toThrow(new RangeError("Cannot compute backoff as 'attempt' must be a non-negative integer: current value is -1"));
  });

  test("backoffDelayMs() throws when baseMs is not positive", () => {
    expect(() => backoffDelayMs(0, { baseMs: 0 })).toThrow(
      new RangeError("Cannot compute backoff as 'baseMs' must be a positive finite number: current value is 0"),
    );
  });

  test("backoffDelayMs() throws when maxMs is below baseMs", () => {
    expect(() => backoffDelayMs(0, { baseMs: 100, maxMs: 50 })).toThrow(
      new RangeError("Cannot compute backoff as 'maxMs' must be a finite number >= 'baseMs' (100): current value is 50"),
    );
  });

  test("backoffDelayMs() throws when multiplier is below 1", () => {
    expect(() => backoffDelayMs(0, { multiplier: 0.5 })).toThrow(
      new RangeError("Cannot compute backoff as 'multiplier' must be a finite number >= 1: current value is 0.5"),
    );
  });
});

describe("createBackoff()", () => {
  test("createBackoff() grows with each next() and starts over after reset()", () => {
    const backoff = createBackoff({ baseMs: 10, random: () => 0.5 });
    expect([backoff.next(), backoff.next(), backoff.next()]).toEqual([5, 10, 20]);
    expect(backoff.attempt).toBe(3);
    backoff.reset();
    expect(backoff.attempt).toBe(0);
    expect(backoff.next()).toBe(5);
  });

  test("createBackoff() validates its options at once", () => {
    expect(() => createBackoff({ maxMs: -1 })).toThrow(
      new RangeError("Cannot compute backoff as 'maxMs' must be a finite number >= 'baseMs' (1000): current value is -1"),
    );
  });
});

describe("delay()", () => {
  test("delay() resolves after the given time", async () => {
    const started = performance.now();
    await delay(50);
    expect(performance.now() - started).toBeGreaterThanOrEqual(45);
  });

  test("delay() rejects with the signal's reason as soon as it aborts", async () => {
    const controller = new AbortController();
    const started = performance.now();
    const pending = delay(10_000, { signal: controller.signal }).catch((e: unknown) => e);
    setTimeout(() => controller.abort(new Error("stop")), 20);
    const error = await pending;
    expect(error).toEqual(new Error("stop"));
    expect(performance.now() - started).toBeLessThan(1_000);
  });

  test("delay() rejects at once when the signal has already aborted", async () => {
    const reason = new Error("already");
    await expect(delay(10_000, { signal: AbortSignal.abort(reason) })).rejects.toBe(reason);
  });

  test("delay() rejects a negative time", async () => {
    await expect(delay(-5)).rejects.toThrow(new RangeError("Cannot delay as 'ms' must be a non-negative finite number: current value is -5"));
  });
});
