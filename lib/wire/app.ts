/**
 * App names as the wire format knows them: a bundle names the app it belongs to (the
 * optional `app` of a version 1 body; docs/protocol.md, "The app"), and a message that names
 * none, like every legacy message, belongs to {@link DEFAULT_APP}. Pure.
 *
 * What the listener keeps per app, and under which object names, is lib/listener/apps.ts,
 * which re-exports these rules so that both sides of the queue share one definition.
 */
import { z } from "zod";

/** The app of messages that name none, and of legacy messages. */
export const DEFAULT_APP = "default";

/** Longest app name: it is a label value (63) and a suffix of object names. */
export const MAX_APP_NAME_LENGTH = 63;

/** An app name: a DNS-1123 label (lowercase letters, digits, '-'; starts and ends alphanumeric). */
export const APP_NAME_PATTERN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/** What is wrong with `name` as an app name, or undefined. */
export function appNameProblem(name: string): string | undefined {
  if (name.length === 0) return "an app name must not be empty";
  if (name.length > MAX_APP_NAME_LENGTH) return `app name ${JSON.stringify(name.slice(0, 80))} is longer than ${MAX_APP_NAME_LENGTH} characters`;
  if (!APP_NAME_PATTERN.test(name)) return `app name ${JSON.stringify(name)} is not a DNS label (lowercase letters, digits and '-', starting and ending with a letter or digit)`;
  return undefined;
}

/** An app name as a zod schema: the issue states the rule it breaks ({@link appNameProblem}). */
export const appNameSchema = z.string().superRefine((name, context) => {
  const problem = appNameProblem(name);
  if (problem !== undefined) context.addIssue({ code: "custom", message: problem });
});
