/**
 * Prune with the real control plane: what leaves the bundle is deleted, what is annotated
 * `kube-pico-cd.io/prune: disabled` is kept, a CRD only goes with --prune-crds, nothing
 * outside the inventory is touched, and an empty bundle prunes nothing.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { KubeApi, type KubeRequest } from "../../lib/kube/api.ts";
import { pruneObjects, RECREATED_REASON } from "../../lib/kube/prune.ts";
import type { KubeObject } from "../../lib/manifests/bundle.ts";
import { refOf } from "../../lib/manifests/object-ref.ts";
import { createNamespace, createQueue, kubectl, testEnv } from "../env/testenv.ts";
import { configMap, namespaceObject, sendBundle } from "../helpers/bundles.ts";
import { connectionOf, testKubeApi } from "../helpers/kube-api.ts";
import { runListenerOnce } from "../helpers/listener-process.ts";
import { readRecord } from "../helpers/record.ts";

const exists = async (args: string[]) => (await kubectl(["get", ...args, "-o", "name"])).code === 0;

function annotated(object: KubeObject, annotations: Record<string, string>): KubeObject {
  return { ...object, metadata: { ...object.metadata, annotations } } as KubeObject;
}

let api: KubeApi;

beforeAll(async () => {
  api = await testKubeApi();
}, 300_000);

afterAll(() => api.close());

/** Applies `objects` as kube-pico-cd's field manager would, and returns their inventory. */
async function applyOurs(...objects: KubeObject[]) {
  const result = await kubectl(["apply", "--server-side", "--field-manager=kube-pico-cd", "-f", "-"], { stdin: JSON.stringify({ apiVersion: "v1", kind: "List", items: objects }) });
  if (result.code !== 0) throw new Error(`kubectl apply failed: ${result.stderr}`);
  return objects.map(refOf);
}

const uidOf = async (args: string[]) => (await kubectl(["get", ...args, "-o", "jsonpath={.metadata.uid}"])).stdout;

/** A client that runs `before` once, just before its first DELETE goes out: someone else acting between prune's read and its delete. */
class InterposedApi extends KubeApi {
  #before: (() => Promise<void>) | undefined;
  constructor(before: () => Promise<void>) {
    super(api.connection);
    this.#before = before;
  }
  override async request<T = unknown>(req: KubeRequest): Promise<T> {
    if (req.method === "DELETE" && this.#before !== undefined) {
      const before = this.#before;
      this.#before = undefined;
      await before();
    }
    return await super.request<T>(req);
  }
}

describe("pruneObjects() against kube-apiserver", () => {
  test("pruneObjects() deletes ours in phases, keeps annotated and foreign objects, and leaves what stays in the bundle", async () => {
    const ns = await createNamespace("po");
    const extra = `${ns}-extra`;
    const [stays, goes, kept, extraNs, inside] = await applyOurs(
      configMap(ns, "stays", {}),
      configMap(ns, "goes", {}),
      annotated(configMap(ns, "kept", {}), { "kube-pico-cd.io/prune": "disabled" }),
      namespaceObject(extra),
      configMap(extra, "inside", {}),
    );
    expect((await kubectl(["create", "configmap", "theirs", "-n", ns, "--from-literal=a=b"])).code).toBe(0);
    const theirs = { group: "", kind: "ConfigMap", namespace: ns, name: "theirs" };
    const result = await pruneObjects([stays!, goes!, kept!, extraNs!, inside!, theirs], [stays!], { api });
    expect(result.pruned).toEqual([goes!, inside!, extraNs!]);
    expect(result.kept).toEqual([
      { ...kept!, why: "annotation kube-pico-cd.io/prune: disabled" },
      { ...theirs, why: "not managed by field manager kube-pico-cd any more" },
    ]);
    expect(result.failed).toEqual([]);
    expect(result.gone).toEqual([]);
    expect((await kubectl(["get", "configmap", "goes", "-n", ns])).code).not.toBe(0);
    expect((await kubectl(["get", "configmap", "stays", "-n", ns])).code).toBe(0);
    expect((await kubectl(["get", "configmap", "theirs", "-n", ns])).code).toBe(0);
  });

  test("pruneObjects() keeps an object someone re-created between its read and its delete (uid precondition)", async () => {
    const ns = await createNamespace("po-race");
    const [b] = await applyOurs(configMap(ns, "b", { v: "ours" }));
    const before = await uidOf(["configmap", "b", "-n", ns]);
    const racing = new InterposedApi(async () => {
      expect((await kubectl(["delete", "configmap", "b", "-n", ns])).code).toBe(0);
      await applyOurs(configMap(ns, "b", { v: "someone else's" }));
    });
    const result = await pruneObjects([b!], [], { api: racing });
    expect(result.kept).toEqual([{ ...b!, why: RECREATED_REASON }]);
    expect(result.pruned).toEqual([]);
    const after = await uidOf(["configmap", "b", "-n", ns]);
    expect(after).not.toBe("");
    expect(after).not.toBe(before);
    racing.close();
  });

  test("pruneObjects() counts an object deleted between its read and its delete as gone", async () => {
    const ns = await createNamespace("po-gone");
    const [b] = await applyOurs(configMap(ns, "b", {}));
    const racing = new InterposedApi(async () => void (await kubectl(["delete", "configmap", "b", "-n", ns])));
    const result = await pruneObjects([b!], [], { api: racing });
    expect(result).toMatchObject({ pruned: [], kept: [], failed: [], gone: [b!] });
    racing.close();
  });

  test("pruneObjects() counts a Namespace already terminating as pruned", async () => {
    const doomed = `po-term-${Math.random().toString(36).slice(2, 8)}`;
    const [nsRef] = await applyOurs(namespaceObject(doomed));
    // A finalizer nobody removes keeps the Namespace Terminating until the test lets go.
    const held = { ...configMap(doomed, "held", {}), metadata: { name: "held", namespace: doomed, finalizers: ["kube-pico-cd.test/hold"] } } as KubeObject;
    expect((await kubectl(["apply", "-f", "-"], { stdin: JSON.stringify(held) })).code).toBe(0);
    expect((await kubectl(["delete", "namespace", doomed, "--wait=false"])).code).toBe(0);
    const result = await pruneObjects([nsRef!], [], { api });
    expect(result).toMatchObject({ pruned: [nsRef!], kept: [], failed: [], gone: [] });
    await kubectl(["patch", "configmap", "held", "-n", doomed, "--type=merge", "-p", '{"metadata":{"finalizers":null}}']);
  });

  test("pruneObjects() counts custom resources whose CRD was deleted as gone", async () => {
    const group = `pg${Math.random().toString(36).slice(2, 8)}.example.com`;
    const ref = { group, kind: "Gizmo", name: "g1" };
    const result = await pruneObjects([ref], [], { api });
    expect(result).toMatchObject({ pruned: [], kept: [], failed: [], gone: [ref] });
  });

  test("pruneObjects() reports objects it may not read as failed, so they stay in the inventory", async () => {
    const nobody = new KubeApi(connectionOf((await testEnv()).unprivilegedKubeconfig));
    const cm = { group: "", kind: "ConfigMap", namespace: "default", name: "x" };
    const result = await pruneObjects([cm], [], { api: nobody });
    expect(result.failed.map((f) => f.object)).toEqual([cm]);
    expect(result.failed[0]?.error).toStartWith("cannot read it: Kubernetes API GET /api");
    expect(result.failed[0]?.error).toContain("403 Forbidden");
    nobody.close();
  });
});

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
