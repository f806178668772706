/**
 * Duplicate map keys in a parsed YAML document, found in one walk over its node tree.
 *
 * The `yaml` package can check this itself (`uniqueKeys`), but compares each new key with
 * every earlier key of its map: quadratic, minutes for a large ConfigMap. Its `visit` is
 * linear but builds and freezes a path array at every node, which under Bun cost more than
 * half of the parse itself. This walk allocates nothing per node: one stack, and one Set
 * reused for every map.
 */
import { isMap, isPair, isScalar, isSeq, type Document, type Pair } from "yaml";

/**
 * The key a pair gets in the JSON object it becomes (so `1` and `"1"` collide), or
 * `undefined` for keys that are not compared: non-scalar keys and merge keys (`<<`).
 */
function jsonKey(pair: Pair<unknown, unknown>): string | undefined {
  const key = pair.key;
  if (!isScalar(key)) return undefined;
  const value = key.value;
  if (typeof value === "string") return value === "<<" ? undefined : value;
  // YAML 1.1's merge key `<<` is read as a Scalar holding a symbol.
  if (typeof value === "symbol") return undefined;
  return String(value);
}

/** The keys of the map being checked: one Set for the whole walk, which checks one map at a time. */
const seen = new Set<string>();

/** Adds to `offsets` the start of every key of `items` that repeats an earlier key of the same map. */
function checkMap(items: readonly Pair<unknown, unknown>[], offsets: number[]): void {
  if (items.length < 2) return;
  seen.clear();
  for (const pair of items) {
    const key = jsonKey(pair);
    if (key === undefined) continue;
    if (seen.has(key)) offsets.push(offsetOf(pair));
    else seen.add(key);
  }
}

function offsetOf(pair: Pair<unknown, unknown>): number {
  return isScalar(pair.key) ? (pair.key.range?.[0] ?? 0) : 0;
}

/**
 * Offsets (into the parsed text) of the map keys of `document` that repeat an earlier
 * scalar key of the same map, compared as the JSON keys they become; merge keys are not
 * compared. In document order: maps before their contents, keys before values. Aliases are
 * not followed (what they name is checked where it is defined).
 */
export function duplicateKeyOffsets(document: Document.Parsed): number[] {
  const offsets: number[] = [];
  // Children are pushed last-first so that they are taken in document order.
  const stack: unknown[] = [document.contents];
  while (stack.length > 0) {
    const node = stack.pop();
    if (isMap(node)) {
      const items = node.items as Pair<unknown, unknown>[];
      checkMap(items, offsets);
      for (let i = items.length - 1; i >= 0; i--) {
        const pair = items[i]!;
        stack.push(pair.value, pair.key);
      }
    } else if (isSeq(node)) {
      const items = node.items;
      for (let i = items.length - 1; i >= 0; i--) stack.push(items[i]);
    } else if (isPair(node)) {
      // A pair directly in a sequence: `[a: 1]`.
      stack.push(node.value, node.key);
    }
  }
  return offsets;
}
