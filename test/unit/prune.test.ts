import { describe, expect, test } from "bun:test";
import { KubeApi } from "../../lib/kube/api.ts";
import {
  CRD_KEPT_REASON,
  deleteOptions,
  keepReason,
  objectsToRead,
  planPrune,
  pruneCandidates,
  pruneObjects,
  prunePhase,
  type LiveRead,
  type PrunePlan,
} from "../../lib/kube/prune.ts";
import { formatRef, type ObjectRef } from "../../lib/manifests/object-ref.ts";
import { closedPort } from "../helpers/unreachable.ts";

const cm = (name: string, namespace = "app") => ({ group: "", kind: "ConfigMap", namespace, name });

describe("pruneCandidates()", () => {
  test("pruneCandidates() returns the previous objects missing from the new inventory, once each", () => {
    expect(pruneCandidates([cm("a"), cm("b"), cm("b"), cm("c", "other")], [cm("a"), cm("c")])).toEqual([cm("b"), cm("c", "other")]);
  });

  test("pruneCandidates() tells objects apart by group, kind, namespace and name", () => {
    const secret = { group: "", kind: "Secret", namespace: "app", name: "a" };
    expect(pruneCandidates([secret], [cm("a")])).toEqual([secret]);
  });
});

describe("prunePhase()", () => {
  test("prunePhase() deletes workloads first, then Namespaces, then CRDs", () => {
    expect(prunePhase({ group: "apps", kind: "Deployment", namespace: "a", name: "x" })).toBe(0);
    expect(prunePhase({ group: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "x" })).toBe(0);
    expect(prunePhase({ group: "", kind: "Namespace", name: "x" })).toBe(1);
    expect(prunePhase({ group: "apiextensions.k8s.io", kind: "CustomResourceDefinition", name: "x" })).toBe(2);
  });
});

describe("keepReason()", () => {
  const managed = [{ manager: "kube-pico-cd", operation: "Apply" }];
  test("keepReason() keeps an object annotated kube-pico-cd.io/prune: disabled", () => {
    expect(keepReason({ metadata: { annotations: { "kube-pico-cd.io/prune": "disabled" }, managedFields: managed } }, "kube-pico-cd")).toBe("annotation kube-pico-cd.io/prune: disabled");
  });

  test("keepReason() keeps an object that another field manager manages alone", () => {
    expect(keepReason({ metadata: { managedFields: [{ manager: "kubectl-create" }] } }, "kube-pico-cd")).toBe("not managed by field manager kube-pico-cd any more");
  });

  test("keepReason() lets go of our objects, and of objects nobody manages a field of", () => {
    expect(keepReason({ metadata: { managedFields: managed, annotations: { "kube-pico-cd.io/prune": "enabled" } } }, "kube-pico-cd")).toBeUndefined();
    expect(keepReason({ metadata: {} }, "kube-pico-cd")).toBeUndefined();
  });
});

const crd = (name: string): ObjectRef => ({ group: "apiextensions.k8s.io", kind: "CustomResourceDefinition", name });
const ns = (name: string): ObjectRef => ({ group: "", kind: "Namespace", name });
const deployment = (name: string): ObjectRef => ({ group: "apps", kind: "Deployment", namespace: "app", name });
const ours = (uid: string, extra: Record<string, unknown> = {}): LiveRead => ({
  state: "found",
  object: { metadata: { uid, managedFields: [{ manager: "kube-pico-cd", operation: "Apply" }], ...extra } },
});

describe("objectsToRead()", () => {
  test("objectsToRead() is every object that left the bundle, CRDs only with pruneCrds", () => {
    expect(objectsToRead([cm("a"), crd("w.example.com"), cm("b")], [cm("a")], { pruneCrds: false })).toEqual([cm("b")]);
    expect(objectsToRead([cm("a"), crd("w.example.com"), cm("b")], [cm("a")], { pruneCrds: true })).toEqual([crd("w.example.com"), cm("b")]);
  });
});

describe("planPrune()", () => {
  const empty: PrunePlan = { phases: [[], [], []], kept: [], gone: [], failed: [] };
  const cases: { name: string; previous: ObjectRef[]; next: ObjectRef[]; live: [ObjectRef, LiveRead][]; pruneCrds?: boolean; plan: PrunePlan }[] = [
    {
      name: "nothing left the bundle: nothing to do",
      previous: [cm("a")],
      next: [cm("a")],
      live: [],
      plan: empty,
    },
    {
      name: "an object of ours that left the bundle is deleted with the uid read",
      previous: [cm("a"), cm("b")],
      next: [cm("a")],
      live: [[cm("b"), ours("uid-b")]],
      plan: { ...empty, phases: [[{ object: cm("b"), uid: "uid-b" }], [], []] },
    },
    {
      name: "deletions go by phase: objects, then Namespaces, then CRDs (with pruneCrds)",
      previous: [crd("w.example.com"), ns("extra"), deployment("web"), cm("b")],
      next: [],
      live: [
        [crd("w.example.com"), ours("u1")],
        [ns("extra"), { state: "found", object: { metadata: { uid: "u2" } } }],
        [deployment("web"), ours("u3")],
        [cm("b"), ours("u4")],
      ],
      pruneCrds: true,
      plan: {
        ...empty,
        phases: [
          [
            { object: deployment("web"), uid: "u3" },
            { object: cm("b"), uid: "u4" },
          ],
          [{ object: ns("extra"), uid: "u2" }],
          [{ object: crd("w.example.com"), uid: "u1" }],
        ],
      },
    },
    {
      name: "a CRD without pruneCrds is kept without reading it",
      previous: [crd("w.example.com")],
      next: [],
      live: [],
      plan: { ...empty, kept: [{ ...crd("w.example.com"), why: CRD_KEPT_REASON }] },
    },
    {
      name: "an annotated object is kept",
      previous: [cm("b")],
      next: [],
      live: [[cm("b"), ours("u", { annotations: { "kube-pico-cd.io/prune": "disabled" } })]],
      plan: { ...empty, kept: [{ ...cm("b"), why: "annotation kube-pico-cd.io/prune: disabled" }] },
    },
    {
      name: "an object only another field manager manages is kept",
      previous: [cm("b")],
      next: [],
      live: [[cm("b"), { state: "found", object: { metadata: { uid: "u", managedFields: [{ manager: "kubectl-create" }] } } }]],
      plan: { ...empty, kept: [{ ...cm("b"), why: "not managed by field manager kube-pico-cd any more" }] },
    },
    {
      name: "an object already gone (or whose kind is no longer served) is gone",
      previous: [cm("b")],
      next: [],
      live: [[cm("b"), { state: "gone" }]],
      plan: { ...empty, gone: [cm("b")] },
    },
    {
      name: "an object that could not be read fails, and so stays in the inventory",
      previous: [cm("b")],
      next: [],
      live: [[cm("b"), { state: "unreadable", error: "Kubernetes API GET /api/v1/namespaces/app/configmaps/b failed: 403 Forbidden: no" }]],
      plan: { ...empty, failed: [{ object: cm("b"), error: "cannot read it: Kubernetes API GET /api/v1/namespaces/app/configmaps/b failed: 403 Forbidden: no" }] },
    },
    {
      name: "an object that was not read fails",
      previous: [cm("b")],
      next: [],
      live: [],
      plan: { ...empty, failed: [{ object: cm("b"), error: "cannot read it: it was not read" }] },
    },
    {
      name: "an object read without a uid fails: it could not be deleted safely",
      previous: [cm("b")],
      next: [],
      live: [[cm("b"), { state: "found", object: { metadata: {} } }]],
      plan: { ...empty, failed: [{ object: cm("b"), error: "cannot delete it: the API server returned it without metadata.uid" }] },
    },
    {
      name: "an object listed twice in the previous inventory is planned once",
      previous: [cm("b"), cm("b")],
      next: [],
      live: [[cm("b"), ours("u")]],
      plan: { ...empty, phases: [[{ object: cm("b"), uid: "u" }], [], []] },
    },
  ];
  for (const c of cases) {
    test(`planPrune(): ${c.name}`, () => {
      const live = new Map(c.live.map(([ref, read]) => [formatRef(ref), read]));
      expect(planPrune(c.previous, c.next, live, { fieldManager: "kube-pico-cd", pruneCrds: c.pruneCrds ?? false })).toEqual(c.plan);
    });
  }
});

describe("deleteOptions()", () => {
  test("deleteOptions() deletes only the object with the uid read, in the background", () => {
    expect(deleteOptions("u-1")).toEqual({ kind: "DeleteOptions", apiVersion: "v1", preconditions: { uid: "u-1" }, propagationPolicy: "Background" });
  });
});

describe("pruneObjects()", () => {
  const unusedApi = new KubeApi({ server: "https://unused.invalid", namespace: "default", source: "test" });

  test("pruneObjects() keeps CRDs unless pruneCrds, without a request", async () => {
    const result = await pruneObjects([crd("widgets.example.com")], [], { api: unusedApi });
    expect(result.kept).toEqual([{ ...crd("widgets.example.com"), why: "CustomResourceDefinitions are pruned only with --prune-crds" }]);
    expect(result.pruned).toEqual([]);
    expect(result.failed).toEqual([]);
  });

  test("pruneObjects() reports objects it cannot read as failed, so they stay in the inventory", async () => {
    const api = new KubeApi({ server: `https://127.0.0.1:${await closedPort()}`, insecureSkipTlsVerify: true, namespace: "default", source: "test" }, { timeoutMs: 1_000 });
    const result = await pruneObjects([cm("a")], [], { api });
    expect(result.failed.map((f) => f.object)).toEqual([cm("a")]);
    expect(result.failed[0]?.error).toMatch(/^cannot read it: Cannot reach the Kubernetes API server for GET \/apis?: /);
    api.close();
  });
});
