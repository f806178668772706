/**
 * Prune with the real control plane: what leaves the bundle is deleted, what is annotated
 * `kube-pico-cd.io/prune: disabled` is kept, a CRD only goes with --prune-crds, nothing
 * outside the inventory is touched, and an empty bundle prunes nothing.
 */
import { describe, expect, test } from "bun:test";
import type { KubeObject } from "../../lib/manifests/bundle.ts";
import { createNamespace, createQueue, kubectl } from "../env/testenv.ts";
import { configMap, namespaceObject, sendBundle } from "../helpers/bundles.ts";
import { runListenerOnce } from "../helpers/listener-process.ts";
import { readRecord } from "../helpers/record.ts";

const exists = async (args: string[]) => (await kubectl(["get", ...args, "-o", "name"])).code === 0;

function annotated(object: KubeObject, annotations: Record<string, string>): KubeObject {
  return { ...object, metadata: { ...object.metadata, annotations } } as KubeObject;
}

describe("prune", () => {
  test("a removed object is pruned, an annotated one is kept, a Namespace goes after its objects, and objects outside the inventory are untouched", async () => {
    const ns = await createNamespace("prune");
    const extra = `${ns}-extra`;
    const queue = await createQueue();
    await kubectl(["create", "configmap", "made-by-hand", "-n", ns, "--from-literal=a=b"]);
    await sendBundle(
      queue.url,
      [
        configMap(ns, "stays", { v: "1" }),
        configMap(ns, "goes", { v: "1" }),
        annotated(configMap(ns, "kept", { v: "1" }), { "kube-pico-cd.io/prune": "disabled" }),
        namespaceObject(extra),
        configMap(extra, "inside", { v: "1" }),
      ],
      { timestampMs: 1_000 },
    );
    expect((await runListenerOnce({ queueUrl: queue.url, namespace: ns })).code).toBe(0);
    expect((await readRecord(ns))?.inventory).toHaveLength(5);

    const second = await sendBundle(queue.url, [configMap(ns, "stays", { v: "2" })], { timestampMs: 2_000 });
    const run = await runListenerOnce({ queueUrl: queue.url, namespace: ns });
    expect(run.code).toBe(0);

    expect(await exists(["configmap", "stays", "-n", ns])).toBe(true);
    expect(await exists(["configmap", "goes", "-n", ns])).toBe(false);
    expect(await exists(["configmap", "kept", "-n", ns])).toBe(true);
    expect(await exists(["configmap", "made-by-hand", "-n", ns])).toBe(true);
    const phase = await kubectl(["get", "namespace", extra, "-o", "jsonpath={.status.phase}"]);
    expect(phase.code === 0 ? phase.stdout : "gone").toMatch(/^(Terminating|gone)$/);

    const record = await readRecord(ns);
    expect(record?.current?.build.id).toBe(second.build.id);
    expect(record?.inventory).toEqual([{ group: "", kind: "ConfigMap", namespace: ns, name: "stays" }]);
    const outcome = record?.history[0];
    expect(outcome?.result).toBe("applied");
    expect(outcome?.objects).toBe(1);
    expect(outcome?.pruned).toEqual([
      { group: "", kind: "ConfigMap", namespace: ns, name: "goes" },
      { group: "", kind: "ConfigMap", namespace: extra, name: "inside" },
      { group: "", kind: "Namespace", name: extra },
    ]);
    expect(outcome?.kept).toEqual([{ group: "", kind: "ConfigMap", namespace: ns, name: "kept", why: "annotation kube-pico-cd.io/prune: disabled" }]);
    expect(outcome?.warnings).toBeUndefined();
  });

  test("a CRD that left the bundle is kept and leaves the inventory; with --prune-crds one is deleted", async () => {
    const ns = await createNamespace("prune-crd");
    const queue = await createQueue();
    const group = `${ns}.example.com`;
    const crd = (plural: string, kind: string) =>
      ({
        apiVersion: "apiextensions.k8s.io/v1",
        kind: "CustomResourceDefinition",
        metadata: { name: `${plural}.${group}` },
        spec: { group, names: { kind, plural }, scope: "Namespaced", versions: [{ name: "v1", served: true, storage: true, schema: { openAPIV3Schema: { type: "object" } } }] },
      }) as KubeObject;
    const ref = (plural: string) => ({ group: "apiextensions.k8s.io", kind: "CustomResourceDefinition", name: `${plural}.${group}` });
    const app = configMap(ns, "app", {});
    await sendBundle(queue.url, [crd("keeps", "Keep"), crd("goes", "Go"), app], { timestampMs: 1_000 });
    expect((await runListenerOnce({ queueUrl: queue.url, namespace: ns })).code).toBe(0);

    // Without --prune-crds: kept, and no longer ours to delete later.
    await sendBundle(queue.url, [crd("goes", "Go"), app], { timestampMs: 2_000 });
    expect((await runListenerOnce({ queueUrl: queue.url, namespace: ns })).code).toBe(0);
    expect(await exists(["crd", `keeps.${group}`])).toBe(true);
    let record = await readRecord(ns);
    expect(record?.history[0]?.kept).toEqual([{ ...ref("keeps"), why: "CustomResourceDefinitions are pruned only with --prune-crds" }]);
    expect(record?.history[0]?.pruned).toEqual([]);
    expect(record?.inventory).toEqual([ref("goes"), { group: "", kind: "ConfigMap", namespace: ns, name: "app" }]);

    // With --prune-crds: deleted.
    await sendBundle(queue.url, [app], { timestampMs: 3_000 });
    expect((await runListenerOnce({ queueUrl: queue.url, namespace: ns, args: ["--prune-crds"] })).code).toBe(0);
    const goes = await kubectl(["get", "crd", `goes.${group}`, "-o", "jsonpath={.metadata.deletionTimestamp}"]);
    expect(goes.code !== 0 || goes.stdout !== "").toBe(true);
    record = await readRecord(ns);
    expect(record?.history[0]?.pruned).toEqual([ref("goes")]);
    expect(record?.history[0]?.kept).toBeUndefined();
    expect(record?.inventory).toEqual([{ group: "", kind: "ConfigMap", namespace: ns, name: "app" }]);
    await kubectl(["delete", "crd", `keeps.${group}`, "--wait=false"]);
  });

  test("an object re-created by hand under the same name (no longer ours) is kept", async () => {
    const ns = await createNamespace("prune-own");
    const queue = await createQueue();
    await sendBundle(queue.url, [configMap(ns, "a", {}), configMap(ns, "b", {})], { timestampMs: 1_000 });
    expect((await runListenerOnce({ queueUrl: queue.url, namespace: ns })).code).toBe(0);
    expect((await kubectl(["delete", "configmap", "b", "-n", ns])).code).toBe(0);
    expect((await kubectl(["create", "configmap", "b", "-n", ns, "--from-literal=mine=yes"])).code).toBe(0);

    await sendBundle(queue.url, [configMap(ns, "a", {})], { timestampMs: 2_000 });
    expect((await runListenerOnce({ queueUrl: queue.url, namespace: ns })).code).toBe(0);

    expect((await kubectl(["get", "configmap", "b", "-n", ns, "-o", "jsonpath={.data.mine}"])).stdout).toBe("yes");
    expect((await readRecord(ns))?.history[0]?.kept).toEqual([{ group: "", kind: "ConfigMap", namespace: ns, name: "b", why: "not managed by field manager kube-pico-cd any more" }]);
  });

  test("an empty bundle is rejected as empty-bundle and prunes nothing", async () => {
    const ns = await createNamespace("prune-empty");
    const queue = await createQueue();
    const first = await sendBundle(queue.url, [configMap(ns, "a", {}), configMap(ns, "b", {})], { timestampMs: 1_000 });
    expect((await runListenerOnce({ queueUrl: queue.url, namespace: ns })).code).toBe(0);
    const empty = await sendBundle(queue.url, [], { timestampMs: 2_000 });
    expect((await runListenerOnce({ queueUrl: queue.url, namespace: ns })).code).toBe(0);

    expect(await exists(["configmap", "a", "-n", ns])).toBe(true);
    expect(await exists(["configmap", "b", "-n", ns])).toBe(true);
    const record = await readRecord(ns);
    expect(record?.current?.build.id).toBe(first.build.id);
    expect(record?.inventory).toHaveLength(2);
    expect(record?.history[0]).toMatchObject({ result: "rejected", buildId: empty.build.id, digest: empty.digest });
    expect(record?.history[0]?.error).toStartWith("empty-bundle: The bundle holds no objects");
  });

  test("with --allow-empty-bundle an empty bundle becomes the current build, prunes nothing, keeps the inventory and says so", async () => {
    const ns = await createNamespace("prune-empty-ok");
    const queue = await createQueue();
    await sendBundle(queue.url, [configMap(ns, "a", {})], { timestampMs: 1_000 });
    expect((await runListenerOnce({ queueUrl: queue.url, namespace: ns })).code).toBe(0);
    const empty = await sendBundle(queue.url, [], { timestampMs: 2_000 });
    expect((await runListenerOnce({ queueUrl: queue.url, namespace: ns, args: ["--allow-empty-bundle"] })).code).toBe(0);

    expect(await exists(["configmap", "a", "-n", ns])).toBe(true);
    const record = await readRecord(ns);
    expect(record?.current?.build.id).toBe(empty.build.id);
    expect(record?.inventory).toEqual([{ group: "", kind: "ConfigMap", namespace: ns, name: "a" }]);
    expect(record?.history[0]).toMatchObject({ result: "applied", objects: 0 });
    expect(record?.history[0]?.pruned).toBeUndefined();
    expect(record?.history[0]?.warnings).toEqual(["prune skipped: the bundle is empty, so the 1 objects of the previous build were kept"]);
  });

  test("--no-prune leaves removed objects in place and out of the inventory", async () => {
    const ns = await createNamespace("no-prune");
    const queue = await createQueue();
    await sendBundle(queue.url, [configMap(ns, "a", {}), configMap(ns, "b", {})], { timestampMs: 1_000 });
    expect((await runListenerOnce({ queueUrl: queue.url, namespace: ns })).code).toBe(0);
    await sendBundle(queue.url, [configMap(ns, "a", {})], { timestampMs: 2_000 });
    expect((await runListenerOnce({ queueUrl: queue.url, namespace: ns, env: { KUBE_PICO_CD_NO_PRUNE: "true" } })).code).toBe(0);

    expect(await exists(["configmap", "b", "-n", ns])).toBe(true);
    const record = await readRecord(ns);
    expect(record?.inventory).toEqual([{ group: "", kind: "ConfigMap", namespace: ns, name: "a" }]);
    expect(record?.history[0]?.pruned).toBeUndefined();
  });
});
