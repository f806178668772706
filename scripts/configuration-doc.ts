/**
 * Writes docs/configuration.md from the programs' own option tables (their `--help` texts),
 * so the reference cannot drift from the code: test/unit/configuration-doc.test.ts fails
 * when the committed file differs from what this prints.
 *
 *   bun scripts/configuration-doc.ts          # rewrite docs/configuration.md
 *   bun scripts/configuration-doc.ts --check  # exit 1 when it is out of date
 */
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { listenerHelpText } from "../lib/listener/config.ts";
import { statusHelpText } from "../lib/listener/status.ts";
import { helpText as publishHelpText } from "../publish.ts";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
export const CONFIGURATION_DOC = join(root, "docs", "configuration.md");

/** The document's text. */
export function configurationDoc(): string {
  return `# Configuration reference

Generated from the programs' option tables by \`bun scripts/configuration-doc.ts\`; do not edit
by hand. Every option is a flag and a \`KUBE_PICO_CD_*\` environment variable (the flag wins);
\`--help\` prints the same text.

## listener

\`\`\`text
${listenerHelpText().trimEnd()}
\`\`\`

## listener status

\`\`\`text
${statusHelpText().trimEnd()}
\`\`\`

## publish

\`\`\`text
${publishHelpText().trimEnd()}
\`\`\`
`;
}

const meta = import.meta as ImportMeta & { main?: boolean };
if (meta.main) {
  const text = configurationDoc();
  if (process.argv.includes("--check")) {
    const current = readFileSync(CONFIGURATION_DOC, "utf8");
    if (current !== text) {
      process.stderr.write("docs/configuration.md is out of date: run 'bun scripts/configuration-doc.ts'\n");
      process.exitCode = 1;
    }
  } else {
    writeFileSync(CONFIGURATION_DOC, text);
  }
}
