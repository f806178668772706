/**
 * publish: bundle a repository's Kubernetes manifests and send them to one or more SQS
 * queues, for the kube-pico-cd listener in each cluster to apply.
 *
 *   bun publish.ts k8s/ --queue deploy-prod
 *   deno run -A publish.ts k8s/ --queue https://sqs.eu-west-1.amazonaws.com/123456789012/deploy
 *
 * Runs under Bun, Deno and Node (with TypeScript type stripping). `--help` lists every option
 * (lib/publish/config.ts); this file wires the modules and maps errors to exit codes.
 */
import { appendFileSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { isMainThread } from "node:worker_threads";
import type { SQSClient, SQSClientConfig } from "@aws-sdk/client-sqs";
import { ConfigError, errorMessage, KubePicoCdError, MessageTooLargeError, QueueSendError } from "./lib/errors.ts";
import { bundleMessage } from "./lib/publish/bundle-message.ts";
import { resolveBuildInfo } from "./lib/publish/build-info.ts";
import { parsePublishConfig, publishHelpText, SQS_MAX_MESSAGE_BYTES, type PublishConfig } from "./lib/publish/config.ts";
import { EXIT_INVALID, EXIT_SEND_FAILED, EXIT_SENT } from "./lib/publish/exit-codes.ts";
import { countByKindAndNamespace, formatResultsStepSummary, formatStepSummary, formatSummary, type PublishResult } from "./lib/publish/summary.ts";
import { isFifoTopic, SNS_MAX_MESSAGE_BYTES } from "./lib/sns/topic.ts";
import type { SqsClients } from "./lib/sqs/region.ts";
import { createSnsClients, publishToTopic, type SnsClients } from "./lib/sns/publish.ts";
import { defaultMessageGroupId, fifoDeduplicationId, isFifoQueue, resolveQueueUrl, sendBody } from "./lib/sqs/send.ts";
import { VERSION } from "./lib/version.ts";
import { DEFAULT_APP } from "./lib/wire/app.ts";
import type { BuildInfo, EncodedMessage, SignedFields } from "./lib/wire/message.ts";
import { generateSigningKeyPair, keygenText, loadSigningKey, signFields } from "./lib/wire/signature.ts";

/** The --help text (lib/publish/config.ts), for the generated configuration reference. */
export { publishHelpText as helpText } from "./lib/publish/config.ts";
/** The GitHub Action's inputs as publish's variables, for dist/action.mjs (lib/publish/action-inputs.ts). */
export { envFromActionInputs } from "./lib/publish/action-inputs.ts";

/** Where main reads and writes; tests hand in their own. */
export interface PublishIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  /** Relative paths are resolved against it. Default `process.cwd()`. */
  cwd: string;
  /** The publish time, in milliseconds since the epoch. Default `Date.now`. */
  now: () => number;
  signal?: AbortSignal;
  /** Makes an SQS client (one per region: lib/sqs/region.ts). Default `new SQSClient(config)`. */
  createSqsClient?: (config: SQSClientConfig) => SQSClient;
}

const defaultIo: PublishIo = {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
  cwd: process.cwd(),
  now: Date.now,
};

/** The error for a message over --max-message-bytes, saying how to raise the limit. */
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

/** The error for a message too large for a topic: SNS takes at most 256 KiB, whatever the queues take. */
function tooLargeForTopic(encoded: EncodedMessage): MessageTooLargeError {
  return new MessageTooLargeError(
    `Cannot publish to a topic: the encoded message is ${encoded.bodyBytes} bytes, over SNS's limit of ${SNS_MAX_MESSAGE_BYTES} bytes (256 KiB) ` +
      `(${encoded.rawBytes} bytes of manifests gzip to ${encoded.compressedBytes}); publish fewer manifests per message, or send to each cluster's queue with --queue (up to 1 MiB).`,
    { bodyBytes: encoded.bodyBytes, limitBytes: SNS_MAX_MESSAGE_BYTES },
  );
}

/**
 * Runs publish with `argv` (the arguments after the script name) and `env`; returns the
 * exit code (0 sent, 1 invalid input or usage, 2 sending failed; with --wait 3 deploy failed,
 * 4 timed out: lib/publish/exit-codes.ts). Never throws.
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
  const config = parsePublishConfig(argv, env);
  for (const notice of config.deprecations) io.stderr(`publish: warning: ${notice}\n`);
  if (config.version) {
    io.stdout(`kube-pico-cd publish ${VERSION}\n`);
    return EXIT_SENT;
  }
  if (config.help) {
    io.stdout(`${publishHelpText()}\n`);
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
  const { encoded, inputs, notices, kinds, warnings } = await bundleMessage(
    config.paths,
    {
      cwd: io.cwd,
      ignore: config.ignore,
      kustomize: config.kustomize,
      kubectl: config.kubectl,
      allowEmpty: config.allowEmpty,
      ...(io.signal ? { signal: io.signal } : {}),
    },
    {
      ...(config.app === undefined ? {} : { app: config.app.name }),
      build,
      ...(config.plan ? { mode: "plan" as const } : {}),
      ...(config.target === undefined ? {} : { target: config.target }),
      ...(config.targets === undefined ? {} : { targets: config.targets }),
      ...(signingKey === undefined ? {} : { sign: (fields: SignedFields) => signFields(fields, signingKey) }),
    },
  );
  // Helm hooks applied or left out (lib/manifests/helm-hooks.ts): one line each.
  for (const notice of notices) io.stderr(`publish: notice: ${notice}\n`);
  for (const warning of warnings) io.stderr(`publish: warning: ${warning}\n`);
  if (encoded.bodyBytes > config.maxMessageBytes) throw tooLarge(encoded, config.maxMessageBytes);
  if (config.topics.length > 0 && encoded.bodyBytes > SNS_MAX_MESSAGE_BYTES) throw tooLargeForTopic(encoded);
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
    ...(config.plan ? { plan: true } : {}),
    app: config.app?.name ?? DEFAULT_APP,
    ...(config.app === undefined ? {} : { appFrom: config.app.from }),
    build,
    ...(config.target === undefined ? {} : { target: config.target }),
    ...(config.targets === undefined ? {} : { targets: config.targets }),
    digest: encoded.digest,
    objects: encoded.objectCount,
    rawBytes: encoded.rawBytes,
    compressedBytes: encoded.compressedBytes,
    bodyBytes: encoded.bodyBytes,
    maxMessageBytes: config.maxMessageBytes,
    byKindAndNamespace: countByKindAndNamespace(kinds),
    inputs,
    sent: [],
    queues: config.queues.map((queue) => queue.url ?? queue.name),
    published: [],
    topics: config.topics.map((topic) => topic.arn),
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
  // Loaded only now, as lib/sqs/send.ts loads the SDK: a dry run never needs them.
  const [{ createSqsClients }, { waitForDeploy }] = await Promise.all([import("./lib/sqs/region.ts"), import("./lib/publish/wait.ts")]);
  // Each queue's requests are signed for the region its URL names (lib/sqs/region.ts).
  const clients = createSqsClients({
    region: config.region,
    endpoint: config.endpointUrl,
    ...(io.createSqsClient === undefined ? {} : { create: io.createSqsClient }),
  });
  // Each topic's requests are signed for the region its ARN names; no client is made without a topic.
  const snsClients = createSnsClients({ endpoint: config.snsEndpointUrl });
  try {
    const signalOption = io.signal ? { signal: io.signal } : {};
    // Resolved before anything is sent, like the deploy queues: a typo sends nothing.
    const resultQueueUrl =
      config.waitTimeoutMs === undefined || config.resultQueue === undefined
        ? undefined
        : await resolveQueueUrl(clients.forQueue(config.resultQueue.url), config.resultQueue, signalOption);
    await send(clients, snsClients, config, build, encoded, result, io.signal);
    if (!config.json) io.stdout(formatSummary(result));
    appendStepSummary(formatStepSummary(result));
    if (resultQueueUrl === undefined || config.waitTimeoutMs === undefined) {
      if (config.json) io.stdout(`${JSON.stringify(result)}\n`);
      return EXIT_SENT;
    }
    const report = await waitForDeploy({
      client: clients.forQueue(resultQueueUrl),
      resultQueueUrl,
      timeoutMs: config.waitTimeoutMs,
      published: result,
      expectTargets: config.expectTargets,
      json: config.json,
      stdout: io.stdout,
      stderr: io.stderr,
      ...signalOption,
    });
    result.wait = report;
    if (config.json) io.stdout(`${JSON.stringify(result)}\n`);
    appendStepSummary(formatResultsStepSummary(report));
    return report.exitCode;
  } finally {
    clients.destroy();
    snsClients.destroy();
  }
}

/** Resolves every queue first (so a typo sends nothing), then sends to each in order, then publishes to each topic. */
async function send(
  clients: SqsClients,
  snsClients: SnsClients,
  config: PublishConfig,
  build: BuildInfo,
  encoded: EncodedMessage,
  result: PublishResult,
  signal: AbortSignal | undefined,
): Promise<void> {
  const options = signal ? { signal } : {};
  const app = config.app?.name;
  // FIFO queues and topics: the app's group, deduplicated by app, build id and digest.
  const fifoIds = { messageGroupId: config.messageGroupId ?? defaultMessageGroupId(app), messageDeduplicationId: fifoDeduplicationId(build.id, encoded.digest, app) };
  const urls: string[] = [];
  // A name is resolved in the configured region; the URL it resolves to names that region too.
  for (const queue of config.queues) urls.push(await resolveQueueUrl(clients.forQueue(queue.url), queue, options));
  for (const [index, queue] of config.queues.entries()) {
    const url = urls[index]!;
    const fifo = isFifoQueue(queue) ? fifoIds : undefined;
    try {
      const sent = await sendBody(clients.forQueue(url), url, encoded.body, { ...options, ...(fifo ? { fifo } : {}) });
      result.sent.push({ queue: queue.url ?? queue.name, ...sent });
    } catch (error) {
      throw alreadySent(error, result);
    }
  }
  for (const topic of config.topics) {
    // As on a FIFO queue.
    const fifo = isFifoTopic(topic) ? fifoIds : undefined;
    try {
      result.published.push(await publishToTopic(await snsClients.forTopic(topic), topic, encoded.body, { ...options, ...(fifo ? { fifo } : {}) }));
    } catch (error) {
      throw alreadySent(error, result);
    }
  }
}

/** A send failure that says where the message already went, so a partial send is never silent. */
function alreadySent(error: unknown, result: PublishResult): unknown {
  if (!(error instanceof QueueSendError) || (result.sent.length === 0 && result.published.length === 0)) return error;
  const done = [
    ...result.sent.map((sent) => `${sent.queueUrl} (message id ${sent.messageId})`),
    ...result.published.map((published) => `${published.topicArn} (message id ${published.messageId})`),
  ].join(", ");
  return new QueueSendError(`${error.message}; already sent to ${done}`, error.queue, { cause: error });
}

/** True when this module is the program (Bun and Deno set import.meta.main; Node before 24 needs the fallback). */
function isMain(): boolean {
  // Never in a thread this module's file was started in (lib/manifests/parse-worker.ts runs
  // dist/publish.mjs, or the executable, as its second thread).
  if (!isMainThread) return false;
  const meta = import.meta as ImportMeta & { main?: boolean };
  if (typeof meta.main === "boolean") return meta.main;
  const script = process.argv[1];
  return script !== undefined && resolve(script) === fileURLToPath(import.meta.url);
}

/**
 * Runs publish as this process's program: SIGTERM and SIGINT abort it, and its exit code
 * becomes the process's. The GitHub Action (dist/action.mjs) runs it with its inputs as `env`.
 */
export async function runAsProgram(argv: readonly string[], env: Readonly<Record<string, string | undefined>>): Promise<void> {
  const controller = new AbortController();
  const abort = () => controller.abort(new Error("interrupted"));
  process.once("SIGTERM", abort);
  process.once("SIGINT", abort);
  try {
    process.exitCode = await main(argv, env, { signal: controller.signal });
  } finally {
    process.off("SIGTERM", abort);
    process.off("SIGINT", abort);
  }
}

if (isMain()) await runAsProgram(process.argv.slice(2), process.env);
