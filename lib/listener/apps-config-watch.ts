/**
 * Reading the apps configuration file (lib/listener/apps-config.ts) at start-up and again
 * whenever it changes, so that a team's new namespace needs no listener restart.
 *
 * The file is polled rather than watched: a ConfigMap volume changes by swapping a symlink
 * (`..data`), which fs.watch on the file misses, and reading a small file every few seconds
 * costs nothing. A changed file that does not parse is logged as an error and the previous
 * configuration stays in force: a typo must not widen or drop every app's scope. A bundle is
 * checked against the configuration in force when it is checked; one in flight keeps the scope
 * it was checked with.
 */
import { readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { delay } from "../backoff.ts";
import { ConfigError, errorMessage } from "../errors.ts";
import type { Logger } from "../log.ts";
import { appsConfigSummary, parseAppsConfig, type AppsConfig } from "./apps-config.ts";

/** How often the file is read, by default, in milliseconds. */
export const DEFAULT_APPS_CONFIG_INTERVAL_MS = 10_000;

/** Options of {@link watchAppsConfig}. */
export interface WatchAppsConfigOptions {
  /** Ids of the listener's trusted keys (an entry may name only these). */
  trustedKeyIds: Iterable<string>;
  /** Time between two reads of the file, in milliseconds. Default {@link DEFAULT_APPS_CONFIG_INTERVAL_MS}. */
  intervalMs?: number;
  /** Stops the polling (the listener's shutdown signal). */
  signal: AbortSignal;
  logger: Logger;
  /** Called with each changed and valid configuration, after it is in force. An error it throws is logged. */
  onChange?: (config: AppsConfig) => void;
}

/** A running watch of the apps configuration file. */
export interface AppsConfigWatch {
  /** The configuration in force: the one read at start, or the last valid change. */
  readonly current: AppsConfig;
  /** Resolves when polling has stopped, after the signal aborted. Never rejects. */
  readonly stopped: Promise<void>;
}

/**
 * Reads and parses the apps configuration at `path` now (logged as "apps configuration
 * loaded"), then every `intervalMs` until `signal` aborts. A changed, valid file replaces the
 * configuration in force (logged as "apps configuration reloaded" with its entries) and is
 * handed to `onChange`; a changed file that cannot be read or parsed is logged as an error,
 * once per content, and changes nothing.
 *
 * @throws {ConfigError} when the file cannot be read or parsed at start (a start-up error:
 * the listener must not run with less than its configuration).
 * @throws {RangeError} when `intervalMs` is not a positive finite number.
 */
export function watchAppsConfig(path: string, options: WatchAppsConfigOptions): AppsConfigWatch {
  const { intervalMs = DEFAULT_APPS_CONFIG_INTERVAL_MS, signal, logger, onChange } = options;
  if (!(Number.isFinite(intervalMs) && intervalMs > 0)) {
    throw new RangeError(`Cannot watch the apps configuration as 'intervalMs' must be a positive finite number: current value is ${intervalMs}`);
  }
  const trustedKeyIds = [...options.trustedKeyIds];
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    throw new ConfigError([`--apps-config: cannot read ${path}: ${errorMessage(error)} (mount the apps ConfigMap there, or unset KUBE_PICO_CD_APPS_CONFIG)`]);
  }
  let current = parseAppsConfig(text, path, trustedKeyIds);
  logger.info("apps configuration loaded", { file: path, ...appsConfigSummary(current) });
  // What the file held at the last read (or why it could not be read): each change is acted on once.
  let lastSeen = text;

  const poll = async () => {
    let seen: string;
    let read: string | undefined;
    try {
      read = await readFile(path, "utf8");
      seen = read;
    } catch (error) {
      seen = `\0unreadable: ${errorMessage(error)}`;
    }
    if (seen === lastSeen) return;
    lastSeen = seen;
    if (read === undefined) {
      logger.error("apps configuration not reloaded: the file cannot be read; the previous configuration stays in force", { file: path, error: seen.slice("\0unreadable: ".length) });
      return;
    }
    if (read === text) {
      logger.info("apps configuration file is again the one in force", { file: path });
      return;
    }
    let next: AppsConfig;
    try {
      next = parseAppsConfig(read, path, trustedKeyIds);
    } catch (error) {
      const problems = error instanceof ConfigError ? [...error.problems] : [errorMessage(error)];
      logger.error("apps configuration not reloaded: the changed file is invalid; the previous configuration stays in force", { file: path, problems });
      return;
    }
    current = next;
    text = read;
    logger.info("apps configuration reloaded", { file: path, ...appsConfigSummary(next) });
    try {
      onChange?.(next);
    } catch (error) {
      logger.error("apps configuration reloaded, but its listener failed", { file: path, error: error instanceof Error ? error : String(error) });
    }
  };

  const loop = async () => {
    while (!signal.aborted) {
      try {
        await delay(intervalMs, { signal });
      } catch {
        return;
      }
      await poll();
    }
  };

  return {
    get current() {
      return current;
    },
    stopped: loop(),
  };
}
