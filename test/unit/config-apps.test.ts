import { describe, expect, test } from "bun:test";
import { listenerHelpText, parseListenerConfig } from "../../lib/listener/config.ts";
import { configProblems } from "../helpers/thrown.ts";

const base = { KUBE_PICO_CD_QUEUE: "deploy", KUBE_PICO_CD_NAMESPACE: "kube-pico-cd" };

describe("parseListenerConfig() --apps-config", () => {
  test("parseListenerConfig() has no apps configuration by default", () => {
    expect(parseListenerConfig([], base).appsConfig).toBeUndefined();
  });

  test("parseListenerConfig() takes the apps configuration's path from KUBE_PICO_CD_APPS_CONFIG, and --apps-config over it", () => {
    expect(parseListenerConfig([], { ...base, KUBE_PICO_CD_APPS_CONFIG: "/etc/kube-pico-cd/apps/apps.yaml" }).appsConfig).toBe("/etc/kube-pico-cd/apps/apps.yaml");
    expect(parseListenerConfig(["--apps-config", "/tmp/apps.yaml"], { ...base, KUBE_PICO_CD_APPS_CONFIG: "/etc/apps.yaml" }).appsConfig).toBe("/tmp/apps.yaml");
  });

  test("parseListenerConfig() refuses an empty --apps-config, and reads an empty variable as unset", () => {
    expect(configProblems(() => parseListenerConfig(["--apps-config="], base))).toEqual(["--apps-config: must not be empty (leave it unset for no apps configuration)"]);
    expect(parseListenerConfig([], { ...base, KUBE_PICO_CD_APPS_CONFIG: "" }).appsConfig).toBeUndefined();
  });

  test("listener --help documents --apps-config with its variable", () => {
    expect(listenerHelpText()).toContain("--apps-config PATH");
    expect(listenerHelpText()).toContain("KUBE_PICO_CD_APPS_CONFIG");
  });
});
