import { describe, expect, test } from "bun:test";
import { rejectionDisposition } from "../../lib/listener/rejections.ts";

describe("rejectionDisposition() of the apps configuration's rejections", () => {
  // Each is cured by a change of the apps configuration, then a redrive: kept, never deleted.
  const cases = [
    { reason: "unknown-app", cure: "an entry for the app, or unknownApps: allow" },
    { reason: "scope", cure: "an entry that allows the objects" },
    { reason: "unknown-key", cure: "the key in the entry's trustedKeys (or the listener's)" },
  ] as const;
  for (const { reason, cure } of cases) {
    test(`rejectionDisposition() keeps ${reason} in the dead-letter queue (cured by ${cure})`, () => {
      expect(rejectionDisposition(reason)).toBe("dead-letter");
    });
  }

  test("rejectionDisposition() deletes an unsigned bundle, also when it is the app's keys that require a signature", () => {
    expect(rejectionDisposition("unsigned")).toBe("delete");
  });
});
