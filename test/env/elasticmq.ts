/**
 * ElasticMQ, a real SQS-compatible server, on 127.0.0.1 and a free port. Its default binds
 * 0.0.0.0; the config written here keeps it on loopback and uses strict SQS limits so that
 * tests see the same size and attribute rules as AWS.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { ensureElasticMQ } from "./prerequisites.ts";
import { freePort, startProcess, waitUntil, type ManagedProcess } from "./process.ts";

export const SQS_REGION = "us-east-1";
export const SQS_ACCOUNT = "000000000000";

export interface ElasticMQ {
  endpoint: string;
  port: number;
  process: ManagedProcess;
  stop(): Promise<void>;
}

/** Starts ElasticMQ in `dir` on `options.port` (default: a free port). */
export async function startElasticMQ(dir: string, options: { port?: number } = {}): Promise<ElasticMQ> {
  const { classpath } = await ensureElasticMQ();
  const port = options.port ?? (await freePort());
  const config = join(dir, "elasticmq.conf");
  writeFileSync(
    config,
    `include classpath("application.conf")
node-address {
  protocol = http
  host = "127.0.0.1"
  port = ${port}
  context-path = ""
}
rest-sqs {
  enabled = true
  bind-port = ${port}
  bind-hostname = "127.0.0.1"
  sqs-limits = strict
}
rest-stats.enabled = false
aws {
  region = ${SQS_REGION}
  accountId = ${SQS_ACCOUNT}
}
`,
  );
  const proc = startProcess(
    "elasticmq",
    "java",
    [`-Dconfig.file=${config}`, "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-cp", classpath, "org.elasticmq.server.Main"],
    { logFile: join(dir, "logs", "elasticmq.log") },
  );
  const endpoint = `http://127.0.0.1:${port}`;
  await waitUntil("ElasticMQ", async () => (await fetch(`${endpoint}/health`)).ok, { timeoutMs: 60_000, process: proc });
  return { endpoint, port, process: proc, stop: () => proc.stop() };
}
