/**
 * Benchmark: bundle and encode manifests as `publish --dry-run` does, against the floor of
 * parsing the same YAML with the `yaml` package alone, in the same runtime; report wall
 * time, max RSS, the ratio to the floor and the compression ratio.
 *
 *   ./node_modules/.bin/bun bench/publish-bundle.ts [--files 1000] [--kib-per-file 10] [--rounds 5]
 *   ./node_modules/.bin/bun bench/publish-bundle.ts --manifest install.yaml   # e.g. Argo CD's
 *   deno run -A bench/publish-bundle.ts ...
 *   node bench/publish-bundle.ts ...     # node 24 (type stripping)
 *
 * Without --manifest, 1,000 files (about 10 MB of YAML) are generated deterministically in a
 * temporary directory (--keep DIR writes them to DIR and keeps them). Every measurement runs
 * in a fresh child process of the same runtime, so that its max RSS and wall time are its
 * own: `--measure PATH` bundles and encodes (publish's modules are loaded inside the timing),
 * `--floor PATH` reads the same files and parses them with `yaml` alone. The two alternate,
 * round by round, and the ratio is the median of the rounds' ratios.
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { parseAllDocuments, type Tags } from "yaml";

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

/** Runs in a child: bundle and encode `path` as publish does, print the figures as JSON. */
async function measure(path: string, parseWorker: "auto" | "always" | "never"): Promise<void> {
  const started = performance.now();
  // Loaded here so that loading publish's modules is part of what is measured: publish's own
  // function, which reads and encodes at once (lib/publish/bundle-message.ts).
  const { bundleMessage } = await import("../lib/publish/bundle-message.ts");
  const { encoded, inputs } = await bundleMessage([path], { parseWorker }, { build: { id: "bench", timestampMs: 1_700_000_000_000 } });
  const totalMs = performance.now() - started;
  process.stdout.write(
    JSON.stringify({
      files: inputs.length,
      objects: encoded.objectCount,
      totalMs: Math.round(totalMs),
      maxRssBytes: process.resourceUsage().maxRSS * 1024,
      rawBytes: encoded.rawBytes,
      compressedBytes: encoded.compressedBytes,
      bodyBytes: encoded.bodyBytes,
    }),
  );
}

/** The manifest files under `path` (a file, or a directory walked in sorted order), as publish reads them. */
function manifestFiles(path: string): string[] {
  if (!statSync(path).isDirectory()) return [path];
  return readdirSync(path)
    .filter((name) => !name.startsWith("."))
    .sort()
    .flatMap((name) => {
      const child = join(path, name);
      if (statSync(child).isDirectory()) return manifestFiles(child);
      return /\.(ya?ml|json)$/.test(name) ? [child] : [];
    });
}

/**
 * Runs in a child: the floor. Reads the same files and parses them with `yaml` alone, with
 * the options publish uses (lib/manifests/parse.ts: YAML 1.1, no timestamps, no key check),
 * into the same JSON values; nothing else.
 */
function floor(path: string): void {
  const started = performance.now();
  const options = {
    version: "1.1" as const,
    prettyErrors: false,
    uniqueKeys: false,
    logLevel: "silent" as const,
    customTags: (tags: Tags) =>
      tags.filter((tag) => typeof tag === "string" || (tag.tag !== "tag:yaml.org,2002:timestamp" && tag.format !== "TIME")),
  };
  let documents = 0;
  for (const file of manifestFiles(path)) {
    for (const document of parseAllDocuments(readFileSync(file, "utf8"), options)) {
      if (document.toJS({ maxAliasCount: 1000 }) != null) documents++;
    }
  }
  process.stdout.write(
    JSON.stringify({ documents, totalMs: Math.round(performance.now() - started), maxRssBytes: process.resourceUsage().maxRSS * 1024 }),
  );
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** Runs this file in a fresh child of the same runtime with `args`; returns its figures and wall time. */
function child(args: readonly string[]): { figures: Record<string, number>; wallMs: number } {
  const runtime = "Deno" in globalThis ? [process.execPath, "run", "-A"] : [process.execPath];
  const started = performance.now();
  const result = spawnSync(runtime[0]!, [...runtime.slice(1), fileURLToPath(import.meta.url), ...args], {
    encoding: "utf8",
    maxBuffer: 16 * 1024 * 1024,
  });
  const wallMs = performance.now() - started;
  if (result.status !== 0) throw new Error(`the measuring child ${args.join(" ")} failed (exit ${result.status}): ${result.stderr}`);
  return { figures: JSON.parse(result.stdout) as Record<string, number>, wallMs };
}

async function run(): Promise<void> {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: {
      files: { type: "string", default: "1000" },
      "kib-per-file": { type: "string", default: "10" },
      rounds: { type: "string", default: "5" },
      manifest: { type: "string" },
      keep: { type: "string" },
      measure: { type: "string" },
      floor: { type: "string" },
      "parse-worker": { type: "string", default: "auto" },
    },
  });
  const parseWorker = values["parse-worker"];
  if (parseWorker !== "auto" && parseWorker !== "always" && parseWorker !== "never") throw new Error(`--parse-worker must be auto, always or never, not ${parseWorker}`);
  if (values.measure !== undefined) return measure(values.measure, parseWorker);
  if (values.floor !== undefined) return floor(values.floor);

  const rounds = Number(values.rounds);
  let path: string;
  let cleanup = () => {};
  if (values.manifest !== undefined) {
    path = resolve(values.manifest);
  } else {
    const files = Number(values.files);
    const bytesPerFile = Number(values["kib-per-file"]) * 1024;
    path = values.keep === undefined ? mkdtempSync(join(tmpdir(), "kpcd-bench-")) : resolve(values.keep);
    if (values.keep === undefined) cleanup = () => rmSync(path, { recursive: true, force: true });
    const next = random(42);
    for (let i = 0; i < files; i++) {
      const sub = join(path, `team-${i % 20}`);
      mkdirSync(sub, { recursive: true });
      writeFileSync(join(sub, `svc-${String(i).padStart(4, "0")}.yaml`), manifestFile(i, bytesPerFile, next));
    }
  }
  try {
    const yamlBytes = manifestFiles(path).reduce((sum, file) => sum + statSync(file).size, 0);
    const measured: ReturnType<typeof child>[] = [];
    const floors: ReturnType<typeof child>[] = [];
    for (let round = 0; round < rounds; round++) {
      measured.push(child(["--measure", path, "--parse-worker", parseWorker]));
      floors.push(child(["--floor", path]));
    }
    const figures = measured[0]!.figures;
    const mib = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(2)} MiB`;
    const ms = (value: number) => `${Math.round(value)} ms`;
    const wall = (runs: typeof measured) => median(runs.map((r) => r.wallMs));
    const ratio = median(measured.map((r, i) => r.wallMs / floors[i]!.wallMs));
    const lines = [
      `runtime            ${process.versions["bun"] ? `bun ${process.versions["bun"]}` : process.versions["deno"] ? `deno ${process.versions["deno"]}` : `node ${process.version}`}`,
      `input              ${figures["files"]} files, ${mib(yamlBytes)} of YAML, ${figures["objects"]} objects`,
      `medians of ${rounds} rounds, each a fresh process (wall time includes the runtime's start-up):`,
      `bundle + encode    ${ms(wall(measured))} wall (in process: ${ms(median(measured.map((r) => r.figures["totalMs"]!)))}), max RSS ${mib(median(measured.map((r) => r.figures["maxRssBytes"]!)))}`,
      `floor: yaml alone  ${ms(wall(floors))} wall (in process: ${ms(median(floors.map((r) => r.figures["totalMs"]!)))}), max RSS ${mib(median(floors.map((r) => r.figures["maxRssBytes"]!)))}`,
      `ratio to floor     ${ratio.toFixed(2)} x wall (median of the rounds' ratios)`,
      `payload            ${mib(figures["rawBytes"]!)} JSON -> ${mib(figures["compressedBytes"]!)} gzipped ` +
        `(ratio ${(figures["rawBytes"]! / figures["compressedBytes"]!).toFixed(1)}:1; YAML/gzip ${(yamlBytes / figures["compressedBytes"]!).toFixed(1)}:1)`,
      `message body       ${mib(figures["bodyBytes"]!)} (${figures["bodyBytes"]! <= 1_048_576 ? "fits" : "does not fit"} SQS's 1 MiB maximum)`,
    ];
    process.stdout.write(`${lines.join("\n")}\n`);
  } finally {
    cleanup();
  }
}

await run();
