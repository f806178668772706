/**
 * A Kubernetes API client for the test environment's control plane, built straight from its
 * admin kubeconfig (server and static bearer token, written by test/env/kube.ts), so tests of
 * lib/ modules that take a `KubeApi` do not depend on lib/kube/kubeconfig.ts.
 */
import { readFileSync } from "node:fs";
import { parse } from "yaml";
import { KubeApi, type KubeApiOptions, type KubeConnection } from "../../lib/kube/api.ts";
import { testEnv } from "../env/testenv.ts";

interface TestKubeconfig {
  clusters?: { cluster?: { server?: string } }[];
  users?: { user?: { token?: string } }[];
}

/** The connection a kubeconfig of test/env/kube.ts describes (`kubeconfig`: its path). */
export function connectionOf(kubeconfig: string, namespace = "default"): KubeConnection {
  const parsed = parse(readFileSync(kubeconfig, "utf8")) as TestKubeconfig;
  const server = parsed.clusters?.[0]?.cluster?.server;
  const token = parsed.users?.[0]?.user?.token;
  if (server === undefined || token === undefined) throw new Error(`the test kubeconfig ${kubeconfig} has no server or no token`);
  return {
    server,
    // The test API server's certificate is self-signed, on loopback only (see test/env/kube.ts).
    insecureSkipTlsVerify: true,
    credentials: { token: () => Promise.resolve(token), invalidate: () => {} },
    namespace,
    source: `test kubeconfig ${kubeconfig}`,
  };
}

/** The same as {@link connectionOf}. */
export const testKubeConnection = connectionOf;

/** A client of the shared test environment's API server as its admin (system:masters). */
export async function testKubeApi(options: KubeApiOptions & { namespace?: string } = {}): Promise<KubeApi> {
  const { namespace, ...apiOptions } = options;
  const env = await testEnv();
  return new KubeApi(connectionOf(env.kubeconfig, namespace), apiOptions);
}
