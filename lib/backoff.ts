/**
 * Waiting between retries: exponential backoff with full jitter, and an abortable sleep.
 *
 * Full jitter (a uniformly random delay between 0 and the exponential cap) spreads the
 * retries of several replicas that failed together, so that a recovering SQS endpoint or
 * API server is not hit by all of them at once.
 */

/** Options of {@link backoffDelayMs} and {@link createBackoff}. */
export interface BackoffOptions {
  /** Cap of the first retry's delay, in milliseconds. Default 1000. */
  baseMs?: number;
  /** Largest delay ever returned, in milliseconds. Default 60000. */
  maxMs?: number;
  /** Growth of the cap per attempt. Default 2. */
  multiplier?: number;
  /** Source of randomness in [0, 1). Default `Math.random`; tests hand in their own. */
  random?: () => number;
}

const defaults = { baseMs: 1_000, maxMs: 60_000, multiplier: 2 } as const;

/**
 * The delay before retry number `attempt` (0 for the first retry): a uniformly random whole
 * number of milliseconds in [0, min(maxMs, baseMs * multiplier ** attempt)].
 *
 * @throws {RangeError} when an option or `attempt` is out of range.
 */
export function backoffDelayMs(attempt: number, options: BackoffOptions = {}): number {
  const { baseMs = defaults.baseMs, maxMs = defaults.maxMs, multiplier = defaults.multiplier, random = Math.random } = options;
  if (!Number.isInteger(attempt) || attempt < 0) {
    throw new RangeError(`Cannot compute backoff as 'attempt' must be a non-negative integer: current value is ${attempt}`);
  }
  if (!(Number.isFinite(baseMs) && baseMs > 0)) {
    throw new RangeError(`Cannot compute backoff as 'baseMs' must be a positive finite number: current value is ${baseMs}`);
  }
  if (!(Number.isFinite(maxMs) && maxMs >= baseMs)) {
    throw new RangeError(`Cannot compute backoff as 'maxMs' must be a finite number >= 'baseMs' (${baseMs}): current value is ${maxMs}`);
  }
  if (!(Number.isFinite(multiplier) && multiplier >= 1)) {
    throw new RangeError(`Cannot compute backoff as 'multiplier' must be a finite number >= 1: current value is ${multiplier}`);
  }
  // baseMs * multiplier ** attempt overflows to Infinity for large attempts; min() handles it.
  const cap = Math.min(maxMs, baseMs * multiplier ** attempt);
  return Math.round(random() * cap);
}

/** A stateful backoff: each failure asks `next()`, a success calls `reset()`. */
export interface Backoff {
  /** The delay before the next retry, in milliseconds; counts one more attempt. */
  next(): number;
  /** Forget past failures: the next delay is drawn from the smallest range again. */
  reset(): void;
  /** Failures since the last reset. */
  readonly attempt: number;
}

/**
 * Creates a {@link Backoff} with the given options (validated now, not at the first failure).
 *
 * @throws {RangeError} when an option is out of range.
 */
export function createBackoff(options: BackoffOptions = {}): Backoff {
  backoffDelayMs(0, { ...options, random: () => 0 });
  let attempt = 0;
  return {
    next() {
      // Past this the cap has long reached maxMs; stop counting so the exponent stays finite.
      const delay = backoffDelayMs(Math.min(attempt, 1_000), options);
      attempt += 1;
      return delay;
    },
    reset() {
      attempt = 0;
    },
    get attempt() {
      return attempt;
    },
  };
}

/** Options of {@link delay}. */
export interface DelayOptions {
  /** Aborting ends the wait early: the promise rejects with the signal's reason. */
  signal?: AbortSignal | undefined;
}

/**
 * Resolves after `ms` milliseconds, or rejects with `signal.reason` as soon as the signal
 * aborts (at once when it already has).
 *
 * @throws {RangeError} when `ms` is negative or not finite.
 */
export function delay(ms: number, options: DelayOptions = {}): Promise<void> {
  const { signal } = options;
  if (!(Number.isFinite(ms) && ms >= 0)) {
    return Promise.reject(new RangeError(`Cannot delay as 'ms' must be a non-negative finite number: current value is ${ms}`));
  }
  if (signal?.aborted) return Promise.reject(signal.reason);
  return new Promise<void>((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
