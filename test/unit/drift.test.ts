import { describe, expect, test } from "bun:test";
import { Buffer } from "node:buffer";
import { createHash, randomBytes } from "node:crypto";
import { gunzipSync, gzipSync } from "node:zlib";
import type { KubeObject } from "../../lib/manifests/bundle.ts";
import {
  deleteKeptBundleArgs,
  driftDecision,
  encodeKeptBundle,
  keepBundleArgs,
  KEPT_OBJECTS_KEY,
  keptBundleHeader,
  keptBundleObjects,
  MAX_KEPT_BUNDLE_BYTES,
  startDriftCorrection,
  tooLargeWarning,
  type DriftPassResult,
} from "../../lib/listener/drift.ts";
import { KeptBundleError } from "../../lib/errors.ts";
import { createLogger } from "../../lib/log.ts";
import { thrown } from "../helpers/thrown.ts";

const objects: KubeObject[] = [
  { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "app", namespace: "apps" }, data: { v: "1" } },
  { apiVersion: "v1", kind: "Secret", metadata: { name: "token", namespace: "apps" }, stringData: { token: "s3cret" } },
];
const decoded = { objects, digest: "a".repeat(64), build: { id: "build-7", timestampMs: 1_700_000_000_000 } };
const where = { namespace: "kube-pico-cd", name: "kube-pico-cd-bundle" };

function keptSecret(): Record<string, unknown> {
  const encoded = encodeKeptBundle(decoded, where);
  if (encoded.kind !== "secret") throw new Error("expected a Secret");
  return encoded.secret;
}

/** The Secret with `change` applied to a deep copy. */
function edited(change: (secret: { metadata: { annotations: Record<string, string> }; data: Record<string, string> }) => void): unknown {
  const copy = structuredClone(keptSecret()) as { metadata: { annotations: Record<string, string> }; data: Record<string, string> };
  change(copy);
  return copy;
}

describe("encodeKeptBundle()", () => {
  test("encodeKeptBundle() makes an Opaque Secret with the build id and digest in annotations and the objects gzip'd", () => {
    const secret = keptSecret() as { apiVersion: string; kind: string; type: string; metadata: Record<string, unknown>; data: Record<string, string> };
    const json = JSON.stringify(objects);
    expect(secret.apiVersion).toBe("v1");
    expect(secret.kind).toBe("Secret");
    expect(secret.type).toBe("Opaque");
    expect(secret.metadata).toEqual({
      name: "kube-pico-cd-bundle",
      namespace: "kube-pico-cd",
      labels: { "app.kubernetes.io/managed-by": "kube-pico-cd", "app.kubernetes.io/component": "bundle" },
      annotations: {
        "kube-pico-cd.io/build-id": "build-7",
        "kube-pico-cd.io/build-timestamp-ms": "1700000000000",
        "kube-pico-cd.io/digest": "a".repeat(64),
        "kube-pico-cd.io/objects": "2",
        "kube-pico-cd.io/objects-sha256": createHash("sha256").update(json).digest("hex"),
      },
    });
    expect(Object.keys(secret.data)).toEqual(["format", "objects.json.gz"]);
    expect(Buffer.from(secret.data["format"]!, "base64").toString()).toBe("1");
    expect(gunzipSync(Buffer.from(secret.data["objects.json.gz"]!, "base64")).toString()).toBe(json);
  });

  test("encodeKeptBundle() keeps a bundle whose gzip'd objects are exactly the limit and refuses one byte more", () => {
    const size = gzipSync(JSON.stringify(objects), { level: 9 }).length;
    expect(encodeKeptBundle(decoded, { ...where, limitBytes: size })).toMatchObject({ kind: "secret", compressedBytes: size });
    expect(encodeKeptBundle(decoded, { ...where, limitBytes: size - 1 })).toEqual({ kind: "too-large", compressedBytes: size });
  });

  test("encodeKeptBundle() refuses a bundle over the default limit of 900 KiB", () => {
    // Random data does not compress: about 1.3 MiB of base64 stays over 900 KiB gzip'd.
    const big: KubeObject = { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "big" }, data: { v: randomBytes(1024 * 1024).toString("base64") } };
    const encoded = encodeKeptBundle({ ...decoded, objects: [big] }, where);
    expect(MAX_KEPT_BUNDLE_BYTES).toBe(921_600);
    expect(encoded.kind).toBe("too-large");
    expect(encoded.compressedBytes).toBeGreaterThan(MAX_KEPT_BUNDLE_BYTES);
  });
});

describe("tooLargeWarning()", () => {
  test("tooLargeWarning() names the size and the limit", () => {
    expect(tooLargeWarning(1_000_000)).toBe("bundle too large to keep for drift correction: 1000000 bytes > 921600 bytes gzip'd; drift correction pauses until a smaller build is applied");
    expect(tooLargeWarning(11, 10)).toBe("bundle too large to keep for drift correction: 11 bytes > 10 bytes gzip'd; drift correction pauses until a smaller build is applied");
  });
});

describe("keptBundleHeader() and keptBundleObjects()", () => {
  test("keptBundleHeader() and keptBundleObjects() read back what encodeKeptBundle() wrote", () => {
    expect(keptBundleHeader(keptSecret(), where)).toEqual({
      buildId: "build-7",
      digest: "a".repeat(64),
      objectsSha256: createHash("sha256").update(JSON.stringify(objects)).digest("hex"),
    });
    expect(keptBundleObjects(keptSecret(), where)).toEqual(objects);
  });

  test("keptBundleHeader() throws a KeptBundleError when the format is not 1", () => {
    const error = thrown(() => keptBundleHeader(edited((s) => (s.data["format"] = Buffer.from("2").toString("base64"))), where), KeptBundleError);
    expect(error.message).toBe('Cannot read the kept bundle Secret kube-pico-cd/kube-pico-cd-bundle as its \'format\' is not 1: current value is "2"');
  });

  test("keptBundleHeader() throws a KeptBundleError when the format key is missing", () => {
    const error = thrown(() => keptBundleHeader(edited((s) => delete s.data["format"]), where), KeptBundleError);
    expect(error.message).toBe("Cannot read the kept bundle Secret kube-pico-cd/kube-pico-cd-bundle as its 'format' is not 1: current value is null");
  });

  test("keptBundleHeader() throws a KeptBundleError when the digest annotation is missing", () => {
    const error = thrown(() => keptBundleHeader(edited((s) => delete s.metadata.annotations["kube-pico-cd.io/digest"]), where), KeptBundleError);
    expect(error.message).toBe("Cannot read the kept bundle Secret kube-pico-cd/kube-pico-cd-bundle as annotation kube-pico-cd.io/digest is missing");
  });

  test("keptBundleHeader() throws a KeptBundleError for something that is not a Secret object", () => {
    expect(thrown(() => keptBundleHeader({ kind: "Secret" }, where), KeptBundleError).message).toBe("Cannot read the kept bundle Secret kube-pico-cd/kube-pico-cd-bundle as it is not a Secret object");
  });

  test("keptBundleObjects() refuses objects that do not match the SHA-256 annotation (edited by hand)", () => {
    const other = gzipSync(JSON.stringify([objects[0]])).toString("base64");
    const actual = createHash("sha256").update(JSON.stringify([objects[0]])).digest("hex");
    const error = thrown(() => keptBundleObjects(edited((s) => (s.data[KEPT_OBJECTS_KEY] = other)), where), KeptBundleError);
    expect(error.message).toBe(
      `Cannot read the kept bundle Secret kube-pico-cd/kube-pico-cd-bundle as its objects' SHA-256 is ${actual}, not ${createHash("sha256").update(JSON.stringify(objects)).digest("hex")} as annotated`,
    );
  });

  test("keptBundleObjects() stops inflating past maxDecompressedBytes", () => {
    const error = thrown(() => keptBundleObjects(keptSecret(), { ...where, maxDecompressedBytes: 16 }), KeptBundleError);
    expect(error.message).toStartWith("Cannot read the kept bundle Secret kube-pico-cd/kube-pico-cd-bundle as 'objects.json.gz' does not inflate within 16 bytes: ");
  });

  test("keptBundleObjects() refuses an item that is not a Kubernetes object", () => {
    const json = JSON.stringify([{ apiVersion: "v1", metadata: { name: "x" } }]);
    const error = thrown(() =>
      keptBundleObjects(
        edited((s) => {
          s.data[KEPT_OBJECTS_KEY] = gzipSync(json).toString("base64");
          s.metadata.annotations["kube-pico-cd.io/objects-sha256"] = createHash("sha256").update(json).digest("hex");
        }),
        where,
      ),
      KeptBundleError,
    );
    expect(error.message).toBe('Cannot read the kept bundle Secret kube-pico-cd/kube-pico-cd-bundle as item 0 of \'objects.json.gz\' is invalid: object "x" has no kind');
  });
});

describe("driftDecision()", () => {
  const current = { digest: "a".repeat(64), build: { id: "build-7", timestampMs: 1 } };

  test("driftDecision() applies the kept bundle when its digest is the current one", () => {
    expect(driftDecision(current, { buildId: "build-7", digest: "a".repeat(64) })).toEqual({ action: "apply" });
  });

  test("driftDecision() skips when no build was applied yet", () => {
    expect(driftDecision(null, { buildId: "build-7", digest: "a".repeat(64) })).toEqual({ action: "skip", reason: "no build has been applied yet" });
  });

  test("driftDecision() skips when no bundle is kept", () => {
    expect(driftDecision(current, null)).toEqual({
      action: "skip",
      reason: "no bundle is kept for the current build build-7 (it was too large to keep, or was applied before drift correction was on)",
    });
  });

  test("driftDecision() skips a kept bundle of another build, never re-applying anything but the current build", () => {
    expect(driftDecision(current, { buildId: "build-6", digest: "b".repeat(64) })).toEqual({
      action: "skip",
      reason: `the kept bundle is build build-6 (digest ${"b".repeat(64)}), not the current build build-7 (digest ${"a".repeat(64)}); only the current build is re-applied`,
    });
  });
});

describe("kubectl arguments", () => {
  test("keepBundleArgs() is a forced server-side apply from stdin", () => {
    expect(keepBundleArgs("kube-pico-cd")).toEqual(["apply", "--server-side", "--field-manager=kube-pico-cd", "--force-conflicts", "-o", "name", "-f", "-"]);
  });

  test("deleteKeptBundleArgs() deletes the Secret by name and ignores its absence", () => {
    expect(deleteKeptBundleArgs(where)).toEqual(["delete", "secret", "kube-pico-cd-bundle", "--namespace=kube-pico-cd", "--ignore-not-found"]);
  });
});

describe("startDriftCorrection()", () => {
  test("startDriftCorrection() throws a RangeError when intervalMs is not positive", () => {
    const error = thrown(() => startDriftCorrection({ kubectl: { kubectlPath: "kubectl" }, namespace: "n", logger: createLogger({ write: () => {} }), intervalMs: 0, signal: new AbortController().signal }), RangeError);
    expect(error.message).toBe("Cannot start drift correction as 'intervalMs' must be a positive finite number: current value is 0");
  });

  test("startDriftCorrection() logs a failed pass, goes on, and resolves once the signal aborts", async () => {
    const lines: Record<string, unknown>[] = [];
    const results: DriftPassResult[] = [];
    const stop = new AbortController();
    const stopped = startDriftCorrection({
      kubectl: { kubectlPath: "/nonexistent/kubectl" },
      namespace: "n",
      logger: createLogger({ write: (line) => void lines.push(JSON.parse(line) as Record<string, unknown>) }),
      intervalMs: 5,
      signal: stop.signal,
      onPass: (result) => {
        results.push(result);
        if (results.length === 2) stop.abort();
      },
    });
    await stopped;
    expect(results).toEqual(["failed", "failed"]);
    const failed = lines.filter((l) => l["msg"] === "drift pass failed; the next pass tries again");
    expect(failed).toHaveLength(2);
    expect(failed[0]).toMatchObject({ level: "warn", component: "drift", result: "failed", build: null, objectCount: null });
    expect(String((failed[0]?.["error"] as { message: string }).message)).toStartWith("Cannot read the deploy lock Lease n/kube-pico-cd-deploy: ");
    expect(lines.at(-1)).toMatchObject({ msg: "drift correction stopped" });
  });
});
