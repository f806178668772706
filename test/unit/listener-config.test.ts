import { describe, expect, test } from "bun:test";
import { listenerHelpText, parseListenerConfig, regionProblems, LISTENER_OPTIONS } from "../../lib/listener/config.ts";
import { configProblems } from "../helpers/thrown.ts";

const noFile = () => undefined;

const problems = (argv: string[], env: Record<string, string> = {}, ns: () => string | undefined = noFile) => configProblems(() => parseListenerConfig(argv, env, ns));

describe("parseListenerConfig()", () => {
  test("parseListenerConfig() applies the documented defaults", () => {
    const config = parseListenerConfig([], { KUBE_PICO_CD_QUEUE: "deploy" }, () => "kube-pico-cd\n");
    expect(config).toMatchObject({
      queue: "deploy",
      namespace: "kube-pico-cd",
      stateConfigMap: "kube-pico-cd-state",
      lockLease: "kube-pico-cd-deploy",
      leaseDurationSeconds: 30,
      historyLimit: 20,
      kubectl: "kubectl",
      fieldManager: "kube-pico-cd",
      forceConflicts: true,
      applyTimeoutMs: 300_000,
      waitTimeSeconds: 20,
      visibilityTimeoutSeconds: 60,
      retryBaseSeconds: 30,
      retryMaxSeconds: 900,
      maxDecompressedBytes: 8 * 1024 * 1024,
      maxFutureSkewMs: 600_000,
      decodeLimits: { maxObjects: 10_000, maxValues: 250_000, maxDepth: 100, maxStringBytes: 1024 * 1024, maxLegacyYamlTokens: 65_536 },
      requireTarget: false,
      trustedKeys: new Map(),
      planKeys: new Map(),
      requireSignatures: false,
      policy: { deniedKinds: [], allowClusterScoped: true, clusterScopedKinds: [] },
      httpHost: "0.0.0.0",
      httpPort: 8080,
      shutdownGraceMs: 25_000,
      logLevel: "info",
      once: false,
      help: false,
    });
  });

  test("parseListenerConfig() lets flags win over environment variables", () => {
    const config = parseListenerConfig(["--queue", "from-flag", "--namespace", "ns-flag", "--no-force-conflicts", "--once"], { KUBE_PICO_CD_QUEUE: "from-env", KUBE_PICO_CD_NAMESPACE: "ns-env" }, noFile);
    expect([config.queue, config.namespace, config.forceConflicts, config.once]).toEqual(["from-flag", "ns-flag", false, true]);
  });

  test("parseListenerConfig() leaves drift correction off and names the bundle Secret kube-pico-cd-bundle by default", () => {
    const config = parseListenerConfig([], { KUBE_PICO_CD_QUEUE: "q", KUBE_PICO_CD_NAMESPACE: "n" }, noFile);
    expect(config.driftIntervalMs).toBeUndefined();
    expect(config.bundleSecret).toBe("kube-pico-cd-bundle");
    expect(config.bundleSecretMaxBytes).toBe(921_600);
  });

  test("parseListenerConfig() reads the drift interval in minutes and the bundle Secret from KUBE_PICO_CD_BUNDLE_SECRET or --bundle-secret", () => {
    const env = { KUBE_PICO_CD_QUEUE: "q", KUBE_PICO_CD_NAMESPACE: "n", KUBE_PICO_CD_DRIFT_INTERVAL_MINUTES: "0.05", KUBE_PICO_CD_BUNDLE_SECRET: "from-env" };
    expect(parseListenerConfig([], env, noFile)).toMatchObject({ driftIntervalMs: 3_000, bundleSecret: "from-env" });
    expect(parseListenerConfig(["--bundle-secret", "from-flag"], env, noFile).bundleSecret).toBe("from-flag");
  });

  test("parseListenerConfig() rejects a bundle Secret name that is not a Kubernetes name and a drift interval below 0.05", () => {
    expect(problems([], { KUBE_PICO_CD_QUEUE: "q", KUBE_PICO_CD_NAMESPACE: "n", KUBE_PICO_CD_BUNDLE_SECRET: "Bundle_1", KUBE_PICO_CD_DRIFT_INTERVAL_MINUTES: "0.01" })).toEqual([
      "KUBE_PICO_CD_DRIFT_INTERVAL_MINUTES: must be at least 0.05 (3 seconds)",
      "KUBE_PICO_CD_BUNDLE_SECRET: must be a Kubernetes object name (lowercase letters, digits, '-', '.')",
    ]);
  });

  test("parseListenerConfig() caps the kept bundle at 921600 bytes, since a Secret holds at most 1 MiB", () => {
    expect(problems(["--bundle-secret-max-bytes", "1048576"], { KUBE_PICO_CD_QUEUE: "q", KUBE_PICO_CD_NAMESPACE: "n" })).toEqual(["--bundle-secret-max-bytes: must be at most 921600"]);
    expect(parseListenerConfig(["--bundle-secret-max-bytes", "2048"], { KUBE_PICO_CD_QUEUE: "q", KUBE_PICO_CD_NAMESPACE: "n" }, noFile).bundleSecretMaxBytes).toBe(2048);
  });

  test("parseListenerConfig() reports every problem, one line each, naming the flag or variable", () => {
    expect(problems(["--wait-time-seconds", "21"], { KUBE_PICO_CD_HTTP_PORT: "eighty", KUBE_PICO_CD_LOG_LEVEL: "loud" })).toEqual([
      "--wait-time-seconds: must be at most 20",
      'KUBE_PICO_CD_HTTP_PORT: must be a whole number: current value is "eighty"',
      "KUBE_PICO_CD_LOG_LEVEL: must be debug, info, warn or error",
    ]);
  });

  test("parseListenerConfig() requires a queue and a namespace outside a pod", () => {
    expect(problems([])).toEqual([
      "--queue: no queue given (set KUBE_PICO_CD_QUEUE to the queue's URL or name)",
      "--namespace: not given and /var/run/secrets/kubernetes.io/serviceaccount/namespace is not readable (set KUBE_PICO_CD_NAMESPACE when running outside a pod)",
    ]);
  });

  test("parseListenerConfig() rejects an unknown flag, suggesting the closest known one", () => {
    expect(problems(["--queue", "q", "--namespace", "n", "--frobnicate"])).toEqual(["--frobnicate: unknown option (see --help)"]);
    expect(problems(["--queue", "q", "--namespace", "n", "--onec"])).toEqual(["--onec: unknown option; did you mean --once? (see --help)"]);
    expect(problems(["--queue", "q", "--namespace", "n", "--endpoint", "http://x"])).toEqual(["--endpoint: unknown option; did you mean --endpoint-url? (see --help)"]);
  });

  test("parseListenerConfig() reads --endpoint-url and --region, with the AWS variables as fallbacks", () => {
    const env = { KUBE_PICO_CD_QUEUE: "q", KUBE_PICO_CD_NAMESPACE: "n" };
    expect(parseListenerConfig(["--endpoint-url", "http://127.0.0.1:9324", "--region", "eu-west-1"], env, noFile)).toMatchObject({ endpointUrl: "http://127.0.0.1:9324", region: "eu-west-1", deprecations: [] });
    expect(parseListenerConfig([], { ...env, KUBE_PICO_CD_ENDPOINT_URL: "http://a:1", KUBE_PICO_CD_REGION: "eu-west-1", AWS_REGION: "us-east-1" }, noFile)).toMatchObject({ endpointUrl: "http://a:1", region: "eu-west-1" });
    expect(parseListenerConfig([], { ...env, AWS_ENDPOINT_URL_SQS: "http://b:2", AWS_DEFAULT_REGION: "us-west-2" }, noFile)).toMatchObject({ endpointUrl: "http://b:2", region: "us-west-2" });
  });

  test("parseListenerConfig() still reads the deprecated names, each with a notice naming the current one", () => {
    const config = parseListenerConfig(["--sqs-endpoint", "http://127.0.0.1:9324"], { KUBE_PICO_CD_QUEUE_URL: "q", KUBE_PICO_CD_NAMESPACE: "n", KUBE_PICO_CD_AWS_REGION: "eu-west-1" }, noFile);
    expect(config).toMatchObject({ queue: "q", endpointUrl: "http://127.0.0.1:9324", region: "eu-west-1" });
    expect(config.deprecations).toEqual([
      "KUBE_PICO_CD_QUEUE_URL is deprecated: use KUBE_PICO_CD_QUEUE",
      "--sqs-endpoint is deprecated: use --endpoint-url",
      "KUBE_PICO_CD_AWS_REGION is deprecated: use KUBE_PICO_CD_REGION",
    ]);
  });

  test("parseListenerConfig() refuses an old queue variable that disagrees with KUBE_PICO_CD_QUEUE, as an overlay of an older base would set", () => {
    expect(problems([], { KUBE_PICO_CD_QUEUE: "new", KUBE_PICO_CD_QUEUE_URL: "old", KUBE_PICO_CD_NAMESPACE: "n" })).toEqual([
      "KUBE_PICO_CD_QUEUE_URL: set together with KUBE_PICO_CD_QUEUE, its current name, to another value: drop KUBE_PICO_CD_QUEUE_URL",
    ]);
  });

  test("--version needs no other setting", () => {
    expect(parseListenerConfig(["--version"], {}, noFile)).toMatchObject({ version: true, help: false });
  });

  test("parseListenerConfig() rejects a retry maximum below the base", () => {
    expect(problems([], { KUBE_PICO_CD_QUEUE: "q", KUBE_PICO_CD_NAMESPACE: "n", KUBE_PICO_CD_RETRY_BASE_SECONDS: "60", KUBE_PICO_CD_RETRY_MAX_SECONDS: "10" })).toEqual([
      "KUBE_PICO_CD_RETRY_MAX_SECONDS: must be at least the retry base (60): current value is 10",
    ]);
  });

  test("--help needs no other setting and lists every option with its default", () => {
    expect(parseListenerConfig(["--help"], {}, noFile).help).toBe(true);
    const help = listenerHelpText();
    for (const [name, spec] of Object.entries(LISTENER_OPTIONS)) {
      expect(help).toContain(`--${name}`);
      expect(help).toContain(`default: ${spec.defaultText}`);
    }
  });
});

describe("regionProblems()", () => {
  const url = (region: string) => `https://sqs.${region}.amazonaws.com/123456789012/deploy`;

  test("regionProblems() is content with a queue URL that names its region, --region or --endpoint-url", () => {
    expect(regionProblems({ queue: url("eu-west-1") })).toEqual([]);
    expect(regionProblems({ queue: "deploy", region: "eu-west-1" })).toEqual([]);
    expect(regionProblems({ queue: "deploy", resultQueue: "results", endpointUrl: "http://127.0.0.1:9324" })).toEqual([]);
  });

  test("regionProblems() names each queue that no region reaches", () => {
    const hint =
      "give the queue's AWS URL (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME), or set --region (KUBE_PICO_CD_REGION, AWS_REGION or AWS_DEFAULT_REGION), or --endpoint-url for a local SQS server";
    expect(regionProblems({ queue: "deploy" })).toEqual([`--region: no AWS region for --queue "deploy": ${hint}`]);
    expect(regionProblems({ queue: url("eu-west-1"), resultQueue: "results" })).toEqual([`--region: no AWS region for --result-queue "results": ${hint}`]);
  });

  test("regionProblems() takes AWS_REGION and AWS_DEFAULT_REGION as the region, through --region's variables", () => {
    const parsed = parseListenerConfig([], { KUBE_PICO_CD_QUEUE: "deploy", KUBE_PICO_CD_NAMESPACE: "n", AWS_DEFAULT_REGION: "eu-west-1" }, noFile);
    expect(regionProblems(parsed)).toEqual([]);
  });
});

describe("parseListenerConfig() with a result queue", () => {
  const env = { KUBE_PICO_CD_QUEUE: "deploy", KUBE_PICO_CD_NAMESPACE: "kube-pico-cd" };

  test("parseListenerConfig() takes KUBE_PICO_CD_RESULT_QUEUE as a URL or a name", () => {
    expect(parseListenerConfig([], { ...env, KUBE_PICO_CD_RESULT_QUEUE: "deploy-results" }).resultQueue).toBe("deploy-results");
    const url = "https://sqs.eu-west-1.amazonaws.com/123456789012/deploy-results.fifo";
    expect(parseListenerConfig([], { ...env, KUBE_PICO_CD_RESULT_QUEUE: url }).resultQueue).toBe(url);
  });

  test("parseListenerConfig() refuses a result queue that is neither a URL nor a name, before any work", () => {
    expect(() => parseListenerConfig([], { ...env, KUBE_PICO_CD_RESULT_QUEUE: "results please" })).toThrow(
      'KUBE_PICO_CD_RESULT_QUEUE: "results please" is neither a queue URL nor a queue name',
    );
  });
});