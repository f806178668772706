/**
 * runKubectl as a process runner, with small shell scripts standing in for the kubectl
 * binary (what Kubernetes answers is covered by test/integration/kubectl.test.ts).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { KubectlError } from "../../lib/errors.ts";
import { kubectlArgv, runKubectl, serverReasonOf } from "../../lib/kube/kubectl.ts";

let dir: string;
const script = (name: string, body: string): string => {
  const path = join(dir, name);
  writeFileSync(path, `#!/bin/sh\n${body}\n`);
  chmodSync(path, 0o755);
  return path;
};
let echoArgs: string;
let cat: string;
let fail: string;
let sleepy: string;
let stubborn: string;
let chatty: string;
let loudStderr: string;
let orphaning: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "kpcd-kubectl-unit-"));
  echoArgs = script("echo-args", `printf '%s\\n' "$@"`);
  cat = script("cat", "exec cat");
  fail = script("fail", `echo 'Error from server (Forbidden): configmaps "s" is forbidden: User "nobody" cannot get resource' >&2\nexit 1`);
  sleepy = script("sleepy", "exec sleep 30");
  // Ignored signals stay ignored across exec, so only SIGKILL ends this one.
  stubborn = script("stubborn", "trap '' TERM\nexec sleep 30");
  chatty = script("chatty", "head -c 5000 /dev/zero");
  loudStderr = script("loud-stderr", "head -c 5000 /dev/zero >&2\nexit 2");
  // Leaves a grandchild holding stdout, like an exec credential plugin outliving kubectl.
  orphaning = script("orphaning", "sleep 6 &\nexit 3");
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe("kubectlArgv()", () => {
  test("kubectlArgv() puts the binary, --kubeconfig, extra flags, then the arguments", () => {
    expect(kubectlArgv(["get", "pods"], { kubectlPath: "/bin/kubectl", kubeconfig: "/k.yaml", extraArgs: ["--as=nobody"] })).toEqual([
      "/bin/kubectl",
      "--kubeconfig=/k.yaml",
      "--as=nobody",
      "get",
      "pods",
    ]);
  });

  test("kubectlArgv() leaves --kubeconfig out when no kubeconfig is given", () => {
    expect(kubectlArgv(["version"], { kubectlPath: "kubectl" })).toEqual(["kubectl", "version"]);
  });
});

describe("serverReasonOf()", () => {
  test("serverReasonOf() reads the status reason of 'Error from server (…)'", () => {
    expect(serverReasonOf('Error from server (NotFound): configmaps "x" not found\n')).toBe("NotFound");
  });

  test("serverReasonOf() is 'Invalid' for a validation failure, which kubectl prints without the prefix", () => {
    expect(serverReasonOf('The ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain\n')).toBe(
      "Invalid",
    );
  });

  test("serverReasonOf() is undefined when kubectl printed no server error", () => {
    expect(serverReasonOf("error: unable to connect to the server: dial tcp 127.0.0.1:1: connect: connection refused")).toBeUndefined();
  });
});

describe("runKubectl()", () => {
  test("runKubectl() passes each argument as one argv entry, without a shell", async () => {
    const result = await runKubectl(["get", "a b", "$(touch /tmp/x)", "'quoted'"], { kubectlPath: echoArgs, kubeconfig: "/k y.yaml" });
    expect(result.stdout).toBe("--kubeconfig=/k y.yaml\nget\na b\n$(touch /tmp/x)\n'quoted'\n");
    expect(result.argv).toEqual([echoArgs, "--kubeconfig=/k y.yaml", "get", "a b", "$(touch /tmp/x)", "'quoted'"]);
  });

  test("runKubectl() writes stdin to the process and closes it", async () => {
    const result = await runKubectl(["apply", "-f", "-"], { kubectlPath: cat, stdin: '{"kind":"List"}' });
    expect(result.stdout).toBe('{"kind":"List"}');
  });

  test("runKubectl() closes stdin at once when none is given", async () => {
    const result = await runKubectl([], { kubectlPath: cat, timeoutMs: 5_000 });
    expect(result.stdout).toBe("");
  });

  test("runKubectl() rejects with a KubectlError carrying argv, exit code, stderr and server reason on a non-zero exit", async () => {
    const error = await runKubectl(["get", "configmap", "s"], { kubectlPath: fail }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(KubectlError);
    const e = error as KubectlError;
    expect(e.argv).toEqual([fail, "get", "configmap", "s"]);
    expect(e.exitCode).toBe(1);
    expect(e.signal).toBeNull();
    expect(e.reason).toBe("exit");
    expect(e.serverReason).toBe("Forbidden");
    expect(e.stderr).toBe('Error from server (Forbidden): configmaps "s" is forbidden: User "nobody" cannot get resource\n');
    expect(e.message).toBe(
      'Cannot run `fail get configmap s`: exit code 1: Error from server (Forbidden): configmaps "s" is forbidden: User "nobody" cannot get resource',
    );
  });

  test("runKubectl() never puts stdin into the error", async () => {
    const error = (await runKubectl([], { kubectlPath: fail, stdin: "password: hunter2" }).catch((e: unknown) => e)) as KubectlError;
    expect(JSON.stringify({ ...error, message: error.message })).not.toContain("hunter2");
  });

  test("runKubectl() kills the process with SIGTERM when timeoutMs passes", async () => {
    const started = performance.now();
    const error = (await runKubectl([], { kubectlPath: sleepy, timeoutMs: 200 }).catch((e: unknown) => e)) as KubectlError;
    expect(error).toBeInstanceOf(KubectlError);
    expect(error.reason).toBe("timeout");
    expect(error.signal).toBe("SIGTERM");
    expect(error.exitCode).toBeNull();
    expect(error.message).toBe("Cannot run `sleepy`: timed out after 200 ms");
    expect(performance.now() - started).toBeLessThan(3_000);
  });

  test("runKubectl() follows with SIGKILL when the process ignores SIGTERM", async () => {
    const started = performance.now();
    const error = (await runKubectl([], { kubectlPath: stubborn, timeoutMs: 200, killGraceMs: 300 }).catch((e: unknown) => e)) as KubectlError;
    expect(error.reason).toBe("timeout");
    expect(error.signal).toBe("SIGKILL");
    expect(performance.now() - started).toBeLessThan(3_000);
  });

  test("runKubectl() kills the process when the signal aborts, with the abort reason as cause", async () => {
    const controller = new AbortController();
    const pending = runKubectl([], { kubectlPath: sleepy, signal: controller.signal }).catch((e: unknown) => e);
    setTimeout(() => controller.abort(new Error("shutting down")), 100);
    const error = (await pending) as KubectlError;
    expect(error).toBeInstanceOf(KubectlError);
    expect(error.reason).toBe("aborted");
    expect(error.signal).toBe("SIGTERM");
    expect((error.cause as Error).message).toBe("shutting down");
  });

  test("runKubectl() does not start the process when the signal has already aborted", async () => {
    const marker = join(dir, "started");
    const touch = script("touch", `touch '${marker}'`);
    const error = (await runKubectl([], { kubectlPath: touch, signal: AbortSignal.abort() }).catch((e: unknown) => e)) as KubectlError;
    expect(error.reason).toBe("aborted");
    expect(error.message).toBe("Cannot run `touch`: aborted before start");
    expect(existsSync(marker)).toBe(false);
  });

  test("runKubectl() rejects with reason 'spawn' when the binary does not exist", async () => {
    const missing = join(dir, "no-such-kubectl");
    const error = (await runKubectl(["version"], { kubectlPath: missing }).catch((e: unknown) => e)) as KubectlError;
    expect(error).toBeInstanceOf(KubectlError);
    expect(error.reason).toBe("spawn");
    expect(error.exitCode).toBeNull();
    expect(error.argv).toEqual([missing, "version"]);
    expect(error.message).toStartWith(`Cannot run \`no-such-kubectl version\`: cannot start ${missing}: `);
  });

  test("runKubectl() kills the process and fails when stdout exceeds maxStdoutBytes", async () => {
    const error = (await runKubectl([], { kubectlPath: chatty, maxStdoutBytes: 1000 }).catch((e: unknown) => e)) as KubectlError;
    expect(error.reason).toBe("output-limit");
    expect(error.message).toBe("Cannot run `chatty`: stdout exceeded 1000 bytes");
  });

  test("runKubectl() keeps the first maxStderrBytes of stderr and says how much it dropped", async () => {
    const error = (await runKubectl([], { kubectlPath: loudStderr, maxStderrBytes: 100 }).catch((e: unknown) => e)) as KubectlError;
    expect(error.exitCode).toBe(2);
    expect(error.stderr).toBe(`${"\0".repeat(100)}\n[4900 more bytes of stderr dropped]`);
  });

  test("runKubectl() settles soon after kubectl exits even when a grandchild holds its output open", async () => {
    const started = performance.now();
    const error = (await runKubectl([], { kubectlPath: orphaning }).catch((e: unknown) => e)) as KubectlError;
    expect(error.exitCode).toBe(3);
    expect(performance.now() - started).toBeLessThan(5_000);
  });

  test("runKubectl() rejects a timeoutMs that is not a positive number", () => {
    expect(() => runKubectl([], { kubectlPath: cat, timeoutMs: 0 })).toThrow(
      new RangeError("Cannot run kubectl as 'timeoutMs' must be a positive finite number: current value is 0"),
    );
  });
});
