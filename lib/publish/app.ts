/**
 * Which app a publish run's bundle belongs to: `--app` (or KUBE_PICO_CD_APP) when given,
 * else the repository's name from GitHub Actions' GITHUB_REPOSITORY, else none (the
 * default app, lib/wire/app.ts). Pure.
 */
import { MAX_APP_NAME_LENGTH } from "../wire/app.ts";

/** The app of a publish run and where its name came from (a flag, a variable). */
export interface PublishApp {
  name: string;
  /** `--app`, `KUBE_PICO_CD_APP` or `GITHUB_REPOSITORY`. */
  from: string;
}

/** The GitHub Actions variable whose repository name is the app when none is given. */
export const REPOSITORY_ENV = "GITHUB_REPOSITORY";

/**
 * The app name a repository gives: the part after the last '/' of `owner/name`, lowercased,
 * every run of characters other than a-z, 0-9 and '-' made one '-', without leading or
 * trailing '-', at most 63 characters. `acme/Shop_API` → `shop-api`. Undefined when nothing
 * is left (a name of only such characters). What it returns is always a valid app name.
 */
export function appFromRepository(repository: string): string | undefined {
  const name = repository.slice(repository.lastIndexOf("/") + 1);
  const trim = (text: string) => text.replace(/^-+|-+$/g, "");
  // Trimmed again after the cut, which may end on a '-'.
  const app = trim(trim(name.toLowerCase().replace(/[^a-z0-9-]+/g, "-")).slice(0, MAX_APP_NAME_LENGTH));
  return app === "" ? undefined : app;
}

/**
 * The app of a run: `explicit` (already checked, from the flag or variable named by
 * `origin`), else the one GITHUB_REPOSITORY gives in `env`, else undefined (the default app).
 */
export function resolvePublishApp(options: {
  explicit?: string | undefined;
  origin?: string | undefined;
  env: Readonly<Record<string, string | undefined>>;
}): PublishApp | undefined {
  const { explicit, origin = "--app", env } = options;
  if (explicit !== undefined) return { name: explicit, from: origin };
  const repository = env[REPOSITORY_ENV];
  const derived = repository === undefined || repository === "" ? undefined : appFromRepository(repository);
  return derived === undefined ? undefined : { name: derived, from: REPOSITORY_ENV };
}
