/**
 * Reads the CloudFormation templates of deploy/aws/ as data: the short-form tags (`!Ref x`,
 * `!GetAtt A.B`, `!If [c, a, b]`, …) become their long form (`{ Ref: "x" }`,
 * `{ "Fn::GetAtt": ["A", "B"] }`, `{ "Fn::If": [...] }`), as CloudFormation itself reads them.
 */
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parse, type Tags } from "yaml";

export const AWS_TEMPLATES_DIR = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "deploy", "aws");

const FUNCTIONS = ["Ref", "Condition", "Sub", "GetAtt", "If", "Equals", "Not", "And", "Or", "Select", "Split", "Join", "FindInMap", "GetAZs", "ImportValue", "Base64", "Cidr"];

function longFormKey(name: string): string {
  return name === "Ref" || name === "Condition" ? name : `Fn::${name}`;
}

const cloudFormationTags: Tags = FUNCTIONS.flatMap((name) => {
  const key = longFormKey(name);
  const asLongForm = (value: unknown): Record<string, unknown> => ({ [key]: name === "GetAtt" && typeof value === "string" ? value.split(".") : value });
  return [
    { tag: `!${name}`, identify: () => false, resolve: (value: string) => asLongForm(value) },
    { tag: `!${name}`, identify: () => false, collection: "seq" as const, resolve: (value: { toJSON(): unknown }) => asLongForm(value.toJSON()) },
    { tag: `!${name}`, identify: () => false, collection: "map" as const, resolve: (value: { toJSON(): unknown }) => asLongForm(value.toJSON()) },
  ];
});

/** A parsed template: loosely typed, since tests compare its parts with exact values. */
export type Template = Record<string, any>;

/** Parses deploy/aws/<file> with CloudFormation's tags in long form. */
export function readTemplate(file: string): Template {
  return parse(readFileSync(join(AWS_TEMPLATES_DIR, file), "utf8"), { customTags: cloudFormationTags }) as Template;
}

export interface Statement {
  Effect: string;
  Action: string | string[];
  Resource: unknown;
  Principal?: unknown;
  Condition?: unknown;
}

/** Every statement of a role's inline policies, in order. */
export function roleStatements(template: Template, role: string): Statement[] {
  const policies: Array<{ PolicyDocument: { Statement: Statement[] } }> = template.Resources[role].Properties.Policies;
  return policies.flatMap((p) => p.PolicyDocument.Statement);
}

/** The actions of statements, flattened, lower-cased (IAM compares actions case-insensitively). */
export function actionsOf(statements: readonly Statement[]): string[] {
  return statements.flatMap((s) => (Array.isArray(s.Action) ? s.Action : [s.Action])).map((a) => a.toLowerCase());
}
