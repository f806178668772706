import { describe, expect, test } from "bun:test";
import { buildPlan, comparable, diffLines, MAX_DIFF_LINES_PER_OBJECT, MAX_PLAN_LINES, renderPlan } from "../../lib/wire/plan.ts";
import type { DryRunResult } from "../../lib/kube/dry-run.ts";
import type { KubeObject } from "../../lib/manifests/bundle.ts";

const cm = (name: string, namespace = "web"): KubeObject => ({ apiVersion: "v1", kind: "ConfigMap", metadata: { name, namespace } });

describe("diffLines()", () => {
  test("one line per changed field, keys sorted, added and removed fields shown as (none)", () => {
    expect(diffLines({ spec: { replicas: 1, paused: true }, data: { a: "1" } }, { spec: { replicas: 3 }, data: { a: "1", b: "2" } })).toEqual([
      'data.b: (none) → "2"',
      "spec.paused: true → (none)",
      "spec.replicas: 1 → 3",
    ]);
  });

  test("arrays of objects of the same length are compared item by item; others whole", () => {
    const before = { containers: [{ name: "a", image: "x:1" }], args: ["--a"] };
    const after = { containers: [{ name: "a", image: "x:2" }], args: ["--a", "--b"] };
    expect(diffLines(before, after)).toEqual(['args: ["--a"] → ["--a","--b"]', 'containers[0].image: "x:1" → "x:2"']);
  });

  test("keys that are not identifiers are quoted, long values cut", () => {
    const lines = diffLines({ metadata: { labels: { "app.kubernetes.io/name": "a" } } }, { metadata: { labels: { "app.kubernetes.io/name": "x".repeat(500) } } });
    expect(lines[0]).toStartWith('metadata.labels["app.kubernetes.io/name"]: "a" → "xxx');
    expect(lines[0]!.length).toBeLessThan(200);
  });
});

describe("comparable()", () => {
  test("leaves out status and the server's bookkeeping, so an unchanged object diffs to nothing", () => {
    const live = { metadata: { name: "a", resourceVersion: "1", uid: "u", generation: 1, managedFields: [{}], annotations: { "kubectl.kubernetes.io/last-applied-configuration": "{}" } }, spec: { x: 1 }, status: { ready: 1 } };
    const applied = { metadata: { name: "a", resourceVersion: "2", uid: "u", generation: 2, managedFields: [{}, {}] }, spec: { x: 1 }, status: { ready: 0 } };
    expect(diffLines(comparable(live), comparable(applied))).toEqual([]);
  });
});

describe("buildPlan()", () => {
  const ok = (live: unknown, object: unknown): DryRunResult => ({ state: "ok", live, object });
  test("creates, changes, unchanged, errors, pending for a Namespace or CRD of the same build, and prune", () => {
    const objects = [cm("new"), cm("changed"), cm("same"), cm("bad"), cm("waits", "fresh"), { apiVersion: "example.com/v1", kind: "Widget", metadata: { name: "w", namespace: "web" } }, { apiVersion: "v1", kind: "Namespace", metadata: { name: "fresh" } }, cm("lost", "nowhere")] as KubeObject[];
    const results: DryRunResult[] = [
      ok(null, { data: { a: "1" } }),
      ok({ data: { a: "1" } }, { data: { a: "2" } }),
      ok({ data: { a: "1" } }, { data: { a: "1" } }),
      { state: "invalid", error: "Deployment is invalid", causes: ["spec.replica: field not declared in schema"] },
      { state: "no-namespace", namespace: "fresh" },
      { state: "unserved" },
      ok(null, {}),
      { state: "no-namespace", namespace: "nowhere" },
    ];
    const plan = buildPlan({ objects, results, sources: objects.map((_, i) => `f${i}.yaml:1:1`), prune: ["ConfigMap web/old"], crdKindsInBundle: new Set(["example.com/Widget"]) });
    expect(plan.ok).toBe(false);
    expect(plan.counts).toEqual({ create: 2, change: 1, unchanged: 1, error: 2, pending: 2, prune: 1 });
    expect(plan.objects.map((o) => `${o.action} ${o.object}`)).toEqual([
      "error ConfigMap web/bad",
      "error ConfigMap nowhere/lost",
      "change ConfigMap web/changed",
      "create ConfigMap web/new",
      "create Namespace fresh",
      "pending ConfigMap fresh/waits",
      "pending example.com/Widget web/w",
    ]);
    expect(plan.objects[0]).toMatchObject({ source: "f3.yaml:1:1", lines: ["spec.replica: field not declared in schema"] });
    expect(plan.objects[1]!.lines[0]).toContain("does not exist, and this build does not create it");
    const text = renderPlan(plan);
    expect(text[0]).toBe("plan FAILED: 2 to create, 1 to change, 1 unchanged, 1 to prune, 2 checked only when applied, 2 refused by the API server");
    expect(text).toContain("! ConfigMap web/bad (f3.yaml:1:1): refused");
    expect(text).toContain('    data.a: "1" → "2"');
    expect(text.at(-1)).toBe("- ConfigMap web/old (prune)");
  });

  test("stays within its bounds: each object's diff and the whole plan are cut with counts", () => {
    const many = Array.from({ length: 100 }, (_, i) => `k${String(i).padStart(3, "0")}`);
    const before = Object.fromEntries(many.map((k) => [k, 1]));
    const after = Object.fromEntries(many.map((k) => [k, 2]));
    const objects = Array.from({ length: 200 }, (_, i) => cm(`c${i}`));
    const results = objects.map(() => ok({ data: before }, { data: after }));
    const plan = buildPlan({ objects, results, prune: Array.from({ length: 50 }, (_, i) => `ConfigMap web/p${i}`), crdKindsInBundle: new Set() });
    expect(plan.objects[0]!.lines).toHaveLength(MAX_DIFF_LINES_PER_OBJECT);
    expect(plan.objects[0]!.more).toBe(100 - MAX_DIFF_LINES_PER_OBJECT);
    const lines = plan.objects.reduce((n, o) => n + 1 + o.lines.length, 0) + plan.prune.length;
    expect(lines).toBeLessThanOrEqual(MAX_PLAN_LINES);
    expect(plan.omitted).toBe(200 - plan.objects.length + 50 - plan.prune.length);
    expect(plan.counts.change).toBe(200);
    expect(renderPlan(plan).at(-1)).toBe(`… and ${plan.omitted} more objects not shown`);
  });
});
