/**
 * Which clusters answered a topic publish. A topic's subscribed queues each give the message
 * an SQS MessageId of their own, and raw delivery hides the SNS one, so a publisher cannot
 * match a result by id: it matches the build (app, build id, digest) and counts the answering
 * listener by the result's `target`, its own --target (lib/sqs/result-sender.ts). Pure.
 */
import { DEFAULT_APP } from "../wire/app.ts";
import type { ResultMessage } from "../wire/result.ts";

/** The targets a topic publish waits for: each of these names, or this many different targets. */
export type ExpectedTargets = { names: readonly string[] } | { count: number };

/** The build a topic publish sent, and the targets whose final results it waits for. */
export interface AwaitedBuild {
  app: string;
  buildId: string;
  digest: string;
  expect: ExpectedTargets;
}

/** True when `result` answers `build`: same app, build id and digest. */
export function answersBuild(result: Pick<ResultMessage, "app" | "build" | "digest">, build: Pick<AwaitedBuild, "app" | "buildId" | "digest">): boolean {
  return (result.app ?? DEFAULT_APP) === build.app && result.build.id === build.buildId && result.digest === build.digest;
}

/** What {@link TargetTally.receive} made of a result of the build. */
export type TallyVerdict =
  /** A final result of an awaited target, its first: it counts. */
  | "counted"
  /** A progress result of a target still awaited: worth printing. */
  | "progress"
  /** Another result of a target that already answered (a retry, a late step): dropped. */
  | "repeat"
  /** From a target not expected, or naming none: reported, never counted. */
  | "unexpected";

/** The targets of one topic publish, as their results arrive. */
export class TargetTally {
  readonly #expect: ExpectedTargets;
  readonly #answered = new Set<string>();

  constructor(expect: ExpectedTargets) {
    this.#expect = expect;
  }

  /** Tallies one result that {@link answersBuild}. */
  receive(result: Pick<ResultMessage, "result" | "target">): TallyVerdict {
    const { target } = result;
    if (target === undefined) return "unexpected";
    if ("names" in this.#expect && !this.#expect.names.includes(target)) return "unexpected";
    if (this.#answered.has(target)) return "repeat";
    if (result.result === "progress") return this.done() ? "unexpected" : "progress";
    // With a count, every target beyond it is one too many.
    if ("count" in this.#expect && this.#answered.size >= this.#expect.count) return "unexpected";
    this.#answered.add(target);
    return "counted";
  }

  /** True once every expected target (or as many as expected) has answered. */
  done(): boolean {
    return "names" in this.#expect ? this.#expect.names.every((name) => this.#answered.has(name)) : this.#answered.size >= this.#expect.count;
  }

  /** The expected targets without a final result, in the order expected (a count names none). */
  missingNames(): string[] {
    return "names" in this.#expect ? this.#expect.names.filter((name) => !this.#answered.has(name)) : [];
  }

  /** How many expected targets have not answered. */
  missingCount(): number {
    return "names" in this.#expect ? this.missingNames().length : Math.max(0, this.#expect.count - this.#answered.size);
  }
}
