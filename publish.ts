/**
 * publish: bundle a repository's Kubernetes manifests and send them to one or more SQS
 * queues, for the kube-pico-cd listener in each cluster to apply.
 *
 *   bun publish.ts k8s/ --queue deploy-prod
 *   deno run -A publish.ts k8s/ --queue https://sqs.eu-west-1.amazonaws.com/123456789012/deploy
 *
 * Runs under Bun, Deno and Node (with TypeScript type stripping). `--help` lists every option.
 */
import { appendFileSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { SQSClient, type SQSClientConfig } from "@aws-sdk/client-sqs";
import { z } from "zod";
import { resolveBuildInfo } from "./lib/publish/build-info.ts";
import { collectBundle, type Bundle } from "./lib/manifests/bundle.ts";
import { ConfigError, errorMessage, KubePicoCdError, MessageTooLargeError, QueueSendError } from "./lib/errors.ts";
import { encodeMessage, type BuildInfo, type EncodedMessage } from "./lib/wire/message.ts";
import { resultSucceeded, type ResultMessage } from "./lib/wire/result.ts";
import { waitForResults } from "./lib/sqs/result-waiter.ts";
import { generateSigningKeyPair, keygenText, loadSigningKey, signFields, SIGNING_KEY_ENV } from "./lib/wire/signature.ts";
import {
  DEFAULT_MESSAGE_GROUP_ID,
  fifoDeduplicationId,
  isFifoQueue,
  messageGroupIdProblem,
  parseQueueRef,
  resolveQueueUrl,
  sendBody,
  type QueueRef,
  type SentMessage,
} from "./lib/sqs/send.ts";

/** Exit codes, as documented in `--help`. */
export const EXIT_SENT = 0;
export const EXIT_INVALID = 1;
export const EXIT_SEND_FAILED = 2;
/** With --wait: a result said the deploy failed, was rejected, or is not healthy. */
export const EXIT_DEPLOY_FAILED = 3;
/** With --wait: some queue gave no result before the timeout. */
export const EXIT_TIMED_OUT = 4;

/** How long a bare --wait waits, in seconds. */
export const DEFAULT_WAIT_SECONDS = 900;
/** The longest --wait, in seconds (6 hours: GitHub's limit for a job). */
const MAX_WAIT_SECONDS = 21_600;

/** SQS's largest message size (1 MiB); queues default to 256 KiB. */
const SQS_MAX_MESSAGE_BYTES = 1_048_576;

interface OptionSpec {
  type: "string" | "boolean";
  multiple?: boolean;
  short?: string;
  /** Environment variables read when the flag is absent, in order. */
  env?: readonly string[];
  value?: string;
  /** The value may be left out (`--wait` or `--wait=TIMEOUT`); see {@link normalizeArgv}. */
  optionalValue?: boolean;
  /** As shown in --help. */
  defaultText: string;
  help: string;
}

/** Every option: the parser, the environment mapping and --help are all made from this table. */
const OPTIONS = {
  queue: {
    type: "string",
    multiple: true,
    short: "q",
    env: ["KUBE_PICO_CD_QUEUE", "KUBE_PICO_CD_DEPLOY_QUEUE_NAME"],
    value: "URL|NAME",
    defaultText: "none; required unless --dry-run",
    help: "Queue to send to, by URL or by name (resolved with GetQueueUrl). Repeat for several clusters; the variable takes a comma-separated list.",
  },
  target: {
    type: "string",
    env: ["KUBE_PICO_CD_TARGET"],
    value: "NAME",
    defaultText: "none",
    help: "Cluster or environment name written into the message.",
  },
  ignore: {
    type: "string",
    multiple: true,
    env: ["KUBE_PICO_CD_IGNORE"],
    value: "GLOB",
    defaultText: "none",
    help: "Skip files and directories matching the glob while walking directories (e.g. '*.tmpl.yaml', 'k8s/dev/**'). Repeatable; the variable takes a comma-separated list.",
  },
  "no-kustomize": {
    type: "boolean",
    env: ["KUBE_PICO_CD_NO_KUSTOMIZE"],
    defaultText: "false",
    help: "Do not render directories holding a kustomization.yaml with `kubectl kustomize`; read their files instead.",
  },
  kubectl: {
    type: "string",
    env: ["KUBE_PICO_CD_KUBECTL"],
    value: "PATH",
    defaultText: "kubectl",
    help: "The kubectl binary used for kustomize.",
  },
  "allow-empty": {
    type: "boolean",
    env: ["KUBE_PICO_CD_ALLOW_EMPTY"],
    defaultText: "false",
    help: "Publish even when no objects are found.",
  },
  "build-id": {
    type: "string",
    env: ["KUBE_PICO_CD_BUILD_ID"],
    value: "ID",
    defaultText: "<commit>-<run id>-<attempt> in GitHub Actions, else local-<timestamp>-<random>",
    help: "Name of the build.",
  },
  "build-timestamp-ms": {
    type: "string",
    env: ["KUBE_PICO_CD_BUILD_TIMESTAMP_MS"],
    value: "MS",
    defaultText: "now",
    help: "Build time in milliseconds since the epoch: the order in which clusters apply builds.",
  },
  commit: { type: "string", env: ["KUBE_PICO_CD_COMMIT"], value: "SHA", defaultText: "$GITHUB_SHA", help: "Commit built." },
  ref: { type: "string", env: ["KUBE_PICO_CD_REF"], value: "REF", defaultText: "$GITHUB_REF", help: "Git ref built." },
  repository: {
    type: "string",
    env: ["KUBE_PICO_CD_REPOSITORY"],
    value: "OWNER/NAME",
    defaultText: "$GITHUB_REPOSITORY",
    help: "Repository built.",
  },
  "run-id": { type: "string", env: ["KUBE_PICO_CD_RUN_ID"], value: "ID", defaultText: "$GITHUB_RUN_ID", help: "CI run id." },
  "run-attempt": {
    type: "string",
    env: ["KUBE_PICO_CD_RUN_ATTEMPT"],
    value: "N",
    defaultText: "$GITHUB_RUN_ATTEMPT",
    help: "CI run attempt.",
  },
  actor: { type: "string", env: ["KUBE_PICO_CD_ACTOR"], value: "NAME", defaultText: "$GITHUB_ACTOR", help: "Who started the build." },
  "build-url": {
    type: "string",
    env: ["KUBE_PICO_CD_BUILD_URL"],
    value: "URL",
    defaultText: "the GitHub Actions run page",
    help: "Link to the build.",
  },
  "max-message-bytes": {
    type: "string",
    env: ["KUBE_PICO_CD_MAX_MESSAGE_BYTES"],
    value: "BYTES",
    defaultText: "262144",
    help: "Fail when the encoded message is larger (the queue's MaximumMessageSize; at most 1048576).",
  },
  "message-group-id": {
    type: "string",
    env: ["KUBE_PICO_CD_MESSAGE_GROUP_ID"],
    value: "ID",
    defaultText: DEFAULT_MESSAGE_GROUP_ID,
    help: "MessageGroupId for FIFO queues (MessageDeduplicationId is derived from build id and digest).",
  },
  "endpoint-url": {
    type: "string",
    env: ["KUBE_PICO_CD_SQS_ENDPOINT", "AWS_ENDPOINT_URL_SQS"],
    value: "URL",
    defaultText: "the AWS endpoint of the region",
    help: "SQS endpoint, for local SQS servers such as ElasticMQ.",
  },
  region: {
    type: "string",
    env: ["KUBE_PICO_CD_AWS_REGION"],
    value: "REGION",
    defaultText: "the AWS SDK's (AWS_REGION, profile)",
    help: "AWS region. Credentials always come from the AWS SDK's default chain.",
  },
  "dry-run": {
    type: "boolean",
    env: ["KUBE_PICO_CD_DRY_RUN"],
    defaultText: "false",
    help: "Bundle, validate and print the summary; send nothing.",
  },
  "output-body": {
    type: "string",
    env: ["KUBE_PICO_CD_OUTPUT_BODY"],
    value: "FILE",
    defaultText: "none",
    help: "Also write the message body to FILE.",
  },
  "result-queue": {
    type: "string",
    env: ["KUBE_PICO_CD_RESULT_QUEUE"],
    value: "URL|NAME",
    defaultText: "none",
    help: "Queue the listeners send their results to (their KUBE_PICO_CD_RESULT_QUEUE), by URL or by name; read by --wait.",
  },
  wait: {
    type: "string",
    env: ["KUBE_PICO_CD_WAIT"],
    value: "TIMEOUT",
    optionalValue: true,
    defaultText: `off; a bare --wait waits ${DEFAULT_WAIT_SECONDS} s`,
    help:
      "After sending, wait for each queue's result on --result-queue and exit with it (codes 3 and 4 below). " +
      "TIMEOUT is seconds (300) or a number ending in s, m or h (90s, 10m); attach it with '=' (--wait=10m), as a " +
      "bare --wait takes no value and the next argument stays a path. The variable takes a TIMEOUT, true or false. Ignored with --dry-run.",
  },
  json: { type: "boolean", env: ["KUBE_PICO_CD_JSON"], defaultText: "false", help: "Print the result as one JSON object (with --wait, including the deploy results)." },
  "signing-key-file": {
    type: "string",
    env: ["KUBE_PICO_CD_SIGNING_KEY_FILE"],
    value: "PATH",
    defaultText: `the PEM text in ${SIGNING_KEY_ENV}, else unsigned`,
    help: `Sign the bundle with this Ed25519 private key (PEM). In CI, rather put the PEM itself in ${SIGNING_KEY_ENV} from a secret.`,
  },
  keygen: {
    type: "boolean",
    defaultText: "false",
    help: "Generate an Ed25519 signing key pair, print both halves with where to store each, and exit.",
  },
  help: { type: "boolean", short: "h", defaultText: "false", help: "Show this help." },
} as const satisfies Record<string, OptionSpec>;

type OptionName = keyof typeof OPTIONS;

/** The table as node:util parseArgs wants it. */
const PARSE_ARGS_OPTIONS = Object.fromEntries(
  (Object.entries(OPTIONS) as [OptionName, OptionSpec][]).map(([name, spec]) => [
    name,
    { type: spec.type, ...(spec.multiple ? { multiple: true } : {}), ...(spec.short ? { short: spec.short } : {}) },
  ]),
) as { [K in OptionName]: { type: (typeof OPTIONS)[K]["type"]; multiple?: boolean; short?: string } };

/** Manifest paths from the environment when none are given as arguments. */
const PATHS_ENV = "KUBE_PICO_CD_PATHS";

/** The help text: every option with its variables and default. */
export function helpText(): string {
  const lines = [
    "Usage: publish [options] <path>...",
    "",
    "Bundle the Kubernetes manifests under <path>... (files or directories: *.yaml, *.yml, *.json;",
    "directories with a kustomization.yaml are rendered with kubectl kustomize), validate them,",
    "and send them to SQS for kube-pico-cd's listener. Paths may also come from",
    `${PATHS_ENV} (comma-separated).`,
    "",
    "Options (flags win over environment variables):",
  ];
  for (const [name, spec] of Object.entries(OPTIONS) as [OptionName, OptionSpec][]) {
    const value = spec.value === undefined ? "" : spec.optionalValue ? `[=${spec.value}]` : ` ${spec.value}`;
    const flag = `${spec.short ? `-${spec.short}, ` : "    "}--${name}${value}`;
    lines.push(`  ${flag}`);
    lines.push(`        ${spec.help}`);
    const env = spec.env && spec.env.length > 0 ? `env ${spec.env.join(", ")}; ` : "";
    lines.push(`        (${env}default: ${spec.defaultText})`);
  }
  lines.push(
    "",
    "AWS credentials and region come from the AWS SDK's default chain (environment, profile,",
    "web identity such as GitHub OIDC).",
    "",
    "Exit codes:",
    "  0  sent (or, with --dry-run, valid)",
    "  1  invalid input or usage: bad option, invalid manifests, message too large, kustomize failed",
    "  2  sending failed: a queue could not be resolved or did not accept the message",
    "  3  (--wait) deploy failed: a result was failed or rejected, or the workloads were Degraded or",
    "     timed out; the reason is printed",
    "  4  (--wait) timed out waiting: some queue gave no result in time (is its listener running, with",
    "     KUBE_PICO_CD_RESULT_QUEUE set to the result queue?)",
  );
  return lines.join("\n");
}

const ENV_TRUE = new Set(["1", "true", "yes", "on"]);
const ENV_FALSE = new Set(["", "0", "false", "no", "off"]);

/** The configuration of one publish run, after validation. */
export interface PublishConfig {
  paths: string[];
  queues: QueueRef[];
  target?: string;
  ignore: string[];
  kustomize: boolean;
  kubectl: string;
  allowEmpty: boolean;
  build: {
    id?: string;
    timestampMs?: number;
    commit?: string;
    ref?: string;
    repository?: string;
    runId?: string;
    runAttempt?: string;
    actor?: string;
    url?: string;
  };
  maxMessageBytes: number;
  messageGroupId: string;
  endpointUrl?: string;
  region?: string;
  dryRun: boolean;
  outputBody?: string;
  json: boolean;
  signingKeyFile?: { path: string; origin: string };
  /** The PEM text of KUBE_PICO_CD_SIGNING_KEY, used when there is no file. */
  signingKeyPem?: string;
  keygen: boolean;
  help: boolean;
  /** Where the listeners send results (--result-queue). */
  resultQueue?: QueueRef;
  /** Wait this long for the results after sending (--wait); absent: do not wait. */
  waitTimeoutMs?: number;
}

/**
 * node:util parseArgs has no options with an optional value, so before parsing a bare
 * `--wait` becomes `--wait=<default>`; `--wait=TIMEOUT` is left as it is. The value of an
 * option that takes one, and everything after `--`, is never touched.
 */
export function normalizeArgv(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let index = 0; index < argv.length; index++) {
    const arg = argv[index]!;
    out.push(arg === "--wait" ? `--wait=${DEFAULT_WAIT_SECONDS}` : arg);
    if (arg === "--") {
      out.push(...argv.slice(index + 1));
      break;
    }
    if (takesSeparateValue(arg) && index + 1 < argv.length) out.push(argv[++index]!);
  }
  return out;
}

/** True for `--name` or `-x` of an option whose value is the next argument. */
function takesSeparateValue(arg: string): boolean {
  const spec = (Object.entries(OPTIONS) as [OptionName, OptionSpec][]).find(([name, candidate]) => arg === `--${name}` || (candidate.short !== undefined && arg === `-${candidate.short}`))?.[1];
  return spec !== undefined && spec.type === "string" && spec.optionalValue !== true;
}

/**
 * The --wait timeout in seconds, from `300`, `90s`, `10m` or `1h`; from the variable also
 * `true` (the default) and `false` (undefined: no wait). Returns a problem phrase when it is
 * none of these.
 */
export function parseWaitTimeout(text: string, fromVariable: boolean): { seconds: number | undefined } | { problem: string } {
  const trimmed = text.trim().toLowerCase();
  if (fromVariable && ["true", "yes", "on"].includes(trimmed)) return { seconds: DEFAULT_WAIT_SECONDS };
  if (fromVariable && ["false", "no", "off"].includes(trimmed)) return { seconds: undefined };
  const match = /^(\d{1,9})([smh]?)$/.exec(trimmed);
  if (match === null) {
    return { problem: `must be a timeout such as 300, 90s or 10m (seconds, or a number ending in s, m or h): current value is ${JSON.stringify(text)}` };
  }
  const seconds = Number(match[1]) * (match[2] === "h" ? 3600 : match[2] === "m" ? 60 : 1);
  if (seconds < 1) return { problem: `must be at least 1 second: current value is ${JSON.stringify(text)}` };
  if (seconds > MAX_WAIT_SECONDS) return { problem: `must be at most 6h (${MAX_WAIT_SECONDS} seconds): current value is ${JSON.stringify(text)}` };
  return { seconds };
}

const optionalText = z.string().min(1, "must not be empty").optional();
const flagBoolean = z.boolean();

const configSchema = z
  .object({
    paths: z.array(z.string().min(1, "must not be empty")),
    queue: z.array(
      z.string().transform((value, context) => {
        const parsed = parseQueueRef(value);
        if ("problem" in parsed) {
          context.addIssue({ code: "custom", message: parsed.problem });
          return z.NEVER;
        }
        return parsed;
      }),
    ),
    target: optionalText,
    ignore: z.array(z.string().min(1, "must not be empty")),
    "no-kustomize": flagBoolean,
    kubectl: z.string().min(1, "must not be empty"),
    "allow-empty": flagBoolean,
    "build-id": optionalText,
    "build-timestamp-ms": z
      .string()
      .regex(/^\d{1,15}$/, "must be a whole number of milliseconds since the epoch")
      .transform(Number)
      .optional(),
    commit: optionalText,
    ref: optionalText,
    repository: optionalText,
    "run-id": optionalText,
    "run-attempt": optionalText,
    actor: optionalText,
    "build-url": optionalText,
    "max-message-bytes": z
      .string()
      .regex(/^\d+$/, "must be a whole number of bytes")
      .transform(Number)
      .pipe(z.int().min(1024, "must be at least 1024").max(SQS_MAX_MESSAGE_BYTES, `must be at most ${SQS_MAX_MESSAGE_BYTES} (SQS's maximum)`)),
    "message-group-id": z.string().superRefine((value, context) => {
      const problem = messageGroupIdProblem(value);
      if (problem !== undefined) context.addIssue({ code: "custom", message: problem });
    }),
    "endpoint-url": z.url({ protocol: /^https?$/, error: "must be an http or https URL" }).optional(),
    region: z.string().regex(/^[a-z0-9-]+$/, "must look like eu-west-1").optional(),
    "dry-run": flagBoolean,
    "output-body": optionalText,
    "result-queue": z
      .string()
      .transform((value, context) => {
        const parsed = parseQueueRef(value);
        if ("problem" in parsed) {
          context.addIssue({ code: "custom", message: parsed.problem });
          return z.NEVER;
        }
        return parsed;
      })
      .optional(),
    wait: z.string().optional(),
    json: flagBoolean,
    "signing-key-file": optionalText,
    keygen: flagBoolean,
    help: flagBoolean,
  })
  .strict();

type RawConfig = Record<string, string | boolean | string[]>;

/**
 * Parses the configuration from `argv` (arguments after the script) and `env`: a flag wins
 * over its variables. Validated with one zod schema; every problem names the flag or
 * variable it came from.
 *
 * @throws {ConfigError} one line per problem.
 */
export function parseConfig(argv: readonly string[], env: Readonly<Record<string, string | undefined>>): PublishConfig {
  let parsed: { values: Record<string, string | boolean | (string | boolean)[] | undefined>; positionals: string[] };
  try {
    parsed = parseArgs({ args: normalizeArgv(argv), options: PARSE_ARGS_OPTIONS, allowPositionals: true, strict: true });
  } catch (error) {
    throw new ConfigError([argumentProblem(error)]);
  }
  const problems: string[] = [];
  const raw: RawConfig = {};
  const origin: Record<string, string> = {};
  const values = parsed.values as Record<string, string | boolean | string[] | undefined>;
  for (const [name, spec] of Object.entries(OPTIONS) as [OptionName, OptionSpec][]) {
    const given = values[name];
    if (given !== undefined) {
      raw[name] = given;
      origin[name] = `--${name}`;
      continue;
    }
    const variable = spec.env?.find((candidate) => env[candidate] !== undefined && env[candidate] !== "");
    const text = variable === undefined ? undefined : env[variable];
    if (variable !== undefined && text !== undefined) {
      origin[name] = variable;
      if (spec.type === "boolean") {
        const lower = text.trim().toLowerCase();
        if (ENV_TRUE.has(lower)) raw[name] = true;
        else if (ENV_FALSE.has(lower)) raw[name] = false;
        else {
          problems.push(`${variable}: "${text}" is not a boolean (use true or false)`);
          raw[name] = false;
        }
      } else if (spec.multiple) {
        raw[name] = splitList(text);
      } else {
        raw[name] = text;
      }
      continue;
    }
    if (spec.type === "boolean") raw[name] = false;
    else if (spec.multiple) raw[name] = [];
  }
  raw["max-message-bytes"] ??= "262144";
  raw["message-group-id"] ??= DEFAULT_MESSAGE_GROUP_ID;
  raw["kubectl"] ??= "kubectl";
  const pathsFromEnv = env[PATHS_ENV];
  if (parsed.positionals.length > 0) {
    raw["paths"] = parsed.positionals;
    origin["paths"] = "<path>";
  } else {
    raw["paths"] = pathsFromEnv ? splitList(pathsFromEnv) : [];
    origin["paths"] = PATHS_ENV;
  }

  const result = configSchema.safeParse(raw);
  if (!result.success) {
    for (const issue of result.error.issues) {
      const key = String(issue.path[0] ?? "");
      problems.push(`${origin[key] ?? `--${key}`}: ${issue.message}`);
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
  const data = result.data!;
  if (data.help || data.keygen) return toConfig(data);
  if (data.paths.length === 0) {
    problems.push(`no manifest paths given: pass files or directories as arguments, or set ${PATHS_ENV}`);
  }
  if (data.queue.length === 0 && !data["dry-run"]) {
    problems.push("--queue: no queue given (or set KUBE_PICO_CD_QUEUE); pass --dry-run to bundle without sending");
  }
  let waitTimeoutMs: number | undefined;
  if (data.wait !== undefined && !data["dry-run"]) {
    const waitOrigin = origin["wait"] ?? "--wait";
    const timeout = parseWaitTimeout(data.wait, waitOrigin !== "--wait");
    if ("problem" in timeout) problems.push(`${waitOrigin}: ${timeout.problem}`);
    else if (timeout.seconds !== undefined) {
      waitTimeoutMs = timeout.seconds * 1000;
      if (data["result-queue"] === undefined) {
        problems.push(
          `${waitOrigin}: no result queue to wait on: pass --result-queue URL|NAME (or set KUBE_PICO_CD_RESULT_QUEUE), the queue the listeners send results to`,
        );
      }
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
  const wait = waitTimeoutMs === undefined ? {} : { waitTimeoutMs };
  const signingKeyFile = data["signing-key-file"] === undefined ? {} : { signingKeyFile: { path: data["signing-key-file"], origin: origin["signing-key-file"] ?? "--signing-key-file" } };
  const signingKeyPem = env[SIGNING_KEY_ENV] ? { signingKeyPem: env[SIGNING_KEY_ENV] } : {};
  return { ...toConfig(data), ...wait, ...signingKeyFile, ...signingKeyPem };
}

function splitList(text: string): string[] {
  return text
    .split(",")
    .map((item) => item.trim())
    .filter((item) => item !== "");
}

/** One line for a node:util parseArgs failure (unknown option, missing value, …). */
function argumentProblem(error: unknown): string {
  const message = errorMessage(error);
  const code = typeof error === "object" && error !== null && "code" in error ? String(error.code) : "";
  const quoted = /'([^']+)'/.exec(message)?.[1] ?? "";
  const option = /--[\w-]+/.exec(quoted)?.[0] ?? quoted.split(" ")[0];
  if (code === "ERR_PARSE_ARGS_UNKNOWN_OPTION" && option) return `${option}: unknown option (see --help)`;
  if (code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE" && option) return `${option}: ${message.replace(/^Option '[^']+' /, "")}`;
  return message.split("\n")[0] ?? message;
}

function toConfig(data: z.infer<typeof configSchema>): PublishConfig {
  const build: PublishConfig["build"] = {};
  const buildFields = {
    id: data["build-id"],
    timestampMs: data["build-timestamp-ms"],
    commit: data.commit,
    ref: data.ref,
    repository: data.repository,
    runId: data["run-id"],
    runAttempt: data["run-attempt"],
    actor: data.actor,
    url: data["build-url"],
  };
  for (const [key, value] of Object.entries(buildFields)) {
    if (value !== undefined) (build as Record<string, unknown>)[key] = value;
  }
  return {
    paths: data.paths,
    queues: data.queue,
    ...(data.target === undefined ? {} : { target: data.target }),
    ignore: data.ignore,
    kustomize: !data["no-kustomize"],
    kubectl: data.kubectl,
    allowEmpty: data["allow-empty"],
    build,
    maxMessageBytes: data["max-message-bytes"],
    messageGroupId: data["message-group-id"],
    ...(data["endpoint-url"] === undefined ? {} : { endpointUrl: data["endpoint-url"] }),
    ...(data.region === undefined ? {} : { region: data.region }),
    dryRun: data["dry-run"],
    ...(data["output-body"] === undefined ? {} : { outputBody: data["output-body"] }),
    json: data.json,
    ...(data["result-queue"] === undefined ? {} : { resultQueue: data["result-queue"] }),
    keygen: data.keygen,
    help: data.help,
  };
}

/** Where main reads and writes; tests hand in their own. */
export interface PublishIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  /** Relative paths are resolved against it. Default `process.cwd()`. */
  cwd: string;
  /** The publish time, in milliseconds since the epoch. Default `Date.now`. */
  now: () => number;
  signal?: AbortSignal;
  /** Makes the SQS client. Default `new SQSClient(config)`. */
  createSqsClient: (config: SQSClientConfig) => SQSClient;
}

const defaultIo: PublishIo = {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
  cwd: process.cwd(),
  now: Date.now,
  createSqsClient: (config) => new SQSClient(config),
};

/** Objects counted by kind and namespace, sorted by kind then namespace (`""` for none). */
export function countByKindAndNamespace(bundle: Pick<Bundle, "objects">): { kind: string; namespace: string; count: number }[] {
  const counts = new Map<string, { kind: string; namespace: string; count: number }>();
  for (const object of bundle.objects) {
    const namespace = object.metadata.namespace ?? "";
    const key = `${object.kind}\u0000${namespace}`;
    const entry = counts.get(key) ?? { kind: object.kind, namespace, count: 0 };
    entry.count++;
    counts.set(key, entry);
  }
  return [...counts.values()].sort((a, b) =>
    a.kind === b.kind ? (a.namespace < b.namespace ? -1 : a.namespace > b.namespace ? 1 : 0) : a.kind < b.kind ? -1 : 1,
  );
}

/** What a run did: printed as the human summary, as JSON, and into GITHUB_STEP_SUMMARY. */
export interface PublishResult {
  dryRun: boolean;
  build: BuildInfo;
  target?: string;
  digest: string;
  objects: number;
  rawBytes: number;
  compressedBytes: number;
  bodyBytes: number;
  maxMessageBytes: number;
  byKindAndNamespace: { kind: string; namespace: string; count: number }[];
  inputs: string[];
  /** Sent messages (empty for a dry run). */
  sent: (SentMessage & { queue: string })[];
  /** Queues as given, for a dry run. */
  queues: string[];
  /** Key id of the signing key, when the bundle is signed. */
  signedBy?: string;
  /** With --wait: the results. */
  wait?: WaitReport;
}

function table(rows: string[][]): string[] {
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
  return rows.map((row) => row.map((cell, column) => cell.padEnd(widths[column]!)).join("  ").trimEnd());
}

/** The human summary. */
export function formatSummary(result: PublishResult): string {
  const { build } = result;
  const when = new Date(build.timestampMs).toISOString();
  const lines = [
    result.dryRun
      ? `Dry run: build ${build.id} (${when}) is valid; nothing was sent`
      : `Published build ${build.id} (${when}) to ${result.sent.length} queue${result.sent.length === 1 ? "" : "s"}`,
  ];
  const facts: string[][] = [];
  if (result.target !== undefined) facts.push(["target", result.target]);
  facts.push(["signature", result.signedBy === undefined ? "none (unsigned)" : `ed25519, key id ${result.signedBy}`]);
  if (build.commit !== undefined) facts.push(["commit", build.commit]);
  if (build.url !== undefined) facts.push(["run", build.url]);
  facts.push(["objects", `${result.objects} from ${result.inputs.length} input${result.inputs.length === 1 ? "" : "s"}`]);
  facts.push(["digest", `sha256:${result.digest}`]);
  facts.push([
    "size",
    `${result.rawBytes} bytes raw, ${result.compressedBytes} gzipped, message ${result.bodyBytes} of ${result.maxMessageBytes} bytes allowed`,
  ]);
  for (const sent of result.sent) {
    facts.push(["queue", `${sent.queueUrl} (message id ${sent.messageId})`]);
  }
  if (result.dryRun) for (const queue of result.queues) facts.push(["would send to", queue]);
  lines.push(...table(facts).map((line) => `  ${line}`));
  if (result.byKindAndNamespace.length > 0) {
    lines.push("");
    const rows = [["KIND", "NAMESPACE", "OBJECTS"]];
    for (const entry of result.byKindAndNamespace) rows.push([entry.kind, entry.namespace || "-", String(entry.count)]);
    lines.push(...table(rows).map((line) => `  ${line}`));
  }
  return `${lines.join("\n")}\n`;
}

function markdownCell(text: string): string {
  return text.replace(/\\/g, "\\\\").replace(/\|/g, "\\|").replace(/\n/g, " ");
}

/** The Markdown appended to `GITHUB_STEP_SUMMARY`. */
export function formatStepSummary(result: PublishResult): string {
  const { build } = result;
  const lines = [
    `### kube-pico-cd: ${result.dryRun ? "dry run of" : "published"} build \`${markdownCell(build.id)}\``,
    "",
    "| Target | Timestamp | Objects | Raw bytes | Gzipped bytes | Message bytes | Digest |",
    "|---|---|---:|---:|---:|---:|---|",
    `| ${markdownCell(result.target ?? "-")} | ${new Date(build.timestampMs).toISOString()} (${build.timestampMs}) | ${result.objects} | ${result.rawBytes} | ${result.compressedBytes} | ${result.bodyBytes} | \`${result.digest}\` |`,
    "",
    "| Kind | Namespace | Objects |",
    "|---|---|---:|",
    ...result.byKindAndNamespace.map(
      (entry) => `| ${markdownCell(entry.kind)} | ${markdownCell(entry.namespace || "-")} | ${entry.count} |`,
    ),
  ];
  if (result.sent.length > 0) {
    lines.push("", "| Queue | Message id |", "|---|---|");
    for (const sent of result.sent) lines.push(`| ${markdownCell(sent.queueUrl)} | \`${markdownCell(sent.messageId)}\` |`);
  }
  return `${lines.join("\n")}\n\n`;
}

function tooLarge(encoded: EncodedMessage, limit: number): MessageTooLargeError {
  return new MessageTooLargeError(
    `Cannot publish: the encoded message is ${encoded.bodyBytes} bytes, over the limit of ${limit} bytes ` +
      `(--max-message-bytes; ${encoded.rawBytes} bytes of manifests gzip to ${encoded.compressedBytes}). ` +
      (limit < SQS_MAX_MESSAGE_BYTES
        ? `Raise the queue's limit (aws sqs set-queue-attributes --queue-url URL --attributes MaximumMessageSize=${SQS_MAX_MESSAGE_BYTES}) and pass --max-message-bytes ${SQS_MAX_MESSAGE_BYTES}, or publish fewer manifests.`
        : "This is SQS's maximum: publish fewer manifests per message."),
    { bodyBytes: encoded.bodyBytes, limitBytes: limit },
  );
}

/**
 * Runs publish with `argv` (the arguments after the script name) and `env`; returns the
 * exit code (0 sent, 1 invalid input or usage, 2 sending failed). Never throws.
 */
export async function main(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
  io: Partial<PublishIo> = {},
): Promise<number> {
  const { stderr } = { ...defaultIo, ...io };
  try {
    return await publish(argv, env, { ...defaultIo, ...io });
  } catch (error) {
    // Known errors are one line (ConfigError and BundleError list their problems below it):
    // sending failures exit 2, everything else (usage, manifests, size, kustomize) exits 1.
    if (error instanceof KubePicoCdError) {
      stderr(`publish: ${error.message}\n`);
      return error instanceof QueueSendError ? EXIT_SEND_FAILED : EXIT_INVALID;
    }
    stderr(`publish: unexpected error (a bug; please report it):\n${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    return EXIT_INVALID;
  }
}

async function publish(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
  io: PublishIo,
): Promise<number> {
  const config = parseConfig(argv, env);
  if (config.help) {
    io.stdout(`${helpText()}\n`);
    return EXIT_SENT;
  }
  if (config.keygen) {
    io.stdout(keygenText(generateSigningKeyPair()));
    return EXIT_SENT;
  }
  const signingKey = loadSigningKey({
    cwd: io.cwd,
    ...(config.signingKeyFile === undefined ? {} : { file: config.signingKeyFile.path, fileOrigin: config.signingKeyFile.origin }),
    ...(config.signingKeyPem === undefined ? {} : { pem: config.signingKeyPem }),
  });
  if (signingKey !== undefined && "problem" in signingKey) throw new ConfigError([signingKey.problem]);
  const build = resolveBuildInfo({ overrides: config.build, env, nowMs: io.now() });
  const bundle = await collectBundle(config.paths, {
    cwd: io.cwd,
    ignore: config.ignore,
    kustomize: config.kustomize,
    kubectl: config.kubectl,
    allowEmpty: config.allowEmpty,
    ...(io.signal ? { signal: io.signal } : {}),
  });
  const encoded = encodeMessage({
    build,
    objects: bundle.objects,
    ...(config.target === undefined ? {} : { target: config.target }),
    ...(signingKey === undefined ? {} : { sign: (fields) => signFields(fields, signingKey) }),
  });
  if (encoded.bodyBytes > config.maxMessageBytes) throw tooLarge(encoded, config.maxMessageBytes);
  if (config.outputBody !== undefined) {
    const file = resolve(io.cwd, config.outputBody);
    try {
      writeFileSync(file, encoded.body);
    } catch (error) {
      throw new ConfigError([`--output-body: cannot write ${config.outputBody}: ${errorMessage(error)}`]);
    }
  }

  const result: PublishResult = {
    dryRun: config.dryRun,
    build,
    ...(config.target === undefined ? {} : { target: config.target }),
    digest: encoded.digest,
    objects: encoded.objectCount,
    rawBytes: encoded.rawBytes,
    compressedBytes: encoded.compressedBytes,
    bodyBytes: encoded.bodyBytes,
    maxMessageBytes: config.maxMessageBytes,
    byKindAndNamespace: countByKindAndNamespace(bundle),
    inputs: bundle.inputs,
    sent: [],
    queues: config.queues.map((queue) => queue.url ?? queue.name),
    ...(signingKey === undefined ? {} : { signedBy: signingKey.keyId }),
  };

  const appendStepSummary = (markdown: string) => {
    const stepSummary = env["GITHUB_STEP_SUMMARY"];
    if (!stepSummary) return;
    try {
      appendFileSync(stepSummary, markdown);
    } catch (error) {
      io.stderr(
        `publish: warning: cannot append to GITHUB_STEP_SUMMARY (${stepSummary}): ${errorMessage(error)}\n`,
      );
    }
  };

  if (config.dryRun) {
    io.stdout(config.json ? `${JSON.stringify(result)}\n` : formatSummary(result));
    appendStepSummary(formatStepSummary(result));
    return EXIT_SENT;
  }
  const client = io.createSqsClient({
    ...(config.endpointUrl === undefined ? {} : { endpoint: config.endpointUrl }),
    ...(config.region === undefined ? {} : { region: config.region }),
  });
  try {
    const signalOption = io.signal ? { signal: io.signal } : {};
    // Resolved before anything is sent, like the deploy queues: a typo sends nothing.
    const resultQueueUrl =
      config.waitTimeoutMs === undefined || config.resultQueue === undefined ? undefined : await resolveQueueUrl(client, config.resultQueue, signalOption);
    await send(client, config, build, encoded, result, io.signal);
    if (!config.json) io.stdout(formatSummary(result));
    appendStepSummary(formatStepSummary(result));
    if (resultQueueUrl === undefined || config.waitTimeoutMs === undefined) {
      if (config.json) io.stdout(`${JSON.stringify(result)}\n`);
      return EXIT_SENT;
    }
    const report = await waitForDeploy(client, resultQueueUrl, config.waitTimeoutMs, result, io, config.json);
    result.wait = report;
    if (config.json) io.stdout(`${JSON.stringify(result)}\n`);
    appendStepSummary(formatResultsStepSummary(report));
    return report.exitCode;
  } finally {
    client.destroy();
  }
}

/** What --wait found: printed, in the JSON output and in the job summary. */
export interface WaitReport {
  resultQueueUrl: string;
  timeoutSeconds: number;
  /** In the order they arrived. */
  results: { queue: string; queueUrl: string; messageId: string; receivedAfterMs: number; result: ResultMessage }[];
  /** Queues without a result when the time ran out. */
  missing: { queue: string; queueUrl: string; messageId: string }[];
  exitCode: number;
}

/**
 * The exit code of a --wait: {@link EXIT_DEPLOY_FAILED} when any result is not a success
 * (lib/wire/result.ts `resultSucceeded`), else {@link EXIT_TIMED_OUT} when a queue gave no result,
 * else {@link EXIT_SENT}.
 */
export function waitExitCode(results: readonly Pick<ResultMessage, "result" | "health">[], missing: number): number {
  if (results.some((result) => !resultSucceeded(result))) return EXIT_DEPLOY_FAILED;
  return missing > 0 ? EXIT_TIMED_OUT : EXIT_SENT;
}

/** Waits for the result of every sent message, printing each as it arrives and the verdict. */
async function waitForDeploy(
  client: SQSClient,
  resultQueueUrl: string,
  timeoutMs: number,
  published: PublishResult,
  io: PublishIo,
  json: boolean,
): Promise<WaitReport> {
  const timeoutSeconds = Math.round(timeoutMs / 1000);
  const sentAt = Date.now();
  if (!json) io.stdout(`Waiting up to ${formatDuration(timeoutMs)} for the result${published.sent.length === 1 ? "" : "s"} on ${resultQueueUrl}\n`);
  const report: WaitReport = { resultQueueUrl, timeoutSeconds, results: [], missing: [], exitCode: EXIT_SENT };
  const outcome = await waitForResults({
    client,
    resultQueueUrl,
    awaited: published.sent.map((sent) => ({ queue: sent.queue, queueUrl: sent.queueUrl, messageId: sent.messageId })),
    timeoutMs,
    ...(io.signal ? { signal: io.signal } : {}),
    onWarning: (text) => io.stderr(`publish: warning: ${text}\n`),
    onResult: ({ sent, result }) => {
      const entry = { queue: sent.queue, queueUrl: sent.queueUrl, messageId: sent.messageId, receivedAfterMs: Date.now() - sentAt, result };
      report.results.push(entry);
      if (!json) io.stdout(formatResult(entry));
    },
  });
  report.missing = outcome.missing.map((sent) => ({ queue: sent.queue, queueUrl: sent.queueUrl, messageId: sent.messageId }));
  report.exitCode = waitExitCode(report.results.map((entry) => entry.result), report.missing.length);
  for (const entry of report.results) {
    if (!resultSucceeded(entry.result)) io.stderr(`publish: deploy failed on ${entry.queueUrl}: ${verdictText(entry.result)}\n`);
  }
  if (report.missing.length > 0) {
    io.stderr(
      `publish: timed out waiting ${formatDuration(timeoutMs)} for the result from ${report.missing.map((m) => m.queueUrl).join(", ")}; ` +
        `check that the listener of ${report.missing.length === 1 ? "that queue" : "each"} runs and has KUBE_PICO_CD_RESULT_QUEUE set to ${resultQueueUrl}\n`,
    );
  }
  if (report.exitCode === EXIT_SENT && !json) {
    const superseded = report.results.filter((entry) => entry.result.result === "superseded").length;
    io.stdout(
      `Deploy succeeded on ${report.results.length} queue${report.results.length === 1 ? "" : "s"}` +
        (superseded > 0 ? ` (${superseded} superseded: a newer build replaced this one there)` : "") +
        "\n",
    );
  }
  return report;
}

/** "applied, Healthy: applied 3 objects, pruned 0" and the like (the message names an unhealthy object). */
function verdictText(result: ResultMessage): string {
  return `${result.result}${result.health === undefined ? "" : `, ${result.health.status}`}: ${result.message}`;
}

/** 850 ms, 1.2 s, 4 min 10 s. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${Number((ms / 1000).toFixed(1))} s`;
  const seconds = Math.round(ms / 1000);
  return seconds % 60 === 0 ? `${seconds / 60} min` : `${Math.floor(seconds / 60)} min ${seconds % 60} s`;
}

function durationsText(result: ResultMessage): string {
  const { pickupMs, applyMs, healthMs } = result.durations;
  const parts: string[] = [];
  if (pickupMs !== undefined) parts.push(`pickup ${formatDuration(pickupMs)}`);
  if (applyMs !== undefined) parts.push(`apply ${formatDuration(applyMs)}`);
  if (healthMs !== undefined) parts.push(`health ${formatDuration(healthMs)}`);
  return parts.join(", ");
}

/** One result, as printed when it arrives. */
export function formatResult(entry: WaitReport["results"][number]): string {
  const { result } = entry;
  const lines = [`Result from ${entry.queueUrl} after ${formatDuration(entry.receivedAfterMs)}: ${verdictText(result)}`];
  const facts: string[][] = [["listener", `namespace ${result.namespace}, queue ${result.queue}${result.target === undefined ? "" : `, target ${result.target}`}`]];
  const durations = durationsText(result);
  if (durations !== "") facts.push(["took", durations]);
  if (result.result === "failed") {
    facts.push([
      "retry",
      result.willRetry === false
        ? `attempt ${result.receiveCount ?? 1} failed and was the last: the message goes to the queue's dead-letter queue`
        : `attempt ${result.receiveCount ?? 1} failed; the listener retries it until the queue's dead-letter queue takes it`,
    ]);
  }
  if (result.result === "superseded") facts.push(["note", "a newer build replaced this one; nothing left to do"]);
  lines.push(...table(facts).map((line) => `  ${line}`));
  return `${lines.join("\n")}\n`;
}

/** The Markdown of the results appended to `GITHUB_STEP_SUMMARY`. */
export function formatResultsStepSummary(report: WaitReport): string {
  const verdict =
    report.exitCode === EXIT_SENT ? "deploy succeeded" : report.exitCode === EXIT_DEPLOY_FAILED ? "deploy failed" : "timed out waiting";
  const lines = [
    `#### kube-pico-cd: ${verdict}`,
    "",
    "| Queue | Namespace | Result | Health | Message | Pickup | Apply | Health wait |",
    "|---|---|---|---|---|---:|---:|---:|",
  ];
  const ms = (value: number | undefined) => (value === undefined ? "-" : formatDuration(value));
  for (const { queueUrl, result } of report.results) {
    const health = result.health === undefined ? "-" : `${result.health.status}${result.health.object ? ` (${result.health.object})` : ""}`;
    lines.push(
      `| ${markdownCell(queueUrl)} | ${markdownCell(result.namespace)} | ${result.result} | ${markdownCell(health)} | ${markdownCell(result.message)} | ${ms(result.durations.pickupMs)} | ${ms(result.durations.applyMs)} | ${ms(result.durations.healthMs)} |`,
    );
  }
  for (const missing of report.missing) {
    lines.push(`| ${markdownCell(missing.queueUrl)} | - | no result within ${formatDuration(report.timeoutSeconds * 1000)} | - | - | - | - | - |`);
  }
  return `${lines.join("\n")}\n\n`;
}

/** Resolves every queue first (so a typo sends nothing), then sends to each in order. */
async function send(
  client: SQSClient,
  config: PublishConfig,
  build: BuildInfo,
  encoded: EncodedMessage,
  result: PublishResult,
  signal: AbortSignal | undefined,
): Promise<void> {
  const options = signal ? { signal } : {};
  const urls: string[] = [];
  for (const queue of config.queues) urls.push(await resolveQueueUrl(client, queue, options));
  for (const [index, queue] of config.queues.entries()) {
    const url = urls[index]!;
    const fifo = isFifoQueue(queue)
      ? { messageGroupId: config.messageGroupId, messageDeduplicationId: fifoDeduplicationId(build.id, encoded.digest) }
      : undefined;
    try {
      const sent = await sendBody(client, url, encoded.body, { ...options, ...(fifo ? { fifo } : {}) });
      result.sent.push({ queue: queue.url ?? queue.name, ...sent });
    } catch (error) {
      if (error instanceof QueueSendError && result.sent.length > 0) {
        const done = result.sent.map((sent) => `${sent.queueUrl} (message id ${sent.messageId})`).join(", ");
        throw new QueueSendError(`${error.message}; already sent to ${done}`, error.queue, { cause: error });
      }
      throw error;
    }
  }
}

/** True when this module is the program (Bun and Deno set import.meta.main; Node before 24 needs the fallback). */
function isMain(): boolean {
  const meta = import.meta as ImportMeta & { main?: boolean };
  if (typeof meta.main === "boolean") return meta.main;
  const script = process.argv[1];
  return script !== undefined && resolve(script) === fileURLToPath(import.meta.url);
}

if (isMain()) {
  const controller = new AbortController();
  const abort = () => controller.abort(new Error("interrupted"));
  process.once("SIGTERM", abort);
  process.once("SIGINT", abort);
  process.exitCode = await main(process.argv.slice(2), process.env, { signal: controller.signal });
  process.off("SIGTERM", abort);
  process.off("SIGINT", abort);
}
