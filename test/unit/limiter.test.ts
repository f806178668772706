import { describe, expect, test } from "bun:test";
import { createLimiter } from "../../lib/limiter.ts";

describe("createLimiter", () => {
  test("runs at most `slots` tasks at once, the rest in arrival order", async () => {
    const limiter = createLimiter(2);
    let running = 0;
    let peak = 0;
    const order: number[] = [];
    const releases: (() => void)[] = [];
    const tasks = [0, 1, 2, 3].map((n) =>
      limiter.run(async () => {
        running++;
        peak = Math.max(peak, running);
        order.push(n);
        await new Promise<void>((r) => releases.push(r));
        running--;
        return n;
      }),
    );
    await Bun.sleep(5);
    expect(order).toEqual([0, 1]);
    expect(limiter.waiting).toBe(2);
    releases.shift()!();
    await Bun.sleep(5);
    expect(order).toEqual([0, 1, 2]);
    while (releases.length > 0 || order.length < 4) {
      releases.shift()?.();
      await Bun.sleep(1);
    }
    releases.shift()?.();
    expect(await Promise.all(tasks)).toEqual([0, 1, 2, 3]);
    expect(peak).toBe(2);
    expect(limiter.active).toBe(0);
  });

  test("a task that throws frees its slot", async () => {
    const limiter = createLimiter(1);
    await expect(limiter.run(async () => Promise.reject(new Error("boom")))).rejects.toThrow("boom");
    expect(await limiter.run(async () => 7)).toBe(7);
  });

  test("an abort while waiting rejects and takes no slot", async () => {
    const limiter = createLimiter(1);
    let release!: () => void;
    const first = limiter.run(() => new Promise<void>((r) => (release = r)));
    const abort = new AbortController();
    const second = limiter.run(async () => "never", abort.signal);
    abort.abort(new Error("stop"));
    await expect(second).rejects.toThrow("stop");
    expect(limiter.waiting).toBe(0);
    release();
    await first;
    expect(await limiter.run(async () => "third")).toBe("third");
  });

  test("refuses a slot count that is not a positive integer", () => {
    expect(() => createLimiter(0)).toThrow(/positive integer: current value is 0/);
    expect(() => createLimiter(1.5)).toThrow(RangeError);
  });
});
