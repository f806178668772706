/**
 * Reading manifest text (multi-document YAML, or JSON) into objects the way kubectl reads
 * it: YAML 1.1 scalars, lists replaced by their items, every object validated. Every problem
 * is reported with the file, line and column it comes from.
 */
import {
  isMap,
  isSeq,
  LineCounter,
  parseAllDocuments,
  type Document,
  type DocumentOptions,
  type EmptyStream,
  type ParsedNode,
  type ParseOptions,
  type SchemaOptions,
  type Tags,
} from "yaml";
import { errorMessage } from "../errors.ts";
import { duplicateKeyOffsets } from "./duplicate-keys.ts";
import { kubeObjectProblem, type BundledObject, type KubeObject } from "./kube-object.ts";
import { documentEntries, type DocumentEntry } from "./lists.ts";
import { plainValue } from "./plain-value.ts";

/**
 * YAML is read as kubectl reads it (YAML 1.1 scalars: `0644` is octal, `yes`/`no`/`on`/`off`
 * are booleans, `<<` merges), except that timestamps and sexagesimal numbers stay strings as
 * they do for kubectl.
 */
export const YAML_OPTIONS: ParseOptions & DocumentOptions & SchemaOptions = {
  version: "1.1",
  prettyErrors: false,
  // The parser's own check is quadratic in the number of keys of a map (minutes for a large
  // ConfigMap); lib/manifests/duplicate-keys.ts does the same check in linear time.
  uniqueKeys: false,
  // Problems are reported by us, with positions; never printed to the console by the parser.
  logLevel: "silent",
  customTags: (tags: Tags) =>
    tags.filter(
      (tag) => typeof tag === "string" || (tag.tag !== "tag:yaml.org,2002:timestamp" && tag.format !== "TIME"),
    ),
};

/** The result of {@link parseManifests}. */
export interface ParsedManifests {
  items: BundledObject[];
  /** One line each, `file:line:column: what`. */
  problems: string[];
}

/** The node of item `index` of the list document `document`, when it is written out there (not merged in by `<<`). */
function itemNode(document: Document.Parsed, index: number): ParsedNode | undefined {
  const contents = document.contents;
  if (!isMap(contents)) return undefined;
  const items: unknown = contents.get("items", true);
  if (!isSeq(items)) return undefined;
  const node: unknown = items.items[index];
  return typeof node === "object" && node !== null && "range" in node ? (node as ParsedNode) : undefined;
}

/** True when `entry` is `value` itself or one of its list items as written, not one given the list's kind (lib/manifests/lists.ts). */
function isOriginal(value: unknown, entry: DocumentEntry & { value: unknown }): boolean {
  if (entry.item === undefined) return entry.value === value;
  const items = (value as { items?: unknown }).items;
  return Array.isArray(items) && items[entry.item] === entry.value;
}

/**
 * Parses multi-document YAML (or JSON) text into objects: empty documents are dropped, a list
 * (lib/manifests/lists.ts) is replaced by its items, and every object is checked with
 * {@link kubeObjectProblem}. Never throws; problems are returned with their positions, and a
 * list item's problem also names the list, its document (counted from 1) and the item
 * (`ConfigMapList (document 2) items[0]: …`).
 *
 * @param source How the text is named in sources and problems (a file path).
 * @param firstLine The line of the file `text` starts at, when it is a run of the file's
 *   documents (lib/manifests/pieces.ts): positions are counted from there. Default 1.
 */
export function parseManifests(text: string, source: string, firstLine = 1): ParsedManifests {
  const lineCounter = new LineCounter();
  const items: BundledObject[] = [];
  const problems: string[] = [];
  const at = (offset: number | undefined) => {
    const { line, col } = lineCounter.linePos(offset ?? 0);
    return `${source}:${line + firstLine - 1}:${col}`;
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
  let documentNumber = 0;
  for (const document of documents) {
    documentNumber++;
    if (document.errors.length > 0) {
      for (const error of document.errors) problems.push(`${at(error.pos[0])}: ${error.message}`);
      continue;
    }
    if (document.contents === null) continue;
    // Most documents are plain maps, sequences and scalars, read in one walk; the rest the yaml
    // package reads, after the walk that finds repeated keys.
    const plain = plainValue(document);
    let value: unknown;
    if (plain !== undefined) value = plain.value;
    else {
      const duplicateKeys = duplicateKeyOffsets(document);
      if (duplicateKeys.length > 0) {
        for (const offset of duplicateKeys) problems.push(`${at(offset)}: Map keys must be unique`);
        continue;
      }
      try {
        value = document.toJS({ maxAliasCount: 1000 });
      } catch (error) {
        problems.push(`${at(document.contents.range[0])}: ${errorMessage(error)}`);
        continue;
      }
    }
    if (value === null || value === undefined) continue;
    const shape = documentEntries(value);
    for (const entry of shape.entries) {
      const node = entry.item === undefined ? document.contents : (itemNode(document, entry.item) ?? document.contents);
      const where = at(node.range[0]);
      const context = entry.item === undefined ? "" : `${shape.listKind} (document ${documentNumber}) items[${entry.item}]: `;
      if ("problem" in entry) {
        problems.push(`${where}: ${context}${entry.problem}`);
        continue;
      }
      const problem = kubeObjectProblem(entry.value);
      if (problem !== undefined) problems.push(`${where}: ${context}${problem}`);
      else if (plain?.canonical === true && isOriginal(value, entry)) items.push({ object: entry.value as KubeObject, source: where, keysSorted: true });
      else items.push({ object: entry.value as KubeObject, source: where });
    }
  }
  return { items, problems };
}
