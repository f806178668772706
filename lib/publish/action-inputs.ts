/**
 * The GitHub Action's inputs (action.yml) as publish's variables. The runner hands a
 * JavaScript action each input as `INPUT_<NAME>` (the input's name in capitals, spaces as
 * `_`, hyphens kept: `INPUT_QUEUE-URLS`), the declared default when the workflow gives none;
 * dist/action.mjs runs publish with the variables this module makes of them. Inputs only ever
 * reach publish as data, never as shell text.
 */

/** Each input of action.yml, in its order, and the variable publish reads it from. */
export const ACTION_INPUTS = {
  paths: { variable: "KUBE_PICO_CD_PATHS", list: true },
  "queue-urls": { variable: "KUBE_PICO_CD_QUEUE", list: true },
  topic: { variable: "KUBE_PICO_CD_TOPIC", list: true },
  region: { variable: "KUBE_PICO_CD_REGION", list: false },
  app: { variable: "KUBE_PICO_CD_APP", list: false },
  target: { variable: "KUBE_PICO_CD_TARGET", list: false },
  "expect-targets": { variable: "KUBE_PICO_CD_EXPECT_TARGETS", list: false },
  "dry-run": { variable: "KUBE_PICO_CD_DRY_RUN", list: false },
  plan: { variable: "KUBE_PICO_CD_PLAN", list: false },
  "endpoint-url": { variable: "KUBE_PICO_CD_ENDPOINT_URL", list: false },
  "build-timestamp-ms": { variable: "KUBE_PICO_CD_BUILD_TIMESTAMP_MS", list: false },
  "max-message-bytes": { variable: "KUBE_PICO_CD_MAX_MESSAGE_BYTES", list: false },
  "result-queue": { variable: "KUBE_PICO_CD_RESULT_QUEUE", list: false },
  wait: { variable: "KUBE_PICO_CD_WAIT", list: false },
  "signing-key": { variable: "KUBE_PICO_CD_SIGNING_KEY", list: false },
} as const satisfies Readonly<Record<string, { variable: string; list: boolean }>>;

/** The variable the runner sets for input `name`: `INPUT_` and the name in capitals, spaces as `_`. */
export function inputVariable(name: string): string {
  return `INPUT_${name.replaceAll(" ", "_").toUpperCase()}`;
}

/**
 * `env` with each input's variable set from its `INPUT_*` (an empty or absent input sets it
 * empty, which publish reads as unset, so a job-level variable cannot stand in for an input
 * the workflow left out). Lists may be given one item per line, as YAML block inputs are;
 * publish takes them comma-separated.
 */
export function envFromActionInputs(env: Readonly<Record<string, string | undefined>>): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = { ...env };
  for (const [name, input] of Object.entries(ACTION_INPUTS)) {
    const value = env[inputVariable(name)] ?? "";
    out[input.variable] = input.list ? value.replace(/\r?\n/g, ",") : value;
  }
  return out;
}
