/**
 * Parsing a bundle on two threads (lib/manifests/parse-worker.ts, lib/manifests/bundle.ts
 * `readBundle`): the same objects, order, sources, notices and problems as on one, also when
 * the second thread cannot start or dies half-way, and the payload's bytes do not change.
 * These start real worker threads.
 */
import { describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BundleError } from "../../lib/errors.ts";
import { PARSE_WORKER_AFTER_CHARACTERS, readBundle, type CollectBundleOptions, type ReadItem } from "../../lib/manifests/bundle.ts";
import { hasSecondCore, startParseWorker, type ParseWorker } from "../../lib/manifests/parse-worker.ts";
import { bundleMessage } from "../../lib/publish/bundle-message.ts";

/** A Deployment and a ConfigMap of about `bytes`, as a file of a repository. */
function manifest(name: string, bytes: number): string {
  let text = `apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: ${name}\n  namespace: team\n  labels: {app: ${name}}\nspec:\n  replicas: 2\n  template:\n    spec:\n      containers:\n        - {name: app, image: "example.com/${name}:1"}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: ${name}-config, namespace: team}\ndata:\n`;
  for (let line = 0; text.length < bytes; line++) text += `  key_${line}: "${name} ${line}"\n`;
  return text;
}

/** One large file of many documents (cut into pieces), many small files, a hook, a list and standard input. */
function repository(): { dir: string; stdin: string } {
  const dir = mkdtempSync(join(tmpdir(), "kpcd-parse-worker-"));
  writeFileSync(join(dir, "00-large.yaml"), Array.from({ length: 300 }, (_, i) => manifest(`large-${i}`, 3000)).join("---\n"));
  mkdirSync(join(dir, "apps"));
  for (let i = 0; i < 150; i++) writeFileSync(join(dir, "apps", `app-${String(i).padStart(3, "0")}.yaml`), manifest(`app-${i}`, 4000));
  writeFileSync(join(dir, "hooks.yaml"), "apiVersion: v1\nkind: Pod\nmetadata:\n  name: test\n  annotations: {helm.sh/hook: test}\n---\napiVersion: batch/v1\nkind: Job\nmetadata:\n  name: migrate\n  annotations: {helm.sh/hook: pre-upgrade}\n");
  writeFileSync(join(dir, "list.yaml"), "apiVersion: v1\nkind: ConfigMapList\nitems:\n- metadata: {name: from-list}\n  data: {'10': x, '9': y}\n");
  return { dir, stdin: manifest("from-stdin", 2000) };
}

async function read(paths: string[], options: CollectBundleOptions & { stdin?: string }) {
  const items: ReadItem[] = [];
  const { stdin, ...rest } = options;
  const summary = await readBundle(paths, { ...rest, ...(stdin === undefined ? {} : { readStdin: async () => stdin }), onItem: (item) => items.push(item) });
  return { items, summary };
}

async function problems(paths: string[], options: CollectBundleOptions): Promise<readonly string[]> {
  const error = await read(paths, options).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(BundleError);
  return (error as BundleError).problems;
}

/** A {@link ParseWorker} that counts its jobs. */
function countingWorker(start = () => startParseWorker()): { start: () => ParseWorker; jobs: () => number; started: () => number } {
  let jobs = 0;
  let started = 0;
  return {
    start: () => {
      started++;
      const worker = start();
      return { read: (pieces, options) => (jobs++, worker.read(pieces, options)), close: () => worker.close() };
    },
    jobs: () => jobs,
    started: () => started,
  };
}

describe("readBundle() on two threads", () => {
  test("readBundle() hands over the same items, in the same order, with the same notices, on two threads as on one", async () => {
    const { dir, stdin } = repository();
    const one = await read([dir, "-"], { cwd: dir, stdin, parseWorker: "never" });
    const worker = countingWorker();
    const two = await read([dir, "-"], { cwd: dir, stdin, parseWorker: "always", startWorker: worker.start });
    expect(worker.jobs()).toBeGreaterThan(1);
    expect(two.items).toEqual(one.items);
    expect(two.summary).toEqual(one.summary);
    expect(one.summary.warnings).toEqual([]);
    expect(one.items).toHaveLength(300 * 2 + 150 * 2 + 1 + 1 + 2);
    expect(one.summary.notices).toHaveLength(2);
  }, 60_000);

  test("bundleMessage() gives the same payload, digest and sources on two threads as on one", async () => {
    const { dir } = repository();
    const fields = { build: { id: "b-1", timestampMs: 1_700_000_000_000 } };
    const one = await bundleMessage([dir], { cwd: dir, parseWorker: "never" }, fields);
    const worker = countingWorker();
    const two = await bundleMessage([dir], { cwd: dir, parseWorker: "always", startWorker: worker.start }, fields);
    expect(worker.jobs()).toBeGreaterThan(1);
    expect(two.warnings).toEqual([]);
    expect(two.encoded.body).toBe(one.encoded.body);
    expect(two.kinds).toEqual(one.kinds);
  }, 60_000);

  test("readBundle() reports the same problems, in the same order, on two threads: YAML errors and list items of a file cut into pieces, hooks, duplicates", async () => {
    const { dir } = repository();
    const large = Array.from({ length: 300 }, (_, i) => manifest(`large-${i}`, 3000));
    large[120] = `${large[120]}  broken: [unclosed\n`;
    large[250] = "apiVersion: v1\nkind: ConfigMapList\nitems:\n- metadata: {}\n";
    large[260] = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: twice}\ndata: {k: 1, k: 2}\n";
    writeFileSync(join(dir, "00-large.yaml"), large.join("---\n"));
    writeFileSync(join(dir, "zz-duplicate.yaml"), manifest("app-3", 500));
    writeFileSync(join(dir, "zz-hook.yaml"), "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations: {helm.sh/hook: sometime}\n");
    const one = await problems([dir], { cwd: dir, parseWorker: "never" });
    const worker = countingWorker();
    const two = await problems([dir], { cwd: dir, parseWorker: "always", startWorker: worker.start });
    expect(worker.jobs()).toBeGreaterThan(1);
    expect(two).toEqual(one);
    // Each earlier element holds two documents: the list is the file's document 501.
    expect(one.some((problem) => problem.includes("ConfigMapList (document 501) items[0]"))).toBe(true);
    expect(one.some((problem) => problem.endsWith("Map keys must be unique"))).toBe(true);
    expect(one.some((problem) => problem.includes("duplicate object apps/Deployment/team/app-3"))).toBe(true);
    expect(one.some((problem) => problem.includes("sometime"))).toBe(true);
  }, 60_000);

  test("readBundle() reads everything on this thread, with one warning, when the second thread cannot start its module", async () => {
    const { dir } = repository();
    const one = await read([dir], { cwd: dir, parseWorker: "never" });
    const failing = countingWorker(() => startParseWorker(new URL("./fixtures/parse-worker-throws.ts", import.meta.url)));
    const two = await read([dir], { cwd: dir, parseWorker: "always", startWorker: failing.start });
    expect(failing.started()).toBe(1);
    expect(two.items).toEqual(one.items);
    expect(two.summary.warnings).toHaveLength(1);
    expect(two.summary.warnings[0]).toStartWith("read the manifests on one thread: the second thread failed: ");
    expect(two.summary.warnings[0]).toContain("this module refuses to load");
  }, 60_000);

  test("readBundle() reads on this thread what a second thread that dies half-way did not answer", async () => {
    const { dir } = repository();
    const one = await read([dir], { cwd: dir, parseWorker: "never" });
    const dying = countingWorker(() => startParseWorker(new URL("./fixtures/parse-worker-dies.ts", import.meta.url)));
    const two = await read([dir], { cwd: dir, parseWorker: "always", startWorker: dying.start });
    expect(dying.jobs()).toBeGreaterThan(1);
    expect(two.items).toEqual(one.items);
    expect(two.summary.warnings).toEqual(["read the manifests on one thread: the second thread exited (3)"]);
  }, 60_000);

  test("readBundle() starts a second thread by itself only for a bundle large enough to gain from it, and not for one that is mostly one document", async () => {
    expect(hasSecondCore()).toBe(true);
    const over = PARSE_WORKER_AFTER_CHARACTERS + 100_000;
    const many = mkdtempSync(join(tmpdir(), "kpcd-parse-worker-"));
    for (let i = 0; i < 40; i++) writeFileSync(join(many, `cm-${String(i).padStart(2, "0")}.yaml`), manifest(`cm-${i}`, over / 40));
    const large = countingWorker();
    await read([many], { cwd: many, startWorker: large.start });
    expect(large.started()).toBe(1);

    const under = mkdtempSync(join(tmpdir(), "kpcd-parse-worker-"));
    for (let i = 0; i < 40; i++) writeFileSync(join(under, `cm-${String(i).padStart(2, "0")}.yaml`), manifest(`cm-${i}`, (PARSE_WORKER_AFTER_CHARACTERS - 100_000) / 40));
    const small = countingWorker();
    await read([under], { cwd: under, startWorker: small.start });
    expect(small.started()).toBe(0);

    // Over the size, but one document holds more than a quarter of it.
    const single = mkdtempSync(join(tmpdir(), "kpcd-parse-worker-"));
    for (let i = 0; i < 20; i++) writeFileSync(join(single, `cm-${String(i).padStart(2, "0")}.yaml`), manifest(`cm-${i}`, (over * 0.6) / 20));
    writeFileSync(join(single, "crd.yaml"), `${manifest("small", 1000)}---\n${manifest("one-large-document", over * 0.4)}---\n${manifest("other", 1000)}`);
    const oneDocument = countingWorker();
    const { items } = await read([single], { cwd: single, startWorker: oneDocument.start });
    expect(oneDocument.started()).toBe(0);
    expect(items).toHaveLength(20 * 2 + 6);
  }, 120_000);
});
