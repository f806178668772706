import { describe, expect, test } from "bun:test";
import { APP_LABEL, checkOwnership, conflictOf, HAND_OVER_ANNOTATION, INSTANCE_LABEL, markObjects, ownerOf, pruneKeepReason, type Owner } from "../../lib/listener/ownership.ts";
import { MessageRejectedError } from "../../lib/errors.ts";
import type { KubeObject } from "../../lib/manifests/bundle.ts";

const shop: Owner = { app: "shop", instance: "kube-pico-cd" };
const cm = (name: string, labels?: Record<string, string>, annotations?: Record<string, string>): KubeObject => ({
  apiVersion: "v1",
  kind: "ConfigMap",
  metadata: { name, namespace: "team", ...(labels ? { labels } : {}), ...(annotations ? { annotations } : {}) },
});
const mark = (app: string, instance = "kube-pico-cd") => ({ [APP_LABEL]: app, [INSTANCE_LABEL]: instance });

describe("markObjects()", () => {
  test("adds the app and instance labels, keeps the object's own labels, changes nothing else", () => {
    const original = cm("a", { tier: "web", [APP_LABEL]: "someone-else" });
    const [marked] = markObjects([original], shop);
    expect(marked!.metadata.labels).toEqual({ tier: "web", [APP_LABEL]: "shop", [INSTANCE_LABEL]: "kube-pico-cd" });
    expect(marked!.metadata.name).toBe("a");
    // A copy: the decoded bundle (kept for drift correction by its digest) is not touched.
    expect(original.metadata.labels).toEqual({ tier: "web", [APP_LABEL]: "someone-else" });
  });
});

describe("conflictOf()", () => {
  const cases: [string, unknown, string | undefined][] = [
    ["no live object", undefined, undefined],
    ["an unmarked live object (applied by hand, or before marks) is adopted", cm("a"), undefined],
    ["our own mark", cm("a", mark("shop")), undefined],
    ["another app's mark", cm("a", mark("blog")), 'owned by app "blog" of the listener in namespace kube-pico-cd'],
    ["the same app name of another listener", cm("a", mark("shop", "other-install")), 'owned by app "shop" of the listener in namespace other-install'],
    ["handed over to us", cm("a", mark("blog"), { [HAND_OVER_ANNOTATION]: "shop" }), undefined],
    ["handed over to a third app", cm("a", mark("blog"), { [HAND_OVER_ANNOTATION]: "wiki" }), 'owned by app "blog" of the listener in namespace kube-pico-cd'],
  ];
  for (const [name, live, expected] of cases) test(name, () => expect(conflictOf(live, shop)).toBe(expected));
});

describe("checkOwnership()", () => {
  test("rejects the whole bundle naming every object another app owns, and how to hand it over", () => {
    const objects = [cm("mine"), cm("theirs"), cm("also-theirs")];
    const live = [cm("mine", mark("shop")), cm("theirs", mark("blog")), cm("also-theirs", mark("wiki"))];
    let thrown: unknown;
    try {
      checkOwnership(objects, live, shop);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(MessageRejectedError);
    const error = thrown as MessageRejectedError;
    expect(error.reason).toBe("ownership-conflict");
    expect(error.message).toContain("2 of 3 objects belong to another app");
    expect(error.message).toContain('ConfigMap team/theirs is owned by app "blog"');
    expect(error.message).toContain('ConfigMap team/also-theirs is owned by app "wiki"');
    expect(error.message).toContain(`${HAND_OVER_ANNOTATION}: shop`);
    expect(error.message).not.toContain("team/mine");
  });

  test("passes a bundle whose live objects are ours, unmarked or absent", () => {
    expect(() => checkOwnership([cm("a"), cm("b"), cm("c")], [cm("a", mark("shop")), cm("b"), undefined], shop)).not.toThrow();
  });
});

describe("pruneKeepReason()", () => {
  test("deletes only objects with our mark; unmarked ones only from an inventory that predates marks", () => {
    expect(pruneKeepReason(cm("a", mark("shop")), shop, false)).toBeUndefined();
    expect(pruneKeepReason(cm("a", mark("blog")), shop, false)).toContain('owned by app "blog"');
    expect(pruneKeepReason(cm("a", mark("blog")), shop, true)).toContain('owned by app "blog"');
    expect(pruneKeepReason(cm("a", mark("shop", "other")), shop, false)).toContain("namespace other");
    expect(pruneKeepReason(cm("a"), shop, false)).toContain(`carries no ${APP_LABEL} mark`);
    expect(pruneKeepReason(cm("a"), shop, true)).toBeUndefined();
  });
});

describe("ownerOf()", () => {
  test("reads the mark, or nothing from objects without labels or of another shape", () => {
    expect(ownerOf(cm("a", mark("shop")))).toEqual(shop);
    expect(ownerOf(cm("a", { [APP_LABEL]: "shop" }))).toEqual({ app: "shop", instance: "" });
    expect(ownerOf(cm("a"))).toBeUndefined();
    expect(ownerOf(null)).toBeUndefined();
    expect(ownerOf({ metadata: { labels: "x" } })).toBeUndefined();
  });
});
