/**
 * The listener's HTTP endpoints for Kubernetes probes:
 * - `/healthz`: 200 while the process runs its loop (liveness);
 * - `/readyz`: 200 when SQS answered recently and the API server's last answer was good,
 *   503 with the reason otherwise (readiness: a listener that cannot reach either would
 *   deploy nothing);
 * - `/metrics`: the Prometheus text exposition (lib/listener/metrics.ts), when metrics are given.
 */
import { createServer, type Server } from "node:http";
import { METRICS_CONTENT_TYPE } from "./metrics.ts";

export interface Readiness {
  /** Last successful receive from SQS, ms since the epoch (0: never). */
  lastSqsOkMs: number;
  /** Whether the last API server contact worked, and when it was. */
  apiReachable: boolean;
  lastApiCheckMs: number;
}

export interface HealthServerOptions {
  host: string;
  /** 0: any free port. */
  port: number;
  readiness: () => Readiness;
  /** SQS counts as reachable for this long after its last answer, in ms. */
  sqsStaleMs: number;
  /** The `/metrics` body; without it `/metrics` is 404. */
  metrics?: () => string;
  now?: () => number;
}

export interface HealthServer {
  /** The bound port (useful with port 0). */
  port: number;
  close(): Promise<void>;
}

/** Why the listener is not ready, or undefined when it is. */
export function notReadyReason(r: Readiness, sqsStaleMs: number, nowMs: number): string | undefined {
  if (r.lastSqsOkMs === 0) return "SQS not reached yet";
  if (nowMs - r.lastSqsOkMs > sqsStaleMs) return `SQS last reached ${Math.round((nowMs - r.lastSqsOkMs) / 1000)} s ago`;
  if (r.lastApiCheckMs === 0) return "Kubernetes API server not reached yet";
  if (!r.apiReachable) return "Kubernetes API server unreachable at the last check";
  return undefined;
}

export function startHealthServer(options: HealthServerOptions): Promise<HealthServer> {
  const { host, port, readiness, sqsStaleMs, metrics, now = Date.now } = options;
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD" }).end();
      return;
    }
    if (path === "/healthz") {
      res.writeHead(200, { "content-type": "text/plain" }).end("ok\n");
      return;
    }
    if (path === "/readyz") {
      const reason = notReadyReason(readiness(), sqsStaleMs, now());
      res.writeHead(reason ? 503 : 200, { "content-type": "text/plain" }).end(reason ? `not ready: ${reason}\n` : "ok\n");
      return;
    }
    if (path === "/metrics" && metrics) {
      res.writeHead(200, { "content-type": METRICS_CONTENT_TYPE }).end(metrics());
      return;
    }
    res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      const address = server.address();
      resolve({
        port: typeof address === "object" && address ? address.port : port,
        close: () => new Promise<void>((done) => server.close(() => done())),
      });
    });
  });
}
