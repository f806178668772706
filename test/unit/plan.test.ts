import { describe, expect, test } from "bun:test";
import { buildPlan, comparable, diffLines, isSecret, maskSecretText, MAX_DIFF_LINES_PER_OBJECT, MAX_PLAN_LINES, objectDiffLines, renderPlan } from "../../lib/wire/plan.ts";
import { encodeResult, RESULT_KIND, RESULT_VERSION } from "../../lib/wire/result.ts";
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

describe("Secrets in a plan", () => {
  const ok = (live: unknown, object: unknown): DryRunResult => ({ state: "ok", live, object });
  const b64 = (text: string) => Buffer.from(text, "utf8").toString("base64");
  const secret = (name: string, fields: Record<string, unknown> = {}) => ({ apiVersion: "v1", kind: "Secret", metadata: { name, namespace: "web" }, ...fields });
  // Each secret string in both forms; none may appear anywhere in a plan or its result.
  const secrets = ["live-secret", "new-secret-value", "removed-token-9", "added-token-42", "string-data-pass", "annotated-pass-7", "31415926535"];
  const forbidden = secrets.flatMap((s) => [s, b64(s)]);
  const leaked = (text: string) => forbidden.filter((s) => text.includes(s));
  const planOf = (objects: unknown[], results: DryRunResult[]) => buildPlan({ objects: objects as KubeObject[], results, prune: [], crdKindsInBundle: new Set() });
  const resultJson = (plan: ReturnType<typeof buildPlan>) =>
    encodeResult({ kind: RESULT_KIND, version: RESULT_VERSION, messageId: "m", queue: "q", namespace: "n", build: { id: "b", timestampMs: 1 }, digest: "d".repeat(64), result: "planned", message: renderPlan(plan)[0]!, plan, durations: {}, time: new Date(0).toISOString() });

  test("a changed, an added and a removed key say only what happened to the value; unchanged keys and other fields as ever", () => {
    const live = secret("db", { metadata: { name: "db", namespace: "web", labels: { tier: "a" } }, type: "Opaque", data: { password: b64("live-secret"), old: b64("removed-token-9"), same: b64("same-value") } });
    const applied = secret("db", { metadata: { name: "db", namespace: "web", labels: { tier: "b" } }, type: "Opaque", data: { password: b64("new-secret-value"), token: b64("added-token-42"), same: b64("same-value") } });
    const plan = planOf([secret("db")], [ok(live, applied)]);
    expect(plan.objects).toEqual([
      { object: "Secret web/db", action: "change", lines: ["data.old: (secret value removed)", "data.password: (secret value changed)", "data.token: (secret value added)", 'metadata.labels.tier: "a" → "b"'] },
    ]);
    expect(leaked(renderPlan(plan).join("\n"))).toEqual([]);
    expect(leaked(resultJson(plan))).toEqual([]);
  });

  test("stringData in the desired object is compared with the live data it becomes: equal is unchanged, different is changed, neither shown", () => {
    const live = secret("db", { data: { password: b64("live-secret") } });
    const same = planOf([secret("db")], [ok(live, secret("db", { stringData: { password: "live-secret" } }))]);
    expect(same.counts).toMatchObject({ change: 0, unchanged: 1 });
    const changed = planOf([secret("db")], [ok(live, secret("db", { data: { password: b64("live-secret") }, stringData: { password: "string-data-pass" } }))]);
    expect(changed.objects).toEqual([{ object: "Secret web/db", action: "change", lines: ["data.password: (secret value changed)"] }]);
    // A live object that (against the API) carried stringData leaks nothing either.
    const odd = planOf([secret("db")], [ok(secret("db", { stringData: { password: "live-secret" } }), secret("db", { data: { password: b64("new-secret-value") } }))]);
    expect(odd.objects[0]!.lines).toEqual(["data.password: (secret value changed)"]);
    for (const plan of [same, changed, odd]) {
      expect(leaked(renderPlan(plan).join("\n"))).toEqual([]);
      expect(leaked(resultJson(plan))).toEqual([]);
    }
  });

  test("a created Secret lists its keys without values; a created ConfigMap is named only", () => {
    const plan = planOf([secret("new"), cm("settings")], [ok(null, secret("new", { data: { token: b64("added-token-42") }, stringData: { "tls.key": "new-secret-value" } })), ok(null, { data: { a: "1" } })]);
    expect(plan.objects).toEqual([
      { object: "Secret web/new", action: "create", lines: ['data["tls.key"]: (secret value added)', "data.token: (secret value added)"] },
      { object: "ConfigMap web/settings", action: "create", lines: [] },
    ]);
    expect(renderPlan(plan)).toEqual(["plan: 2 to create, 0 to change, 0 unchanged, 0 to prune", "+ Secret web/new", '    data["tls.key"]: (secret value added)', "    data.token: (secret value added)", "+ ConfigMap web/settings"]);
    expect(leaked(resultJson(plan))).toEqual([]);
  });

  test("kubectl's last-applied annotation and managedFields of any object are never shown", () => {
    const lastApplied = (pass: string) => JSON.stringify({ apiVersion: "v1", kind: "Secret", metadata: { name: "db" }, stringData: { password: pass }, data: { password: b64(pass) } });
    const live = { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "settings", namespace: "web", annotations: { "kubectl.kubernetes.io/last-applied-configuration": lastApplied("live-secret"), team: "a" }, managedFields: [{ manager: "kubectl", fieldsV1: { "f:data": { "f:password": {} } }, note: "annotated-pass-7" }] }, data: { v: "1" } };
    const applied = { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "settings", namespace: "web", annotations: { "kubectl.kubernetes.io/last-applied-configuration": lastApplied("new-secret-value"), team: "b" }, managedFields: [] }, data: { v: "2" } };
    const plan = planOf([cm("settings")], [ok(live, applied)]);
    expect(plan.objects).toEqual([{ object: "ConfigMap web/settings", action: "change", lines: ['data.v: "1" → "2"', 'metadata.annotations.team: "a" → "b"'] }]);
    expect(leaked(renderPlan(plan).join("\n"))).toEqual([]);
    expect(leaked(resultJson(plan))).toEqual([]);
  });

  test("a refused Secret's errors lose every value the API server quotes or echoes; other objects' errors are kept whole", () => {
    const results: DryRunResult[] = [
      {
        state: "invalid",
        error: 'Secret "db" is invalid: data[password]: Invalid value: "live-secret": illegal base64 data at input byte 4',
        causes: ['data[password]: Invalid value: "live-secret": illegal base64 data at input byte 4', "data[pin]: Invalid value: 31415926535: must be a string", ".stringData.other: expected string, got &value.valueUnstructured{Value:31415926535}"],
      },
      { state: "failed", error: 'Secret "db2" is invalid: data.key: Invalid value: "new-secret-value"' },
      { state: "invalid", error: "ConfigMap is invalid", causes: ['data[bad key]: Invalid value: "bad key": a valid config key must consist of alphanumeric characters'] },
    ];
    const plan = planOf([secret("db"), secret("db2"), cm("settings")], results);
    expect(plan.objects.map((o) => o.lines)).toEqual([
      ["data[password]: Invalid value: [redacted]: illegal base64 data at input byte 4", "data[pin]: Invalid value: [redacted]: must be a string", ".stringData.other: expected string, got [redacted]"],
      ["cannot dry-run it: Secret [redacted] is invalid: data.key: Invalid value: [redacted]"],
      ['data[bad key]: Invalid value: "bad key": a valid config key must consist of alphanumeric characters'],
    ]);
    expect(maskSecretText('a "quoted \\" value" and "another"')).toBe("a [redacted] and [redacted]");
    expect(leaked(renderPlan(plan).join("\n"))).toEqual([]);
    expect(leaked(resultJson(plan))).toEqual([]);
  });

  test("only core-group Secrets are masked: a custom kind named Secret is diffed as usual", () => {
    const crd = { apiVersion: "example.com/v1", kind: "Secret", metadata: { name: "x", namespace: "web" } };
    expect(isSecret(crd)).toBe(false);
    expect(isSecret(secret("db"))).toBe(true);
    expect(objectDiffLines({ data: { a: "1" } }, { data: { a: "2" } }, false)).toEqual(['data.a: "1" → "2"']);
  });
});
