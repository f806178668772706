/** runKubectl against the real kube-apiserver of the test environment. */
import { beforeAll, describe, expect, test } from "bun:test";
import { KubectlError } from "../../lib/errors.ts";
import { runKubectl, type KubectlTarget } from "../../lib/kube/kubectl.ts";
import { createNamespace, testEnv } from "../env/testenv.ts";

let admin: KubectlTarget;
let nobody: KubectlTarget;
let ns: string;

beforeAll(async () => {
  const env = await testEnv();
  admin = { kubectlPath: env.kubectl, kubeconfig: env.kubeconfig };
  nobody = { kubectlPath: env.kubectl, kubeconfig: env.unprivilegedKubeconfig };
  ns = await createNamespace("kubectl");
}, 300_000);

describe("runKubectl() against kube-apiserver", () => {
  test("runKubectl() creates an object from stdin and reads it back", async () => {
    const cm = { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "from-stdin", namespace: ns }, data: { a: "1" } };
    await runKubectl(["create", "-f", "-"], { ...admin, stdin: JSON.stringify(cm) });
    const { stdout } = await runKubectl(["get", "configmap", "from-stdin", `--namespace=${ns}`, "-o", "jsonpath={.data.a}"], admin);
    expect(stdout).toBe("1");
  });

  test("runKubectl() reports a missing object as a KubectlError with server reason NotFound", async () => {
    const error = (await runKubectl(["get", "configmap", "missing", `--namespace=${ns}`], admin).catch((e: unknown) => e)) as KubectlError;
    expect(error).toBeInstanceOf(KubectlError);
    expect(error.exitCode).toBe(1);
    expect(error.serverReason).toBe("NotFound");
    expect(error.stderr).toBe('Error from server (NotFound): configmaps "missing" not found\n');
  });

  test("runKubectl() reports a user without rights as a KubectlError with server reason Forbidden", async () => {
    const error = (await runKubectl(["get", "configmap", "x", `--namespace=${ns}`], nobody).catch((e: unknown) => e)) as KubectlError;
    expect(error).toBeInstanceOf(KubectlError);
    expect(error.serverReason).toBe("Forbidden");
    expect(error.stderr).toContain('User "nobody" cannot get resource "configmaps"');
  });

  test("runKubectl() passes extraArgs before the command, so --as impersonates on every call", async () => {
    const error = (await runKubectl(["get", "configmap", "x", `--namespace=${ns}`], { ...admin, extraArgs: ["--as=someone"] }).catch(
      (e: unknown) => e,
    )) as KubectlError;
    expect(error.argv.slice(1, 3)).toEqual([`--kubeconfig=${admin.kubeconfig}`, "--as=someone"]);
    expect(error.serverReason).toBe("Forbidden");
    expect(error.stderr).toContain('User "someone" cannot get resource "configmaps"');
  });

  test("runKubectl() reports an unreachable API server as a KubectlError without a server reason", async () => {
    const error = (await runKubectl(["get", "configmap", "x", "--request-timeout=5s"], {
      ...admin,
      extraArgs: ["--server=https://127.0.0.1:1"],
    }).catch((e: unknown) => e)) as KubectlError;
    expect(error).toBeInstanceOf(KubectlError);
    expect(error.exitCode).toBe(1);
    expect(error.serverReason).toBeUndefined();
    expect(error.stderr).toContain("connection refused");
  });
});
