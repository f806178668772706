import { describe, expect, test } from "bun:test";
import { Buffer } from "node:buffer";
import { randomBytes } from "node:crypto";
import { gunzipSync, gzipSync } from "node:zlib";
import type { KubeObject } from "../../lib/manifests/bundle.ts";
import {
  driftDecision,
  driftPolicyProblem,
  encodeKeptBundle,
  KEPT_PAYLOAD_KEY,
  keptObjects,
  keptPayload,
  MAX_KEPT_BUNDLE_BYTES,
  NOT_CANONICAL_WARNING,
  readKeptPayload,
  startDriftCorrection,
  tooLargeWarning,
  type DriftPassResult,
} from "../../lib/listener/drift.ts";
import { KubeApi } from "../../lib/kube/api.ts";
import { KeptBundleError } from "../../lib/errors.ts";
import { createLogger } from "../../lib/log.ts";
import { OPEN_POLICY } from "../../lib/listener/policy.ts";
import type { CurrentBuild, InFlightBuild } from "../../lib/kube/record.ts";
import { canonicalJson, sha256Hex } from "../../lib/wire/message.ts";
import { thrown } from "../helpers/thrown.ts";
import { closedPort } from "../helpers/unreachable.ts";

const objects: KubeObject[] = [
  { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "app", namespace: "apps" }, data: { v: "1" } },
  { apiVersion: "v1", kind: "Secret", metadata: { name: "token", namespace: "apps" }, stringData: { token: "s3cret" } },
];
/** What publish sends: the canonical JSON of the objects, and its SHA-256 as the digest. */
const payload = canonicalJson(objects);
const digest = sha256Hex(payload);
const decoded = { objects, digest, build: { id: "build-7", timestampMs: 1_700_000_000_000 } };
const where = { namespace: "kube-pico-cd", name: "kube-pico-cd-bundle" };

type SecretShape = { metadata: { annotations: Record<string, string> }; data: Record<string, string> };

function keptSecret(of: Parameters<typeof encodeKeptBundle>[0] = decoded): SecretShape {
  const encoded = encodeKeptBundle(of, where);
  if (encoded.kind !== "secret") throw new Error("expected a Secret");
  return structuredClone(encoded.secret) as SecretShape;
}

/** The Secret with `change` applied to a deep copy. */
function edited(change: (secret: SecretShape) => void): SecretShape {
  const copy = keptSecret();
  change(copy);
  return copy;
}

const current: CurrentBuild = { build: decoded.build, digest, appliedAt: "2026-01-01T00:00:00.000Z", messageId: "m-7", objectCount: 2 };
const settled = { current, inflight: null };

describe("encodeKeptBundle()", () => {
  test("encodeKeptBundle() makes an Opaque Secret holding the gzip'd payload, whose SHA-256 is the digest, with the build in annotations", () => {
    const secret = keptSecret() as unknown as { apiVersion: string; kind: string; type: string; metadata: Record<string, unknown>; data: Record<string, string> };
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
        "kube-pico-cd.io/digest": digest,
        "kube-pico-cd.io/objects": "2",
      },
    });
    expect(Object.keys(secret.data)).toEqual(["format", "payload.json.gz"]);
    expect(Buffer.from(secret.data["format"]!, "base64").toString()).toBe("2");
    const inflated = gunzipSync(Buffer.from(secret.data["payload.json.gz"]!, "base64"));
    expect(inflated.toString("utf8")).toBe(payload);
    expect(sha256Hex(inflated)).toBe(digest);
  });

  test("encodeKeptBundle() keeps a bundle whose gzip'd payload is exactly the limit and refuses one byte more", () => {
    const size = gzipSync(payload, { level: 9 }).length;
    expect(encodeKeptBundle(decoded, { ...where, limitBytes: size })).toMatchObject({ kind: "secret", compressedBytes: size });
    expect(encodeKeptBundle(decoded, { ...where, limitBytes: size - 1 })).toEqual({ kind: "too-large", compressedBytes: size });
  });

  test("encodeKeptBundle() refuses a bundle over the default limit of 900 KiB", () => {
    // Random data does not compress: about 1.3 MiB of base64 stays over 900 KiB gzip'd.
    const big = [{ apiVersion: "v1", kind: "ConfigMap", metadata: { name: "big" }, data: { v: randomBytes(1024 * 1024).toString("base64") } }] as KubeObject[];
    const encoded = encodeKeptBundle({ ...decoded, objects: big, digest: sha256Hex(canonicalJson(big)) }, where);
    expect(MAX_KEPT_BUNDLE_BYTES).toBe(921_600);
    expect(encoded.kind).toBe("too-large");
    expect(encoded.kind === "too-large" && encoded.compressedBytes).toBeGreaterThan(MAX_KEPT_BUNDLE_BYTES);
  });

  test("encodeKeptBundle() does not keep a payload that was not canonical JSON, as its exact bytes cannot be rebuilt", () => {
    const indented = sha256Hex(JSON.stringify(objects, null, 2));
    expect(keptPayload({ objects, digest: indented })).toBeUndefined();
    expect(encodeKeptBundle({ ...decoded, digest: indented }, where)).toEqual({ kind: "not-canonical" });
    expect(NOT_CANONICAL_WARNING).toBe(
      "bundle not kept for drift correction: its payload is not canonical JSON (as publish writes it), so the exact bytes of its digest cannot be kept; drift correction pauses until such a build is applied",
    );
  });
});

describe("tooLargeWarning()", () => {
  test("tooLargeWarning() names the size and the limit", () => {
    expect(tooLargeWarning(1_000_000)).toBe("bundle too large to keep for drift correction: 1000000 bytes > 921600 bytes gzip'd; drift correction pauses until a smaller build is applied");
    expect(tooLargeWarning(11, 10)).toBe("bundle too large to keep for drift correction: 11 bytes > 10 bytes gzip'd; drift correction pauses until a smaller build is applied");
  });
});

describe("readKeptPayload()", () => {
  test("readKeptPayload() inflates what encodeKeptBundle() wrote and hashes it", () => {
    expect(readKeptPayload(keptSecret(), where)).toEqual({ format: "2", payload: Buffer.from(payload, "utf8"), payloadSha256: digest, annotatedBuildId: "build-7" });
  });

  test("readKeptPayload() gives a Secret of format 1 back without a payload", () => {
    const old = { metadata: { annotations: { "kube-pico-cd.io/build-id": "build-6" } }, data: { format: Buffer.from("1").toString("base64"), "objects.json.gz": "H4sI" } };
    expect(readKeptPayload(old, where)).toEqual({ format: "1", annotatedBuildId: "build-6" });
  });

  test("readKeptPayload() throws a KeptBundleError when the format is not 2", () => {
    const error = thrown(() => readKeptPayload(edited((s) => (s.data["format"] = Buffer.from("3").toString("base64"))), where), KeptBundleError);
    expect(error.message).toBe('Cannot read the kept bundle Secret kube-pico-cd/kube-pico-cd-bundle as its \'format\' is not 2: current value is "3"');
  });

  test("readKeptPayload() throws a KeptBundleError when the format key is missing", () => {
    const error = thrown(() => readKeptPayload(edited((s) => delete s.data["format"]), where), KeptBundleError);
    expect(error.message).toBe("Cannot read the kept bundle Secret kube-pico-cd/kube-pico-cd-bundle as its 'format' is not 2: current value is null");
  });

  test("readKeptPayload() throws a KeptBundleError when the payload key is missing", () => {
    const error = thrown(() => readKeptPayload(edited((s) => delete s.data[KEPT_PAYLOAD_KEY]), where), KeptBundleError);
    expect(error.message).toBe("Cannot read the kept bundle Secret kube-pico-cd/kube-pico-cd-bundle as it has no 'payload.json.gz' key");
  });

  test("readKeptPayload() throws a KeptBundleError for something that is not a Secret object", () => {
    expect(thrown(() => readKeptPayload({ kind: "Secret" }, where), KeptBundleError).message).toBe("Cannot read the kept bundle Secret kube-pico-cd/kube-pico-cd-bundle as it is not a Secret object");
  });

  test("readKeptPayload() stops inflating past maxDecompressedBytes", () => {
    const error = thrown(() => readKeptPayload(keptSecret(), { ...where, maxDecompressedBytes: 16 }), KeptBundleError);
    expect(error.message).toStartWith("Cannot read the kept bundle Secret kube-pico-cd/kube-pico-cd-bundle as 'payload.json.gz' does not inflate within 16 bytes: ");
  });
});

describe("keptObjects()", () => {
  test("keptObjects() parses the payload into its objects", () => {
    expect(keptObjects(Buffer.from(payload), where)).toEqual(objects);
  });

  test("keptObjects() refuses a payload that is not a list of Kubernetes objects", () => {
    expect(thrown(() => keptObjects(Buffer.from("{}"), where), KeptBundleError).message).toBe("Cannot read the kept bundle Secret kube-pico-cd/kube-pico-cd-bundle as 'payload.json.gz' is not a list of objects");
    expect(thrown(() => keptObjects(Buffer.from("[{"), where), KeptBundleError).message).toStartWith("Cannot read the kept bundle Secret kube-pico-cd/kube-pico-cd-bundle as 'payload.json.gz' is not JSON: ");
    expect(thrown(() => keptObjects(Buffer.from('[{"apiVersion":"v1","metadata":{"name":"x"}}]'), where), KeptBundleError).message).toBe(
      'Cannot read the kept bundle Secret kube-pico-cd/kube-pico-cd-bundle as item 0 of \'payload.json.gz\' is invalid: object "x" has no kind',
    );
  });
});

describe("driftDecision()", () => {
  test("driftDecision() applies the kept bundle when its payload's SHA-256 is the current digest", () => {
    expect(driftDecision(settled, readKeptPayload(keptSecret(), where))).toEqual({ action: "apply" });
  });

  test("driftDecision() never applies a hand-written Secret whose annotations name the current build but whose objects are others", () => {
    const planted = [{ apiVersion: "rbac.authorization.k8s.io/v1", kind: "ClusterRoleBinding", metadata: { name: "mine" } }] as KubeObject[];
    const forged = keptSecret({ objects: planted, digest: sha256Hex(canonicalJson(planted)), build: decoded.build });
    forged.metadata.annotations["kube-pico-cd.io/digest"] = digest;
    forged.metadata.annotations["kube-pico-cd.io/objects"] = "2";
    const kept = readKeptPayload(forged, where);
    expect(driftDecision(settled, kept)).toEqual({
      action: "skip",
      reason: `the kept bundle's payload has SHA-256 ${sha256Hex(canonicalJson(planted))}, annotated as build build-7, not the current build build-7's digest ${digest}; only the current build is re-applied`,
    });
  });

  test("driftDecision() skips when no build was applied yet", () => {
    expect(driftDecision({ current: null, inflight: null }, readKeptPayload(keptSecret(), where))).toEqual({ action: "skip", reason: "no build has been applied yet" });
  });

  test("driftDecision() skips while a deploy is unfinished, so the older current build is not put back over it", () => {
    const inflight: InFlightBuild = { build: { id: "build-8", timestampMs: 1_700_000_001_000 }, digest: "b".repeat(64), messageId: "m-8", objectCount: 1, startedAt: "2026-01-01T00:01:00.000Z", holder: "pod-1", inventory: [] };
    expect(driftDecision({ current, inflight }, readKeptPayload(keptSecret(), where))).toEqual({
      action: "skip",
      reason: "the deploy of build build-8 started at 2026-01-01T00:01:00.000Z by pod-1 did not finish; the next deploy settles it, and the older current build build-7 is not put back over it",
    });
  });

  test("driftDecision() skips when no bundle is kept", () => {
    expect(driftDecision(settled, null)).toEqual({
      action: "skip",
      reason: "no bundle is kept for the current build build-7 (it was too large to keep, or was applied before drift correction was on)",
    });
  });

  test("driftDecision() skips a Secret of format 1, which was trusted by its own annotations", () => {
    expect(driftDecision(settled, { format: "1", annotatedBuildId: "build-7" })).toEqual({
      action: "skip",
      reason: "the kept bundle is in format 1, annotated as build build-7, which is not checked against the record; the next deploy keeps the current build in format 2",
    });
  });

  test("driftDecision() skips a kept bundle of another build, never re-applying anything but the current build", () => {
    const older = { objects: [objects[0]!], build: { id: "build-6", timestampMs: 1 }, digest: sha256Hex(canonicalJson([objects[0]])) };
    expect(driftDecision(settled, readKeptPayload(keptSecret(older), where))).toEqual({
      action: "skip",
      reason: `the kept bundle's payload has SHA-256 ${older.digest}, annotated as build build-6, not the current build build-7's digest ${digest}; only the current build is re-applied`,
    });
  });
});

describe("driftPolicyProblem()", () => {
  test("driftPolicyProblem() allows what the policy allows", () => {
    expect(driftPolicyProblem(objects, OPEN_POLICY, "build-7")).toBeUndefined();
  });

  test("driftPolicyProblem() names every object the policy as configured now refuses", () => {
    expect(driftPolicyProblem(objects, { ...OPEN_POLICY, deniedKinds: ["core/Secret"] }, "build-7")).toBe(
      'the listener\'s policy now refuses 1 of 2 objects of the current build build-7, so it is not re-applied: Secret apps/token: kind denied by "core/Secret"',
    );
  });
});

describe("startDriftCorrection()", () => {
  const unreachableApi = async () => new KubeApi({ server: `https://127.0.0.1:${await closedPort()}`, namespace: "n", source: "test" }, { timeoutMs: 2_000 });

  test("startDriftCorrection() throws a RangeError when intervalMs is not positive", async () => {
    const api = await unreachableApi();
    const error = thrown(
      () => startDriftCorrection({ passes: async () => [{ api, kubectl: { kubectlPath: "kubectl" }, namespace: "n", policy: OPEN_POLICY }], logger: createLogger({ write: () => {} }), intervalMs: 0, signal: new AbortController().signal }),
      RangeError,
    );
    expect(error.message).toBe("Cannot start drift correction as 'intervalMs' must be a positive finite number: current value is 0");
  });

  test("startDriftCorrection() logs a failed pass, goes on, and resolves once the signal aborts", async () => {
    const api = await unreachableApi();
    const lines: Record<string, unknown>[] = [];
    const results: DriftPassResult[] = [];
    const stop = new AbortController();
    const stopped = startDriftCorrection({
      passes: async () => [{ api, kubectl: { kubectlPath: "/nonexistent/kubectl" }, namespace: "n", policy: OPEN_POLICY, app: "shop" }],
      logger: createLogger({ write: (line) => void lines.push(JSON.parse(line) as Record<string, unknown>) }),
      intervalMs: 5,
      signal: stop.signal,
      onPass: (result) => {
        results.push(result);
        if (results.length === 2) stop.abort();
      },
    });
    await stopped;
    api.close();
    expect(results).toEqual(["failed", "failed"]);
    const failed = lines.filter((l) => l["msg"] === "drift pass failed; the next pass tries again");
    expect(failed).toHaveLength(2);
    expect(failed[0]).toMatchObject({ level: "warn", component: "drift", app: "shop", result: "failed", build: null, objectCount: null });
    expect(String((failed[0]?.["error"] as { message: string }).message)).toContain("/apis/coordination.k8s.io/v1/namespaces/n/leases/kube-pico-cd-deploy");
    expect(lines.at(-1)).toMatchObject({ msg: "drift correction stopped" });
  });
});
