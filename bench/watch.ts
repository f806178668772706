/**
 * A Kubernetes watch on one named object, for the benchmarks: the API server pushes every
 * change, so the benchmark learns when the listener wrote its Lease or its record within a
 * millisecond or so of the write, without polling (a poll would cost the API server requests
 * while the listener is being timed, and would add up to its own interval to each figure).
 *
 * Each event carries the time it arrived here (Date.now(), the same clock the benchmark
 * stamps SendMessage with). A watch the server ends (its request timeout) is opened again from
 * the last resourceVersion seen.
 */
import { readFileSync } from "node:fs";
import { Agent, request, type RequestOptions } from "node:https";
import type { IncomingMessage } from "node:http";

/** Where the API server is and the admin credentials (PEM files), as the test environment provides them. */
export interface WatchTarget {
  kubeServer: string;
  servingCertFile: string;
  adminCertFile: string;
  adminKeyFile: string;
}

/** One watch event, with the time it arrived (ms since the epoch). */
export interface WatchEvent {
  type: string;
  object: { metadata?: { resourceVersion?: string }; [key: string]: unknown };
  arrivedMs: number;
}

export interface Watch {
  /** Resolves once the server has accepted the watch (events from then on are seen). */
  ready: Promise<void>;
  stop(): void;
}

/**
 * Watches the object `name` in the collection at `collectionPath` (e.g.
 * `/api/v1/namespaces/ns/configmaps`) and calls `onEvent` for every ADDED, MODIFIED and
 * DELETED event, in order.
 */
export function watchObject(target: WatchTarget, collectionPath: string, name: string, onEvent: (event: WatchEvent) => void): Watch {
  const agent = new Agent({
    ca: readFileSync(target.servingCertFile, "utf8"),
    cert: readFileSync(target.adminCertFile, "utf8"),
    key: readFileSync(target.adminKeyFile, "utf8"),
    keepAlive: false,
  });
  const server = new URL(target.kubeServer);
  let stopped = false;
  let resourceVersion: string | undefined;
  let current: IncomingMessage | undefined;
  let markReady: () => void = () => {};
  let failReady: (error: Error) => void = () => {};
  const ready = new Promise<void>((resolve, reject) => {
    markReady = resolve;
    failReady = reject;
  });

  const open = () => {
    if (stopped) return;
    const query = new URLSearchParams({ watch: "true", fieldSelector: `metadata.name=${name}`, ...(resourceVersion === undefined ? {} : { resourceVersion }) });
    const options: RequestOptions = { agent, host: server.hostname, port: server.port, method: "GET", path: `${collectionPath}?${query}` };
    const req = request(options, (res) => {
      current = res;
      if (res.statusCode !== 200) {
        failReady(new Error(`Cannot watch ${collectionPath}/${name}: the API server answered ${res.statusCode}`));
        res.resume();
        return;
      }
      markReady();
      let buffer = "";
      res.setEncoding("utf8").on("data", (chunk: string) => {
        const arrivedMs = Date.now();
        buffer += chunk;
        let newline: number;
        while ((newline = buffer.indexOf("\n")) >= 0) {
          const line = buffer.slice(0, newline);
          buffer = buffer.slice(newline + 1);
          if (line.trim() === "") continue;
          const event = JSON.parse(line) as { type: string; object: WatchEvent["object"] };
          if (event.type === "ERROR") {
            // 410 Gone: the resourceVersion is too old; start over from now.
            resourceVersion = undefined;
            continue;
          }
          resourceVersion = event.object.metadata?.resourceVersion ?? resourceVersion;
          onEvent({ type: event.type, object: event.object, arrivedMs });
        }
      });
      res.on("end", () => setTimeout(open, 10));
      res.on("error", () => {});
    });
    req.on("error", (error) => {
      failReady(error);
      if (!stopped) setTimeout(open, 500);
    });
    req.end();
  };
  open();
  return {
    ready,
    stop: () => {
      stopped = true;
      current?.destroy();
      agent.destroy();
    },
  };
}
