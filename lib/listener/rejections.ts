/**
 * What becomes of a message the listener refuses. A rejection that a change of the listener's
 * configuration (or an upgrade of the listener) could cure is kept in the queue's dead-letter
 * queue, to be redriven once the listener is fixed: deleting it would silently drop a deploy
 * of a listener started with a stale key list. A rejection that no change of the listener can
 * cure (the body itself is broken, forged or hostile) is deleted. docs/protocol.md lists both.
 */
import type { MessageRejectedReason } from "../errors.ts";

/** `dead-letter`: kept for redrive (lib/sqs/dead-letter.ts); `delete`: removed from the queue. */
export type RejectionDisposition = "dead-letter" | "delete";

/**
 * The disposition of every rejection reason. Typed over every reason, so a new reason must be
 * placed here before the project compiles.
 */
export const REJECTION_DISPOSITIONS: Readonly<Record<MessageRejectedReason, RejectionDisposition>> = {
  // The body cannot be read or was altered: no setting makes it applicable.
  "invalid-json": "delete",
  schema: "delete",
  decode: "delete",
  "digest-mismatch": "delete",
  "invalid-manifests": "delete",
  // A newer publisher than this listener: an upgraded listener reads it.
  "unsupported-version": "dead-letter",
  // Larger than the limits allow: a gzip bomb is hostile, and a real bundle this large is
  // refused again by the next listener too (the limits are sized to the pod's memory).
  "too-large": "delete",
  // Stamped past the allowed clock skew: applying it on redrive would block every later build
  // (it would stay the newest), and a publisher with a sane clock sends the build again.
  "future-build": "delete",
  // Keeping unsigned messages would let anyone who can send fill the dead-letter queue; a
  // publisher that forgot to sign sends the build again, signed.
  unsigned: "delete",
  "malformed-signature": "delete",
  "bad-signature": "delete",
  // Signed by a key the listener does not trust yet, or that the app may not use (the apps
  // configuration's trustedKeys): adding the key cures it (key rotation).
  "unknown-key": "dead-letter",
  // Cured by widening the policy, or by configuring the target or --require-target.
  policy: "dead-letter",
  target: "dead-letter",
  // A fleet message for other clusters (a `targets` list without this listener's target): not
  // this cluster's deploy, so it is deleted unrecorded (lib/listener/deployer.ts).
  "other-targets": "delete",
  "require-target": "dead-letter",
  // --allow-empty-bundle cures it (tearing an app down is a deliberate act).
  "empty-bundle": "dead-letter",
  // Cured by the apps configuration (lib/listener/scope.ts): an entry for the app, or a wider
  // entry. A signer the app may not use is `unknown-key`, cured by the entry's trustedKeys.
  "unknown-app": "dead-letter",
  scope: "dead-letter",
  // Never cured: the bundle itself must change (flatten the list; leave the listener's objects alone).
  "list-object": "delete",
  "protected-object": "delete",
  // Cured by the owner handing the object over (lib/listener/ownership.ts), then a redrive.
  "ownership-conflict": "dead-letter",
};

/** The disposition of a rejection for `reason`; `delete` for a reason this listener does not know. */
export function rejectionDisposition(reason: string): RejectionDisposition {
  return Object.hasOwn(REJECTION_DISPOSITIONS, reason) ? REJECTION_DISPOSITIONS[reason as MessageRejectedReason] : "delete";
}
