/** Reads the listener's version record from the test cluster, as an operator would. */
import { decodeRecord, DEFAULT_STATE_CONFIGMAP, type VersionRecord } from "../../lib/kube/record.ts";
import { kubectl } from "../env/testenv.ts";

export async function readRecord(namespace: string, options: { name?: string; kubeconfig?: string } = {}): Promise<VersionRecord | undefined> {
  const { name = DEFAULT_STATE_CONFIGMAP, kubeconfig } = options;
  const got = await kubectl(["get", "configmap", name, "-n", namespace, "-o", "json"], kubeconfig === undefined ? {} : { kubeconfig });
  if (got.code !== 0) {
    if (got.stderr.includes("NotFound")) return undefined;
    throw new Error(`reading the record failed: ${got.stderr}`);
  }
  return decodeRecord((JSON.parse(got.stdout) as { data?: Record<string, string> }).data);
}
