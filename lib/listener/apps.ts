/**
 * Apps: one listener serves many. Each app (usually one repository) is its own stream of
 * builds, with its own version record, deploy Lease and kept bundle, and every object it
 * applies carries its mark (lib/listener/ownership.ts). This module names those things; it
 * is pure.
 *
 * A message names its app (docs/protocol.md, `app`); a message without one, and every
 * legacy message, belongs to {@link DEFAULT_APP}. The default app's objects keep the names
 * a single-app listener used, so a record written before apps existed is that app's record
 * without any copy (upgrade in place).
 */
import { RECORD_APP_LABEL, RECORD_LABELS } from "../kube/record.ts";
import { appNameProblem, DEFAULT_APP } from "../wire/app.ts";

// The name rules are the wire format's (publish checks them too); one definition, re-exported.
export { APP_NAME_PATTERN, appNameProblem, DEFAULT_APP, MAX_APP_NAME_LENGTH } from "../wire/app.ts";

/**
 * The name of one of an app's objects in the listener's namespace, from the listener's base
 * name (`--state-configmap`, `--lock-lease`, `--bundle-secret`): the base itself for the
 * default app, `<base>-<app>` for any other. `kube-pico-cd-state` / `kube-pico-cd-state-shop`.
 */
export function appObjectName(base: string, app: string): string {
  return app === DEFAULT_APP ? base : `${base}-${app}`;
}

/**
 * The app whose object `name` is, given the base name, or undefined when `name` is not one of
 * them: the inverse of {@link appObjectName}.
 */
export function appOfObjectName(base: string, name: string): string | undefined {
  if (name === base) return DEFAULT_APP;
  if (!name.startsWith(`${base}-`)) return undefined;
  const app = name.slice(base.length + 1);
  return app !== DEFAULT_APP && appNameProblem(app) === undefined ? app : undefined;
}

// The record's labels belong to lib/kube/record.ts, which writes them.
export { RECORD_APP_LABEL, RECORD_LABELS };

/** Label selector of every version record. */
export const RECORD_SELECTOR = Object.entries(RECORD_LABELS)
  .map(([k, v]) => `${k}=${v}`)
  .join(",");

/**
 * The app a version record ConfigMap belongs to: its {@link RECORD_APP_LABEL}, else (a record
 * written before apps existed) the app its name gives.
 */
export function appOfRecord(metadata: { name?: unknown; labels?: unknown }, base: string): string | undefined {
  const labels = typeof metadata.labels === "object" && metadata.labels !== null ? (metadata.labels as Record<string, unknown>) : {};
  const label = labels[RECORD_APP_LABEL];
  if (typeof label === "string" && appNameProblem(label) === undefined) return label;
  return typeof metadata.name === "string" ? appOfObjectName(base, metadata.name) : undefined;
}
