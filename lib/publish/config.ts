/**
 * publish's configuration: flags and KUBE_PICO_CD_* variables (lib/cli-options.ts gathers
 * them), validated once by one zod schema. A bad setting stops publish before it does any
 * work, with one line per problem naming the flag or variable.
 */
import { z } from "zod";
import { envBoolean, gatherOptions, optionsHelp, schemaProblems, splitList, type OptionTable } from "../cli-options.ts";
import { ConfigError } from "../errors.ts";
import { parseTopicArn, type TopicRef } from "../sns/topic.ts";
import { messageGroupIdProblem, parseQueueRef, type QueueRef } from "../sqs/send.ts";
import type { ExpectedTargets } from "../sqs/target-tally.ts";
import { parseTargetList, selectedTargets } from "../wire/targets.ts";
import { appNameSchema, DEFAULT_APP } from "../wire/app.ts";
import { SIGNING_KEY_ENV } from "../wire/signature.ts";
import { REPOSITORY_ENV, resolvePublishApp, type PublishApp } from "./app.ts";
import type { BuildInfoOverrides } from "./build-info.ts";

/** How long a bare --wait waits, in seconds. */
export const DEFAULT_WAIT_SECONDS = 900;
/** The longest --wait, in seconds (6 hours: GitHub's limit for a job). */
const MAX_WAIT_SECONDS = 21_600;

/** SQS's largest message size (1 MiB); queues default to 256 KiB. */
export const SQS_MAX_MESSAGE_BYTES = 1_048_576;
/** --max-message-bytes when not given: the default MaximumMessageSize of a queue (256 KiB). */
const DEFAULT_MAX_MESSAGE_BYTES = 262_144;

/** Manifest paths from the environment when none are given as arguments. */
const PATHS_ENV = "KUBE_PICO_CD_PATHS";

/** Every option: the parser, the environment mapping and --help are all made from this table. */
export const PUBLISH_OPTIONS = {
  queue: {
    type: "string",
    multiple: true,
    short: "q",
    env: ["KUBE_PICO_CD_QUEUE"],
    deprecated: ["KUBE_PICO_CD_QUEUE_URL", "KUBE_PICO_CD_DEPLOY_QUEUE_NAME"],
    value: "URL|NAME",
    defaultText: "none; required unless --topic or --dry-run",
    help: "Queue to send to, by URL or by name (resolved with GetQueueUrl). Repeat for several clusters; the variable takes a comma-separated list.",
  },
  topic: {
    type: "string",
    multiple: true,
    env: ["KUBE_PICO_CD_TOPIC"],
    value: "ARN",
    defaultText: "none",
    help:
      "SNS topic to publish to, by ARN (arn:aws:sns:REGION:ACCOUNT:NAME; requests are signed for its region): one message " +
      "for a fleet, each cluster's queue subscribed to the topic. Messages are limited to 256 KiB. Repeatable; the variable " +
      "takes a comma-separated list. With --wait, results are awaited by target (--expect-targets).",
  },
  app: {
    type: "string",
    env: ["KUBE_PICO_CD_APP"],
    value: "NAME",
    defaultText: `the repository name in $${REPOSITORY_ENV} (acme/Shop_API: shop-api), else ${DEFAULT_APP}`,
    help:
      "The app the bundle belongs to: a listener keeps a version record, history and prune inventory per app. " +
      "A DNS label: lowercase letters, digits and '-', at most 63 characters. " +
      `'${DEFAULT_APP}' is the app of bundles that name none (and of every listener before apps).`,
  },
  target: {
    type: "string",
    env: ["KUBE_PICO_CD_TARGET"],
    value: "NAME[,NAME...]",
    defaultText: "none",
    help:
      "Cluster or environment name written into the message (target); a comma-separated list of 2 to 100 names " +
      "(printable ASCII without spaces) is written as targets, which every listener named in it accepts.",
  },
  "expect-targets": {
    type: "string",
    env: ["KUBE_PICO_CD_EXPECT_TARGETS"],
    value: "NAME,...|COUNT",
    defaultText: "the --target names",
    help:
      "With --wait and --topic: the listeners' targets (their KUBE_PICO_CD_TARGET) that must each send a final result, " +
      "or how many must; a result from another target is reported as unexpected and does not count.",
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
  "allow-empty-bundle": {
    type: "boolean",
    env: ["KUBE_PICO_CD_ALLOW_EMPTY_BUNDLE"],
    deprecated: ["--allow-empty", "KUBE_PICO_CD_ALLOW_EMPTY"],
    defaultText: "false",
    help: "Publish even when no objects are found (a listener accepts such a bundle only with its own --allow-empty-bundle).",
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
    defaultText: String(DEFAULT_MAX_MESSAGE_BYTES),
    help: "Fail when the encoded message is larger (the queue's MaximumMessageSize; at most 1048576).",
  },
  "message-group-id": {
    type: "string",
    env: ["KUBE_PICO_CD_MESSAGE_GROUP_ID"],
    value: "ID",
    defaultText: "the app",
    help: "MessageGroupId for FIFO queues (MessageDeduplicationId is derived from app, build id and digest).",
  },
  "sns-endpoint-url": {
    type: "string",
    env: ["KUBE_PICO_CD_SNS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SNS"],
    value: "URL",
    defaultText: "--endpoint-url given as a flag or KUBE_PICO_CD_ENDPOINT_URL (one local server such as moto's serves both), else AWS's of each topic's region",
    help: "SNS endpoint for every topic, for a local SNS server; requests are still signed for each topic's region.",
  },
  "endpoint-url": {
    type: "string",
    env: ["KUBE_PICO_CD_ENDPOINT_URL", "AWS_ENDPOINT_URL_SQS"],
    // The listener's old names, kept in both programs so that one setting has one set of names.
    deprecated: ["--sqs-endpoint", "KUBE_PICO_CD_SQS_ENDPOINT"],
    value: "URL",
    defaultText: "AWS's endpoint of each queue's region",
    help: "SQS endpoint for every queue, for local SQS servers such as ElasticMQ; requests are still signed for each queue's region.",
  },
  region: {
    type: "string",
    env: ["KUBE_PICO_CD_REGION", "AWS_REGION", "AWS_DEFAULT_REGION"],
    deprecated: ["KUBE_PICO_CD_AWS_REGION"],
    value: "REGION",
    defaultText: "the AWS SDK's (its profile)",
    help:
      "AWS region of queues given by name and of queue URLs that name none (a custom endpoint's). An AWS queue URL " +
      "(https://sqs.REGION.amazonaws.com/...) names its own region, which wins: each region gets its own client. " +
      "Credentials always come from the AWS SDK's default chain.",
  },
  "dry-run": {
    type: "boolean",
    env: ["KUBE_PICO_CD_DRY_RUN"],
    defaultText: "false",
    help: "Bundle, validate and print the summary; send nothing.",
  },
  plan: {
    type: "boolean",
    env: ["KUBE_PICO_CD_PLAN"],
    defaultText: "false",
    help:
      "Send a plan request instead of a deploy: the listener dry-runs the bundle on its cluster and answers on --result-queue " +
      "with what would change, be created and be pruned (nothing is applied); print it, exit 3 when the API server refuses an object. " +
      "Waits as --wait does (default 5m).",
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
    bareValue: String(DEFAULT_WAIT_SECONDS),
    valuePattern: /^\d+[smh]?$/i,
    defaultText: `off; a bare --wait waits ${DEFAULT_WAIT_SECONDS} s`,
    help:
      "After sending, wait for each queue's result on --result-queue and exit with it (codes 3 and 4 below). " +
      "TIMEOUT is seconds (300) or a number ending in s, m or h (90s, 10m), given as --wait 10m or --wait=10m; an " +
      "argument after --wait that is no TIMEOUT stays a path (a path named like one goes after --). " +
      "The variable takes a TIMEOUT, true or false. Ignored with --dry-run.",
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
  version: { type: "boolean", defaultText: "false", help: "Print the version and exit." },
  help: { type: "boolean", short: "h", defaultText: "false", help: "Show this help." },
} as const satisfies OptionTable;

/** The help text: every option with its variables and default. */
export function publishHelpText(): string {
  const lines = [
    "Usage: publish [options] <path>...",
    "",
    "Bundle the Kubernetes manifests under <path>... (files or directories: *.yaml, *.yml, *.json;",
    "directories with a kustomization.yaml are rendered with kubectl kustomize; - reads standard input), validate them,",
    "and send them to SQS for kube-pico-cd's listener. Paths may also come from",
    `${PATHS_ENV} (comma-separated).`,
    "",
    "Options (flags win over environment variables):",
  ];
  lines.push(...optionsHelp(PUBLISH_OPTIONS));
  lines.push(
    "",
    "AWS credentials come from the AWS SDK's default chain (environment, profile, web identity",
    "such as GitHub OIDC). Each queue's requests are signed for the region its URL names.",
    "",
    "Exit codes:",
    "  0  sent (or, with --dry-run, valid)",
    "  1  invalid input or usage: bad option, invalid manifests, message too large, kustomize failed",
    "  2  sending failed: a queue could not be resolved or did not accept the message",
    "  3  (--wait) deploy failed: a result was failed or rejected, or the workloads were Degraded or",
    "     timed out; the reason is printed",
    "  4  (--wait) timed out waiting: some queue or expected target gave no result in time (is its listener",
    "     running, with KUBE_PICO_CD_RESULT_QUEUE set to the result queue?)",
  );
  return lines.join("\n");
}

/** The configuration of one publish run, after validation. */
export interface PublishConfig {
  paths: string[];
  queues: QueueRef[];
  /** SNS topics to publish to (--topic). */
  topics: TopicRef[];
  /** The app (--app, else from GITHUB_REPOSITORY); absent: the default app. */
  app?: PublishApp;
  /** One --target name: the body's `target`. */
  target?: string;
  /** Several --target names, sorted: the body's `targets`. */
  targets?: string[];
  /**
   * With --wait and --topic: the listeners' targets whose final results are awaited, or how
   * many (--expect-targets, else the --target names).
   */
  expectTargets?: ExpectedTargets;
  ignore: string[];
  kustomize: boolean;
  kubectl: string;
  allowEmpty: boolean;
  build: BuildInfoOverrides;
  maxMessageBytes: number;
  /** --message-group-id; absent: the app's (lib/sqs/send.ts defaultMessageGroupId). */
  messageGroupId?: string;
  endpointUrl?: string;
  /** The SNS endpoint (--sns-endpoint-url, else --endpoint-url unless it came from AWS_ENDPOINT_URL_SQS). */
  snsEndpointUrl?: string;
  region?: string;
  dryRun: boolean;
  /** --plan: send a plan request and wait for the plan. */
  plan: boolean;
  outputBody?: string;
  json: boolean;
  signingKeyFile?: { path: string; origin: string };
  /** The PEM text of KUBE_PICO_CD_SIGNING_KEY, used when there is no file. */
  signingKeyPem?: string;
  keygen: boolean;
  version: boolean;
  help: boolean;
  /** One line per deprecated flag or variable that was used (lib/cli-options.ts), for a warning. */
  deprecations: string[];
  /** Where the listeners send results (--result-queue). */
  resultQueue?: QueueRef;
  /** Wait this long for the results after sending (--wait); absent: do not wait. */
  waitTimeoutMs?: number;
}

/** Most targets --expect-targets may count. */
const MAX_EXPECTED_TARGETS = 10_000;

/**
 * Reads --expect-targets: a count (`10`) or a comma-separated list of names, each once.
 * Returns a problem phrase instead when it is neither.
 */
export function parseExpectedTargets(text: string): ExpectedTargets | { problem: string } {
  const trimmed = text.trim();
  if (/^\d+$/.test(trimmed)) {
    const count = Number(trimmed);
    if (count < 1 || count > MAX_EXPECTED_TARGETS) return { problem: `a count must be 1 to ${MAX_EXPECTED_TARGETS}: current value is ${JSON.stringify(text)}` };
    return { count };
  }
  const names = trimmed.split(",").map((name) => name.trim());
  if (names.some((name) => name === "")) return { problem: `must be a count or a comma-separated list of target names without empty ones: current value is ${JSON.stringify(text)}` };
  const seen = new Set<string>();
  for (const name of names) {
    if (seen.has(name)) return { problem: `names target ${JSON.stringify(name)} twice` };
    seen.add(name);
  }
  return { names };
}

/** How long --plan waits for the plan without --wait: 5 minutes. */
export const DEFAULT_PLAN_WAIT_MS = 300_000;

/**
 * The --wait timeout in seconds, from `300`, `90s`, `10m` or `1h`; from the variable also
 * `true` (the default) and `false` (undefined: no wait). Returns a problem phrase when it is
 * none of these.
 */
export function parseWaitTimeout(text: string, fromVariable: boolean): { seconds: number | undefined } | { problem: string } {
  const match = /^(\d{1,9})([smh]?)$/.exec(text.trim().toLowerCase());
  if (match === null) {
    // Numbers come first: from the variable, 1 and 0 are seconds, not booleans.
    const on = fromVariable ? envBoolean(text) : undefined;
    if (on !== undefined) return { seconds: on ? DEFAULT_WAIT_SECONDS : undefined };
    return { problem: `must be a timeout such as 300, 90s or 10m (seconds, or a number ending in s, m or h): current value is ${JSON.stringify(text)}` };
  }
  const seconds = Number(match[1]) * (match[2] === "h" ? 3600 : match[2] === "m" ? 60 : 1);
  if (seconds < 1) return { problem: `must be at least 1 second: current value is ${JSON.stringify(text)}` };
  if (seconds > MAX_WAIT_SECONDS) return { problem: `must be at most 6h (${MAX_WAIT_SECONDS} seconds): current value is ${JSON.stringify(text)}` };
  return { seconds };
}

const optionalText = z.string().min(1, "must not be empty").optional();
const flagBoolean = z.boolean();
/** A queue URL or name (lib/sqs/send.ts parseQueueRef). */
/** A string read by `parse`, which returns what it read or a problem phrase (the issue's message). */
function parsedBy<T>(parse: (value: string) => T | { problem: string }) {
  return z.string().transform((value, context): T => {
    const parsed = parse(value);
    if (typeof parsed === "object" && parsed !== null && "problem" in parsed) {
      context.addIssue({ code: "custom", message: parsed.problem });
      return z.NEVER;
    }
    return parsed;
  });
}

const queueRef = parsedBy<QueueRef>(parseQueueRef);

const schema = z
  .object({
    paths: z.array(z.string().min(1, "must not be empty")),
    queue: z.array(queueRef),
    topic: z.array(parsedBy<TopicRef>(parseTopicArn)),
    app: appNameSchema.optional(),
    target: parsedBy(parseTargetList).optional(),
    "expect-targets": parsedBy(parseExpectedTargets).optional(),
    ignore: z.array(z.string().min(1, "must not be empty")),
    "no-kustomize": flagBoolean,
    kubectl: z.string().min(1, "must not be empty"),
    "allow-empty-bundle": flagBoolean,
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
      .transform((text, context) => {
        if (/^\d+$/.test(text)) return Number(text);
        context.addIssue({ code: "custom", message: `must be a whole number of bytes: current value is ${JSON.stringify(text)}` });
        return z.NEVER;
      })
      .pipe(z.int().min(1024, "must be at least 1024").max(SQS_MAX_MESSAGE_BYTES, `must be at most ${SQS_MAX_MESSAGE_BYTES} (SQS's maximum)`)),
    "message-group-id": z
      .string()
      .superRefine((value, context) => {
        const problem = messageGroupIdProblem(value);
        if (problem !== undefined) context.addIssue({ code: "custom", message: problem });
      })
      .optional(),
    "endpoint-url": z.url({ protocol: /^https?$/, error: "must be an http or https URL" }).optional(),
    "sns-endpoint-url": z.url({ protocol: /^https?$/, error: "must be an http or https URL" }).optional(),
    region: z.string().regex(/^[a-z0-9-]+$/, "must look like eu-west-1").optional(),
    "dry-run": flagBoolean,
    plan: flagBoolean,
    "output-body": optionalText,
    "result-queue": queueRef.optional(),
    wait: z.string().optional(),
    json: flagBoolean,
    "signing-key-file": optionalText,
    keygen: flagBoolean,
    version: flagBoolean,
    help: flagBoolean,
  })
  .strict();

/**
 * Parses the configuration from `argv` (arguments after the script) and `env`: a flag wins
 * over its variables. Validated with one zod schema; every problem names the flag or
 * variable it came from.
 *
 * @throws {ConfigError} one line per problem.
 */
export function parsePublishConfig(argv: readonly string[], env: Readonly<Record<string, string | undefined>>): PublishConfig {
  const { raw, origin, positionals, problems, notices, argvRead } = gatherOptions(PUBLISH_OPTIONS, argv, env, { allowPositionals: true });
  if (!argvRead) throw new ConfigError(problems);
  raw["max-message-bytes"] ??= String(DEFAULT_MAX_MESSAGE_BYTES);
  raw["kubectl"] ??= "kubectl";
  const pathsFromEnv = env[PATHS_ENV];
  if (positionals.length > 0) {
    raw["paths"] = positionals;
    origin["paths"] = "<path>";
  } else {
    raw["paths"] = pathsFromEnv ? splitList(pathsFromEnv) : [];
    origin["paths"] = PATHS_ENV;
  }

  const result = schema.safeParse(raw);
  if (!result.success) problems.push(...schemaProblems(result.error, origin));
  if (problems.length > 0) throw new ConfigError(problems);
  const data = result.data!;
  if (data.help || data.keygen || data.version) return toConfig(data, notices);
  if (data.paths.length === 0) {
    problems.push(`no manifest paths given: pass files or directories as arguments, or set ${PATHS_ENV}`);
  }
  if (data.queue.length === 0 && data.topic.length === 0 && !data["dry-run"]) {
    problems.push("--queue: no queue or --topic given (or set KUBE_PICO_CD_QUEUE or KUBE_PICO_CD_TOPIC); pass --dry-run to bundle without sending");
  }
  let waitTimeoutMs: number | undefined;
  if (data.wait !== undefined && !data["dry-run"]) {
    const waitOrigin = origin["wait"]!;
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
  if (data.plan) {
    if (data["dry-run"]) problems.push("--plan: cannot be combined with --dry-run (--dry-run sends nothing; a plan is asked of the listener)");
    else if (data["result-queue"] === undefined) {
      problems.push("--plan: no result queue to receive the plan on: pass --result-queue URL|NAME (or set KUBE_PICO_CD_RESULT_QUEUE), the queue the listeners send results to");
    }
    // A plan is always awaited: it is the point of asking.
    waitTimeoutMs ??= DEFAULT_PLAN_WAIT_MS;
  }
  // A topic's subscribers answer with their own SQS message ids: a topic publish is awaited by target.
  let expectTargets: ExpectedTargets | undefined;
  if (data["expect-targets"] !== undefined && data.topic.length === 0 && waitTimeoutMs !== undefined) {
    problems.push(`${origin["expect-targets"]}: only a --topic publish waits for targets (a queue's result is awaited by its message id)`);
  } else if (data.topic.length > 0 && waitTimeoutMs !== undefined) {
    const selection = data.target;
    expectTargets = data["expect-targets"] ?? (selection === undefined ? undefined : { names: selectedTargets(selection) });
    if (expectTargets === undefined) {
      problems.push(
        `${origin["wait"] ?? "--plan"}: a --topic publish cannot tell how many clusters answer: pass --expect-targets NAME,... or a count (or --target NAME,... to address them)`,
      );
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
  const wait = waitTimeoutMs === undefined ? {} : { waitTimeoutMs, ...(expectTargets === undefined ? {} : { expectTargets }) };
  // AWS_ENDPOINT_URL_SQS names SQS's endpoint only; a flag or KUBE_PICO_CD_ENDPOINT_URL names "the local server".
  const snsEndpoint = data["sns-endpoint-url"] ?? (origin["endpoint-url"] === "AWS_ENDPOINT_URL_SQS" ? undefined : data["endpoint-url"]);
  const signingKeyFile = data["signing-key-file"] === undefined ? {} : { signingKeyFile: { path: data["signing-key-file"], origin: origin["signing-key-file"]! } };
  const signingKeyPem = env[SIGNING_KEY_ENV] ? { signingKeyPem: env[SIGNING_KEY_ENV] } : {};
  const app = resolvePublishApp({ explicit: data.app, origin: origin["app"], env });
  return {
    ...toConfig(data, notices),
    ...(app === undefined ? {} : { app }),
    ...wait,
    ...(snsEndpoint === undefined ? {} : { snsEndpointUrl: snsEndpoint }),
    ...signingKeyFile,
    ...signingKeyPem,
  };
}

function toConfig(data: z.infer<typeof schema>, deprecations: string[]): PublishConfig {
  const build: BuildInfoOverrides = {};
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
    topics: data.topic,
    ...(data.target === undefined ? {} : "target" in data.target ? { target: data.target.target } : { targets: data.target.targets }),
    ignore: data.ignore,
    kustomize: !data["no-kustomize"],
    kubectl: data.kubectl,
    allowEmpty: data["allow-empty-bundle"],
    build,
    maxMessageBytes: data["max-message-bytes"],
    ...(data["message-group-id"] === undefined ? {} : { messageGroupId: data["message-group-id"] }),
    ...(data["endpoint-url"] === undefined ? {} : { endpointUrl: data["endpoint-url"] }),
    ...(data.region === undefined ? {} : { region: data.region }),
    dryRun: data["dry-run"],
    plan: data.plan,
    ...(data["output-body"] === undefined ? {} : { outputBody: data["output-body"] }),
    json: data.json,
    ...(data["result-queue"] === undefined ? {} : { resultQueue: data["result-queue"] }),
    keygen: data.keygen,
    version: data.version,
    help: data.help,
    deprecations,
  };
}
