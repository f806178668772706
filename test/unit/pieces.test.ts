/**
 * lib/manifests/pieces.ts: cutting manifest text into runs of documents, and reading a piece
 * with positions that name the file's lines.
 */
import { describe, expect, test } from "bun:test";
import { parseManifests } from "../../lib/manifests/parse.ts";
import { readPiece, splitDocuments } from "../../lib/manifests/pieces.ts";

/** `count` ConfigMaps, each about `bytes` long, some with a `---` inside a block scalar's indented text. */
function configMaps(count: number, bytes: number, separator = "---\n"): string {
  const documents: string[] = [];
  for (let i = 0; i < count; i++) {
    let text = `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-${i}\ndata:\n  script: |\n    echo start\n    ---\n    echo end\n`;
    for (let line = 0; text.length < bytes; line++) text += `  key${line}: "value ${i} ${line}"\n`;
    documents.push(text);
  }
  return documents.join(separator);
}

describe("splitDocuments()", () => {
  test("splitDocuments() cuts before document-start lines into pieces of at least the size asked, which join back into the text", () => {
    const text = configMaps(40, 1000);
    const pieces = splitDocuments(text, "big.yaml", 4096);
    expect(pieces.length).toBeGreaterThan(5);
    expect(pieces.map((piece) => piece.text).join("")).toBe(text);
    for (const piece of pieces.slice(0, -1)) expect(piece.text.length).toBeGreaterThanOrEqual(4096);
    for (const piece of pieces.slice(1)) expect(piece.text).toStartWith("---\n");
    for (const piece of pieces) expect(piece.source).toBe("big.yaml");
  });

  test("splitDocuments() gives each piece the line of the file it starts at", () => {
    const text = configMaps(40, 1000);
    for (const piece of splitDocuments(text, "big.yaml", 4096)) {
      const offset = text.indexOf(piece.text);
      expect(piece.firstLine).toBe(text.slice(0, offset).split("\n").length);
    }
  });

  test("splitDocuments() cuts at `---` followed by a space, a tab, CRLF or the end, never at `---x` or an indented `---`", () => {
    const body = "a: |\n  ---\n  x\n".padEnd(5000, "#");
    for (const marker of ["--- ", "---\t", "---\r\n", "---\n"]) {
      const text = `${body}\n${marker}b: 1\n${body}\n`;
      const pieces = splitDocuments(text, "f.yaml", 2048);
      expect(pieces.map((piece) => piece.text.slice(0, 4))).toEqual(["a: |", marker.slice(0, 4)]);
    }
    expect(splitDocuments(`${body}\n---x: 1\n${body}\n`, "f.yaml", 2048)).toHaveLength(1);
  });

  test("splitDocuments() keeps the whole text when it is short, has nothing to cut at, holds a directive or a lone carriage return", () => {
    const text = configMaps(40, 1000);
    expect(splitDocuments(text, "f.yaml")).toEqual([{ text, source: "f.yaml", firstLine: 1 }]);
    expect(splitDocuments(configMaps(1, 50_000), "f.yaml", 4096)).toHaveLength(1);
    expect(splitDocuments(`%YAML 1.1\n---\n${text}`, "f.yaml", 4096)).toHaveLength(1);
    expect(splitDocuments(`${text}---\n%TAG ! tag:example.com,2000:\n---\na: 1\n`, "f.yaml", 4096)).toHaveLength(1);
    expect(splitDocuments(text.replace("echo start\n", "echo start\r"), "f.yaml", 4096)).toHaveLength(1);
    expect(splitDocuments(text.replaceAll("\n", "\r\n"), "f.yaml", 4096).length).toBeGreaterThan(5);
  });
});

describe("readPiece()", () => {
  test("readPiece() of every piece gives the objects, sources and JSON of the whole text, in order", () => {
    const text = configMaps(40, 1000);
    const whole = readPiece({ text, source: "big.yaml", firstLine: 1 }, {});
    const pieces = splitDocuments(text, "big.yaml", 4096).map((piece) => readPiece(piece, {}));
    expect(pieces.flatMap((result) => result.items)).toEqual(whole.items);
    expect(whole.items).toHaveLength(40);
    expect(whole.items.map((item) => item.source)).toEqual(parseManifests(text, "big.yaml").items.map((item) => item.source));
  });

  test("readPiece() keeps each object as its canonical JSON, with its kind, namespace and identity", () => {
    const text = "kind: Deployment\napiVersion: apps/v1\nmetadata: {namespace: web, name: api}\nspec: {replicas: 2}\n";
    const [item] = readPiece({ text, source: "d.yaml", firstLine: 7 }, {}).items;
    expect(item).toEqual({
      json: '{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"api","namespace":"web"},"spec":{"replicas":2}}',
      source: "d.yaml:7:1",
      kind: "Deployment",
      namespace: "web",
      ref: "apps/Deployment/web/api",
    });
  });

  test("readPiece() writes list items given the list's kind, and objects with index keys, as canonical JSON too", () => {
    const text = "apiVersion: v1\nkind: ConfigMapList\nitems:\n- metadata: {name: a}\n  data: {'10': x, '9': z}\n";
    const [item] = readPiece({ text, source: "l.yaml", firstLine: 1 }, {}).items;
    expect(item!.json).toBe('{"apiVersion":"v1","data":{"10":"x","9":"z"},"kind":"ConfigMap","metadata":{"name":"a"}}');
  });
});
