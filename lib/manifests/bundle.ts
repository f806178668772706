/**
 * The bundle: Kubernetes objects collected from files, directories and standard input,
 * parsed the way kubectl reads YAML (lib/manifests/parse.ts), with Helm's hooks sorted out
 * (lib/manifests/helm-hooks.ts), and validated as a whole before anything is sent. Every
 * problem is reported with the file, line and column it comes from.
 */
import { readdirSync, readFileSync, realpathSync, statSync } from "node:fs";
import { basename, isAbsolute, join, relative, resolve, sep } from "node:path";
import { text as streamText } from "node:stream/consumers";
import { BundleError, errorCode } from "../errors.ts";
import { type BundledObject, type KubeObject } from "./kube-object.ts";
import { KUSTOMIZATION_FILE_NAMES, renderKustomization } from "./kustomize.ts";
import { formatRef, refOf } from "./object-ref.ts";
import { PARSE_WORKER_AFTER_CHARACTERS, PieceReader, type InputText } from "./piece-reader.ts";
import { startParseWorker, type ParseWorker } from "./parse-worker.ts";
import type { ReadItem } from "./pieces.ts";

export { isRecord, kubeObjectProblem, type BundledObject, type KubeObject } from "./kube-object.ts";
export { parseManifests, type ParsedManifests } from "./parse.ts";
export type { ReadItem } from "./pieces.ts";
export { PARSE_WORKER_AFTER_CHARACTERS } from "./piece-reader.ts";

/** The result of {@link collectBundle}. */
export interface Bundle {
  /** The objects in bundle order. */
  objects: KubeObject[];
  /** The same objects with their sources. */
  items: BundledObject[];
  /** What was read, in order, as shown to the user (files, kustomization directories, `<stdin>`). */
  inputs: string[];
  /** One line per Helm hook applied or left out (lib/manifests/helm-hooks.ts), `source: what and why`. */
  notices: string[];
}

/** What {@link readBundle} tells besides the objects it handed over. */
export interface BundleSummary {
  /** What was read, in order, as shown to the user (files, kustomization directories, `<stdin>`). */
  inputs: string[];
  /** One line per Helm hook applied or left out (lib/manifests/helm-hooks.ts), `source: what and why`. */
  notices: string[];
  /** What did not go as it should but did not change the bundle (the second thread failed, and this one read its share). */
  warnings: string[];
  /** How many objects the bundle holds. */
  objectCount: number;
}

/** Options of {@link readBundle}: those of {@link collectBundle}, and where the objects go. */
export interface ReadBundleOptions extends CollectBundleOptions {
  /**
   * Called with each object of the bundle, as its canonical JSON, in bundle order, as soon as
   * its file is read. When {@link readBundle} then throws, the bundle is refused and what this
   * was given must be dropped.
   */
  onItem: (item: ReadItem) => void;
}

/** Options of {@link collectBundle}. */
export interface CollectBundleOptions {
  /** Directory relative paths are resolved against and shown relative to. Default `process.cwd()`. */
  cwd?: string;
  /** Globs of files and directories to skip while walking directories (see {@link matchesGlob}). Default none. */
  ignore?: readonly string[];
  /** Render directories holding a kustomization file with `kubectl kustomize`. Default `true`. */
  kustomize?: boolean;
  /** The kubectl binary used for kustomize. Default `"kubectl"`. */
  kubectl?: string;
  /** Accept a bundle without objects. Default `false`. */
  allowEmpty?: boolean;
  /** Helm's install and upgrade hooks: applied as ordinary objects, or left out (lib/manifests/helm-hooks.ts). Default `"apply"`. */
  helmHooks?: "apply" | "omit";
  /** Reads the path `-` (all of standard input, as `kubectl apply -f -`). Default: reads `process.stdin`. */
  readStdin?: () => Promise<string>;
  signal?: AbortSignal;
  /**
   * Whether the manifests are parsed on two threads (lib/manifests/parse-worker.ts): `"auto"`
   * (the default) from {@link PARSE_WORKER_AFTER_CHARACTERS} of text when there is a second
   * core; `"always"` and `"never"` for tests and measurements. Either way the objects, their
   * order, sources and problems are the same.
   */
  parseWorker?: "auto" | "always" | "never";
  /** Starts the second thread. Default lib/manifests/parse-worker.ts `startParseWorker`; tests give one that fails. */
  startWorker?: () => ParseWorker;
}

/** The path that names standard input, as for kubectl. */
export const STDIN_PATH = "-";

/** How standard input is named in inputs and sources. */
const STDIN_SHOWN = "<stdin>";

const MANIFEST_EXTENSIONS = [".yaml", ".yml", ".json"];

/**
 * True when `path` (relative, `/`-separated) matches the glob `pattern`. A pattern without
 * `/` matches the last path segment at any depth (`*.secret.yaml`); one with `/` matches
 * the whole relative path (`k8s/dev/**`). `*` and `?` stay within a segment, `**` spans
 * segments. A leading `./` is ignored.
 */
export function matchesGlob(path: string, pattern: string): boolean {
  const normalized = pattern.replace(/^\.\//, "").replace(/\/$/, "");
  const target = normalized.includes("/") ? path : (path.split("/").pop() ?? path);
  let source = "";
  for (let i = 0; i < normalized.length; i++) {
    const char = normalized[i]!;
    if (char === "*" && normalized[i + 1] === "*") {
      const slashAfter = normalized[i + 2] === "/";
      source += slashAfter ? "(?:.*/)?" : ".*";
      i += slashAfter ? 2 : 1;
    } else if (char === "*") source += "[^/]*";
    else if (char === "?") source += "[^/]";
    else source += char.replace(/[.+^${}()|[\]\\]/g, "\\$&");
  }
  return new RegExp(`^${source}$`).test(target);
}

/** What is read, in order; a file with its size, which decides whether parsing is shared before it is read. */
type Input = { kind: "file" | "kustomize" | "stdin"; path: string; shown: string; size?: number };


/** True for a file name publish reads in a directory: a manifest extension, and not a kustomization file. */
function isManifestName(name: string): boolean {
  return MANIFEST_EXTENSIONS.some((ext) => name.endsWith(ext)) && !(KUSTOMIZATION_FILE_NAMES as readonly string[]).includes(name);
}

/**
 * Collects, parses and validates the manifests under `paths` (files or directories, in the
 * order given; directories walked recursively in sorted order, hidden entries skipped; `-`
 * is standard input). Lists are replaced by their items (lib/manifests/lists.ts); Helm hooks
 * are applied or left out (lib/manifests/helm-hooks.ts), each with a line in `notices`.
 *
 * @throws {BundleError} listing every problem: unreadable paths, YAML errors, invalid
 * objects and lists, unknown Helm hooks, duplicates (naming both sources), an empty bundle
 * unless `allowEmpty`.
 * @throws {KubectlError} when a kustomization cannot be rendered.
 */
export async function collectBundle(paths: readonly string[], options: CollectBundleOptions = {}): Promise<Bundle> {
  const items: BundledObject[] = [];
  const summary = await readBundle(paths, {
    ...options,
    onItem: ({ json, source }) => items.push({ object: JSON.parse(json) as KubeObject, source }),
  });
  return { objects: items.map((item) => item.object), items, inputs: summary.inputs, notices: summary.notices };
}

/**
 * {@link collectBundle} without holding the objects: each is handed to `onItem` as its file is
 * read, and kept no longer than the caller keeps it (publish turns it into the payload's bytes
 * at once: lib/wire/payload.ts). The same checks, problems and order.
 *
 * @throws {BundleError} as {@link collectBundle}.
 * @throws {KubectlError} when a kustomization cannot be rendered.
 */
export async function readBundle(paths: readonly string[], options: ReadBundleOptions): Promise<BundleSummary> {
  const {
    onItem,
    cwd = process.cwd(),
    ignore = [],
    kustomize = true,
    kubectl = "kubectl",
    allowEmpty = false,
    helmHooks = "apply",
    readStdin = () => streamText(process.stdin),
    signal,
    parseWorker = "auto",
    startWorker = () => startParseWorker(),
  } = options;
  const problems: string[] = [];
  const inputs: Input[] = [];
  const seen = new Set<string>();
  const show = (absolute: string) => {
    const rel = relative(cwd, absolute);
    // Outside the working directory an absolute path reads better than ../../..
    const shown = rel === "" ? "." : rel.startsWith("..") || isAbsolute(rel) ? absolute : rel;
    return shown.split(sep).join("/");
  };
  const ignored = (absolute: string) => {
    const rel = show(absolute);
    return ignore.some((pattern) => matchesGlob(rel, pattern));
  };

  const addResolved = (kind: Input["kind"], absolute: string, real: string, size?: number) => {
    if (seen.has(real)) return;
    seen.add(real);
    inputs.push({ kind, path: absolute, shown: show(absolute), ...(size === undefined ? {} : { size }) });
  };
  const add = (kind: Input["kind"], absolute: string, size?: number) => addResolved(kind, absolute, realpathSync(absolute), size);

  // Synchronous, as the reads below: the entries of a checkout are in the page cache, where a
  // call costs microseconds and a round trip through the worker threads costs more.
  const walk = (dir: string): void => {
    const real = realpathSync(dir);
    if (seen.has(`dir:${real}`)) return; // a symlink loop
    seen.add(`dir:${real}`);
    const names = readdirSync(dir);
    if (kustomize && KUSTOMIZATION_FILE_NAMES.some((name) => names.includes(name))) {
      add("kustomize", dir);
      return;
    }
    const children = names
      .filter((name) => !name.startsWith("."))
      .sort()
      .map((name) => join(dir, name))
      .filter((child) => !ignored(child));
    for (const child of children) {
      try {
        const stats = statSync(child);
        if (stats.isDirectory()) walk(child);
        else if (stats.isFile() && isManifestName(basename(child))) addResolved("file", child, realpathSync(child), stats.size);
      } catch (error) {
        problems.push(`${show(child)}: cannot read: ${errorCode(error) ?? String(error)}`);
      }
    }
  };

  for (const path of paths) {
    if (path === STDIN_PATH) {
      if (!seen.has(STDIN_PATH)) inputs.push({ kind: "stdin", path, shown: STDIN_SHOWN });
      seen.add(STDIN_PATH);
      continue;
    }
    const absolute = resolve(cwd, path);
    let stats;
    try {
      stats = statSync(absolute);
    } catch (error) {
      const code = errorCode(error);
      problems.push(`${path}: ${code === "ENOENT" ? "no such file or directory" : `cannot read: ${code ?? String(error)}`}`);
      continue;
    }
    if (stats.isDirectory()) walk(absolute);
    else if (MANIFEST_EXTENSIONS.some((ext) => absolute.endsWith(ext))) add("file", absolute, stats.size);
    else problems.push(`${path}: not a .yaml, .yml or .json file`);
  }

  // Standard input and kustomizations are read first, files in their turn; the reader holds
  // each text only until it is read.
  const reader = new PieceReader(await readInputs(inputs, { readStdin, kubectl, ...(signal ? { signal } : {}) }), { installHooks: helmHooks }, parseWorker, startWorker);

  // Problems are reported in this order: reading and parsing, then Helm hooks, then duplicates.
  const hookProblems: string[] = [];
  const notices: string[] = [];
  const duplicates = createDuplicateCheck();
  let objectCount = 0;
  let leftOut = 0;
  try {
    for (let index = 0; index < reader.inputCount; index++) {
      signal?.throwIfAborted();
      const read = await reader.results(index);
      if ("problem" in read) {
        problems.push(read.problem);
        continue;
      }
      for (const result of read.results) {
        problems.push(...result.problems);
        // Hooks are sorted out before duplicates are looked for: only what is sent must be unique.
        hookProblems.push(...result.hookProblems);
        notices.push(...result.notices);
        leftOut += result.leftOut;
        for (const item of result.items) {
          duplicates.add(item);
          objectCount++;
          onItem(item);
        }
      }
    }
  } finally {
    reader.close();
  }

  problems.push(...hookProblems, ...duplicates.problems);
  if (problems.length === 0 && objectCount === 0 && !allowEmpty) {
    problems.push(
      paths.length === 0
        ? "no paths given"
        : `no objects found in ${paths.join(", ")} (${leftOut > 0 ? `${leftOut} Helm hook${leftOut === 1 ? "" : "s"} left out; ` : ""}pass --allow-empty-bundle to publish an empty bundle)`,
    );
  }
  if (problems.length > 0) throw new BundleError(problems);
  return { inputs: inputs.map((input) => input.shown), notices, warnings: reader.warnings, objectCount };
}

/** Standard input and kustomizations read, files left to be read in their turn (lib/manifests/piece-reader.ts), in input order. */
async function readInputs(
  inputs: readonly Input[],
  options: { readStdin: () => Promise<string>; kubectl: string; signal?: AbortSignal },
): Promise<InputText[]> {
  const { readStdin, kubectl, signal } = options;
  const texts: InputText[] = [];
  for (const input of inputs) {
    signal?.throwIfAborted();
    if (input.kind === "stdin") {
      try {
        texts.push({ source: input.shown, text: await readStdin() });
      } catch (error) {
        texts.push({ problem: `${input.shown}: cannot read: ${errorCode(error) ?? String(error)}` });
      }
    } else if (input.kind === "kustomize") {
      const text = await renderKustomization(input.path, { kubectl, label: input.shown, ...(signal ? { signal } : {}) });
      texts.push({ source: `${input.shown} (kubectl kustomize)`, text });
    } else {
      texts.push({ source: input.shown, file: input.path, size: input.size ?? 0 });
    }
  }
  return texts;
}

/**
 * One problem per object whose identity (lib/manifests/object-ref.ts) was already seen, naming
 * both sources. Namespaces are compared as written: the scope of a kind is not known without
 * the API server.
 */
export function duplicateProblems(items: readonly BundledObject[]): string[] {
  const check = createDuplicateCheck();
  for (const { object, source } of items) check.add({ ref: formatRef(refOf(object)), source });
  return check.problems;
}

/** {@link duplicateProblems} one item at a time: only identities and sources are kept. */
function createDuplicateCheck(): { add(item: { ref: string; source: string }): void; problems: string[] } {
  const first = new Map<string, string>();
  const problems: string[] = [];
  return {
    add({ ref: key, source }) {
      const earlier = first.get(key);
      if (earlier === undefined) first.set(key, source);
      else problems.push(`${source}: duplicate object ${key} (first defined at ${earlier})`);
    },
    problems,
  };
}
