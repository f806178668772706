import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { CONFIGURATION_DOC, configurationDoc } from "../../scripts/configuration-doc.ts";

describe("docs/configuration.md", () => {
  test("docs/configuration.md is what scripts/configuration-doc.ts generates from the option tables (run it after changing an option)", () => {
    expect(readFileSync(CONFIGURATION_DOC, "utf8")).toBe(configurationDoc());
  });
});
