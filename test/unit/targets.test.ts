import { describe, expect, test } from "bun:test";
import { createMessageDecoder, type DeployerOptions } from "../../lib/listener/deployer.ts";
import { checkEnvelopeSignature, checkSignature, loadTrustedKeys } from "../../lib/listener/trust.ts";
import type { ReceivedMessage } from "../../lib/sqs/consumer.ts";
import { decodeMessage, encodeMessage, MessageRejectedError, type KubeObject, type SignedFields } from "../../lib/wire/message.ts";
import { generateSigningKeyPair, parseSigningKey, signedBytes, signFields } from "../../lib/wire/signature.ts";
import { parseTargetList, targetsProblem } from "../../lib/wire/targets.ts";
import { rejectionDisposition } from "../../lib/listener/rejections.ts";

const build = { id: "abc-1-1", timestampMs: 1_700_000_000_000, commit: "abc", ref: "refs/heads/main" };
const objects = [{ apiVersion: "v1", kind: "ConfigMap", metadata: { name: "app", namespace: "web" }, data: { color: "blue" } }] as KubeObject[];

function rejection(fn: () => unknown): { reason: string; message: string } {
  try {
    fn();
  } catch (error) {
    if (error instanceof MessageRejectedError) return { reason: error.reason, message: error.message };
    throw error;
  }
  throw new Error("expected a MessageRejectedError");
}

/** `body` with its parsed JSON changed by `change`. */
function edited(body: string, change: (message: Record<string, any>) => void): string {
  const message = JSON.parse(body) as Record<string, any>;
  change(message);
  return JSON.stringify(message);
}

describe("targetsProblem()", () => {
  test("targetsProblem() accepts 2 to 100 sorted, distinct names of printable ASCII", () => {
    expect(targetsProblem(["a", "b"])).toBeUndefined();
    expect(targetsProblem(Array.from({ length: 100 }, (_, i) => `c-${String(i).padStart(3, "0")}`))).toBeUndefined();
  });

  test("targetsProblem() names the rule a list breaks", () => {
    expect(targetsProblem(["a"])).toBe('must name at least 2 targets (one target is written as "target"): current value names 1');
    expect(targetsProblem(Array.from({ length: 101 }, (_, i) => `c-${String(i).padStart(3, "0")}`))).toBe("must name at most 100 targets: current value names 101");
    expect(targetsProblem(["b", "a"])).toBe('must be sorted: "b" comes before "a"');
    expect(targetsProblem(["a", "a"])).toBe('names target "a" twice');
    expect(targetsProblem(["a", ""])).toBe("a target name must not be empty");
    expect(targetsProblem(["a", "b c"])).toBe('target name "b c" holds a character other than printable ASCII without space and comma');
    expect(targetsProblem(["a", "b,c"])).toBe('target name "b,c" holds a character other than printable ASCII without space and comma');
  });
});

describe("parseTargetList()", () => {
  test("parseTargetList() keeps one name as the single target, exactly as given", () => {
    expect(parseTargetList("prod")).toEqual({ target: "prod" });
    expect(parseTargetList("prod eu")).toEqual({ target: "prod eu" });
  });

  test("parseTargetList() sorts several names into targets", () => {
    expect(parseTargetList("cluster-2, cluster-10,cluster-1")).toEqual({ targets: ["cluster-1", "cluster-10", "cluster-2"] });
  });

  test("parseTargetList() refuses empty names and repeats", () => {
    expect(parseTargetList("")).toEqual({ problem: "must not be empty" });
    expect(parseTargetList("a,,b")).toEqual({ problem: 'holds an empty name: current value is "a,,b"' });
    expect(parseTargetList("a,b,a")).toEqual({ problem: 'names target "a" twice' });
  });
});

describe("targets in the body", () => {
  test("encodeMessage() writes targets right after build, and decodeMessage() reads them back", () => {
    const { body } = encodeMessage({ build, objects, targets: ["eu-1", "us-1"] });
    expect(Object.keys(JSON.parse(body) as object)).toEqual(["kind", "version", "build", "targets", "manifests"]);
    expect(decodeMessage(body).targets).toEqual(["eu-1", "us-1"]);
  });

  test("encodeMessage() with one target writes exactly the body it wrote before targets existed", () => {
    expect(encodeMessage({ build, objects, target: "prod" }).body).toContain('},"target":"prod","manifests":');
  });

  test("encodeMessage() refuses targets with target, and an invalid list", () => {
    expect(() => encodeMessage({ build, objects, target: "a", targets: ["b", "c"] })).toThrow("Cannot encode the message: targets cannot be given with target");
    expect(() => encodeMessage({ build, objects, targets: ["c", "b"] })).toThrow('Cannot encode the message: targets must be sorted: "c" comes before "b"');
  });

  test("decodeMessage() rejects target and targets together, and unsorted or repeated targets, as schema", () => {
    const body = encodeMessage({ build, objects, targets: ["eu-1", "us-1"] }).body;
    expect(rejection(() => decodeMessage(edited(body, (m) => (m.target = "eu-1"))))).toEqual({
      reason: "schema",
      message: "Rejected message: not a valid kube-pico-cd.bundle version 1: target and targets cannot both be given",
    });
    expect(rejection(() => decodeMessage(edited(body, (m) => (m.targets = ["us-1", "eu-1"]))))).toEqual({
      reason: "schema",
      message: 'Rejected message: not a valid kube-pico-cd.bundle version 1: targets: must be sorted: "us-1" comes before "eu-1"',
    });
    expect(rejection(() => decodeMessage(edited(body, (m) => (m.targets = ["eu-1", "eu-1"])))).reason).toBe("schema");
  });

  test("decodeMessage() reads targets from an SNS notification envelope", () => {
    const body = encodeMessage({ build, objects, targets: ["eu-1", "us-1"] }).body;
    expect(decodeMessage(JSON.stringify({ Type: "Notification", MessageId: "m", TopicArn: "arn:aws:sns:us-east-1:123456789012:t", Message: body })).targets).toEqual(["eu-1", "us-1"]);
  });
});

describe("signedBytes() with targets", () => {
  const fields: SignedFields = { build: { id: "b1", timestampMs: 1_700_000_000_000 }, manifests: { encoding: "gzip+base64", sha256: "a".repeat(64), objects: 2, bytes: 90 } };

  test("signedBytes() writes a targets line after target, the names joined with ',', only when the fields have targets", () => {
    const text = signedBytes({ ...fields, targets: ["eu-1", "us-1"] }, "0123456789abcdef").toString("utf8");
    expect(text).toContain("\nbuild.url=-\ntarget=-\ntargets=9:eu-1,us-1\nmanifests.encoding=11:gzip+base64\n");
    expect(text.replace("targets=9:eu-1,us-1\n", "")).toBe(signedBytes(fields, "0123456789abcdef").toString("utf8"));
  });

  // Signed once with targets, and not to be regenerated: the signed bytes of a targets message stay what they are.
  const vectorPublicKey = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAJI8kGC3obr1ExX+wY4ToyMdQJDNL54/19Zf3E/Cc0eA=\n-----END PUBLIC KEY-----\n";
  const vectorBody =
    '{"kind":"kube-pico-cd.bundle","version":1,"build":{"id":"abc-1-1","timestampMs":1700000000000,"commit":"abc","ref":"refs/heads/main"},"targets":["eu-1","us-1"],' +
    '"manifests":{"encoding":"gzip+base64","data":"H4sIAAAAAAAAAzWKKw6EMBBA7/J0DXbs6rUYsmKAgTSUtgEWBOndSQXyfbobzb61bfcpIpwNjlEPRW6GFNKG0Ie/URyLjyPCJ8XJz1/NOFY79N2jroaguYYKe9ahmst6Svk9dzbGh2wAAAA=",' +
    '"sha256":"e560be638abf1d281e5259357f1ed0c1b14ca846e70852d51e30630d31f691ea","objects":1,"bytes":108},' +
    '"signature":{"algorithm":"ed25519","keyId":"3a062c90931d6f42","value":"C0kWaVJHTMDxNrIECmmelOGc+7b/yOyOo889ZXjECqB1u1+AZneBwp0cGez4dpvv9lTUkze/HL3zMZB86jelCw=="}}';

  test("the fixed vector with targets verifies, before and after decoding", () => {
    const { keys, problems } = loadTrustedKeys([vectorPublicKey]);
    expect(problems).toEqual([]);
    const decoded = decodeMessage(vectorBody, { checkEnvelope: (envelope) => checkEnvelopeSignature(envelope, keys) });
    expect(decoded.targets).toEqual(["eu-1", "us-1"]);
    expect(() => checkSignature(decoded, keys)).not.toThrow();
  });

  test("the fixed vector fails as bad-signature once targets change, are dropped or become one target", () => {
    const { keys } = loadTrustedKeys([vectorPublicKey]);
    for (const change of [(m: Record<string, any>) => (m.targets = ["eu-1", "us-2"]), (m: Record<string, any>) => delete m.targets, (m: Record<string, any>) => ((m.target = "eu-1"), delete m.targets)]) {
      expect(rejection(() => decodeMessage(edited(vectorBody, change), { checkEnvelope: (envelope) => checkEnvelopeSignature(envelope, keys) })).reason).toBe("bad-signature");
    }
  });

  test("a message signed with targets by a new key verifies", () => {
    const pair = generateSigningKeyPair();
    const key = parseSigningKey(pair.privateKeyPem);
    if ("problem" in key) throw new Error(key.problem);
    const { keys } = loadTrustedKeys([pair.publicKeyPem]);
    const body = encodeMessage({ build, objects, targets: ["a", "b"], sign: (f) => signFields(f, key) }).body;
    expect(() => checkSignature(decodeMessage(body), keys)).not.toThrow();
  });
});

describe("the listener's target check", () => {
  const received = (body: string): ReceivedMessage => ({ messageId: "m1", receiptHandle: "r", body, receiveCount: 1, receivedAtMs: Date.now() });
  /** The decoder of a listener with `target` (only the options the checks read). */
  const decoderOf = (options: { target?: string; requireTarget?: boolean }) => createMessageDecoder({ namespace: "kube-pico-cd", ...options } as DeployerOptions);
  const withTargets = encodeMessage({ build, objects, targets: ["cluster-1", "cluster-2"] }).body;

  test("a listener whose target is in targets accepts the message, also with require-target", () => {
    expect("decoded" in decoderOf({ target: "cluster-2", requireTarget: true })(received(withTargets))).toBe(true);
  });

  test("a listener whose target is not in targets refuses it as other-targets, which is deleted", () => {
    const other = decoderOf({ target: "cluster-3" })(received(withTargets));
    expect("reason" in other ? { reason: other.reason, error: other.error } : other).toEqual({
      reason: "other-targets",
      error: 'The message is for targets "cluster-1", "cluster-2", not for this listener\'s target "cluster-3"',
    });
    expect(rejectionDisposition("other-targets")).toBe("delete");
  });

  test("a listener without a target rejects a message with targets as target, which is kept for redrive", () => {
    const none = decoderOf({})(received(withTargets));
    expect("reason" in none ? { reason: none.reason, error: none.error } : none).toEqual({
      reason: "target",
      error: 'The message is for targets "cluster-1", "cluster-2" but this listener has no target',
    });
    expect(rejectionDisposition("target")).toBe("dead-letter");
  });

  test("require-target still rejects a message with neither target nor targets", () => {
    const result = decoderOf({ target: "cluster-1", requireTarget: true })(received(encodeMessage({ build, objects }).body));
    expect("reason" in result ? result.reason : "accepted").toBe("require-target");
  });
});
