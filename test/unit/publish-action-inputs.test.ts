import { describe, expect, test } from "bun:test";
import { ACTION_INPUTS, envFromActionInputs, inputVariable } from "../../lib/publish/action-inputs.ts";
import { parsePublishConfig, PUBLISH_OPTIONS } from "../../lib/publish/config.ts";
import { SIGNING_KEY_ENV } from "../../lib/wire/signature.ts";

describe("inputVariable()", () => {
  test("inputVariable() names an input's variable as the runner does: capitals, spaces as _, hyphens kept", () => {
    expect(inputVariable("queue-urls")).toBe("INPUT_QUEUE-URLS");
    expect(inputVariable("paths")).toBe("INPUT_PATHS");
    expect(inputVariable("two words")).toBe("INPUT_TWO_WORDS");
  });
});

describe("envFromActionInputs()", () => {
  test("envFromActionInputs() sets each input's variable, and lists given one per line comma-separated", () => {
    const env = envFromActionInputs({ "INPUT_QUEUE-URLS": "https://a\nhttps://b\r\n", INPUT_PATHS: "k8s/\ncrds/", INPUT_TARGET: "prod", PATH: "/bin" });
    expect(env).toMatchObject({ KUBE_PICO_CD_QUEUE: "https://a,https://b,", KUBE_PICO_CD_PATHS: "k8s/,crds/", KUBE_PICO_CD_TARGET: "prod", PATH: "/bin" });
  });

  test("envFromActionInputs() keeps the line feeds of a signing key's PEM", () => {
    const pem = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEI\n-----END PRIVATE KEY-----\n";
    expect(envFromActionInputs({ "INPUT_SIGNING-KEY": pem })["KUBE_PICO_CD_SIGNING_KEY"]).toBe(pem);
  });

  test("envFromActionInputs() sets an input the workflow left out empty, so a job-level variable does not stand in for it", () => {
    const env = envFromActionInputs({ KUBE_PICO_CD_TARGET: "from-the-job", KUBE_PICO_CD_IGNORE: "*.tmpl.yaml" });
    expect(env["KUBE_PICO_CD_TARGET"]).toBe("");
    expect(env["KUBE_PICO_CD_IGNORE"]).toBe("*.tmpl.yaml");
  });

  test("ACTION_INPUTS names, for each input, an option's own variable (or the paths' or signing key's)", () => {
    const own = new Set([...Object.values(PUBLISH_OPTIONS).map((spec) => ("env" in spec ? spec.env[0] : undefined)), "KUBE_PICO_CD_PATHS", SIGNING_KEY_ENV]);
    for (const input of Object.values(ACTION_INPUTS)) expect({ variable: input.variable, read: own.has(input.variable) }).toEqual({ variable: input.variable, read: true });
  });

  test("envFromActionInputs() gives publish only variables it reads, under their current names", () => {
    const inputs = Object.fromEntries(Object.keys(ACTION_INPUTS).map((name) => [inputVariable(name), ""]));
    const config = parsePublishConfig([], { ...envFromActionInputs({ ...inputs, INPUT_PATHS: "k8s", "INPUT_DRY-RUN": "true" }) });
    expect(config).toMatchObject({ paths: ["k8s"], dryRun: true, deprecations: [] });
  });
});
