/**
 * A process that holds the deploy Lease, for tests that freeze a holder for real (SIGSTOP) and
 * let it go on (SIGCONT). Run with `bun run test/helpers/lease-holder.ts`; configured by
 * environment variables (LEASE_KUBECONFIG, LEASE_NAMESPACE, LEASE_IDENTITY, and the three
 * durations in seconds: LEASE_DURATION, LEASE_RENEW_DEADLINE, LEASE_RETRY_PERIOD).
 *
 * Prints one JSON line per event: {"event":"held"}, {"event":"lost","message":…}, and, after
 * it reads "release" on stdin, {"event":"released"} (or {"event":"release-failed",…}) before
 * it exits.
 */
import { createInterface } from "node:readline";
import { KubeApi } from "../../lib/kube/api.ts";
import { acquireLease } from "../../lib/kube/lease.ts";
import { testKubeConnection } from "./kube-api.ts";

function required(name: string): string {
  const value = process.env[name];
  if (value === undefined || value === "") throw new Error(`lease-holder: ${name} is not set`);
  return value;
}

const say = (line: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(line)}\n`);

const api = new KubeApi(testKubeConnection(required("LEASE_KUBECONFIG")));
const held = await acquireLease({
  api,
  namespace: required("LEASE_NAMESPACE"),
  identity: required("LEASE_IDENTITY"),
  leaseDurationSeconds: Number(required("LEASE_DURATION")),
  renewDeadlineSeconds: Number(required("LEASE_RENEW_DEADLINE")),
  retryPeriodSeconds: Number(required("LEASE_RETRY_PERIOD")),
});
held.lost.addEventListener("abort", () => say({ event: "lost", message: (held.lost.reason as Error).message }), { once: true });
say({ event: "held" });

for await (const line of createInterface({ input: process.stdin })) {
  if (line.trim() !== "release") continue;
  try {
    await held.release();
    say({ event: "released" });
  } catch (error) {
    say({ event: "release-failed", message: (error as Error).message });
  }
  break;
}
api.close();
process.exit(0);
