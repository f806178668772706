/**
 * Lists, as kubectl reads them: a document holding `items` is not an object but a list of
 * objects (`v1 List`, or a typed list such as `ConfigMapList` or `RoleBindingList`, as
 * kube-prometheus writes them), and kubectl applies its items, never the list itself.
 *
 * What kubectl does, from cli-runtime and apimachinery (`unstructuredJSONScheme.decode`,
 * `decodeToList`, `FlattenListVisitor`):
 * - any document with an `items` key, even `items: null`, is decoded as a list; `items` that
 *   is not an array fails to decode;
 * - an item with neither `kind` nor `apiVersion` takes the list's `apiVersion` and its kind
 *   without the `List` suffix (a `ConfigMapList` item becomes a `ConfigMap`);
 * - an item that is itself a list is refused ("*unstructured.Unstructured is not a list"):
 *   cli-runtime's `FlattenListVisitor` is written to unpack lists at any depth, but
 *   `meta.ExtractList` cannot unpack a decoded item, so kubectl 1.32 to 1.35 fail there.
 *
 * The bundle holds only plain objects: the listener refuses list-shaped ones, so that no
 * check can be passed by an object whose items kubectl would apply instead. Where kubectl
 * would silently read an object as a list (a `ConfigMap` that happens to have `items`), or
 * cannot apply a kind ending in `List` that has no `items`, this is reported instead.
 */
import { isRecord } from "./kube-object.ts";

/** One entry of a document: an object to validate as a top-level one, or what is wrong. */
export type DocumentEntry =
  | {
      /** Index in the list's `items`; absent for a document that is not a list. */
      item?: number;
      value: unknown;
    }
  | { item?: number; problem: string };

/** What a document is, as {@link documentEntries} sees it. */
export interface DocumentShape {
  /** The kind of the list (e.g. `ConfigMapList`), when the document is one. */
  listKind?: string;
  entries: DocumentEntry[];
}

/** The kind items of a list of `listKind` take when they name neither kind nor apiVersion ("" for `List`). */
export function itemKindOf(listKind: string): string {
  return listKind.endsWith("List") ? listKind.slice(0, -"List".length) : listKind;
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "a list";
  return isRecord(value) ? "a mapping" : typeof value === "string" ? "a string" : typeof value;
}

function stringField(value: Record<string, unknown>, key: string): string | undefined {
  const field = value[key];
  return typeof field === "string" && field.length > 0 ? field : undefined;
}

/** How a list document is named in problems: its kind, and its name when it has one. */
function listLabel(value: Record<string, unknown>): string {
  const kind = stringField(value, "kind") ?? "list";
  const metadata = value["metadata"];
  const name = isRecord(metadata) ? stringField(metadata, "name") : undefined;
  return name === undefined ? kind : `${kind} "${name}"`;
}

/**
 * The objects of one YAML document (its value as JSON): the document itself, or the items
 * of a list. Items are returned in order, each with its index, to be validated as top-level
 * objects; what kubectl would refuse, or read differently than it looks, is a problem.
 */
export function documentEntries(value: unknown): DocumentShape {
  if (!isRecord(value)) return { entries: [{ value }] };
  const kind = stringField(value, "kind");
  if (!("items" in value)) {
    if (kind !== undefined && kind.endsWith("List")) {
      return {
        entries: [
          {
            problem: `${listLabel(value)} has no items: kubectl reads a kind ending in List as a list only when it has an items array (write items: [] for an empty list)`,
          },
        ],
      };
    }
    return { entries: [{ value }] };
  }
  const label = listLabel(value);
  const apiVersion = stringField(value, "apiVersion");
  if (kind === undefined || apiVersion === undefined) {
    return { entries: [{ problem: `a list (a document with items) has no ${kind === undefined ? "kind" : "apiVersion"}` }] };
  }
  if (!kind.endsWith("List")) {
    return {
      entries: [
        {
          problem: `${label} has an items field, so kubectl would apply its items instead of the ${kind} itself: remove items, or make it a list (kind: List, or a kind ending in List)`,
        },
      ],
    };
  }
  const items = value["items"];
  if (items === null) return { listKind: kind, entries: [] };
  if (!Array.isArray(items)) {
    return { listKind: kind, entries: [{ problem: `${label} has items that are not a list (got ${describe(items)})` }] };
  }
  const itemKind = itemKindOf(kind);
  const entries = items.map((item: unknown, index): DocumentEntry => {
    if (!isRecord(item)) return { item: index, value: item };
    if (Array.isArray(item["items"])) {
      return {
        item: index,
        problem: "a list inside a list, which kubectl cannot apply: move its items into the outer list",
      };
    }
    if (stringField(item, "kind") === undefined && stringField(item, "apiVersion") === undefined) {
      const { kind: _kind, apiVersion: _apiVersion, ...rest } = item;
      return { item: index, value: { apiVersion, kind: itemKind, ...rest } };
    }
    return { item: index, value: item };
  });
  return { listKind: kind, entries };
}
