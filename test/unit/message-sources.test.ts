import { describe, expect, test } from "bun:test";
import { gzipSync } from "node:zlib";
import { MessageRejectedError } from "../../lib/errors.ts";
import { decodeMessage, encodeMessage, sha256Hex, type BuildInfo, type KubeObject } from "../../lib/wire/message.ts";
import { generateSigningKeyPair, parseSigningKey, signFields, type SigningKey } from "../../lib/wire/signature.ts";
import { checkEnvelopeSignature, checkSignature, loadTrustedKeys } from "../../lib/listener/trust.ts";

const build: BuildInfo = { id: "b-1", timestampMs: 1_700_000_000_000 };
const objects = [
  { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "a", namespace: "web" }, data: { v: "1" } },
  { apiVersion: "apps/v1", kind: "Deployment", metadata: { name: "web", namespace: "web" }, spec: {} },
] as KubeObject[];
const sources = ["k8s/config.yaml:1:1", "k8s/web.yaml:3:1"];

function key(): { key: SigningKey; trusted: ReturnType<typeof loadTrustedKeys>["keys"] } {
  const pair = generateSigningKeyPair();
  const parsed = parseSigningKey(pair.privateKeyPem);
  if ("problem" in parsed) throw new Error(parsed.problem);
  return { key: parsed, trusted: loadTrustedKeys([pair.publicKeyPem]).keys };
}

function rejection(fn: () => unknown): MessageRejectedError {
  try {
    fn();
  } catch (error) {
    if (error instanceof MessageRejectedError) return error;
    throw error;
  }
  throw new Error("expected a rejection");
}

describe("sources on the wire", () => {
  test("a bundle carries where each object came from, and decodes it back in bundle order", () => {
    const { body } = encodeMessage({ build, objects, sources });
    const parsed = JSON.parse(body) as { sources: { encoding: string; count: number } };
    expect(parsed.sources.encoding).toBe("gzip+base64");
    expect(parsed.sources.count).toBe(2);
    expect(decodeMessage(body).sources?.list).toEqual(sources);
    // Without sources the body is what it was before them.
    expect(JSON.parse(encodeMessage({ build, objects }).body)).not.toHaveProperty("sources");
  });

  test("sources that do not match the objects, their digest or their shape are rejected, naming what is wrong", () => {
    const body = JSON.parse(encodeMessage({ build, objects, sources }).body) as Record<string, any>;
    const withSources = (change: (s: Record<string, unknown>) => void) => {
      const copy = structuredClone(body);
      change(copy.sources);
      return JSON.stringify(copy);
    };
    expect(rejection(() => decodeMessage(withSources((s) => (s["count"] = 3)))).message).toContain("sources has 3 entries for 2 objects");
    const other = Buffer.from(JSON.stringify(["x:1:1", "y:1:1"]));
    expect(rejection(() => decodeMessage(withSources((s) => (s["data"] = gzipSync(other).toString("base64"))))).message).toContain("does not match sources.sha256");
    const numbers = Buffer.from(JSON.stringify([1, 2]));
    expect(
      rejection(() =>
        decodeMessage(
          withSources((s) => {
            s["data"] = gzipSync(numbers).toString("base64");
            s["sha256"] = sha256Hex(numbers);
          }),
        ),
      ).message,
    ).toContain("must be an array of 2 strings");
    expect(() => encodeMessage({ build, objects, sources: ["only one"] })).toThrow("1 sources for 2 objects");
  });

  test("the signature covers the sources and the plan mode: changed after signing, they do not verify", () => {
    const { key: signing, trusted } = key();
    const body = encodeMessage({ build, objects, sources, mode: "plan", sign: (fields) => signFields(fields, signing) }).body;
    const decoded = decodeMessage(body, { checkEnvelope: (e) => checkEnvelopeSignature(e, trusted) });
    expect(decoded.mode).toBe("plan");
    expect(() => checkSignature(decoded, trusted)).not.toThrow();

    const parsed = JSON.parse(body) as Record<string, any>;
    const tamperedSources = Buffer.from(JSON.stringify(["evil.yaml:1:1", "evil.yaml:2:1"]));
    const forged = structuredClone(parsed);
    forged.sources.data = gzipSync(tamperedSources).toString("base64");
    forged.sources.sha256 = sha256Hex(tamperedSources);
    expect(rejection(() => decodeMessage(JSON.stringify(forged), { checkEnvelope: (e) => checkEnvelopeSignature(e, trusted) })).reason).toBe("bad-signature");
    // A plan request turned into a deploy by dropping "mode" must not verify.
    const deploy = structuredClone(parsed);
    delete deploy.mode;
    expect(rejection(() => decodeMessage(JSON.stringify(deploy), { checkEnvelope: (e) => checkEnvelopeSignature(e, trusted) })).reason).toBe("bad-signature");
  });

  test("an object's problem names its source", () => {
    const bad = [{ apiVersion: "v1", kind: "ConfigMap", metadata: { name: "a" } }, { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "a" } }] as KubeObject[];
    const error = rejection(() => decodeMessage(encodeMessage({ build, objects: bad, sources: ["one.yaml:1:1", "two.yaml:4:1"] }).body));
    expect(error.message).toMatch(/two\.yaml:4:1|one\.yaml:1:1/);
  });
});
