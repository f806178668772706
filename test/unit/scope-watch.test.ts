import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError } from "../../lib/errors.ts";
import { watchAppsConfig, type AppsConfigWatch } from "../../lib/listener/apps-config-watch.ts";
import type { AppsConfig } from "../../lib/listener/apps-config.ts";
import { createLogger } from "../../lib/log.ts";
import { configProblems, thrown } from "../helpers/thrown.ts";

const KEY = "0123456789abcdef";
const INTERVAL_MS = 10;

let dir: string;
let file: string;
let lines: Record<string, unknown>[];
let controller: AbortController;
let watches: AppsConfigWatch[];

const logger = () => createLogger({ write: (line) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
const logged = (msg: string) => lines.filter((line) => line["msg"] === msg);

function start(onChange?: (config: AppsConfig) => void): AppsConfigWatch {
  const watch = watchAppsConfig(file, { trustedKeyIds: [KEY], intervalMs: INTERVAL_MS, signal: controller.signal, logger: logger(), ...(onChange === undefined ? {} : { onChange }) });
  watches.push(watch);
  return watch;
}

/** Waits until `check` holds, polling every few milliseconds; fails after two seconds. */
async function eventually(what: string, check: () => boolean): Promise<void> {
  const deadline = Date.now() + 2_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Lets the watch read the file several times. */
const severalPolls = () => new Promise((resolve) => setTimeout(resolve, INTERVAL_MS * 8));

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "apps-config-"));
  file = join(dir, "apps.yaml");
  lines = [];
  controller = new AbortController();
  watches = [];
});

afterEach(async () => {
  controller.abort();
  await Promise.all(watches.map((watch) => watch.stopped));
  rmSync(dir, { recursive: true, force: true });
});

describe("watchAppsConfig()", () => {
  test("watchAppsConfig() reads the file at start, logs it and offers it as current", () => {
    writeFileSync(file, "apps: [{ name: shop, namespaces: [shop] }]\n");
    const watch = start();
    expect(watch.current.apps.map((entry) => entry.name)).toEqual(["shop"]);
    expect(logged("apps configuration loaded")).toMatchObject([{ level: "info", file, apps: ["shop"], unknownApps: "refuse" }]);
  });

  test("watchAppsConfig() throws a ConfigError at start when the file is missing", () => {
    expect(configProblems(start)).toEqual([
      `--apps-config: cannot read ${file}: ENOENT: no such file or directory, open '${file}' (mount the apps ConfigMap there, or unset KUBE_PICO_CD_APPS_CONFIG)`,
    ]);
  });

  test("watchAppsConfig() throws a ConfigError at start when the file is invalid, naming every problem", () => {
    writeFileSync(file, "apps: [{ name: shop, namespace: shop }]\n");
    expect(configProblems(start)).toEqual([
      `${file}: apps[0] ("shop"): unknown field "namespace" (did you mean namespaces?); the fields of an entry are name, namespaces, defaultNamespace, kinds, deniedKinds, allowClusterScoped, trustedKeys`,
    ]);
  });

  test("watchAppsConfig() refuses an interval that is not a positive number", () => {
    writeFileSync(file, "apps: [{ name: shop }]\n");
    const error = thrown(() => watchAppsConfig(file, { trustedKeyIds: [], intervalMs: 0, signal: controller.signal, logger: logger() }), RangeError);
    expect(error.message).toBe("Cannot watch the apps configuration as 'intervalMs' must be a positive finite number: current value is 0");
  });

  test("watchAppsConfig() puts a changed, valid file in force, tells onChange once and logs the entries", async () => {
    writeFileSync(file, "apps: [{ name: shop }]\n");
    const changes: AppsConfig[] = [];
    const watch = start((config) => changes.push(config));
    writeFileSync(file, `apps: [{ name: shop }, { name: "team-*", trustedKeys: ["${KEY}"] }]\n`);
    await eventually("the reload", () => changes.length > 0);
    await severalPolls();
    expect(changes).toHaveLength(1);
    expect(watch.current).toBe(changes[0]!);
    expect(watch.current.apps.map((entry) => entry.name)).toEqual(["shop", "team-*"]);
    expect(logged("apps configuration reloaded")).toMatchObject([{ level: "info", file, apps: ["shop", "team-*"], unknownApps: "refuse" }]);
  });

  test("watchAppsConfig() keeps the previous configuration when the changed file is invalid, logs the problem once, and takes the fixed file", async () => {
    writeFileSync(file, "apps: [{ name: shop }]\n");
    const changes: AppsConfig[] = [];
    const watch = start((config) => changes.push(config));
    const before = watch.current;
    writeFileSync(file, 'apps: [{ name: shop, trustedKeys: ["1111111111111111"] }]\n');
    const notReloaded = "apps configuration not reloaded: the changed file is invalid; the previous configuration stays in force";
    await eventually("the error", () => logged(notReloaded).length > 0);
    await severalPolls();
    expect(logged(notReloaded)).toMatchObject([
      { level: "error", file, problems: [`${file}: apps[0] ("shop"): trustedKeys[0]: key 1111111111111111 is not among the listener's trusted keys; the listener trusts only ${KEY}: add the key to --trusted-keys (KUBE_PICO_CD_TRUSTED_KEYS), or name one of those`] },
    ]);
    expect(watch.current).toBe(before);
    expect(changes).toEqual([]);
    writeFileSync(file, "apps: [{ name: blog }]\n");
    await eventually("the reload", () => changes.length > 0);
    expect(watch.current.apps.map((entry) => entry.name)).toEqual(["blog"]);
  });

  test("watchAppsConfig() keeps the previous configuration while the file is gone, and says so when it is back unchanged", async () => {
    writeFileSync(file, "apps: [{ name: shop }]\n");
    const changes: AppsConfig[] = [];
    const watch = start((config) => changes.push(config));
    unlinkSync(file);
    const unreadable = "apps configuration not reloaded: the file cannot be read; the previous configuration stays in force";
    await eventually("the error", () => logged(unreadable).length > 0);
    await severalPolls();
    expect(logged(unreadable)).toHaveLength(1);
    expect(watch.current.apps.map((entry) => entry.name)).toEqual(["shop"]);
    writeFileSync(file, "apps: [{ name: shop }]\n");
    await eventually("the notice", () => logged("apps configuration file is again the one in force").length > 0);
    expect(changes).toEqual([]);
  });

  test("watchAppsConfig() sees a ConfigMap volume's update, a swap of the ..data symlink", async () => {
    // How the kubelet updates a ConfigMap volume: apps.yaml -> ..data/apps.yaml, ..data -> a timestamped directory, swapped atomically.
    const volume = join(dir, "volume");
    mkdirSync(join(volume, "..v1"), { recursive: true });
    writeFileSync(join(volume, "..v1", "apps.yaml"), "apps: [{ name: shop }]\n");
    symlinkSync("..v1", join(volume, "..data"));
    symlinkSync(join("..data", "apps.yaml"), join(volume, "apps.yaml"));
    file = join(volume, "apps.yaml");
    const changes: AppsConfig[] = [];
    const watch = start((config) => changes.push(config));
    mkdirSync(join(volume, "..v2"));
    writeFileSync(join(volume, "..v2", "apps.yaml"), "apps: [{ name: shop }, { name: blog }]\n");
    symlinkSync("..v2", join(volume, "..data_tmp"));
    renameSync(join(volume, "..data_tmp"), join(volume, "..data"));
    await eventually("the reload", () => changes.length > 0);
    expect(watch.current.apps.map((entry) => entry.name)).toEqual(["shop", "blog"]);
  });

  test("watchAppsConfig() logs an error onChange throws and keeps polling", async () => {
    writeFileSync(file, "apps: [{ name: shop }]\n");
    const watch = start(() => {
      throw new Error("listener broke");
    });
    writeFileSync(file, "apps: [{ name: blog }]\n");
    await eventually("the error", () => logged("apps configuration reloaded, but its listener failed").length > 0);
    writeFileSync(file, "apps: [{ name: wiki }]\n");
    await eventually("the second reload", () => watch.current.apps[0]?.name === "wiki");
  });

  test("watchAppsConfig() stops polling when the signal aborts", async () => {
    writeFileSync(file, "apps: [{ name: shop }]\n");
    const watch = start();
    controller.abort();
    await watch.stopped;
    writeFileSync(file, "apps: [{ name: blog }]\n");
    await severalPolls();
    expect(watch.current.apps.map((entry) => entry.name)).toEqual(["shop"]);
    expect(logged("apps configuration reloaded")).toEqual([]);
  });

  test("watchAppsConfig() at start throws ConfigError, not a plain error", () => {
    writeFileSync(file, "");
    expect(thrown(start, ConfigError).problems).toEqual([`${file}: is empty: write at least apps: [{ name: <app>, namespaces: [<namespace>] }] (docs/apps.md)`]);
  });
});
