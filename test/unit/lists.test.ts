import { describe, expect, test } from "bun:test";
import { documentEntries, itemKindOf } from "../../lib/manifests/lists.ts";
import { parseManifests } from "../../lib/manifests/parse.ts";

const cm = (name: string) => ({ apiVersion: "v1", kind: "ConfigMap", metadata: { name } });

describe("documentEntries()", () => {
  test("documentEntries() returns a document without items as its one entry", () => {
    expect(documentEntries(cm("a"))).toEqual({ entries: [{ value: cm("a") }] });
  });

  test("documentEntries() returns a value that is not a mapping as its one entry, for the object check to name", () => {
    expect(documentEntries(["a"])).toEqual({ entries: [{ value: ["a"] }] });
  });

  test("documentEntries() returns the items of a typed list in order, each with its index", () => {
    expect(documentEntries({ apiVersion: "v1", kind: "ConfigMapList", items: [cm("a"), cm("b")] })).toEqual({
      listKind: "ConfigMapList",
      entries: [
        { item: 0, value: cm("a") },
        { item: 1, value: cm("b") },
      ],
    });
  });

  test("documentEntries() gives an item with neither kind nor apiVersion the list's apiVersion and its kind without List", () => {
    const shape = documentEntries({
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "RoleList",
      items: [{ metadata: { name: "r" }, rules: [] }],
    });
    expect(shape.entries).toEqual([
      { item: 0, value: { apiVersion: "rbac.authorization.k8s.io/v1", kind: "Role", metadata: { name: "r" }, rules: [] } },
    ]);
  });

  test("documentEntries() leaves an item that names only its kind as it is, as kubectl does", () => {
    const item = { kind: "ConfigMap", metadata: { name: "a" } };
    expect(documentEntries({ apiVersion: "v1", kind: "ConfigMapList", items: [item] }).entries).toEqual([{ item: 0, value: item }]);
  });

  test("documentEntries() returns no entries for an empty list and for items: null", () => {
    expect(documentEntries({ apiVersion: "v1", kind: "List", items: [] })).toEqual({ listKind: "List", entries: [] });
    expect(documentEntries({ apiVersion: "v1", kind: "ConfigMapList", items: null })).toEqual({ listKind: "ConfigMapList", entries: [] });
  });

  test("documentEntries() refuses a list inside a list, which kubectl cannot apply", () => {
    const inner = { apiVersion: "v1", kind: "List", items: [cm("b")] };
    expect(documentEntries({ apiVersion: "v1", kind: "List", items: [cm("a"), inner] }).entries).toEqual([
      { item: 0, value: cm("a") },
      { item: 1, problem: "a list inside a list, which kubectl cannot apply: move its items into the outer list" },
    ]);
  });

  test("documentEntries() refuses an object of a kind not ending in List that has items, which kubectl would replace by its items", () => {
    expect(documentEntries({ ...cm("outer"), items: [cm("inner")] }).entries).toEqual([
      {
        problem:
          'ConfigMap "outer" has an items field, so kubectl would apply its items instead of the ConfigMap itself: remove items, or make it a list (kind: List, or a kind ending in List)',
      },
    ]);
  });

  test("documentEntries() refuses a kind ending in List without items", () => {
    expect(documentEntries({ apiVersion: "v1", kind: "ConfigMapList", metadata: { name: "s" } }).entries).toEqual([
      { problem: 'ConfigMapList "s" has no items: kubectl reads a kind ending in List as a list only when it has an items array (write items: [] for an empty list)' },
    ]);
  });

  test("documentEntries() refuses items that are not an array", () => {
    expect(documentEntries({ apiVersion: "v1", kind: "List", items: { a: 1 } }).entries).toEqual([
      { problem: "List has items that are not a list (got a mapping)" },
    ]);
  });

  test("documentEntries() refuses a list without kind or apiVersion", () => {
    expect(documentEntries({ apiVersion: "v1", items: [] }).entries).toEqual([{ problem: "a list (a document with items) has no kind" }]);
    expect(documentEntries({ kind: "List", items: [] }).entries).toEqual([{ problem: "a list (a document with items) has no apiVersion" }]);
  });
});

describe("itemKindOf()", () => {
  test("itemKindOf() drops the List suffix; v1 List leaves no kind", () => {
    expect(itemKindOf("RoleBindingList")).toBe("RoleBinding");
    expect(itemKindOf("List")).toBe("");
  });
});

describe("parseManifests() with lists", () => {
  test("parseManifests() replaces typed lists by their items, each with its own position, between plain documents", () => {
    const text = [
      "apiVersion: v1\nkind: Namespace\nmetadata: {name: mon}",
      "apiVersion: v1\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: a, namespace: mon}\n- metadata: {name: b, namespace: mon}\nkind: ConfigMapList",
      "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: c, namespace: mon}",
    ].join("\n---\n");
    const parsed = parseManifests(text, "m.yaml");
    expect(parsed.problems).toEqual([]);
    expect(parsed.items.map((item) => [item.object.kind, item.object.metadata.name, item.source])).toEqual([
      ["Namespace", "mon", "m.yaml:1:1"],
      ["ConfigMap", "a", "m.yaml:7:3"],
      ["ConfigMap", "b", "m.yaml:10:3"],
      ["ServiceAccount", "c", "m.yaml:13:1"],
    ]);
  });

  test("parseManifests() names the file, position, list, document and item of an item that is not an object", () => {
    const text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n---\napiVersion: v1\nkind: ConfigMapList\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: b}\n- just a string\n- 42\n";
    expect(parseManifests(text, "m.yaml").problems).toEqual([
      "m.yaml:12:3: ConfigMapList (document 3) items[1]: object is not a mapping (got string)",
      "m.yaml:13:3: ConfigMapList (document 3) items[2]: object is not a mapping (got number)",
    ]);
  });

  test("parseManifests() validates each item as a top-level object", () => {
    const text = "apiVersion: v1\nkind: List\nitems:\n- metadata: {name: a}\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {}\n";
    expect(parseManifests(text, "m.yaml").problems).toEqual([
      'm.yaml:4:3: List (document 1) items[0]: object "a" has no kind',
      "m.yaml:5:3: List (document 1) items[1]: ConfigMap has no metadata.name",
    ]);
  });

  test("parseManifests() reports a nested list at the position of the inner list and keeps nothing of that item", () => {
    const text = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMapList\n  items: []\n";
    const parsed = parseManifests(text, "m.yaml");
    expect(parsed.items).toEqual([]);
    expect(parsed.problems).toEqual(["m.yaml:4:3: List (document 1) items[0]: a list inside a list, which kubectl cannot apply: move its items into the outer list"]);
  });

  test("parseManifests() reads a list written as JSON", () => {
    const text = JSON.stringify({ apiVersion: "v1", kind: "List", items: [cm("a"), cm("b")] }, null, 1);
    const parsed = parseManifests(text, "l.json");
    expect(parsed.items.map((item) => [item.object.metadata.name, item.source])).toEqual([
      ["a", "l.json:5:3"],
      ["b", "l.json:12:3"],
    ]);
  });

  test("parseManifests() reports an item merged in by << at the position of the list", () => {
    const text = "base: &b\n  - apiVersion: v1\n    kind: ConfigMap\n    metadata: {}\n---\napiVersion: v1\nkind: List\n<<: {items: [{apiVersion: v1, kind: ConfigMap, metadata: {}}]}\n";
    expect(parseManifests(text, "m.yaml").problems).toEqual([
      "m.yaml:1:1: object has no apiVersion",
      "m.yaml:6:1: List (document 2) items[0]: ConfigMap has no metadata.name",
    ]);
  });
});
