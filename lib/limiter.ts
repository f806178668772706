/**
 * A counting semaphore: at most `slots` tasks run at once, the others wait in arrival order.
 * The listener runs one app's deploy beside another's, but kubectl is a process of tens of
 * MiB in the pod's memory limit: applies take a slot, while health waits (API reads) do not.
 */

export interface Limiter {
  /** Runs `task` once a slot is free; an abort while waiting rejects with the signal's reason and takes no slot. */
  run<T>(task: () => Promise<T>, signal?: AbortSignal): Promise<T>;
  /** Tasks running now. */
  readonly active: number;
  /** Tasks waiting for a slot. */
  readonly waiting: number;
}

/** @throws {RangeError} when `slots` is not a positive integer. */
export function createLimiter(slots: number): Limiter {
  if (!Number.isInteger(slots) || slots < 1) throw new RangeError(`Cannot create a limiter as 'slots' must be a positive integer: current value is ${slots}`);
  let active = 0;
  const queue: (() => void)[] = [];
  const release = () => {
    active--;
    queue.shift()?.();
  };
  const acquire = (signal: AbortSignal | undefined): Promise<void> => {
    signal?.throwIfAborted();
    if (active < slots) {
      active++;
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      const grant = () => {
        signal?.removeEventListener("abort", onAbort);
        active++;
        resolve();
      };
      const onAbort = () => {
        const at = queue.indexOf(grant);
        if (at !== -1) queue.splice(at, 1);
        reject(signal!.reason);
      };
      queue.push(grant);
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  };
  return {
    async run(task, signal) {
      await acquire(signal);
      try {
        return await task();
      } finally {
        release();
      }
    },
    get active() {
      return active;
    },
    get waiting() {
      return queue.length;
    },
  };
}
