/** Which listed ConfigMap is which app's version record (the pure part of lib/listener/app-records.ts). */
import { describe, expect, test } from "bun:test";
import { emptyRecord, encodeRecord, recordOutcome } from "../../lib/kube/record.ts";
import { recordOfItem } from "../../lib/listener/app-records.ts";
import { RECORD_APP_LABEL, RECORD_LABELS } from "../../lib/listener/apps.ts";

const where = { namespace: "ops", base: "kube-pico-cd-state" };
const record = recordOutcome(emptyRecord(), { result: "rejected", time: "2025-11-25T20:00:00.000Z", error: "invalid-json: no" });
/** A listed ConfigMap with the record labels; `data` null: it has none. */
const item = (name: string, labels: Record<string, string>, data: Record<string, string> | null = encodeRecord(record)) => ({
  metadata: { name, namespace: "ops", resourceVersion: "77", labels: { ...RECORD_LABELS, ...labels } },
  ...(data === null ? {} : { data }),
});

describe("recordOfItem()", () => {
  test("recordOfItem() takes a record written before apps (no app label, the base name) as the default app's", () => {
    expect(recordOfItem(item("kube-pico-cd-state", {}), where)).toEqual({ app: "default", name: "kube-pico-cd-state", record: { ...record, resourceVersion: "77" } });
  });

  test("recordOfItem() takes the app from the label, and from the name when the label is missing or not an app name", () => {
    expect(recordOfItem(item("kube-pico-cd-state-shop", { [RECORD_APP_LABEL]: "shop" }), where)).toMatchObject({ app: "shop", name: "kube-pico-cd-state-shop" });
    expect(recordOfItem(item("kube-pico-cd-state-web", {}), where)).toMatchObject({ app: "web", name: "kube-pico-cd-state-web" });
    expect(recordOfItem(item("kube-pico-cd-state-web", { [RECORD_APP_LABEL]: "Not_An_App" }), where)).toMatchObject({ app: "web" });
  });

  test("recordOfItem() reads a ConfigMap without data as an empty record that exists", () => {
    expect(recordOfItem(item("kube-pico-cd-state", {}, null), where)).toEqual({ app: "default", name: "kube-pico-cd-state", record: { ...emptyRecord(), resourceVersion: "77" } });
  });

  test("recordOfItem() skips, with a note, a ConfigMap of another base name and one labelled for an app whose record has another name", () => {
    expect(recordOfItem(item("other-state", {}), where)).toEqual({
      note: `ConfigMap ops/other-state carries the version record labels but is no record of base name kube-pico-cd-state (neither kube-pico-cd-state nor kube-pico-cd-state-<app>, and no valid ${RECORD_APP_LABEL} label): skipped; another listener's? (--state-configmap names the base)`,
    });
    expect(recordOfItem(item("other-state", { [RECORD_APP_LABEL]: "shop" }), where)).toEqual({
      note: `ConfigMap ops/other-state is labelled ${RECORD_APP_LABEL}=shop, but app shop's record is kube-pico-cd-state-shop: skipped`,
    });
    // "<base>-default" is no name the listener gives: the default app's record is the base itself.
    expect(recordOfItem(item("kube-pico-cd-state-default", {}), where)).toHaveProperty("note");
  });

  test("recordOfItem() returns a record that does not decode with its error, as listener status APP says it", () => {
    expect(recordOfItem(item("kube-pico-cd-state-shop", { [RECORD_APP_LABEL]: "shop" }, { format: "2" }), where)).toEqual({
      app: "shop",
      name: "kube-pico-cd-state-shop",
      error: `Cannot read the version record ConfigMap ops/kube-pico-cd-state-shop: Cannot decode the version record as its 'format' is not 1: current value is "2"`,
    });
  });

  test("recordOfItem() skips, with a note, an item that is not shaped like a ConfigMap", () => {
    expect(recordOfItem({ metadata: { name: "odd", resourceVersion: "1" }, data: { format: 1 } }, where)).toEqual({
      note: "ConfigMap ops/odd carries the version record labels but its metadata or data is not a ConfigMap's: skipped",
    });
    expect(recordOfItem(null, where)).toEqual({ note: "ConfigMap ops/(no name) carries the version record labels but its metadata or data is not a ConfigMap's: skipped" });
  });
});
