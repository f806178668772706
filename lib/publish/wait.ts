/**
 * publish --wait: after sending, wait on the result queue for each listener's result, print
 * each as it arrives, and turn them into the exit code. A topic publish waits for each expected
 * target (lib/sqs/target-tally.ts) and ends with one table of them.
 */
import type { SQSClient } from "@aws-sdk/client-sqs";
import { waitForResults } from "../sqs/result-waiter.ts";
import type { AwaitedBuild, ExpectedTargets } from "../sqs/target-tally.ts";
import { resultSucceeded, type ResultMessage } from "../wire/result.ts";
import { EXIT_DEPLOY_FAILED, EXIT_SENT, EXIT_TIMED_OUT } from "./exit-codes.ts";
import { formatDuration, formatResult, formatTargetsTable, verdictText, type PublishResult, type TargetRow, type WaitReport } from "./summary.ts";

/**
 * The exit code of a --wait: {@link EXIT_DEPLOY_FAILED} when any result is not a success
 * (lib/wire/result.ts `resultSucceeded`), else {@link EXIT_TIMED_OUT} when a queue or an expected
 * target gave no result (`missing` of them), else {@link EXIT_SENT}.
 */
export function waitExitCode(results: readonly Pick<ResultMessage, "result" | "health">[], missing: number): number {
  if (results.some((result) => !resultSucceeded(result))) return EXIT_DEPLOY_FAILED;
  return missing > 0 ? EXIT_TIMED_OUT : EXIT_SENT;
}

/** Options of {@link waitForDeploy}. */
export interface WaitForDeployOptions {
  client: SQSClient;
  /** The queue the listeners send their results to, resolved. */
  resultQueueUrl: string;
  /** How long to wait for all results, in milliseconds. */
  timeoutMs: number;
  /** What was sent; a result is awaited for each of `published.sent`, and with `expectTargets` for the build of `published.published`. */
  published: Pick<PublishResult, "sent" | "published" | "app" | "build" | "digest">;
  /** A topic publish: the targets that must each answer, or how many (publish --expect-targets). */
  expectTargets?: ExpectedTargets | undefined;
  /** With --json nothing goes to `stdout` here: the report becomes part of the one JSON object. */
  json: boolean;
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  signal?: AbortSignal;
}

/**
 * Waits for the result of every sent message, printing each as it arrives, then the verdict;
 * failures and missing results go to `stderr`.
 */
export async function waitForDeploy(options: WaitForDeployOptions): Promise<WaitReport> {
  const { client, resultQueueUrl, timeoutMs, published, expectTargets, json, signal } = options;
  const fleet: AwaitedBuild | undefined =
    expectTargets === undefined || published.published.length === 0
      ? undefined
      : { app: published.app, buildId: published.build.id, digest: published.digest, expect: expectTargets };
  const unexpected: string[] = [];
  const io = { stdout: options.stdout, stderr: options.stderr };
  const timeoutSeconds = Math.round(timeoutMs / 1000);
  const sentAt = Date.now();
  const awaitedText = fleet === undefined ? `the result${published.sent.length === 1 ? "" : "s"}` : `the results of ${"names" in fleet.expect ? fleet.expect.names.length : fleet.expect.count} target(s)${published.sent.length === 0 ? "" : ` and ${published.sent.length} queue(s)`}`;
  if (!json) io.stdout(`Waiting up to ${formatDuration(timeoutMs)} for ${awaitedText} on ${resultQueueUrl}\n`);
  const report: WaitReport = { resultQueueUrl, timeoutSeconds, results: [], missing: [], exitCode: EXIT_SENT };
  const outcome = await waitForResults({
    client,
    resultQueueUrl,
    awaited: published.sent.map((sent) => ({ queue: sent.queue, queueUrl: sent.queueUrl, messageId: sent.messageId })),
    fleet,
    onUnexpected: (result) => {
      const who = result.target === undefined ? "a listener without a target" : `target ${result.target}`;
      if (result.target !== undefined && !unexpected.includes(result.target)) unexpected.push(result.target);
      io.stderr(`publish: warning: ${who} (queue ${result.queue}, namespace ${result.namespace}) answered with ${result.result} but is not expected; it does not count\n`);
    },
    timeoutMs,
    ...(signal ? { signal } : {}),
    onWarning: (text) => io.stderr(`publish: warning: ${text}\n`),
    onProgress: ({ sent, result }) => {
      if (json) return;
      const where = sent === undefined ? ` ${result.target ?? result.queue}:` : published.sent.length === 1 && fleet === undefined ? "" : ` ${sent.queue}:`;
      io.stdout(`  [${formatDuration(Date.now() - sentAt)}]${where} ${result.message}\n`);
    },
    onResult: ({ sent, result }) => {
      const entry =
        sent === undefined
          ? { queue: result.queue, queueUrl: result.queue, messageId: result.messageId, ...(result.target === undefined ? {} : { target: result.target }), receivedAfterMs: Date.now() - sentAt, result }
          : { queue: sent.queue, queueUrl: sent.queueUrl, messageId: sent.messageId, receivedAfterMs: Date.now() - sentAt, result };
      report.results.push(entry);
      if (!json) io.stdout(formatResult(entry));
    },
  });
  report.missing = outcome.missing.map((sent) => ({ queue: sent.queue, queueUrl: sent.queueUrl, messageId: sent.messageId }));
  report.exitCode = waitExitCode(report.results.map((entry) => entry.result), report.missing.length + outcome.missingTargetCount);
  for (const entry of report.results) {
    const where = entry.target === undefined ? entry.queueUrl : `target ${entry.target}`;
    if (!resultSucceeded(entry.result)) io.stderr(`publish: ${entry.result.result === "planned" ? "plan" : "deploy"} failed on ${where}: ${verdictText(entry.result)}\n`);
  }
  if (fleet !== undefined) {
    report.targets = targetsReport(fleet, report.results, outcome.missingTargets, outcome.missingTargetCount, unexpected);
    for (const name of outcome.missingTargets) {
      io.stderr(`publish: no result from target ${name} within ${formatDuration(timeoutMs)}; check that its listener runs with KUBE_PICO_CD_TARGET=${name}, its queue is subscribed to the topic, and KUBE_PICO_CD_RESULT_QUEUE is ${resultQueueUrl}\n`);
    }
    if ("count" in fleet.expect && outcome.missingTargetCount > 0) {
      io.stderr(`publish: ${outcome.missingTargetCount} of ${fleet.expect.count} expected targets gave no result within ${formatDuration(timeoutMs)}\n`);
    }
  }
  if (report.targets !== undefined && !json) io.stdout(formatTargetsTable(report.targets));
  if (report.missing.length > 0) {
    io.stderr(
      `publish: timed out waiting ${formatDuration(timeoutMs)} for the result from ${report.missing.map((m) => m.queueUrl).join(", ")}; ` +
        `check that the listener of ${report.missing.length === 1 ? "that queue" : "each"} runs and has KUBE_PICO_CD_RESULT_QUEUE set to ${resultQueueUrl}\n`,
    );
  }
  if (report.exitCode === EXIT_SENT && !json) {
    const superseded = report.results.filter((entry) => entry.result.result === "superseded").length;
    const planned = report.results.length > 0 && report.results.every((entry) => entry.result.result === "planned");
    io.stdout(
      `${planned ? "Plan succeeded" : "Deploy succeeded"} on ${report.results.length} ${fleet === undefined ? "queue" : "target"}${report.results.length === 1 ? "" : "s"}` +
        (superseded > 0 ? ` (${superseded} superseded: a newer build replaced this one there)` : "") +
        "\n",
    );
  }
  return report;
}

/** One row per answered target (in the order they answered), then one per missing target. */
function targetsReport(
  fleet: AwaitedBuild,
  results: WaitReport["results"],
  missingTargets: readonly string[],
  missingCount: number,
  unexpected: string[],
): NonNullable<WaitReport["targets"]> {
  const rows: TargetRow[] = [];
  for (const entry of results) {
    if (entry.target === undefined) continue;
    const { result } = entry;
    rows.push({
      target: entry.target,
      result: result.result,
      build: result.build.id,
      health: result.health === undefined ? "-" : result.health.status,
      afterMs: entry.receivedAfterMs,
    });
  }
  for (const name of missingTargets) rows.push({ target: name, result: "no result", build: "-", health: "-" });
  return { expected: "names" in fleet.expect ? [...fleet.expect.names] : fleet.expect.count, rows, unexpected, missingCount };
}
