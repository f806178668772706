/**
 * The listener's checks at start, against the real ElasticMQ and API server: what no wait
 * cures (a queue that does not exist, by name or by URL; no region; a kubeconfig that cannot
 * be read) exits 1 at once with one line naming it, --once included; an SQS that cannot be
 * reached is waited out with backoff. A listener that starts says which version it is.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, connect, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { VERSION } from "../../lib/version.ts";
import { createNamespace, createQueue, testEnv } from "../env/testenv.ts";
import { runListenerOnce, startListener, type LogLine } from "../helpers/listener-process.ts";
import { closedPort } from "../helpers/unreachable.ts";

const cleanups: Array<() => void | Promise<void>> = [];
afterAll(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const errors = (lines: readonly LogLine[]) => lines.filter((line) => line.level === "error").map((line) => line.msg);
const started = (lines: readonly LogLine[]) => lines.some((line) => line.msg === "listening");

describe("listener start: what no wait cures exits 1 with one line", () => {
  for (const once of [false, true]) {
    const mode = once ? "with --once" : "without --once";

    test(`a queue name that does not exist ${mode}`, async () => {
      const namespace = await createNamespace("start");
      const run = await runListenerOnce({ queueUrl: "kpcd-no-such-queue", namespace, env: { KUBE_PICO_CD_ONCE: String(once) } });
      expect(run.code).toBe(1);
      expect(errors(run.lines)).toEqual(['queue "kpcd-no-such-queue" does not exist in this region: check KUBE_PICO_CD_QUEUE and the region']);
      expect(started(run.lines)).toBe(false);
    });

    test(`a queue URL that does not exist ${mode}`, async () => {
      const namespace = await createNamespace("start");
      const { sqsEndpoint } = await testEnv();
      const url = `${sqsEndpoint}/000000000000/kpcd-no-such-queue`;
      const run = await runListenerOnce({ queueUrl: url, namespace, env: { KUBE_PICO_CD_ONCE: String(once) } });
      expect(run.code).toBe(1);
      expect(errors(run.lines)).toEqual([`queue ${url} does not exist: check KUBE_PICO_CD_QUEUE (its account, name and region)`]);
      expect(started(run.lines)).toBe(false);
    });

    test(`no region for a queue given by name ${mode}`, async () => {
      const namespace = await createNamespace("start");
      const run = await runListenerOnce({
        queueUrl: "deploy",
        namespace,
        env: { KUBE_PICO_CD_ONCE: String(once), AWS_REGION: "", AWS_DEFAULT_REGION: "", KUBE_PICO_CD_ENDPOINT_URL: "" },
      });
      expect(run.code).toBe(1);
      expect(run.lines).toEqual([]);
      expect(run.other.join("")).toBe(
        "listener: Invalid configuration:\n" +
          '  - --region: no AWS region for --queue "deploy": give the queue\'s AWS URL (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME), or set --region (KUBE_PICO_CD_REGION, AWS_REGION or AWS_DEFAULT_REGION), or --endpoint-url for a local SQS server\n',
      );
    });

    test(`a kubeconfig that does not exist, or cannot be read ${mode}`, async () => {
      const queue = await createQueue();
      const dir = mkdtempSync(join(tmpdir(), "kpcd-start-"));
      cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
      const missing = join(dir, "missing");
      const gone = await runListenerOnce({ queueUrl: queue.url, namespace: "start", kubeconfig: missing, env: { KUBE_PICO_CD_ONCE: String(once) } });
      expect(gone.code).toBe(1);
      expect(errors(gone.lines)).toEqual([`cannot configure the Kubernetes API client: Cannot use kubeconfig ${missing}: it does not exist`]);
      // A directory: reading it fails (EISDIR) even for root, for whom no file mode forbids reading.
      const unreadable = await runListenerOnce({ queueUrl: queue.url, namespace: "start", kubeconfig: dir, env: { KUBE_PICO_CD_ONCE: String(once) } });
      expect(unreadable.code).toBe(1);
      expect(errors(unreadable.lines)).toHaveLength(1);
      expect(errors(unreadable.lines)[0]).toStartWith(`cannot configure the Kubernetes API client: Cannot use kubeconfig ${dir}: cannot read it: `);
      expect(started(gone.lines) || started(unreadable.lines)).toBe(false);
    });
  }
});

describe("listener start: what a wait cures is retried", () => {
  test("an SQS that cannot be reached yet is retried with backoff until it answers, then the listener starts", async () => {
    const namespace = await createNamespace("start");
    const queue = await createQueue();
    const { sqsEndpoint } = await testEnv();
    const port = await closedPort();
    const listener = await startListener({ queueUrl: queue.url, namespace, env: { KUBE_PICO_CD_ENDPOINT_URL: `http://127.0.0.1:${port}` } });
    cleanups.push(async () => {
      listener.kill("SIGTERM");
      await listener.exited;
    });
    const first = await listener.waitForLog((line) => line.msg === "checking the queue failed; backing off");
    await listener.waitForLog((line) => line.msg === "checking the queue failed; backing off" && line !== first);
    expect(started(listener.lines)).toBe(false);
    // SQS appears on the port: a TCP relay to ElasticMQ.
    const target = new URL(sqsEndpoint);
    const relay: Server = createServer((socket) => {
      const upstream = connect(Number(target.port), target.hostname);
      socket.pipe(upstream).pipe(socket);
      socket.on("error", () => upstream.destroy());
      upstream.on("error", () => socket.destroy());
    });
    await new Promise<void>((ready) => relay.listen(port, "127.0.0.1", ready));
    cleanups.push(() => new Promise<void>((done) => relay.close(() => done())));
    const listening = await listener.waitForLog((line) => line.msg === "listening", 30_000);
    expect(listening).toMatchObject({ version: VERSION, queueUrl: queue.url });
    listener.kill("SIGTERM");
    expect(await listener.exited).toBe(0);
  });
});

describe("listener start: version and names", () => {
  test("the listening line and kube_pico_cd_build_info carry package.json's version", async () => {
    const namespace = await createNamespace("start");
    const queue = await createQueue();
    const listener = await startListener({ queueUrl: queue.url, namespace, env: { KUBE_PICO_CD_HTTP_PORT: "0", KUBE_PICO_CD_HTTP_HOST: "127.0.0.1" } });
    cleanups.push(async () => {
      listener.kill("SIGTERM");
      await listener.exited;
    });
    const listening = await listener.waitForLog((line) => line.msg === "listening");
    expect(listening["version"]).toBe(VERSION);
    const metrics = await (await fetch(`http://127.0.0.1:${String(listening["httpPort"])}/metrics`)).text();
    expect(metrics).toContain(`\nkube_pico_cd_build_info{version="${VERSION}"} 1\n`);
    listener.kill("SIGTERM");
    expect(await listener.exited).toBe(0);
  });

  test("a deprecated variable still works, with one warning line naming the current name", async () => {
    const namespace = await createNamespace("start");
    const queue = await createQueue();
    const { sqsEndpoint } = await testEnv();
    const run = await runListenerOnce({ queueUrl: queue.url, namespace, env: { KUBE_PICO_CD_ENDPOINT_URL: "", KUBE_PICO_CD_SQS_ENDPOINT: sqsEndpoint } });
    expect(run.code).toBe(0);
    expect(run.lines.filter((line) => line.level === "warn" && line.msg.includes("deprecated")).map((line) => line.msg)).toEqual([
      "KUBE_PICO_CD_SQS_ENDPOINT is deprecated: use KUBE_PICO_CD_ENDPOINT_URL",
    ]);
  });
});
