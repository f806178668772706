/**
 * The listener's configuration: flags and KUBE_PICO_CD_* variables, validated once at start-up
 * by one zod schema. A bad setting stops the listener before it does any work, with one line
 * per problem naming the flag or variable.
 */
import { readFileSync } from "node:fs";
import { z } from "zod";
import { envBoolean, gatherOptions, optionsHelp, schemaProblems, type OptionTable } from "../cli-options.ts";
import { DEFAULT_BUNDLE_SECRET, MAX_KEPT_BUNDLE_BYTES } from "./drift.ts";
import { ConfigError } from "../errors.ts";
import { DEFAULT_LOCK_LEASE } from "../kube/lease.ts";
import type { LogLevel } from "../log.ts";
import { DEFAULT_DECODE_LIMITS, DEFAULT_MAX_DECOMPRESSED_BYTES, DEFAULT_MAX_FUTURE_SKEW_MS, type DecodeLimits } from "../wire/message.ts";
import { kindPatternProblem, namespacePatternProblem, type Policy } from "./policy.ts";
import { loadTrustedKeys, type TrustedKeys } from "./trust.ts";
import { regionOfQueueUrl } from "../sqs/region.ts";
import { parseQueueRef } from "../sqs/send.ts";
import { DEFAULT_HISTORY_LIMIT, DEFAULT_STATE_CONFIGMAP } from "../kube/record.ts";

/** Where Kubernetes mounts the pod's namespace. */
export const SERVICE_ACCOUNT_NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

export const LISTENER_OPTIONS = {
  queue: { type: "string", env: ["KUBE_PICO_CD_QUEUE"], deprecated: ["KUBE_PICO_CD_QUEUE_URL", "KUBE_PICO_CD_DEPLOY_QUEUE_NAME"], value: "URL|NAME", defaultText: "none; required", help: "Queue to receive from, by URL or by name (resolved with GetQueueUrl). It must exist: the listener checks at start and exits 1 when it does not." },
  target: { type: "string", env: ["KUBE_PICO_CD_TARGET"], value: "NAME", defaultText: "none", help: "This cluster's name: messages for another target, or whose targets leave it out, are rejected (messages without a target are accepted); every result names it. In a fleet (one topic, a queue per cluster) each listener needs its own." },
  namespace: { type: "string", env: ["KUBE_PICO_CD_NAMESPACE"], value: "NAME", defaultText: `the pod's namespace (${SERVICE_ACCOUNT_NAMESPACE_FILE})`, help: "Namespace of the version record and the deploy lock." },
  "state-configmap": { type: "string", env: ["KUBE_PICO_CD_STATE_CONFIGMAP"], value: "NAME", defaultText: DEFAULT_STATE_CONFIGMAP, help: "Name of the default app's version record ConfigMap; app APP's is <name>-APP." },
  "lock-lease": { type: "string", env: ["KUBE_PICO_CD_LOCK_LEASE"], value: "NAME", defaultText: DEFAULT_LOCK_LEASE, help: "Name of the default app's deploy Lease (one replica deploys an app at a time); app APP's is <name>-APP." },
  "lease-duration-seconds": { type: "string", env: ["KUBE_PICO_CD_LEASE_DURATION_SECONDS"], value: "N", defaultText: "30", help: "How long other replicas wait, from their own sighting of the holder's last renewal, before they take the deploy Lease; the holder gives up after two thirds of it (at most 10 s) without a renewal." },
  "history-limit": { type: "string", env: ["KUBE_PICO_CD_HISTORY_LIMIT"], value: "N", defaultText: String(DEFAULT_HISTORY_LIMIT), help: "Outcomes kept in the record's history." },
  "apply-concurrency": { type: "string", env: ["KUBE_PICO_CD_APPLY_CONCURRENCY"], value: "N", defaultText: "2", help: "kubectl applies of different apps that may run at once (each kubectl takes tens of MiB of the pod's memory; health waits and prunes do not count)." },
  kubectl: { type: "string", env: ["KUBE_PICO_CD_KUBECTL"], value: "PATH", defaultText: "kubectl (on PATH)", help: "kubectl binary." },
  kubeconfig: { type: "string", env: ["KUBE_PICO_CD_KUBECONFIG"], value: "PATH", defaultText: "kubectl's own choice: KUBECONFIG, the pod's service account, then ~/.kube/config", help: "Kubeconfig file, for kubectl and the listener's own API client." },
  context: { type: "string", env: ["KUBE_PICO_CD_CONTEXT"], value: "NAME", defaultText: "the kubeconfig's current-context", help: "Kubeconfig context, for kubectl and the listener's own API client." },
  "field-manager": { type: "string", env: ["KUBE_PICO_CD_FIELD_MANAGER"], value: "NAME", defaultText: "kube-pico-cd", help: "Server-side apply field manager." },
  "no-force-conflicts": { type: "boolean", env: ["KUBE_PICO_CD_NO_FORCE_CONFLICTS"], defaultText: "false (conflicts are forced, as Flux does)", help: "Fail an apply when another field manager owns a field, instead of taking the field over." },
  "apply-timeout-seconds": { type: "string", env: ["KUBE_PICO_CD_APPLY_TIMEOUT_SECONDS"], value: "N", defaultText: "300", help: "Time budget of one apply (all phases)." },
  "no-prune": { type: "boolean", env: ["KUBE_PICO_CD_NO_PRUNE"], defaultText: "false (objects that leave the bundle are deleted)", help: "Do not delete the objects of the previous build that the new bundle no longer holds." },
  "prune-crds": { type: "boolean", env: ["KUBE_PICO_CD_PRUNE_CRDS"], defaultText: "false (they are kept, and leave the inventory)", help: "Also prune CustomResourceDefinitions that left the bundle, with every resource of them." },
  "allow-empty-bundle": { type: "boolean", env: ["KUBE_PICO_CD_ALLOW_EMPTY_BUNDLE"], defaultText: "false (rejected as empty-bundle)", help: "Accept a bundle of zero objects as a build; it applies and prunes nothing." },
  "no-wait-health": { type: "boolean", env: ["KUBE_PICO_CD_NO_WAIT_HEALTH"], defaultText: "false (health is waited for and recorded)", help: "Do not wait for Deployments, StatefulSets, DaemonSets, Jobs and CRDs to become healthy after an apply." },
  "health-timeout-seconds": { type: "string", env: ["KUBE_PICO_CD_HEALTH_TIMEOUT_SECONDS"], value: "N", defaultText: "300", help: "How long to wait for health before recording Timeout." },
  "drift-interval-minutes": { type: "string", env: ["KUBE_PICO_CD_DRIFT_INTERVAL_MINUTES"], value: "N", defaultText: "none (off)", help: "Re-apply the last applied bundle every N minutes (a decimal, at least 0.05), from a compressed copy kept in the cluster." },
  "bundle-secret": { type: "string", env: ["KUBE_PICO_CD_BUNDLE_SECRET"], value: "NAME", defaultText: DEFAULT_BUNDLE_SECRET, help: "Secret in the listener's namespace keeping the default app's last applied bundle (gzip'd) for drift correction (app APP's: <name>-APP); written only with --drift-interval-minutes, and a bundle may not overwrite it." },
  "bundle-secret-max-bytes": { type: "string", env: ["KUBE_PICO_CD_BUNDLE_SECRET_MAX_BYTES"], value: "N", defaultText: String(MAX_KEPT_BUNDLE_BYTES), help: `Largest gzip'd bundle kept for drift correction (at most ${MAX_KEPT_BUNDLE_BYTES}: a Secret holds at most 1 MiB). A larger bundle is applied but not kept, the older kept one is deleted, and the outcome warns.` },
  "result-queue": { type: "string", env: ["KUBE_PICO_CD_RESULT_QUEUE"], value: "URL|NAME", defaultText: "none", help: "Queue to send each build's result to (kube-pico-cd.result messages, for publish --wait)." },
  "no-events": { type: "boolean", env: ["KUBE_PICO_CD_NO_EVENTS"], defaultText: "false (an Event per outcome, on the version record)", help: "Do not create Kubernetes Events for deploy outcomes." },
  "wait-time-seconds": { type: "string", env: ["KUBE_PICO_CD_WAIT_TIME_SECONDS"], value: "N", defaultText: "20", help: "SQS long-poll wait (0-20)." },
  "visibility-timeout-seconds": { type: "string", env: ["KUBE_PICO_CD_VISIBILITY_TIMEOUT_SECONDS"], value: "N", defaultText: "60", help: "How long a received message stays hidden; renewed while its deploy runs." },
  "retry-base-seconds": { type: "string", env: ["KUBE_PICO_CD_RETRY_BASE_SECONDS"], value: "N", defaultText: "30", help: "Delay before a failed deploy is retried; doubles with each receive." },
  "retry-max-seconds": { type: "string", env: ["KUBE_PICO_CD_RETRY_MAX_SECONDS"], value: "N", defaultText: "900", help: "Largest retry delay." },
  "max-decompressed-bytes": { type: "string", env: ["KUBE_PICO_CD_MAX_DECOMPRESSED_BYTES"], value: "N", defaultText: String(DEFAULT_MAX_DECOMPRESSED_BYTES), help: "Largest uncompressed bundle accepted, in bytes; inflating stops there (docs/protocol.md, Decoding limits)." },
  "max-objects": { type: "string", env: ["KUBE_PICO_CD_MAX_OBJECTS"], value: "N", defaultText: String(DEFAULT_DECODE_LIMITS.maxObjects), help: "Most objects in one bundle." },
  "max-json-values": { type: "string", env: ["KUBE_PICO_CD_MAX_JSON_VALUES"], value: "N", defaultText: String(DEFAULT_DECODE_LIMITS.maxValues), help: "Most JSON values (objects, arrays, strings, numbers, literals) in one bundle's payload: what bounds the memory a parsed bundle takes." },
  "max-depth": { type: "string", env: ["KUBE_PICO_CD_MAX_DEPTH"], value: "N", defaultText: String(DEFAULT_DECODE_LIMITS.maxDepth), help: "Deepest nesting of arrays and objects in a payload (its array is depth 1)." },
  "max-string-bytes": { type: "string", env: ["KUBE_PICO_CD_MAX_STRING_BYTES"], value: "N", defaultText: String(DEFAULT_DECODE_LIMITS.maxStringBytes), help: "Longest string in a payload, in bytes." },
  "max-legacy-yaml-tokens": { type: "string", env: ["KUBE_PICO_CD_MAX_LEGACY_YAML_TOKENS"], value: "N", defaultText: String(DEFAULT_DECODE_LIMITS.maxLegacyYamlTokens), help: "Legacy messages: most line feeds and [ { , : - in the YAML, counted before it is parsed (each costs the YAML parser several hundred bytes)." },
  "max-future-skew-seconds": { type: "string", env: ["KUBE_PICO_CD_MAX_FUTURE_SKEW_SECONDS"], value: "N", defaultText: String(DEFAULT_MAX_FUTURE_SKEW_MS / 1000), help: "A build stamped more than N seconds after SQS sent it, or after the listener's clock, is rejected as future-build." },
  "plan-keys": { type: "string", multiple: true, env: ["KUBE_PICO_CD_PLAN_KEYS"], value: "PEM|PATH", defaultText: "none: plan requests need a trusted key too", help: "Ed25519 public keys trusted for plan requests only (publish --plan from pull requests): a bundle they sign is dry-run and answered, never applied. Same forms as --trusted-keys; needs --trusted-keys." },
  "trusted-keys": { type: "string", multiple: true, env: ["KUBE_PICO_CD_TRUSTED_KEYS"], value: "PEM|PATH", defaultText: "none: signatures are not checked (a warning at start-up)", help: "Ed25519 public keys whose signatures are trusted: PEM text, a file of PEM blocks, or a directory of *.pem files. Repeatable; the variable takes a comma-separated list. With keys, only bundles signed by one of them are applied." },
  "require-signatures": { type: "boolean", env: ["KUBE_PICO_CD_REQUIRE_SIGNATURES"], defaultText: "false", help: "Refuse to start without trusted keys." },
  "require-target": { type: "string", env: ["KUBE_PICO_CD_REQUIRE_TARGET"], value: "auto|true|false", defaultText: "auto: true when --target and trusted keys are both given", help: "Reject bundles that name no target (require-target), so that a bundle signed for no cluster in particular cannot be replayed here; true needs --target (docs/security.md)." },
  "allow-namespaces": { type: "string", multiple: true, env: ["KUBE_PICO_CD_ALLOW_NAMESPACES"], value: "GLOB", defaultText: "any", help: "Namespaces bundles may touch (globs: * and ?). Objects must then name their namespace, and Namespace objects must be named so." },
  "allow-kinds": { type: "string", multiple: true, env: ["KUBE_PICO_CD_ALLOW_KINDS"], value: "[GROUP/]KIND", defaultText: "any", help: "Kinds bundles may hold: Kind (any group) or group/Kind, core for the core group; globs allowed (apps/*)." },
  "deny-kinds": { type: "string", multiple: true, env: ["KUBE_PICO_CD_DENY_KINDS"], value: "[GROUP/]KIND", defaultText: "none", help: "Kinds bundles may not hold (e.g. Secret, rbac.authorization.k8s.io/ClusterRoleBinding); wins over --allow-kinds." },
  "deny-cluster-scoped": { type: "boolean", env: ["KUBE_PICO_CD_DENY_CLUSTER_SCOPED"], defaultText: "false", help: "Reject bundles with cluster-scoped objects (built-in cluster-scoped kinds, --cluster-scoped-kinds, and objects without a namespace)." },
  "cluster-scoped-kinds": { type: "string", multiple: true, env: ["KUBE_PICO_CD_CLUSTER_SCOPED_KINDS"], value: "[GROUP/]KIND", defaultText: "none (built-in kinds only)", help: "Kinds of your CustomResourceDefinitions that are cluster-scoped, for the policy." },
  "apps-config": { type: "string", env: ["KUBE_PICO_CD_APPS_CONFIG"], value: "PATH", defaultText: "none: every app runs under the listener-wide policy alone (for publishers that all trust each other)", help: "YAML file giving each app its namespaces, default namespace, kinds and signing keys, within the listener-wide policy (docs/apps.md); re-read when it changes." },
  "endpoint-url": { type: "string", env: ["KUBE_PICO_CD_ENDPOINT_URL", "AWS_ENDPOINT_URL_SQS"], deprecated: ["--sqs-endpoint", "KUBE_PICO_CD_SQS_ENDPOINT"], value: "URL", defaultText: "AWS's endpoint of each queue's region", help: "SQS endpoint for every queue (local SQS servers such as ElasticMQ); requests are still signed for each queue's region." },
  region: { type: "string", env: ["KUBE_PICO_CD_REGION", "AWS_REGION", "AWS_DEFAULT_REGION"], deprecated: ["KUBE_PICO_CD_AWS_REGION"], value: "REGION", defaultText: "none: the queue URL must name one, or --endpoint-url be given", help: "AWS region of a queue given by name and of queue URLs that name none. An AWS queue URL (https://sqs.REGION.amazonaws.com/...) names its own region, which wins: the deploy queue and the result queue each get a client of their region." },
  "http-host": { type: "string", env: ["KUBE_PICO_CD_HTTP_HOST"], value: "HOST", defaultText: "0.0.0.0", help: "Address of the /healthz and /readyz server." },
  "http-port": { type: "string", env: ["KUBE_PICO_CD_HTTP_PORT"], value: "PORT", defaultText: "8080", help: "Port of the /healthz and /readyz server (0: any free port; -1: no server)." },
  "shutdown-grace-seconds": { type: "string", env: ["KUBE_PICO_CD_SHUTDOWN_GRACE_SECONDS"], value: "N", defaultText: "25", help: "On SIGTERM, how long an in-flight deploy may take to finish." },
  "log-level": { type: "string", env: ["KUBE_PICO_CD_LOG_LEVEL"], value: "LEVEL", defaultText: "info", help: "debug, info, warn or error." },
  once: { type: "boolean", env: ["KUBE_PICO_CD_ONCE"], defaultText: "false", help: "Handle what is in the queue, then exit (for scripts and tests)." },
  version: { type: "boolean", defaultText: "false", help: "Print the version and exit." },
  help: { type: "boolean", short: "h", defaultText: "false", help: "Show this help." },
} as const satisfies OptionTable;

export interface ListenerConfig {
  queue: string;
  target?: string;
  namespace: string;
  stateConfigMap: string;
  lockLease: string;
  leaseDurationSeconds: number;
  historyLimit: number;
  /** kubectl applies of different apps that may run at once. */
  applyConcurrency: number;
  kubectl: string;
  kubeconfig?: string;
  context?: string;
  fieldManager: string;
  forceConflicts: boolean;
  applyTimeoutMs: number;
  prune: boolean;
  pruneCrds: boolean;
  allowEmptyBundle: boolean;
  waitHealth: boolean;
  healthTimeoutMs: number;
  /** Absent: no drift correction. */
  driftIntervalMs?: number;
  /** Secret keeping the last applied bundle for drift correction (lib/listener/drift.ts). */
  bundleSecret: string;
  /** Largest gzip'd bundle kept, in bytes. */
  bundleSecretMaxBytes: number;
  resultQueue?: string;
  events: boolean;
  waitTimeSeconds: number;
  visibilityTimeoutSeconds: number;
  retryBaseSeconds: number;
  retryMaxSeconds: number;
  maxDecompressedBytes: number;
  /** The other limits of decoding (maxInflatedBytes is `maxDecompressedBytes`). */
  decodeLimits: Omit<DecodeLimits, "maxInflatedBytes">;
  /** A build stamped further than this ahead of SQS's or the listener's clock is rejected, in ms. */
  maxFutureSkewMs: number;
  /** Public keys by key id; empty: signatures are not checked. */
  trustedKeys: TrustedKeys;
  /** Keys trusted for plan requests only (with `trustedKeys`, which plans also accept). */
  planKeys: TrustedKeys;
  requireSignatures: boolean;
  /** Bundles that name no target are rejected (`require-target`); resolved from `auto` at parse time. */
  requireTarget: boolean;
  policy: Policy;
  /** The apps configuration file (lib/listener/apps-config.ts); absent: every app runs under `policy` alone. */
  appsConfig?: string;
  /** --endpoint-url: every queue's requests go there (signed for the queue's region). */
  endpointUrl?: string;
  /** For queues given by name and URLs that name no region (lib/sqs/region.ts). */
  region?: string;
  httpHost: string;
  /** -1: no HTTP server. */
  httpPort: number;
  shutdownGraceMs: number;
  logLevel: LogLevel;
  once: boolean;
  version: boolean;
  help: boolean;
  /** One line per deprecated flag or variable that was used (lib/cli-options.ts), for a warning. */
  deprecations: string[];
}

/** A whole number from `min` to `max` given as text (flag or variable), `fallback` when absent. */
export const int = (min: number, max: number, fallback: number) =>
  z
    .string()
    .default(String(fallback))
    .transform((text, ctx) => {
      const n = Number(text.trim());
      if (text.trim() === "" || !Number.isInteger(n)) {
        ctx.addIssue({ code: "custom", message: `must be a whole number: current value is ${JSON.stringify(text)}` });
        return z.NEVER;
      }
      return n;
    })
    .pipe(z.number().min(min, `must be at least ${min}`).max(max, `must be at most ${max}`));

const name = (fallback: string) =>
  z
    .string()
    .default(fallback)
    .pipe(z.string().regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, "must be a Kubernetes object name (lowercase letters, digits, '-', '.')").max(253));

const patterns = (problem: (pattern: string) => string | undefined) =>
  z.array(z.string()).superRefine((items, ctx) => {
    for (const item of items) {
      const text = problem(item);
      if (text !== undefined) ctx.addIssue({ code: "custom", message: text });
    }
  });

const schema = z.object({
  queue: z.string().min(1, "must not be empty").optional(),
  target: z.string().min(1, "must not be empty").optional(),
  namespace: z
    .string()
    .max(63, "must be a namespace name of at most 63 characters")
    .superRefine((v, ctx) => {
      if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(v)) ctx.addIssue({ code: "custom", message: `must be a namespace name (lower-case letters, digits and '-'): current value is ${JSON.stringify(v)}` });
    })
    .optional(),
  "state-configmap": name(DEFAULT_STATE_CONFIGMAP),
  "lock-lease": name(DEFAULT_LOCK_LEASE),
  "lease-duration-seconds": int(3, 3600, 30),
  "history-limit": int(1, 1000, DEFAULT_HISTORY_LIMIT),
  "apply-concurrency": int(1, 64, 2),
  kubectl: z.string().min(1).default("kubectl"),
  kubeconfig: z.string().min(1).optional(),
  context: z.string().min(1).optional(),
  "field-manager": z.string().min(1).max(128).default("kube-pico-cd"),
  "no-force-conflicts": z.boolean(),
  "apply-timeout-seconds": int(1, 86_400, 300),
  "no-prune": z.boolean(),
  "prune-crds": z.boolean(),
  "allow-empty-bundle": z.boolean(),
  "no-wait-health": z.boolean(),
  "health-timeout-seconds": int(1, 86_400, 300),
  "drift-interval-minutes": z
    .string()
    .regex(/^\s*\d+(\.\d+)?\s*$/, "must be a number of minutes such as 10 or 0.5")
    .transform(Number)
    .pipe(z.number().min(0.05, "must be at least 0.05 (3 seconds)").max(10_080, "must be at most 10080 (a week)"))
    .optional(),
  "bundle-secret": name(DEFAULT_BUNDLE_SECRET),
  "bundle-secret-max-bytes": int(1024, MAX_KEPT_BUNDLE_BYTES, MAX_KEPT_BUNDLE_BYTES),
  "result-queue": z
    .string()
    .min(1, "must not be empty")
    .superRefine((value, ctx) => {
      const parsed = parseQueueRef(value);
      if ("problem" in parsed) ctx.addIssue({ code: "custom", message: parsed.problem });
    })
    .optional(),
  "no-events": z.boolean(),
  "wait-time-seconds": int(0, 20, 20),
  "visibility-timeout-seconds": int(3, 43_200, 60),
  "retry-base-seconds": int(0, 43_200, 30),
  "retry-max-seconds": int(0, 43_200, 900),
  "max-decompressed-bytes": int(1024, 1024 * 1024 * 1024, DEFAULT_MAX_DECOMPRESSED_BYTES),
  "max-objects": int(1, 1_000_000, DEFAULT_DECODE_LIMITS.maxObjects),
  "max-json-values": int(1, 100_000_000, DEFAULT_DECODE_LIMITS.maxValues),
  "max-depth": int(2, 10_000, DEFAULT_DECODE_LIMITS.maxDepth),
  "max-string-bytes": int(1, 1024 * 1024 * 1024, DEFAULT_DECODE_LIMITS.maxStringBytes),
  "max-legacy-yaml-tokens": int(1, 100_000_000, DEFAULT_DECODE_LIMITS.maxLegacyYamlTokens),
  "max-future-skew-seconds": int(0, 31_536_000, DEFAULT_MAX_FUTURE_SKEW_MS / 1000),
  "trusted-keys": z.array(z.string().min(1, "must not be empty")),
  "plan-keys": z.array(z.string().min(1, "must not be empty")),
  "require-signatures": z.boolean(),
  "require-target": z
    .string()
    .default("auto")
    .transform((text, ctx) => {
      if (text.trim().toLowerCase() === "auto") return "auto" as const;
      const value = envBoolean(text.trim());
      if (value === undefined) {
        ctx.addIssue({ code: "custom", message: `must be auto, true or false: current value is ${JSON.stringify(text)}` });
        return z.NEVER;
      }
      return value;
    }),
  "allow-namespaces": patterns(namespacePatternProblem),
  "allow-kinds": patterns(kindPatternProblem),
  "deny-kinds": patterns(kindPatternProblem),
  "deny-cluster-scoped": z.boolean(),
  "cluster-scoped-kinds": patterns(kindPatternProblem),
  "apps-config": z.string().min(1, "must not be empty (leave it unset for no apps configuration)").optional(),
  "endpoint-url": z.url({ protocol: /^https?$/, error: "must be an http or https URL" }).optional(),
  region: z.string().regex(/^[a-z0-9-]+$/, "must look like eu-west-1").optional(),
  "http-host": z.string().min(1).default("0.0.0.0"),
  "http-port": int(-1, 65_535, 8080),
  "shutdown-grace-seconds": int(0, 3600, 25),
  "log-level": z.enum(["debug", "info", "warn", "error"], { error: "must be debug, info, warn or error" }).default("info"),
  once: z.boolean(),
  version: z.boolean(),
  help: z.boolean(),
});

/** The listener's option schema, for commands that take some of its options (`listener status`). */
export const listenerOptionsSchema = schema;

/**
 * Parses the listener's settings from `argv` (without the program) and `env`.
 * `readNamespaceFile` is injectable so tests need no pod.
 *
 * @throws {ConfigError} one line per problem.
 */
export function parseListenerConfig(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
  readNamespaceFile: () => string | undefined = defaultNamespaceFile,
): ListenerConfig {
  const { raw, origin, problems, notices } = gatherOptions(LISTENER_OPTIONS, argv, env);
  if (problems.length > 0) throw new ConfigError(problems);
  const result = schema.safeParse(raw);
  if (!result.success) throw new ConfigError(schemaProblems(result.error, origin));
  const d = result.data;
  if (d.help || d.version) return { ...defaultsOnly(), help: d.help, version: d.version, deprecations: notices };
  if (d.queue === undefined) problems.push("--queue: no queue given (set KUBE_PICO_CD_QUEUE to the queue's URL or name)");
  const namespace = resolveNamespace(d.namespace, readNamespaceFile);
  if (!namespace) problems.push(NAMESPACE_MISSING_PROBLEM);
  if (d["retry-max-seconds"] < d["retry-base-seconds"]) {
    problems.push(`${origin["retry-max-seconds"]}: must be at least the retry base (${d["retry-base-seconds"]}): current value is ${d["retry-max-seconds"]}`);
  }
  const trusted = loadTrustedKeys(d["trusted-keys"], (i) => `${origin["trusted-keys"]} (item ${i + 1})`);
  problems.push(...trusted.problems);
  const planKeys = loadTrustedKeys(d["plan-keys"], (i) => `${origin["plan-keys"]} (item ${i + 1})`);
  problems.push(...planKeys.problems);
  if (d["plan-keys"].length > 0 && d["trusted-keys"].length === 0) {
    problems.push(`${origin["plan-keys"]}: plan keys given without trusted keys: without KUBE_PICO_CD_TRUSTED_KEYS no signature is checked, so a plan key would limit nothing`);
  }
  if (d["require-signatures"] && d["trusted-keys"].length === 0) {
    problems.push(`${origin["require-signatures"]}: signatures are required but no trusted key is given (set KUBE_PICO_CD_TRUSTED_KEYS to the public key printed by 'publish keygen')`);
  }
  if (d["require-target"] === true && d.target === undefined) {
    problems.push(`${origin["require-target"]}: bundles must name this listener's target, but no target is given (set KUBE_PICO_CD_TARGET)`);
  }
  if (problems.length > 0) throw new ConfigError(problems);
  const policy: Policy = {
    deniedKinds: d["deny-kinds"],
    allowClusterScoped: !d["deny-cluster-scoped"],
    clusterScopedKinds: d["cluster-scoped-kinds"],
    ...(d["allow-namespaces"].length > 0 ? { allowedNamespaces: d["allow-namespaces"] } : {}),
    ...(d["allow-kinds"].length > 0 ? { allowedKinds: d["allow-kinds"] } : {}),
  };
  const config: ListenerConfig = {
    queue: d.queue!,
    namespace: namespace!,
    stateConfigMap: d["state-configmap"],
    lockLease: d["lock-lease"],
    leaseDurationSeconds: d["lease-duration-seconds"],
    historyLimit: d["history-limit"],
    applyConcurrency: d["apply-concurrency"],
    kubectl: d.kubectl,
    fieldManager: d["field-manager"],
    forceConflicts: !d["no-force-conflicts"],
    applyTimeoutMs: d["apply-timeout-seconds"] * 1000,
    prune: !d["no-prune"],
    pruneCrds: d["prune-crds"],
    allowEmptyBundle: d["allow-empty-bundle"],
    waitHealth: !d["no-wait-health"],
    healthTimeoutMs: d["health-timeout-seconds"] * 1000,
    bundleSecret: d["bundle-secret"],
    bundleSecretMaxBytes: d["bundle-secret-max-bytes"],
    events: !d["no-events"],
    waitTimeSeconds: d["wait-time-seconds"],
    visibilityTimeoutSeconds: d["visibility-timeout-seconds"],
    retryBaseSeconds: d["retry-base-seconds"],
    retryMaxSeconds: d["retry-max-seconds"],
    maxDecompressedBytes: d["max-decompressed-bytes"],
    decodeLimits: {
      maxObjects: d["max-objects"],
      maxValues: d["max-json-values"],
      maxDepth: d["max-depth"],
      maxStringBytes: d["max-string-bytes"],
      maxLegacyYamlTokens: d["max-legacy-yaml-tokens"],
    },
    maxFutureSkewMs: d["max-future-skew-seconds"] * 1000,
    trustedKeys: trusted.keys,
    planKeys: planKeys.keys,
    requireSignatures: d["require-signatures"],
    // auto: only where the target binds a signature to this cluster (a signed target cannot be forged).
    requireTarget: d["require-target"] === "auto" ? d.target !== undefined && trusted.keys.size > 0 : d["require-target"],
    policy,
    httpHost: d["http-host"],
    httpPort: d["http-port"],
    shutdownGraceMs: d["shutdown-grace-seconds"] * 1000,
    logLevel: d["log-level"],
    once: d.once,
    version: false,
    help: false,
    deprecations: notices,
  };
  if (d.target !== undefined) config.target = d.target;
  if (d.kubeconfig !== undefined) config.kubeconfig = d.kubeconfig;
  if (d.context !== undefined) config.context = d.context;
  if (d["apps-config"] !== undefined) config.appsConfig = d["apps-config"];
  if (d["endpoint-url"] !== undefined) config.endpointUrl = d["endpoint-url"];
  if (d.region !== undefined) config.region = d.region;
  if (d["drift-interval-minutes"] !== undefined) config.driftIntervalMs = Math.round(d["drift-interval-minutes"] * 60_000);
  if (d["result-queue"] !== undefined) config.resultQueue = d["result-queue"];
  return config;
}

/**
 * One line per queue whose region nothing names: not its URL (a name, or a URL of no AWS
 * host), not --region or its variables (KUBE_PICO_CD_REGION, AWS_REGION, AWS_DEFAULT_REGION),
 * and there is no --endpoint-url to send to instead. Checked by the listener at start, before
 * any work: without a region the SDK refuses only the first request, deep in the loop.
 */
export function regionProblems(config: Pick<ListenerConfig, "queue" | "resultQueue" | "region" | "endpointUrl">): string[] {
  if (config.region !== undefined || config.endpointUrl !== undefined) return [];
  const queues = [
    { queue: config.queue, flag: "--queue" },
    ...(config.resultQueue === undefined ? [] : [{ queue: config.resultQueue, flag: "--result-queue" }]),
  ];
  return queues
    .filter(({ queue }) => regionOfQueueUrl(queue) === undefined)
    .map(
      ({ queue, flag }) =>
        `--region: no AWS region for ${flag} ${JSON.stringify(queue)}: give the queue's AWS URL (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME), ` +
        "or set --region (KUBE_PICO_CD_REGION, AWS_REGION or AWS_DEFAULT_REGION), or --endpoint-url for a local SQS server",
    );
}

function defaultsOnly(): ListenerConfig {
  return parseListenerConfig([], { KUBE_PICO_CD_QUEUE: "help", KUBE_PICO_CD_NAMESPACE: "help" });
}

/**
 * The namespace of the record and the lock: the flag or variable when given, else the pod's
 * own ({@link SERVICE_ACCOUNT_NAMESPACE_FILE}); undefined when there is neither. Shared with
 * `listener status`, which must look where the listener writes.
 */
export function resolveNamespace(given: string | undefined, readNamespaceFile: () => string | undefined = defaultNamespaceFile): string | undefined {
  return given ?? (readNamespaceFile()?.trim() || undefined);
}

/** The problem line when {@link resolveNamespace} finds no namespace. */
export const NAMESPACE_MISSING_PROBLEM = `--namespace: not given and ${SERVICE_ACCOUNT_NAMESPACE_FILE} is not readable (set KUBE_PICO_CD_NAMESPACE when running outside a pod)`;

function defaultNamespaceFile(): string | undefined {
  try {
    return readFileSync(SERVICE_ACCOUNT_NAMESPACE_FILE, "utf8");
  } catch {
    return undefined;
  }
}

export function listenerHelpText(): string {
  return [
    "Usage: listener [options]",
    "       listener status [APP] [options]   (every app's current build, or one app's history; see listener status --help)",
    "",
    "Long-polls an SQS queue for kube-pico-cd bundles and applies each app's newest build to",
    "this cluster with kubectl server-side apply, recording each outcome in the app's ConfigMap.",
    "",
    "Options (flags win over environment variables):",
    ...optionsHelp(LISTENER_OPTIONS),
    "",
    "AWS credentials come from the AWS SDK's default chain (IRSA / EKS Pod Identity in a pod).",
    "HTTP: /healthz (alive), /readyz (SQS and the API server reached recently).",
    "Exit codes: 0 stopped (SIGTERM/SIGINT, or --once done); 1 invalid configuration, a queue that does",
    "not exist, or a kubeconfig that cannot be read (checked at start, --once included).",
  ].join("\n");
}
