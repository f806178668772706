/**
 * The bundle: Kubernetes objects collected from files and directories, parsed the way
 * kubectl reads YAML, and validated as a whole before anything is sent. Every problem is
 * reported with the file, line and column it comes from.
 */
import { readdir, readFile, realpath, stat } from "node:fs/promises";
import { isAbsolute, join, relative, resolve, sep } from "node:path";
import {
  isScalar,
  LineCounter,
  parseAllDocuments,
  visit,
  type Document,
  type DocumentOptions,
  type EmptyStream,
  type ParsedNode,
  type ParseOptions,
  type SchemaOptions,
  type Tags,
} from "yaml";
import { BundleError, errorMessage } from "../errors.ts";
import { KUSTOMIZATION_FILE_NAMES, renderKustomization } from "./kustomize.ts";
import { formatRef, refOf } from "./object-ref.ts";

/**
 * A Kubernetes object as it is applied: `apiVersion`, `kind` and `metadata.name` are
 * required non-empty strings; `metadata.namespace`, when present, a non-empty string.
 */
export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; [key: string]: unknown };
  [key: string]: unknown;
}

/** An object of the bundle with where it came from (`file:line:column`). */
export interface BundledObject {
  object: KubeObject;
  source: string;
}

/** The result of {@link collectBundle}. */
export interface Bundle {
  /** The objects in bundle order. */
  objects: KubeObject[];
  /** The same objects with their sources. */
  items: BundledObject[];
  /** What was read, in order, as shown to the user (files, and kustomization directories). */
  inputs: string[];
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
  signal?: AbortSignal;
}

const MANIFEST_EXTENSIONS = [".yaml", ".yml", ".json"];

/** True for a JSON object (not null, not an array). */
export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function nonEmptyString(value: unknown): value is string {
  return typeof value === "string" && value.length > 0;
}

/**
 * Checks that `value` is a {@link KubeObject}; returns what is wrong (one phrase, e.g.
 * `object "api" has no kind`), or `undefined` when it is valid.
 */
export function kubeObjectProblem(value: unknown): string | undefined {
  if (!isRecord(value)) {
    return `object is not a mapping (got ${value === null ? "null" : Array.isArray(value) ? "a list" : typeof value})`;
  }
  const metadata = value["metadata"];
  const name = isRecord(metadata) && nonEmptyString(metadata["name"]) ? metadata["name"] : undefined;
  const what = name === undefined ? "object" : `object "${name}"`;
  if (!nonEmptyString(value["apiVersion"])) return `${what} has no apiVersion`;
  if (!nonEmptyString(value["kind"])) return `${what} has no kind`;
  if (name === undefined) return `${value["kind"]} has no metadata.name`;
  const namespace = (metadata as Record<string, unknown>)["namespace"];
  if (namespace !== undefined && !nonEmptyString(namespace)) {
    return `${value["kind"]} "${name}" has an invalid metadata.namespace (must be a non-empty string)`;
  }
  return undefined;
}

/** True when `value` is a {@link KubeObject}. */
export function isKubeObject(value: unknown): value is KubeObject {
  return kubeObjectProblem(value) === undefined;
}

/**
 * YAML is read as kubectl reads it (YAML 1.1 scalars: `0644` is octal, `yes`/`no`/`on`/`off`
 * are booleans, `<<` merges), except that timestamps and sexagesimal numbers stay strings as
 * they do for kubectl.
 */
const YAML_OPTIONS: ParseOptions & DocumentOptions & SchemaOptions = {
  version: "1.1",
  prettyErrors: false,
  // The parser's own check is quadratic in the number of keys of a map (minutes for a large
  // ConfigMap); duplicateKeyOffsets does the same check in linear time.
  uniqueKeys: false,
  // Problems are reported by us, with positions; never printed to the console by the parser.
  logLevel: "silent",
  customTags: (tags: Tags) =>
    tags.filter(
      (tag) => typeof tag === "string" || (tag.tag !== "tag:yaml.org,2002:timestamp" && tag.format !== "TIME"),
    ),
};

/** Offsets of map keys that repeat an earlier scalar key of the same map (merge keys excepted). */
function duplicateKeyOffsets(document: Document.Parsed): number[] {
  const offsets: number[] = [];
  visit(document, {
    Map(_, map) {
      // Compared as the JSON keys they become: 1 and "1" collide.
      const seen = new Set<string>();
      for (const pair of map.items) {
        if (!isScalar(pair.key) || pair.key.value === "<<") continue;
        const key = String(pair.key.value);
        if (seen.has(key)) offsets.push(pair.key.range?.[0] ?? 0);
        else seen.add(key);
      }
    },
  });
  return offsets;
}

/** The result of {@link parseManifests}. */
export interface ParsedManifests {
  items: BundledObject[];
  /** One line each, `file:line:column: what`. */
  problems: string[];
}

/**
 * Parses multi-document YAML (or JSON) text into objects: empty documents are dropped, a
 * `kind: List` is replaced by its items, and every object is checked with
 * {@link kubeObjectProblem}. Never throws; problems are returned with their positions.
 *
 * @param source How the text is named in sources and problems (a file path).
 */
export function parseManifests(text: string, source: string): ParsedManifests {
  const lineCounter = new LineCounter();
  const items: BundledObject[] = [];
  const problems: string[] = [];
  const at = (offset: number | undefined) => {
    const { line, col } = lineCounter.linePos(offset ?? 0);
    return `${source}:${line}:${col}`;
  };
  let documents: Document.Parsed[] | EmptyStream;
  try {
    documents = parseAllDocuments(text, { ...YAML_OPTIONS, lineCounter });
  } catch (error) {
    return { items, problems: [`${source}: cannot parse: ${errorMessage(error)}`] };
  }
  if ("empty" in documents) {
    for (const error of documents.errors) {
      problems.push(`${at(error.pos[0])}: ${error.message}`);
    }
  }
  for (const document of documents) {
    if (document.errors.length > 0) {
      for (const error of document.errors) problems.push(`${at(error.pos[0])}: ${error.message}`);
      continue;
    }
    if (document.contents === null) continue;
    const duplicateKeys = duplicateKeyOffsets(document);
    if (duplicateKeys.length > 0) {
      for (const offset of duplicateKeys) problems.push(`${at(offset)}: Map keys must be unique`);
      continue;
    }
    let value: unknown;
    try {
      value = document.toJS({ maxAliasCount: 1000 });
    } catch (error) {
      problems.push(`${at(document.contents.range[0])}: ${errorMessage(error)}`);
      continue;
    }
    if (value === null || value === undefined) continue;
    addObject(value, document.contents, [], document, at, items, problems);
  }
  return { items, problems };
}

/** Adds `value` (found at `path` of `document`) to `items`, flattening `kind: List`. */
function addObject(
  value: unknown,
  node: ParsedNode,
  path: readonly (string | number)[],
  document: Document.Parsed,
  at: (offset: number | undefined) => string,
  items: BundledObject[],
  problems: string[],
): void {
  const where = at(node.range[0]);
  if (isRecord(value) && value["kind"] === "List" && Array.isArray(value["items"])) {
    value["items"].forEach((item: unknown, index) => {
      const itemPath = [...path, "items", index];
      const itemNode = (document.getIn(itemPath, true) as ParsedNode | undefined) ?? node;
      addObject(item, itemNode, itemPath, document, at, items, problems);
    });
    return;
  }
  const problem = kubeObjectProblem(value);
  if (problem !== undefined) problems.push(`${where}: ${problem}`);
  else items.push({ object: value as KubeObject, source: where });
}

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

type Input = { kind: "file"; path: string; shown: string } | { kind: "kustomize"; path: string; shown: string };

function errorCode(error: unknown): string | undefined {
  return isRecord(error) && typeof error["code"] === "string" ? error["code"] : undefined;
}

async function findKustomization(dir: string): Promise<string | undefined> {
  const names = new Set(await readdir(dir));
  return KUSTOMIZATION_FILE_NAMES.find((name) => names.has(name));
}

/**
 * Collects, parses and validates the manifests under `paths` (files or directories, in the
 * order given; directories walked recursively in sorted order, hidden entries skipped).
 *
 * @throws {BundleError} listing every problem: unreadable paths, YAML errors, invalid
 * objects, duplicates (naming both sources), an empty bundle unless `allowEmpty`.
 * @throws {KubectlError} when a kustomization cannot be rendered.
 */
export async function collectBundle(paths: readonly string[], options: CollectBundleOptions = {}): Promise<Bundle> {
  const { cwd = process.cwd(), ignore = [], kustomize = true, kubectl = "kubectl", allowEmpty = false, signal } = options;
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

  const add = async (kind: Input["kind"], absolute: string) => {
    const real = await realpath(absolute);
    if (seen.has(real)) return;
    seen.add(real);
    inputs.push({ kind, path: absolute, shown: show(absolute) });
  };

  const walk = async (dir: string): Promise<void> => {
    const real = await realpath(dir);
    if (seen.has(`dir:${real}`)) return; // a symlink loop
    seen.add(`dir:${real}`);
    if (kustomize && (await findKustomization(dir)) !== undefined) {
      await add("kustomize", dir);
      return;
    }
    const entries = (await readdir(dir)).filter((name) => !name.startsWith(".")).sort();
    for (const name of entries) {
      const child = join(dir, name);
      if (ignored(child)) continue;
      let stats;
      try {
        stats = await stat(child);
      } catch (error) {
        problems.push(`${show(child)}: cannot read: ${errorCode(error) ?? String(error)}`);
        continue;
      }
      if (stats.isDirectory()) await walk(child);
      else if (
        stats.isFile() &&
        MANIFEST_EXTENSIONS.some((ext) => name.endsWith(ext)) &&
        !(KUSTOMIZATION_FILE_NAMES as readonly string[]).includes(name)
      ) {
        await add("file", child);
      }
    }
  };

  for (const path of paths) {
    const absolute = resolve(cwd, path);
    let stats;
    try {
      stats = await stat(absolute);
    } catch (error) {
      const code = errorCode(error);
      problems.push(`${path}: ${code === "ENOENT" ? "no such file or directory" : `cannot read: ${code ?? String(error)}`}`);
      continue;
    }
    if (stats.isDirectory()) await walk(absolute);
    else if (MANIFEST_EXTENSIONS.some((ext) => absolute.endsWith(ext))) await add("file", absolute);
    else problems.push(`${path}: not a .yaml, .yml or .json file`);
  }

  const items: BundledObject[] = [];
  for (const input of inputs) {
    signal?.throwIfAborted();
    let text: string;
    let source = input.shown;
    if (input.kind === "kustomize") {
      text = await renderKustomization(input.path, { kubectl, label: input.shown, ...(signal ? { signal } : {}) });
      source = `${input.shown} (kubectl kustomize)`;
    } else {
      try {
        text = await readFile(input.path, "utf8");
      } catch (error) {
        problems.push(`${input.shown}: cannot read: ${errorCode(error) ?? String(error)}`);
        continue;
      }
    }
    const parsed = parseManifests(text, source);
    items.push(...parsed.items);
    problems.push(...parsed.problems);
  }

  problems.push(...duplicateProblems(items));
  if (problems.length === 0 && items.length === 0 && !allowEmpty) {
    problems.push(
      paths.length === 0
        ? "no paths given"
        : `no objects found in ${paths.join(", ")} (pass --allow-empty to publish an empty bundle)`,
    );
  }
  if (problems.length > 0) throw new BundleError(problems);
  return { objects: items.map((item) => item.object), items, inputs: inputs.map((input) => input.shown) };
}

/**
 * One problem per object whose identity (lib/manifests/object-ref.ts) was already seen, naming
 * both sources. Namespaces are compared as written: the scope of a kind is not known without
 * the API server.
 */
export function duplicateProblems(items: readonly BundledObject[]): string[] {
  const first = new Map<string, string>();
  const problems: string[] = [];
  for (const { object, source } of items) {
    const key = formatRef(refOf(object));
    const earlier = first.get(key);
    if (earlier === undefined) first.set(key, source);
    else problems.push(`${source}: duplicate object ${key} (first defined at ${earlier})`);
  }
  return problems;
}
