/**
 * Benchmark: bundle and encode 1,000 manifest files (about 10 MB of YAML), as
 * `publish --dry-run` does, and report wall time, max RSS and compression ratio.
 *
 *   ./node_modules/.bin/bun bench/publish-bundle.ts [--files 1000] [--kib-per-file 10]
 *
 * The files are generated deterministically in a temporary directory; the measurement runs
 * in a fresh child process (the same runtime) so its max RSS is the bundling alone.
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { collectBundle } from "../lib/manifests/bundle.ts";
import { encodeMessage } from "../lib/wire/message.ts";

/** A small deterministic PRNG (mulberry32) so every run bundles the same bytes. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const WORDS = ["cache", "timeout", "retries", "endpoint", "region", "replicas", "feature", "enabled", "limit", "pool", "queue", "batch", "level", "window", "token", "scope"];

/** One file: a Deployment, a Service and a ConfigMap whose data fills it to about `bytes`. */
function manifestFile(index: number, bytes: number, next: () => number): string {
  const name = `svc-${String(index).padStart(4, "0")}`;
  const namespace = `team-${index % 20}`;
  const head = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: ${name}
  namespace: ${namespace}
  labels: {app: ${name}, tier: backend}
spec:
  replicas: ${1 + (index % 5)}
  selector:
    matchLabels: {app: ${name}}
  template:
    metadata:
      labels: {app: ${name}, tier: backend}
    spec:
      containers:
        - name: app
          image: registry.example.com/${name}:1.${index % 50}.${Math.floor(next() * 100)}
          ports: [{containerPort: 8080}]
          resources:
            requests: {cpu: 100m, memory: 128Mi}
            limits: {cpu: 500m, memory: 512Mi}
          envFrom: [{configMapRef: {name: ${name}-config}}]
---
apiVersion: v1
kind: Service
metadata:
  name: ${name}
  namespace: ${namespace}
spec:
  selector: {app: ${name}}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: ${name}-config
  namespace: ${namespace}
data:
`;
  let text = head;
  let line = 0;
  while (text.length < bytes) {
    const key = `${WORDS[Math.floor(next() * WORDS.length)]}_${WORDS[Math.floor(next() * WORDS.length)]}_${line++}`;
    const value = `${WORDS[Math.floor(next() * WORDS.length)]}-${Math.floor(next() * 1e9).toString(36)}`;
    text += `  ${key}: "${value}"\n`;
  }
  return text;
}

/** Runs in the child: bundle and encode `dir`, print the figures as JSON. */
async function measure(dir: string): Promise<void> {
  const started = performance.now();
  const bundle = await collectBundle([dir]);
  const bundledMs = performance.now() - started;
  const encoded = encodeMessage({ build: { id: "bench", timestampMs: 1_700_000_000_000 }, objects: bundle.objects });
  const totalMs = performance.now() - started;
  process.stdout.write(
    JSON.stringify({
      files: bundle.inputs.length,
      objects: encoded.objectCount,
      bundleMs: Math.round(bundledMs),
      totalMs: Math.round(totalMs),
      maxRssBytes: process.resourceUsage().maxRSS * 1024,
      rawBytes: encoded.rawBytes,
      compressedBytes: encoded.compressedBytes,
      bodyBytes: encoded.bodyBytes,
    }),
  );
}

async function run(): Promise<void> {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: {
      files: { type: "string", default: "1000" },
      "kib-per-file": { type: "string", default: "10" },
      measure: { type: "string" },
    },
  });
  if (values.measure !== undefined) return measure(values.measure);

  const files = Number(values.files);
  const bytesPerFile = Number(values["kib-per-file"]) * 1024;
  const dir = mkdtempSync(join(tmpdir(), "kpcd-bench-"));
  try {
    const next = random(42);
    let yamlBytes = 0;
    for (let i = 0; i < files; i++) {
      const sub = join(dir, `team-${i % 20}`);
      mkdirSync(sub, { recursive: true });
      const text = manifestFile(i, bytesPerFile, next);
      yamlBytes += Buffer.byteLength(text);
      writeFileSync(join(sub, `svc-${String(i).padStart(4, "0")}.yaml`), text);
    }
    const runtime = "Deno" in globalThis ? [process.execPath, "run", "-A"] : [process.execPath];
    const wallStarted = performance.now();
    const child = spawnSync(runtime[0]!, [...runtime.slice(1), fileURLToPath(import.meta.url), "--measure", dir], {
      encoding: "utf8",
      maxBuffer: 16 * 1024 * 1024,
    });
    const wallMs = performance.now() - wallStarted;
    if (child.status !== 0) throw new Error(`the measuring child failed (exit ${child.status}): ${child.stderr}`);
    const figures = JSON.parse(child.stdout) as Record<string, number>;
    const mib = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(2)} MiB`;
    const lines = [
      `runtime            ${process.versions["bun"] ? `bun ${process.versions["bun"]}` : process.versions["deno"] ? `deno ${process.versions["deno"]}` : `node ${process.version}`}`,
      `input              ${figures["files"]} files, ${mib(yamlBytes)} of YAML, ${figures["objects"]} objects`,
      `bundle (read+parse+validate)  ${figures["bundleMs"]} ms`,
      `bundle + encode    ${figures["totalMs"]} ms (process wall time incl. start-up: ${Math.round(wallMs)} ms)`,
      `max RSS            ${mib(figures["maxRssBytes"]!)}`,
      `payload            ${mib(figures["rawBytes"]!)} JSON -> ${mib(figures["compressedBytes"]!)} gzipped ` +
        `(ratio ${(figures["rawBytes"]! / figures["compressedBytes"]!).toFixed(1)}:1; YAML/gzip ${(yamlBytes / figures["compressedBytes"]!).toFixed(1)}:1)`,
      `message body       ${mib(figures["bodyBytes"]!)} (${figures["bodyBytes"]! <= 1_048_576 ? "fits" : "does not fit"} SQS's 1 MiB maximum)`,
    ];
    process.stdout.write(`${lines.join("\n")}\n`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await run();
