/**
 * Build information for a published bundle: explicit values first, then the variables
 * GitHub Actions sets, then defaults (the publish time, an id that is unique enough).
 */
import { randomUUID } from "node:crypto";
import type { BuildInfo } from "../wire/message.ts";

/** Values given explicitly (flags or KUBE_PICO_CD_* variables); each wins over GitHub's. */
export interface BuildInfoOverrides {
  id?: string;
  /** Milliseconds since the epoch. */
  timestampMs?: number;
  commit?: string;
  ref?: string;
  repository?: string;
  runId?: string;
  runAttempt?: string;
  actor?: string;
  url?: string;
}

/** Options of {@link resolveBuildInfo}. */
export interface ResolveBuildInfoOptions {
  overrides?: BuildInfoOverrides;
  /** Where GitHub Actions variables are read from (`GITHUB_SHA`, …). Default `{}`. */
  env?: Readonly<Record<string, string | undefined>>;
  /** The publish time in milliseconds since the epoch, used when no timestamp is given. Default `Date.now()`. */
  nowMs?: number;
  /** Source of the random part of a local build id. Default 8 hex digits of a random UUID. */
  randomSuffix?: () => string;
}

/**
 * Resolves the build information:
 *
 * - `commit` ← `GITHUB_SHA`, `ref` ← `GITHUB_REF`, `repository` ← `GITHUB_REPOSITORY`,
 *   `runId` ← `GITHUB_RUN_ID`, `runAttempt` ← `GITHUB_RUN_ATTEMPT`, `actor` ← `GITHUB_ACTOR`;
 * - `url` ← `$GITHUB_SERVER_URL/$repository/actions/runs/$runId[/attempts/$runAttempt]`;
 * - `timestampMs` ← `nowMs`;
 * - `id` ← `<commit>-<runId>-<runAttempt>` in GitHub Actions, `<commit>-<timestampMs>` with
 *   only a commit, else `local-<timestampMs>-<random>`.
 *
 * Empty strings count as unset.
 */
export function resolveBuildInfo(options: ResolveBuildInfoOptions = {}): BuildInfo {
  const { overrides = {}, env = {}, nowMs = Date.now(), randomSuffix = () => randomUUID().slice(0, 8) } = options;
  const fromEnv = (name: string) => {
    const value = env[name];
    return value === undefined || value === "" ? undefined : value;
  };
  const pick = (explicit: string | undefined, variable: string) =>
    explicit !== undefined && explicit !== "" ? explicit : fromEnv(variable);

  const commit = pick(overrides.commit, "GITHUB_SHA");
  const ref = pick(overrides.ref, "GITHUB_REF");
  const repository = pick(overrides.repository, "GITHUB_REPOSITORY");
  const runId = pick(overrides.runId, "GITHUB_RUN_ID");
  const runAttempt = pick(overrides.runAttempt, "GITHUB_RUN_ATTEMPT");
  const actor = pick(overrides.actor, "GITHUB_ACTOR");
  const server = fromEnv("GITHUB_SERVER_URL");
  const url =
    overrides.url !== undefined && overrides.url !== ""
      ? overrides.url
      : server !== undefined && repository !== undefined && runId !== undefined
        ? `${server.replace(/\/+$/, "")}/${repository}/actions/runs/${runId}` +
          (runAttempt === undefined ? "" : `/attempts/${runAttempt}`)
        : undefined;
  const timestampMs = overrides.timestampMs ?? nowMs;
  const id =
    overrides.id !== undefined && overrides.id !== ""
      ? overrides.id
      : commit !== undefined && runId !== undefined
        ? `${commit}-${runId}-${runAttempt ?? "1"}`
        : commit !== undefined
          ? `${commit}-${timestampMs}`
          : `local-${timestampMs}-${randomSuffix()}`;

  const build: BuildInfo = { id, timestampMs };
  const optional = { commit, ref, repository, runId, runAttempt, actor, url };
  for (const [key, value] of Object.entries(optional) as [keyof typeof optional, string | undefined][]) {
    if (value !== undefined) build[key] = value;
  }
  return build;
}
