/**
 * listener: runs in the cluster, long-polls an SQS queue for kube-pico-cd bundles and applies
 * each app's newest build with kubectl, recording every outcome in the app's ConfigMap before
 * it deletes the message. Apps deploy side by side, one lane each (lib/listener/app-deployers.ts).
 *
 *   KUBE_PICO_CD_QUEUE=https://sqs.eu-west-1.amazonaws.com/123456789012/deploy listener
 *   bun listener.ts --queue deploy --namespace kube-pico-cd --once
 *   listener status --namespace kube-pico-cd     (every app's current build; lib/listener/status.ts)
 *   listener status shop                         (one app's record and history)
 *   listener record forget-build --future --app shop   (repairs a record; lib/listener/record-command.ts)
 *
 * Runs under Bun and Deno (`deno run -A listener.ts`). `--help` lists every option.
 * Exit codes: 0 stopped by SIGTERM/SIGINT or --once done; 1 invalid configuration (an apps
 * configuration or a kubeconfig that cannot be read, no region included) or a queue that does
 * not exist, each checked at start, --once or not.
 */
import { fileURLToPath } from "node:url";
import { delay } from "./lib/backoff.ts";
import { Consumer, readMaxReceiveCount } from "./lib/sqs/consumer.ts";
import { createAppHandler, driftPassesOfApps, laneOf } from "./lib/listener/app-deployers.ts";
import { watchAppsConfig, type AppsConfigWatch } from "./lib/listener/apps-config-watch.ts";
import { createLimiter } from "./lib/limiter.ts";
import { startDriftCorrection } from "./lib/listener/drift.ts";
import { ConfigError, KubePicoCdError } from "./lib/errors.ts";
import { startHealthServer, type Readiness } from "./lib/listener/health-server.ts";
import type { KubectlTarget } from "./lib/kube/kubectl.ts";
import { listenerHelpText, parseListenerConfig, regionProblems, type ListenerConfig } from "./lib/listener/config.ts";
import { createLogger, type Logger } from "./lib/log.ts";
import { observeCurrentBuild } from "./lib/listener/metrics.ts";
import { createOperations } from "./lib/listener/operations.ts";
import { listRecords } from "./lib/listener/app-records.ts";
import { KubeApi } from "./lib/kube/api.ts";
import { loadKubeConnection } from "./lib/kube/kubeconfig.ts";
import { runStatus } from "./lib/listener/status.ts";
import { runRecordCommand } from "./lib/listener/record-command.ts";
import { findQueue } from "./lib/sqs/find-queue.ts";
import { createSqsClients } from "./lib/sqs/region.ts";
import { createResultChannel } from "./lib/sqs/result-sender.ts";
import { VERSION } from "./lib/version.ts";
import { checkEnvelopeSignature } from "./lib/listener/trust.ts";

/** How often the API server is probed while no deploy touches it, in ms. */
const API_PROBE_INTERVAL_MS = 30_000;

export interface MainOptions {
  /** Aborting stops the listener as SIGTERM would (tests use it instead of signals). */
  signal?: AbortSignal;
  /** Where log lines go. Default stdout. */
  write?: (line: string) => void;
  /** Install SIGTERM/SIGINT handlers. Default true. */
  handleSignals?: boolean;
  /** Told the bound HTTP port once the server listens. */
  onListening?: (port: number) => void;
}

/** Runs the listener until stopped; resolves with the exit code. */
export async function main(argv: readonly string[], env: Readonly<Record<string, string | undefined>>, options: MainOptions = {}): Promise<number> {
  if (argv[0] === "status") return await runStatus(argv.slice(1), env);
  if (argv[0] === "record") return await runRecordCommand(argv.slice(1), env);
  let config: ListenerConfig;
  try {
    config = parseListenerConfig(argv, env);
    if (!config.help && !config.version) {
      const problems = regionProblems(config);
      if (problems.length > 0) throw new ConfigError(problems);
    }
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`listener: ${error.message}\n`);
      return 1;
    }
    throw error;
  }
  if (config.version) {
    process.stdout.write(`kube-pico-cd listener ${VERSION}\n`);
    return 0;
  }
  if (config.help) {
    process.stdout.write(`${listenerHelpText()}\n`);
    return 0;
  }
  const logger = createLogger({ level: config.logLevel, ...(options.write ? { write: options.write } : {}) });
  for (const notice of config.deprecations) logger.warn(notice);
  // The same cluster kubectl will talk to: the same kubeconfig, context and fallbacks.
  let api: KubeApi;
  try {
    api = new KubeApi(await loadKubeConnection({ kubeconfig: config.kubeconfig, context: config.context, env }));
  } catch (error) {
    if (error instanceof KubePicoCdError || error instanceof RangeError) {
      logger.error(`cannot configure the Kubernetes API client: ${error.message}`);
      return 1;
    }
    throw error;
  }
  try {
    return await run(config, api, logger, options);
  } finally {
    api.close();
  }
}

async function run(config: ListenerConfig, api: KubeApi, logger: Logger, options: MainOptions): Promise<number> {
  const stop = new AbortController();
  const onSignal = (name: string) => () => {
    logger.info("stop requested; finishing the deploy in hand", { signal: name, graceMs: config.shutdownGraceMs });
    stop.abort(new Error(name));
  };
  const handlers = options.handleSignals === false ? [] : (["SIGTERM", "SIGINT"] as const).map((s) => [s, onSignal(s)] as const);
  for (const [s, h] of handlers) process.once(s, h);
  options.signal?.addEventListener("abort", onSignal("abort"), { once: true });

  const readiness: Readiness = { lastSqsOkMs: 0, apiReachable: false, lastApiCheckMs: 0 };
  const kubectl: KubectlTarget = {
    kubectlPath: config.kubectl,
    ...(config.kubeconfig ? { kubeconfig: config.kubeconfig } : {}),
    ...(config.context ? { extraArgs: [`--context=${config.context}`] } : {}),
  };
  // One client per region: each queue's requests are signed for the region its URL names.
  const clients = createSqsClients({ region: config.region, endpoint: config.endpointUrl });
  const operations = createOperations({ config, api, kubectl, logger, stopping: stop.signal });
  let maxReceiveCount: number | undefined;
  // Results go to CI (publish --wait) after each outcome is recorded; never part of the deploy.
  const resultOptions = config.resultQueue ? { sqs: clients.forQueue(config.resultQueue), resultQueue: config.resultQueue, deployQueue: config.queue, namespace: config.namespace, ...(config.target === undefined ? {} : { target: config.target }), maxReceiveCount: () => maxReceiveCount, logger } : undefined;
  // Outcomes, the progress of deploys and plans (lib/listener/planner.ts) all go to the result queue.
  const results = resultOptions ? createResultChannel(resultOptions) : undefined;
  if (results) operations.addOutcomeListener(results.onOutcome);
  const sendResult = results?.send;

  const health =
    config.httpPort < 0
      ? undefined
      : await startHealthServer({
          host: config.httpHost,
          port: config.httpPort,
          readiness: () => readiness,
          sqsStaleMs: (config.waitTimeSeconds + 30) * 1000 * 2,
          metrics: () => operations.metrics.registry.render(),
        });
  if (health) options.onListening?.(health.port);
  // Before "listening": the start checks may wait long for SQS, and /metrics shows them waiting.
  if (health) logger.debug("serving /healthz, /readyz and /metrics", { httpPort: health.port });

  const probe = (async () => {
    while (!stop.signal.aborted) {
      try {
        // 200 "ok" only when the API server can serve (etcd reachable, informers synced).
        await api.request({ method: "GET", path: "/readyz", responseType: "text", timeoutMs: 10_000, signal: stop.signal });
        readiness.apiReachable = true;
      } catch (error) {
        if (stop.signal.aborted) break;
        operations.metrics.apiErrors.inc({ operation: "readyz" });
        if (readiness.apiReachable || readiness.lastApiCheckMs === 0) logger.warn("the Kubernetes API server is not reachable", { error: error as Error });
        readiness.apiReachable = false;
      }
      readiness.lastApiCheckMs = Date.now();
      await delay(API_PROBE_INTERVAL_MS, { signal: stop.signal }).catch(() => {});
    }
  })();

  // Drift correction, when on, runs beside the consumer; awaited on the way out so that its
  // pass in hand finishes (or is aborted at grace) before the process ends.
  let drift: Promise<void> | undefined;
  let apps: AppsConfigWatch | undefined;
  try {
    // Each app's scope; read at start (an unreadable file stops the listener), then on change.
    if (config.appsConfig !== undefined) {
      try {
        // An entry may name plan keys too: the envelope check keeps them to plans.
        apps = watchAppsConfig(config.appsConfig, { trustedKeyIds: [...config.trustedKeys.keys(), ...config.planKeys.keys()], signal: stop.signal, logger });
      } catch (error) {
        if (!(error instanceof ConfigError)) throw error;
        logger.error(`invalid apps configuration: ${error.message}`);
        return 1;
      }
    }
    const found = await findQueue(config.queue, {
      sqs: clients.forQueue(config.queue),
      logger,
      signal: stop.signal,
      onError: (operation) => operations.metrics.sqsErrors.inc({ operation }),
    });
    if (found === undefined) return 0;
    if ("missing" in found) {
      logger.error(found.missing);
      return 1;
    }
    const queueUrl = found.url;
    const sqs = clients.forQueue(queueUrl);
    try {
      maxReceiveCount = await readMaxReceiveCount(sqs, queueUrl, stop.signal);
      if (maxReceiveCount === undefined) {
        logger.warn("the queue has no redrive policy: a deploy that keeps failing is retried until the queue's retention period ends; give it a dead-letter queue (deploy/aws does)", { queueUrl });
      }
    } catch (error) {
      // Only the retry count in results depends on it; deploying does not.
      logger.warn("cannot read the queue's redrive policy (sqs:GetQueueAttributes); results will not say which attempt is the last", { queueUrl, error: error as Error });
    }
    // The gauges of each app's current build start from its record; an unreadable one only waits for the app's next deploy.
    void listRecords({ api, namespace: config.namespace, base: config.stateConfigMap, signal: stop.signal })
      .then(({ records }) => {
        for (const listed of records) if ("record" in listed) observeCurrentBuild(operations.metrics, listed.record.current, listed.app);
      })
      .catch(() => {});
    logger.info("listening", {
      version: VERSION,
      queueUrl,
      namespace: config.namespace,
      target: config.target ?? null,
      requireTarget: config.requireTarget,
      stateConfigMap: config.stateConfigMap,
      appsConfig: config.appsConfig ?? null,
      applyConcurrency: config.applyConcurrency,
      once: config.once,
      httpPort: health?.port ?? null,
      trustedKeyIds: [...config.trustedKeys.keys()],
      policy: {
        allowedNamespaces: config.policy.allowedNamespaces ?? null,
        allowedKinds: config.policy.allowedKinds ?? null,
        deniedKinds: config.policy.deniedKinds,
        allowClusterScoped: config.policy.allowClusterScoped,
        clusterScopedKinds: config.policy.clusterScopedKinds,
      },
    });
    if (config.trustedKeys.size === 0) {
      logger.warn("no trusted keys: signatures are not checked, so anyone who can send to the queue can change this cluster; set KUBE_PICO_CD_TRUSTED_KEYS (see docs/security.md)");
    }
    // What every app's deployer and drift pass share; each app's record, lock and kept bundle
    // are named from these bases (lib/listener/apps.ts).
    const bases = { state: config.stateConfigMap, lock: config.lockLease, bundle: config.bundleSecret };
    const plansTrust = new Map([...config.trustedKeys, ...config.planKeys]);
    const appsConfig = () => apps?.current;
    const applying = {
      kubectl,
      leaseDurationSeconds: config.leaseDurationSeconds,
      fieldManager: config.fieldManager,
      forceConflicts: config.forceConflicts,
      applyTimeoutMs: config.applyTimeoutMs,
      maxDecompressedBytes: config.maxDecompressedBytes,
    };
    const consumer = new Consumer({
      sqs,
      queueUrl,
      logger,
      waitTimeSeconds: config.waitTimeSeconds,
      visibilityTimeoutSeconds: config.visibilityTimeoutSeconds,
      once: config.once,
      onReceive: () => (readiness.lastSqsOkMs = Date.now()),
      onSqsError: (operation) => operations.metrics.sqsErrors.inc({ operation }),
      // One lane per app: one app's held batch or health wait never delays another's deploy.
      laneOf,
      handler: createAppHandler({
        bases,
        policy: config.policy,
        appsConfig,
        plans: { queue: queueNameOf(queueUrl), send: sendResult },
        deployer: {
        ...applying,
        api,
        namespace: config.namespace,
        applySlots: createLimiter(config.applyConcurrency),
        logger,
        stopping: stop.signal,
        noHold: config.once,
        target: config.target,
        requireTarget: config.requireTarget,
        historyLimit: config.historyLimit,
        retryBaseSeconds: config.retryBaseSeconds,
        retryMaxSeconds: config.retryMaxSeconds,
        // Who signed it, before anything is inflated; then what it holds, before anything is applied.
        // A plan key signs plan requests only: a deploy it signed is refused as unknown-key.
        checkEnvelope: (envelope) => checkEnvelopeSignature(envelope, envelope.mode === "plan" ? plansTrust : config.trustedKeys),
        decodeLimits: config.decodeLimits,
        maxFutureSkewMs: config.maxFutureSkewMs,
        afterApply: operations.afterApply,
        ...(results ? { onProgress: results.onProgress } : {}),
        onOutcome: operations.onOutcome,
        onUnrecorded: (outcome) => operations.metrics.unrecordedOutcomes.inc({ result: outcome.result }),
        allowEmptyBundle: config.allowEmptyBundle,
        onApiStatus: (reachable) => {
          if (!reachable) operations.metrics.apiErrors.inc({ operation: "deploy" });
          readiness.apiReachable = reachable;
          readiness.lastApiCheckMs = Date.now();
        },
        },
      }),
    });
    if (config.driftIntervalMs !== undefined && !config.once) {
      drift = startDriftCorrection({
        // Every app with a record; a kept bundle is re-applied only while the policy and its scope as configured now allow it.
        passes: (signal) => driftPassesOfApps({ api, namespace: config.namespace, bases, policy: config.policy, appsConfig, pass: applying }, signal),
        logger,
        intervalMs: config.driftIntervalMs,
        signal: stop.signal,
        graceMs: config.shutdownGraceMs,
        onPass: (result, app) => operations.metrics.driftPasses.inc({ result, app }),
      });
    }
    stop.signal.addEventListener("abort", () => void consumer.stop(config.shutdownGraceMs), { once: true });
    await consumer.start();
    // Events and results of the last outcomes go out before the process ends.
    await operations.settled();
    logger.info("stopped");
    return 0;
  } finally {
    stop.abort(new Error("listener finished"));
    for (const [s, h] of handlers) process.off(s, h);
    await probe;
    await drift;
    await apps?.stopped;
    await health?.close();
    clients.destroy();
  }
}

/** The queue's name: the last path segment of its URL. */
function queueNameOf(queueUrl: string): string {
  return queueUrl.split("/").filter((part) => part !== "").at(-1) ?? queueUrl;
}

function isMain(): boolean {
  const meta = import.meta as ImportMeta & { main?: boolean };
  if (typeof meta.main === "boolean") return meta.main;
  return process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1];
}

if (isMain()) {
  try {
    process.exitCode = await main(process.argv.slice(2), process.env);
  } catch (error) {
    // An unknown error is a bug: print it whole. Known ones were logged where they happened.
    process.stderr.write(error instanceof KubePicoCdError ? `listener: ${error.message}\n` : `listener: unexpected error\n${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exitCode = 1;
  }
}
