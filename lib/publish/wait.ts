/**
 * publish --wait: after sending, wait on the result queue for each listener's result, print
 * each as it arrives, and turn them into the exit code.
 */
import type { SQSClient } from "@aws-sdk/client-sqs";
import { waitForResults } from "../sqs/result-waiter.ts";
import { resultSucceeded, type ResultMessage } from "../wire/result.ts";
import { EXIT_DEPLOY_FAILED, EXIT_SENT, EXIT_TIMED_OUT } from "./exit-codes.ts";
import { formatDuration, formatResult, verdictText, type PublishResult, type WaitReport } from "./summary.ts";

/**
 * The exit code of a --wait: {@link EXIT_DEPLOY_FAILED} when any result is not a success
 * (lib/wire/result.ts `resultSucceeded`), else {@link EXIT_TIMED_OUT} when a queue gave no result,
 * else {@link EXIT_SENT}.
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
  /** What was sent; a result is awaited for each of `published.sent`. */
  published: Pick<PublishResult, "sent">;
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
  const { client, resultQueueUrl, timeoutMs, published, json, signal } = options;
  const io = { stdout: options.stdout, stderr: options.stderr };
  const timeoutSeconds = Math.round(timeoutMs / 1000);
  const sentAt = Date.now();
  if (!json) io.stdout(`Waiting up to ${formatDuration(timeoutMs)} for the result${published.sent.length === 1 ? "" : "s"} on ${resultQueueUrl}\n`);
  const report: WaitReport = { resultQueueUrl, timeoutSeconds, results: [], missing: [], exitCode: EXIT_SENT };
  const outcome = await waitForResults({
    client,
    resultQueueUrl,
    awaited: published.sent.map((sent) => ({ queue: sent.queue, queueUrl: sent.queueUrl, messageId: sent.messageId })),
    timeoutMs,
    ...(signal ? { signal } : {}),
    onWarning: (text) => io.stderr(`publish: warning: ${text}\n`),
    onProgress: ({ sent, result }) => {
      if (json) return;
      const where = published.sent.length === 1 ? "" : ` ${sent.queue}:`;
      io.stdout(`  [${formatDuration(Date.now() - sentAt)}]${where} ${result.message}\n`);
    },
    onResult: ({ sent, result }) => {
      const entry = { queue: sent.queue, queueUrl: sent.queueUrl, messageId: sent.messageId, receivedAfterMs: Date.now() - sentAt, result };
      report.results.push(entry);
      if (!json) io.stdout(formatResult(entry));
    },
  });
  report.missing = outcome.missing.map((sent) => ({ queue: sent.queue, queueUrl: sent.queueUrl, messageId: sent.messageId }));
  report.exitCode = waitExitCode(report.results.map((entry) => entry.result), report.missing.length);
  for (const entry of report.results) {
    if (!resultSucceeded(entry.result)) io.stderr(`publish: ${entry.result.result === "planned" ? "plan" : "deploy"} failed on ${entry.queueUrl}: ${verdictText(entry.result)}\n`);
  }
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
      `${planned ? "Plan succeeded" : "Deploy succeeded"} on ${report.results.length} queue${report.results.length === 1 ? "" : "s"}` +
        (superseded > 0 ? ` (${superseded} superseded: a newer build replaced this one there)` : "") +
        "\n",
    );
  }
  return report;
}
