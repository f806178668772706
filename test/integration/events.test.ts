/**
 * Events through the API client against the real API server: an outcome becomes a core/v1
 * Event on the record's ConfigMap with its uid; before the record exists the Event has no uid
 * and the next one reads it; a record created again gets Events with its new uid; a recorder
 * without the right to create Events throws the API server's Forbidden.
 */
import { describe, expect, test } from "bun:test";
import { KubeApi } from "../../lib/kube/api.ts";
import { createEventRecorder } from "../../lib/kube/events.ts";
import type { Outcome } from "../../lib/kube/record.ts";
import { KubeApiError } from "../../lib/errors.ts";
import { createNamespace, kubectl, testEnv } from "../env/testenv.ts";
import { connectionOf, testKubeApi } from "../helpers/kube-api.ts";

const RECORD = "kube-pico-cd-state";

interface EventJson {
  type: string;
  reason: string;
  message: string;
  involvedObject: { kind: string; name: string; uid?: string };
  metadata: { annotations?: Record<string, string> };
  reportingInstance: string;
}

async function eventsOf(ns: string): Promise<EventJson[]> {
  const got = await kubectl(["get", "events", "-n", ns, "--field-selector", `involvedObject.kind=ConfigMap,involvedObject.name=${RECORD}`, "-o", "json"]);
  expect(got.code).toBe(0);
  return (JSON.parse(got.stdout) as { items: EventJson[] }).items;
}

async function createRecordConfigMap(ns: string): Promise<string> {
  expect((await kubectl(["create", "configmap", RECORD, "-n", ns])).code).toBe(0);
  return (await kubectl(["get", "configmap", RECORD, "-n", ns, "-o", "jsonpath={.metadata.uid}"])).stdout;
}

const failed = (buildId: string): Outcome => ({ result: "failed", time: "2026-01-01T00:00:00.000Z", buildId, messageId: `m-${buildId}`, error: "boom" });

describe("createEventRecorder()", () => {
  test("createEventRecorder() creates an Event on the record's ConfigMap carrying its uid", async () => {
    const ns = await createNamespace("events");
    const uid = await createRecordConfigMap(ns);
    const api = await testKubeApi();
    await createEventRecorder({ api, namespace: ns, name: RECORD, instance: "pod-1" })(failed("b-1"));
    api.close();
    const events = await eventsOf(ns);
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({
      type: "Warning",
      reason: "ApplyFailed",
      message: "build b-1 failed and will be retried: boom",
      involvedObject: { kind: "ConfigMap", name: RECORD, uid },
      metadata: { annotations: { "kube-pico-cd.io/build-id": "b-1", "kube-pico-cd.io/message-id": "m-b-1" } },
      reportingInstance: "pod-1",
    });
  });

  test("createEventRecorder() sends the Event without uid while there is no record, and reads the uid for the next one", async () => {
    const ns = await createNamespace("events-norecord");
    const api = await testKubeApi();
    const record = createEventRecorder({ api, namespace: ns, name: RECORD });
    await record(failed("b-1"));
    const uid = await createRecordConfigMap(ns);
    await record(failed("b-2"));
    api.close();
    const byBuild = Object.fromEntries((await eventsOf(ns)).map((e) => [e.metadata.annotations?.["kube-pico-cd.io/build-id"], e.involvedObject.uid]));
    expect(byBuild).toEqual({ "b-1": undefined, "b-2": uid });
  });

  test("createEventRecorder() names the new uid of a record created again once the cached one is older than uidMaxAgeMs", async () => {
    const ns = await createNamespace("events-recreated");
    const first = await createRecordConfigMap(ns);
    let nowMs = 1_000_000;
    const api = await testKubeApi();
    const record = createEventRecorder({ api, namespace: ns, name: RECORD, uidMaxAgeMs: 60_000, now: () => nowMs });
    await record(failed("b-1"));
    expect((await kubectl(["delete", "configmap", RECORD, "-n", ns])).code).toBe(0);
    const second = await createRecordConfigMap(ns);
    await record(failed("b-2"));
    nowMs += 60_000;
    await record(failed("b-3"));
    api.close();
    expect(second).not.toBe(first);
    const byBuild = Object.fromEntries((await eventsOf(ns)).map((e) => [e.metadata.annotations?.["kube-pico-cd.io/build-id"], e.involvedObject.uid]));
    expect(byBuild).toEqual({ "b-1": first, "b-2": first, "b-3": second });
  });

  test("createEventRecorder() throws the API server's Forbidden when it may not create Events", async () => {
    const env = await testEnv();
    const ns = await createNamespace("events-forbidden");
    const api = new KubeApi(connectionOf(env.unprivilegedKubeconfig));
    const error = await createEventRecorder({ api, namespace: ns, name: RECORD })(failed("b-1")).then(
      () => undefined,
      (e: unknown) => e,
    );
    api.close();
    expect(error).toBeInstanceOf(KubeApiError);
    expect((error as KubeApiError).status).toMatchObject({ code: 403, reason: "Forbidden" });
    expect((error as KubeApiError).message).toStartWith(`Kubernetes API POST /api/v1/namespaces/${ns}/events failed: 403 Forbidden: `);
    expect(await eventsOf(ns)).toEqual([]);
  });
});
