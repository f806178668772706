/**
 * The deploy decision, as a pure function of (batch, record): which build to try next, and
 * what each other message of the batch becomes. No I/O: lib/listener/deployer.ts performs the
 * effects, then asks again with the record as it is after each attempt.
 *
 * Newest wins, by the total order of lib/wire/message.ts (timestamp, then digest), measured
 * against the record's *mark*: the newer of the confirmed `current` build and the `inflight`
 * one (written before kubectl started). So a build that may have been applied, though never
 * confirmed, is never overtaken by an older one.
 *
 * - equal to `current`: a duplicate delivery; deleted once that is recorded;
 * - equal to `inflight` (and newer than `current`): the interrupted build; tried again, since
 *   nothing confirmed it;
 * - older than the mark: superseded; deleted once that is recorded;
 * - newer than the mark: a candidate. Candidates are tried newest first; the older ones wait
 *   (they are not deleted) until a newer one is recorded as applied, and if the newest fails
 *   the next newest still newer than the record is tried.
 *
 * Several messages of one build (the same build published twice) form one candidate.
 */
import { compareBuilds } from "../wire/message.ts";

/** What orders builds: their timestamp, then their digest. */
export interface BuildKey {
  timestampMs: number;
  digest: string;
}

/** A decoded, admitted message of the batch. */
export interface DecideMessage {
  messageId: string;
  build: BuildKey;
}

/** The parts of the record the decision reads. */
export interface DecideRecord {
  current: BuildKey | null;
  inflight: BuildKey | null;
}

/** One build to try: its messages, the first one the newest delivery to name in outcomes. */
export interface Attempt {
  build: BuildKey;
  messageIds: string[];
  /** True when this is the record's in-flight build (finishing an interrupted deploy). */
  resumes: boolean;
}

/** What {@link decide} says of a batch. */
export interface Decision {
  /** Builds to try, newest first. Empty: nothing to apply. */
  attempts: Attempt[];
  /** Messages whose outcome is settled without applying, by message id. */
  settled: Map<string, "duplicate" | "superseded">;
}

/** The newer of the record's current and in-flight builds; null for an empty record. */
export function markOf(record: DecideRecord): BuildKey | null {
  const { current, inflight } = record;
  if (current === null) return inflight;
  if (inflight === null) return current;
  return compareBuilds(inflight, current) > 0 ? inflight : current;
}

/**
 * Decides the fate of `messages` against `record` (see the module comment).
 * Every message id of the input is in exactly one attempt or in `settled`.
 */
export function decide(messages: readonly DecideMessage[], record: DecideRecord): Decision {
  const mark = markOf(record);
  const settled = new Map<string, "duplicate" | "superseded">();
  const attempts: Attempt[] = [];
  const resumable = record.inflight !== null && (record.current === null || compareBuilds(record.inflight, record.current) > 0) ? record.inflight : null;
  for (const m of messages) {
    if (record.current !== null && compareBuilds(m.build, record.current) === 0) {
      settled.set(m.messageId, "duplicate");
      continue;
    }
    const resumes = resumable !== null && compareBuilds(m.build, resumable) === 0;
    if (!resumes && mark !== null && compareBuilds(m.build, mark) <= 0) {
      settled.set(m.messageId, "superseded");
      continue;
    }
    const same = attempts.find((a) => compareBuilds(a.build, m.build) === 0);
    if (same) same.messageIds.push(m.messageId);
    else attempts.push({ build: m.build, messageIds: [m.messageId], resumes });
  }
  attempts.sort((a, b) => compareBuilds(b.build, a.build));
  return { attempts, settled };
}
