/**
 * The apps configuration: what each app may do, as Argo CD's AppProject says it for a project.
 * A YAML file (`--apps-config`, `KUBE_PICO_CD_APPS_CONFIG`; docs/apps.md is its reference)
 * with one entry per app or glob over app names, giving its namespaces, its default namespace,
 * its kinds, whether it may touch cluster-scoped objects, and the signing keys it may use.
 * Pure: text in, {@link AppsConfig} or a ConfigError out. lib/listener/scope.ts turns an entry
 * into an app's scope; lib/listener/apps-config-watch.ts reads the file and re-reads it.
 *
 * ```yaml
 * apps:
 *   - name: shop                 # an app name, or a glob over names ("team-a-*")
 *     namespaces: [shop, "shop-*"]
 *     defaultNamespace: shop
 *     kinds: ["apps/*", "core/*"]
 *     deniedKinds: ["core/Secret"]
 *     allowClusterScoped: false
 *     trustedKeys: ["0123456789abcdef"]
 * unknownApps: refuse            # or allow: apps no entry names run under `defaults`
 * defaults: { namespaces: [sandbox] }
 * ```
 *
 * Strict, because a typo in a restriction would otherwise widen it silently: unknown fields
 * are errors, an empty list is an error (leave the field out to allow any), and every problem
 * names the file, the entry (index and name) and the field, and what to write instead.
 */
import { LineCounter, parseDocument } from "yaml";
import { z } from "zod";
import { ConfigError } from "../errors.ts";
import { appNameProblem, MAX_APP_NAME_LENGTH } from "./apps.ts";
import { globMatches, kindPatternProblem, namespacePatternProblem } from "./policy.ts";

/** What becomes of an app that no entry names: refused (`unknown-app`), or run under `defaults`. */
export type UnknownApps = "refuse" | "allow";

/** What one entry (or `defaults`) allows an app; patterns as the listener-wide policy's (lib/listener/policy.ts). */
export interface AppRules {
  /** Namespace globs its objects may be in (and Namespace objects may be named); undefined: any. */
  namespaces?: readonly string[];
  /** Where its namespaced objects without `metadata.namespace` go; undefined: where kubectl puts them (the listener's namespace). */
  defaultNamespace?: string;
  /** Kind patterns its objects may have; undefined: any. */
  kinds?: readonly string[];
  /** Kind patterns its objects may not have; wins over `kinds`. */
  deniedKinds: readonly string[];
  /** Whether it may apply cluster-scoped objects (including objects without a namespace); default false. */
  allowClusterScoped: boolean;
  /** Ids of the listener's trusted keys its bundles must be signed by; undefined: any trusted key. */
  trustedKeys?: readonly string[];
}

/** One entry of `apps`. */
export interface AppEntry extends AppRules {
  /** An app name, or a glob over app names (`*` any characters, `?` one). */
  name: string;
  /** Its position in the file's `apps` list, from 0. */
  index: number;
}

/** A parsed apps configuration file. */
export interface AppsConfig {
  /** The file it was read from, for messages. */
  source: string;
  /** The entries, in file order. */
  apps: readonly AppEntry[];
  unknownApps: UnknownApps;
  /** The rules of apps no entry names, when `unknownApps` is `allow`. */
  defaults: AppRules;
}

/** True when an entry's `name` is a glob over app names rather than one name. */
export function isAppNameGlob(name: string): boolean {
  return name.includes("*") || name.includes("?");
}

/** A key id as `publish keygen` prints it and signatures carry it (lib/wire/signature.ts). */
const KEY_ID = /^[0-9a-f]{16}$/;

const APP_GLOB = /^[a-z0-9*?-]+$/;

const RULE_FIELDS = ["namespaces", "defaultNamespace", "kinds", "deniedKinds", "allowClusterScoped", "trustedKeys"] as const;
const ENTRY_FIELDS = ["name", ...RULE_FIELDS] as const;
const TOP_FIELDS = ["apps", "unknownApps", "defaults"] as const;

/** What to write, per field: the end of every problem about a field's type. */
const FIELD_EXAMPLES: Readonly<Record<string, string>> = {
  apps: "a list of entries, e.g. apps: [{ name: shop, namespaces: [shop] }]",
  unknownApps: "unknownApps: refuse or unknownApps: allow",
  defaults: "a mapping of an entry's fields without name, e.g. defaults: { namespaces: [sandbox] }",
  name: 'an app name or a glob over app names, e.g. name: shop or name: "team-a-*"',
  namespaces: 'a list of namespace globs, e.g. namespaces: [shop, "shop-*"]',
  defaultNamespace: "a namespace name, e.g. defaultNamespace: shop",
  kinds: 'a list of kind patterns, e.g. kinds: ["apps/*", "core/ConfigMap"]',
  deniedKinds: 'a list of kind patterns, e.g. deniedKinds: ["core/Secret"]',
  allowClusterScoped: "allowClusterScoped: true or allowClusterScoped: false",
  trustedKeys: 'a list of key ids of the listener\'s trusted keys, quoted, e.g. trustedKeys: ["0123456789abcdef"]',
};

const ENTRY_EXAMPLE = "an entry such as { name: shop, namespaces: [shop] }";

const refined = (problem: (value: string) => string | undefined) =>
  z.string().superRefine((value, ctx) => {
    const text = problem(value);
    if (text !== undefined) ctx.addIssue({ code: "custom", message: text });
  });

const list = (item: z.ZodType<string>, field: string) => z.array(item).min(1, `is an empty list, which would allow nothing: leave ${field} out to allow any, or list what is allowed`);

const namespaceName = refined((value) =>
  value.length <= 63 && /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(value) ? undefined : `${JSON.stringify(value)} is not a namespace name (a DNS label: lowercase letters, digits and '-', at most 63 characters)`,
);

const keyId = refined((value) => (KEY_ID.test(value) ? undefined : `${JSON.stringify(value)} is not a key id (16 lowercase hex digits, as 'publish keygen' prints and the listener logs at start-up)`));

const appName = refined((value) => {
  if (!isAppNameGlob(value)) return appNameProblem(value);
  if (value.length > MAX_APP_NAME_LENGTH || !APP_GLOB.test(value)) return `${JSON.stringify(value)} is not a glob over app names (lowercase letters, digits, '-', '*' and '?', at most ${MAX_APP_NAME_LENGTH} characters)`;
  return undefined;
});

const rulesShape = {
  namespaces: list(refined(namespacePatternProblem), "namespaces").optional(),
  defaultNamespace: namespaceName.optional(),
  kinds: list(refined(kindPatternProblem), "kinds").optional(),
  deniedKinds: z.array(refined(kindPatternProblem)).optional(),
  allowClusterScoped: z.boolean().optional(),
  trustedKeys: list(keyId, "trustedKeys").optional(),
};

const fileSchema = z.strictObject({
  apps: z.array(z.strictObject({ name: appName, ...rulesShape })).optional(),
  unknownApps: z.enum(["refuse", "allow"]).optional(),
  defaults: z.strictObject(rulesShape).optional(),
});

type RawRules = z.infer<z.ZodObject<typeof rulesShape>>;

/**
 * Parses the apps configuration `text` read from `source` (a path, for messages). Every key id
 * an entry's `trustedKeys` names must be one of `trustedKeyIds`, the ids of the listener's
 * trusted keys: a key the listener does not trust could never sign a bundle it applies, so
 * naming one is a mistake found now rather than at the first deploy.
 *
 * @throws {ConfigError} one problem per line, each starting with `source`.
 */
export function parseAppsConfig(text: string, source: string, trustedKeyIds: Iterable<string>): AppsConfig {
  const raw = parseYaml(text, source);
  const result = fileSchema.safeParse(raw);
  if (!result.success) throw new ConfigError(result.error.issues.flatMap((issue) => issueProblems(issue, raw, source)));
  const file = result.data;
  const problems: string[] = [];
  const at = (path: readonly PropertyKey[], message: string) => problems.push(`${source}: ${where(path, raw)}${message}`);
  const trusted = new Set(trustedKeyIds);
  const unknownApps = file.unknownApps ?? "refuse";
  const entries = file.apps ?? [];

  const firstByName = new Map<string, number>();
  entries.forEach((entry, index) => {
    const first = firstByName.get(entry.name);
    if (first === undefined) firstByName.set(entry.name, index);
    else at(["apps", index, "name"], `${JSON.stringify(entry.name)} is already the name of apps[${first}], and only the first entry of a name is used: merge the two entries`);
    checkRules(entry, ["apps", index], trusted, at);
  });
  if (file.defaults !== undefined) {
    checkRules(file.defaults, ["defaults"], trusted, at);
    if (unknownApps === "refuse") at(["defaults"], "is given, but unknownApps is refuse, so no app runs under it: write unknownApps: allow, or remove defaults");
  }
  if (entries.length === 0 && unknownApps === "refuse") {
    at(["apps"], "names no app and unknownApps is refuse, so every bundle would be refused: add an entry per app (apps: [{ name: shop, namespaces: [shop] }]), or write unknownApps: allow");
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return {
    source,
    apps: entries.map((entry, index) => ({ name: entry.name, index, ...rules(entry) })),
    unknownApps,
    defaults: rules(file.defaults ?? {}),
  };
}

/** The entries of `config` as the log shows them: names and globs in file order, and what happens to other apps. */
export function appsConfigSummary(config: AppsConfig): { apps: string[]; unknownApps: UnknownApps } {
  return { apps: config.apps.map((entry) => entry.name), unknownApps: config.unknownApps };
}

function rules(raw: RawRules): AppRules {
  return {
    ...(raw.namespaces === undefined ? {} : { namespaces: raw.namespaces }),
    ...(raw.defaultNamespace === undefined ? {} : { defaultNamespace: raw.defaultNamespace }),
    ...(raw.kinds === undefined ? {} : { kinds: raw.kinds }),
    deniedKinds: raw.deniedKinds ?? [],
    allowClusterScoped: raw.allowClusterScoped ?? false,
    ...(raw.trustedKeys === undefined ? {} : { trustedKeys: raw.trustedKeys }),
  };
}

/** The checks across fields of one entry (or `defaults`), which zod does not see. */
function checkRules(raw: RawRules, path: readonly PropertyKey[], trusted: ReadonlySet<string>, at: (path: readonly PropertyKey[], message: string) => void): void {
  const { namespaces, defaultNamespace, trustedKeys } = raw;
  if (defaultNamespace !== undefined && namespaces !== undefined && !namespaces.some((pattern) => globMatches(pattern, defaultNamespace))) {
    at([...path, "defaultNamespace"], `${JSON.stringify(defaultNamespace)} is not in this entry's namespaces (${namespaces.join(", ")}): add it to namespaces, or choose one of them`);
  }
  (trustedKeys ?? []).forEach((id, index) => {
    if (trusted.has(id)) return;
    const fix =
      trusted.size === 0
        ? "the listener trusts no key (--trusted-keys, KUBE_PICO_CD_TRUSTED_KEYS, is not set), so no bundle could be signed by it: give the listener the key, or remove trustedKeys"
        : `the listener trusts only ${[...trusted].join(", ")}: add the key to --trusted-keys (KUBE_PICO_CD_TRUSTED_KEYS), or name one of those`;
    at([...path, "trustedKeys", index], `key ${id} is not among the listener's trusted keys; ${fix}`);
  });
}

/** The YAML document of `text`, as plain data. @throws {ConfigError} on a syntax error, several documents or an empty file. */
function parseYaml(text: string, source: string): unknown {
  const lineCounter = new LineCounter();
  const document = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  if (document.errors.length > 0) {
    throw new ConfigError(
      document.errors.map((error) => {
        const { line, col } = lineCounter.linePos(error.pos[0]);
        const hint = error.code === "MULTIPLE_DOCS" ? "the file holds more than one YAML document (a '---' line): keep one" : error.message;
        return `${source}:${line}:${col}: not valid YAML: ${hint}`;
      }),
    );
  }
  const value: unknown = document.toJS({ maxAliasCount: 100 });
  if (value === null || value === undefined) {
    throw new ConfigError([`${source}: is empty: write at least apps: [{ name: <app>, namespaces: [<namespace>] }] (docs/apps.md)`]);
  }
  return value;
}

/** `apps[1] ("shop"): namespaces[0]: ` for a path into the file, the entry named by its index and name. */
function where(path: readonly PropertyKey[], raw: unknown): string {
  if (path.length === 0) return "";
  const parts: string[] = [];
  let i = 0;
  if (path[0] === "apps" && typeof path[1] === "number") {
    const name = valueAt(raw, path.slice(0, 2).concat("name"));
    parts.push(`apps[${path[1]}]${typeof name === "string" ? ` (${JSON.stringify(name)})` : ""}`);
    i = 2;
  }
  for (; i < path.length; i++) {
    const part = path[i];
    if (typeof part === "number") parts[parts.length - 1] = `${parts[parts.length - 1] ?? ""}[${part}]`;
    else parts.push(String(part));
  }
  return `${parts.join(": ")}: `;
}

function valueAt(raw: unknown, path: readonly PropertyKey[]): unknown {
  let value = raw;
  for (const part of path) {
    if (typeof value !== "object" || value === null) return undefined;
    value = (value as Record<PropertyKey, unknown>)[part];
  }
  return value;
}

/** The field a path ends in (the list's field for a list item). */
function fieldOf(path: readonly PropertyKey[]): string | undefined {
  for (let i = path.length - 1; i >= 0; i--) if (typeof path[i] === "string") return path[i] as string;
  return undefined;
}

function shown(value: unknown): string {
  if (value === null) return "empty";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object") return "a mapping";
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 80 ? `${text.slice(0, 80)}…` : text;
}

/** The problem lines of a zod issue (one per unknown field): where, what is wrong, what to write instead. */
function issueProblems(issue: z.core.$ZodIssue, raw: unknown, source: string): string[] {
  const path = issue.path;
  if (issue.code === "unrecognized_keys") {
    const fields: readonly string[] = path.length === 0 ? TOP_FIELDS : path[0] === "defaults" ? RULE_FIELDS : ENTRY_FIELDS;
    const what = path.length === 0 ? "the file" : path[0] === "defaults" ? "defaults" : "an entry";
    return issue.keys.map((key) => {
      const near = closest(key, fields);
      return `${source}: ${where(path, raw)}unknown field ${JSON.stringify(key)}${near === undefined ? "" : ` (did you mean ${near}?)`}; the fields of ${what} are ${fields.join(", ")}`;
    });
  }
  return [issueProblem(issue, raw, source)];
}

function issueProblem(issue: z.core.$ZodIssue, raw: unknown, source: string): string {
  const path = issue.path;
  const prefix = `${source}: ${where(path, raw)}`;
  const field = fieldOf(path);
  const example = path.length === 2 && path[0] === "apps" ? ENTRY_EXAMPLE : field === undefined ? undefined : FIELD_EXAMPLES[field];
  if (issue.code === "invalid_type") {
    const value = valueAt(raw, path);
    if (value === undefined) return `${prefix}is missing: write ${example ?? issue.expected}`;
    const quote = issue.expected === "string" && (typeof value === "number" || typeof value === "boolean") ? ` (YAML read it as a ${typeof value}: put it in quotes)` : "";
    if (path.length === 0) return `${source}: must be a mapping with apps, unknownApps and defaults: current value is ${shown(value)}`;
    return `${prefix}must be ${article(issue.expected)}: current value is ${shown(value)}${quote}${example === undefined ? "" : `; write ${example}`}`;
  }
  if (issue.code === "invalid_value") return `${prefix}must be ${issue.values.map(String).join(" or ")}: current value is ${shown(valueAt(raw, path))}`;
  return `${prefix}${issue.message}`;
}

function article(expected: string): string {
  const names: Record<string, string> = { string: "text", array: "a list", object: "a mapping", boolean: "true or false" };
  return names[expected] ?? expected;
}

/** The field of `fields` within two edits of `key` (a typo or a singular), if one is. */
function closest(key: string, fields: readonly string[]): string | undefined {
  let best: { field: string; distance: number } | undefined;
  for (const field of fields) {
    const distance = editDistance(key.toLowerCase(), field.toLowerCase());
    if (distance <= 2 && (best === undefined || distance < best.distance)) best = { field, distance };
  }
  return best?.field;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    previous = current;
  }
  return previous[b.length]!;
}
