/**
 * The listener's resources as the docs quote them equal deploy/base's Deployment: the request
 * and limit in deploy/README.md ("The Deployment"), and the memory limit every other doc and
 * benchmark names.
 */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parse } from "yaml";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const read = (path: string) => readFileSync(join(root, path), "utf8");

interface Resources {
  requests: { cpu: string; memory: string };
  limits: { memory: string };
}

/** The listener container's resources in deploy/base/deployment.yaml. */
function deploymentResources(): Resources {
  const deployment = parse(read("deploy/base/deployment.yaml")) as {
    spec: { template: { spec: { containers: Array<{ name: string; resources: Resources }> } } };
  };
  const listener = deployment.spec.template.spec.containers.find((c) => c.name === "listener");
  if (!listener) throw new Error("deploy/base/deployment.yaml has no container named listener");
  return listener.resources;
}

/** "128Mi" → 128; anything but a whole number of MiB is an error. */
function mebibytes(quantity: string): number {
  const match = /^(\d+)Mi$/.exec(quantity);
  if (!match) throw new Error(`Cannot read the memory quantity ${JSON.stringify(quantity)} as MiB: expected a form like 128Mi`);
  return Number(match[1]);
}

/** Every match of `pattern` (which must capture one number) in `text`, as numbers. */
function figures(text: string, pattern: RegExp): number[] {
  return [...text.matchAll(pattern)].map((m) => Number(m[1]));
}

describe("deploy/base/deployment.yaml resources in the docs", () => {
  const resources = deploymentResources();
  const limitMiB = mebibytes(resources.limits.memory);

  test("deploy/README.md quotes the Deployment's CPU request, memory request and memory limit", () => {
    const readme = read("deploy/README.md");
    const quoted = [...readme.matchAll(/Resources: requests (\S+) CPU and (\d+) MiB memory,\s+limit (\d+) MiB memory\./g)];
    expect(quoted.map((m) => [m[1], Number(m[2]), Number(m[3])])).toEqual([[resources.requests.cpu, mebibytes(resources.requests.memory), limitMiB]]);
  });

  test("deploy/README.md justifies them with the README's measured figures, and the figures fit", () => {
    const readme = read("README.md");
    const deployReadme = read("deploy/README.md");
    const levelsOff = figures(readme, /RSS levels off at about (\d+) MiB/g);
    const worstTen = figures(readme, /10 of those worst messages at once \| peak RSS (\d+) MiB/g);
    expect(levelsOff).toHaveLength(1);
    expect(worstTen).toHaveLength(1);
    expect(figures(deployReadme, /levels off at about\s+(\d+) MiB RSS, which the request covers/g)).toEqual(levelsOff);
    expect(figures(deployReadme, /took the listener to (\d+) MiB, which the limit covers/g)).toEqual(worstTen);
    expect(levelsOff[0]!).toBeLessThan(mebibytes(resources.requests.memory));
    expect(worstTen[0]!).toBeLessThan(limitMiB);
  });

  test("the README, docs/protocol.md, lib/wire/message.ts and bench/hostile-memory.ts name the Deployment's memory limit", () => {
    expect(figures(read("README.md"), /(?:pod limit|sized to the pod's) (\d+) MiB/g)).toEqual([limitMiB, limitMiB]);
    expect(figures(read("docs/protocol.md"), /`deploy\/base\/deployment\.yaml`:\s+(\d+) MiB/g)).toEqual([limitMiB]);
    expect(figures(read("lib/wire/message.ts"), /pod's (\d+) MiB memory limit/g)).toEqual([limitMiB]);
    expect(figures(read("bench/hostile-memory.ts"), /POD_LIMIT_MIB = (\d+);/g)).toEqual([limitMiB]);
  });
});
