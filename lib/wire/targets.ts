/**
 * The clusters a bundle is for: the optional `target` (one name, as before fleets) or
 * `targets` (a list, for one message that a topic fans out to a fleet) of a version 1 body
 * (docs/protocol.md). Pure: the rules both sides of the queue share.
 *
 * A list is written in one canonical form (sorted, no repeats), so that the signed bytes,
 * which join the names with ",", have one spelling: a reader rejects any other.
 */
import { z } from "zod";

/** Fewest names in `targets`: one name is written as `target`. */
export const MIN_TARGETS = 2;
/** Most names in `targets`. */
export const MAX_TARGETS = 100;
/** Longest name in `targets` (a DNS name's length). */
export const MAX_TARGET_NAME_LENGTH = 253;

/**
 * A name in `targets`: printable ASCII without space or comma (the signed bytes join names
 * with ","), so that the byte order and the sort order of every language agree.
 */
const TARGET_NAME = /^[\x21-\x2b\x2d-\x7e]+$/;

/** What is wrong with `name` as one of `targets`, or undefined. */
export function targetNameProblem(name: string): string | undefined {
  if (name.length === 0) return "a target name must not be empty";
  if (name.length > MAX_TARGET_NAME_LENGTH) return `target name ${JSON.stringify(name.slice(0, 80))} is longer than ${MAX_TARGET_NAME_LENGTH} characters`;
  if (!TARGET_NAME.test(name)) return `target name ${JSON.stringify(name)} holds a character other than printable ASCII without space and comma`;
  return undefined;
}

/**
 * What is wrong with `names` as a body's `targets`, or undefined: {@link MIN_TARGETS} to
 * {@link MAX_TARGETS} valid names, sorted by byte value, each once.
 */
export function targetsProblem(names: readonly string[]): string | undefined {
  if (names.length < MIN_TARGETS) return `must name at least ${MIN_TARGETS} targets (one target is written as "target"): current value names ${names.length}`;
  if (names.length > MAX_TARGETS) return `must name at most ${MAX_TARGETS} targets: current value names ${names.length}`;
  for (const [index, name] of names.entries()) {
    const problem = targetNameProblem(name);
    if (problem !== undefined) return problem;
    const previous = index === 0 ? undefined : names[index - 1]!;
    if (previous === name) return `names target ${JSON.stringify(name)} twice`;
    if (previous !== undefined && previous > name) return `must be sorted: ${JSON.stringify(previous)} comes before ${JSON.stringify(name)}`;
  }
  return undefined;
}

/** `targets` as a zod schema: the issue states the rule it breaks ({@link targetsProblem}). */
export const targetsSchema = z.array(z.string()).superRefine((names, context) => {
  const problem = targetsProblem(names);
  if (problem !== undefined) context.addIssue({ code: "custom", message: problem });
});

/** What a publisher writes for a comma list of names: one `target`, or sorted `targets`. */
export type TargetSelection = { target: string } | { targets: string[] };

/**
 * Reads `publish --target a,b,c`: one name (any non-empty text, as before fleets) is the
 * single `target`; several are `targets`, sorted, each a valid name named once. Returns a
 * problem phrase instead when the list breaks a rule.
 */
export function parseTargetList(text: string): TargetSelection | { problem: string } {
  const names = text.split(",").map((name) => name.trim());
  if (names.length === 1) return names[0] === "" ? { problem: "must not be empty" } : { target: text };
  if (names.some((name) => name === "")) return { problem: `holds an empty name: current value is ${JSON.stringify(text)}` };
  // Sorted, a repeat is two names side by side: targetsProblem names it.
  const sorted = [...names].sort();
  const problem = targetsProblem(sorted);
  return problem === undefined ? { targets: sorted } : { problem };
}

/** The names a selection reaches: `[target]` or `targets`. */
export function selectedTargets(selection: TargetSelection): string[] {
  return "target" in selection ? [selection.target] : [...selection.targets];
}
