import { describe, expect, test } from "bun:test";
import { oneLine } from "../../lib/text.ts";

describe("oneLine()", () => {
  test("oneLine() joins lines and cuts with an ellipsis", () => {
    expect(oneLine("  one\n\ttwo  three ", 20)).toBe("one two three");
    expect(oneLine("abcdefgh", 5)).toBe("abcd…");
  });
});
