import { describe, expect, test } from "bun:test";
import { createPublicKey, generateKeyPairSync } from "node:crypto";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MessageRejectedError } from "../../lib/errors.ts";
import { decodeMessage, encodeMessage, type BuildInfo, type DecodedMessage, type KubeObject, type SignedFields } from "../../lib/wire/message.ts";
import {
  generateSigningKeyPair,
  keyIdOf,
  parsePublicKeys,
  parseSigningKey,
  signatureFormProblem,
  signedBytes,
  signFields,
  type SigningKey,
} from "../../lib/wire/signature.ts";
import { checkEnvelopeSignature, checkSignature, loadTrustedKeys } from "../../lib/listener/trust.ts";

const build: BuildInfo = { id: "abc-1-1", timestampMs: 1_700_000_000_000, commit: "abc", ref: "refs/heads/main" };
const objects = [{ apiVersion: "v1", kind: "ConfigMap", metadata: { name: "app", namespace: "web" }, data: { color: "blue" } }] as KubeObject[];

function signingKey(): { key: SigningKey; publicKeyPem: string } {
  const pair = generateSigningKeyPair();
  const key = parseSigningKey(pair.privateKeyPem);
  if ("problem" in key) throw new Error(key.problem);
  return { key, publicKeyPem: pair.publicKeyPem };
}

function trustedOf(...pems: string[]) {
  const { keys, problems } = loadTrustedKeys(pems);
  expect(problems).toEqual([]);
  return keys;
}

function signedBody(key: SigningKey, target?: string, app?: string): string {
  return encodeMessage({
    ...(app === undefined ? {} : { app }),
    build,
    objects,
    ...(target === undefined ? {} : { target }),
    sign: (fields) => signFields(fields, key),
  }).body;
}

function rejection(fn: () => void): { reason: string; message: string } {
  try {
    fn();
  } catch (error) {
    if (error instanceof MessageRejectedError) return { reason: error.reason, message: error.message };
    throw error;
  }
  throw new Error("expected a MessageRejectedError");
}

/** Re-serializes a body after `change` edits its parsed JSON. */
function edited(body: string, change: (message: Record<string, any>) => void): string {
  const message = JSON.parse(body) as Record<string, any>;
  change(message);
  return JSON.stringify(message);
}

describe("signedBytes()", () => {
  const fields: SignedFields = {
    build: { id: "b1", timestampMs: 1_700_000_000_000, url: "https://ci/1" },
    manifests: { encoding: "gzip+base64", sha256: "a".repeat(64), objects: 2, bytes: 90 },
  };

  test("signedBytes() is the documented header and one length-prefixed line per field, '-' when absent", () => {
    expect(signedBytes(fields, "0123456789abcdef").toString("utf8")).toBe(
      [
        "kube-pico-cd signed bundle v1",
        "algorithm=7:ed25519",
        "keyId=16:0123456789abcdef",
        "kind=19:kube-pico-cd.bundle",
        "version=1:1",
        "build.id=2:b1",
        "build.timestampMs=13:1700000000000",
        "build.commit=-",
        "build.ref=-",
        "build.repository=-",
        "build.runId=-",
        "build.runAttempt=-",
        "build.actor=-",
        "build.url=12:https://ci/1",
        "target=-",
        "manifests.encoding=11:gzip+base64",
        `manifests.sha256=64:${"a".repeat(64)}`,
        "manifests.objects=1:2",
        "manifests.bytes=2:90",
        "",
      ].join("\n"),
    );
  });

  test("signedBytes() writes app as the line after version, only when the fields name one", () => {
    const text = signedBytes({ ...fields, app: "shop-api" }, "0123456789abcdef").toString("utf8");
    expect(text).toContain("\nversion=1:1\napp=8:shop-api\nbuild.id=2:b1\n");
    expect(text.replace("app=8:shop-api\n", "")).toBe(signedBytes(fields, "0123456789abcdef").toString("utf8"));
  });

  test("signedBytes() signs the default app as no app: the bytes of a message without one", () => {
    expect(signedBytes({ ...fields, app: "default" }, "0123456789abcdef")).toEqual(signedBytes(fields, "0123456789abcdef"));
  });

  test("signedBytes() counts UTF-8 bytes, so values holding newlines or '=' cannot imitate other fields", () => {
    const tricky = signedBytes({ ...fields, build: { id: "x\nbuild.timestampMs=1:1", timestampMs: 5 }, target: "é" }, "0123456789abcdef").toString("utf8");
    expect(tricky).toContain("build.id=23:x\nbuild.timestampMs=1:1\nbuild.timestampMs=1:5\n");
    expect(tricky).toContain("target=2:é\n");
  });
});

describe("keys", () => {
  test("keyIdOf() is the first 16 hex digits of SHA-256 of the SPKI DER", async () => {
    const { publicKey } = generateKeyPairSync("ed25519");
    const der = publicKey.export({ type: "spki", format: "der" });
    const { createHash } = await import("node:crypto");
    expect(keyIdOf(publicKey)).toBe(createHash("sha256").update(der).digest("hex").slice(0, 16));
  });

  test("generateSigningKeyPair() gives PEMs whose key id matches both halves", () => {
    const pair = generateSigningKeyPair();
    expect(pair.privateKeyPem).toStartWith("-----BEGIN PRIVATE KEY-----\n");
    expect(pair.publicKeyPem).toStartWith("-----BEGIN PUBLIC KEY-----\n");
    expect(pair.keyId).toMatch(/^[0-9a-f]{16}$/);
    expect(keyIdOf(createPublicKey(pair.publicKeyPem))).toBe(pair.keyId);
    expect(parseSigningKey(pair.privateKeyPem)).toMatchObject({ keyId: pair.keyId });
  });

  test("parseSigningKey() names the problem without quoting the text", () => {
    expect(parseSigningKey("not a key SECRET")).toEqual({ problem: "is not a PEM private key (expected -----BEGIN PRIVATE KEY----- as printed by 'publish keygen')" });
    const rsa = generateKeyPairSync("rsa", { modulusLength: 1024 }).privateKey.export({ type: "pkcs8", format: "pem" }).toString();
    expect(parseSigningKey(rsa)).toEqual({ problem: "is a rsa key, not an Ed25519 key" });
  });

  test("parsePublicKeys() reads several PEM blocks and refuses private keys", () => {
    const a = generateSigningKeyPair();
    const b = generateSigningKeyPair();
    const parsed = parsePublicKeys(`old key:\n${a.publicKeyPem}\nnew key:\n${b.publicKeyPem}${a.privateKeyPem}`);
    expect(parsed.keys.map(keyIdOf)).toEqual([a.keyId, b.keyId]);
    expect(parsed.problems).toEqual(["PEM block 3 is a PRIVATE KEY, not a PUBLIC KEY (the listener needs the public key only; never give it the private key)"]);
    expect(parsePublicKeys("nothing").problems).toEqual(["holds no PEM public key (-----BEGIN PUBLIC KEY-----)"]);
  });

  test("loadTrustedKeys() reads PEM text, files and the *.pem files of a directory", () => {
    const dir = mkdtempSync(join(tmpdir(), "kpcd-keys-"));
    const [a, b, c] = [generateSigningKeyPair(), generateSigningKeyPair(), generateSigningKeyPair()];
    writeFileSync(join(dir, "b.pem"), b.publicKeyPem);
    mkdirSync(join(dir, "keys"));
    writeFileSync(join(dir, "keys", "c.pem"), c.publicKeyPem);
    writeFileSync(join(dir, "keys", "README"), "not a key");
    const { keys, problems } = loadTrustedKeys([a.publicKeyPem, join(dir, "b.pem"), join(dir, "keys")]);
    expect(problems).toEqual([]);
    expect([...keys.keys()]).toEqual([a.keyId, b.keyId, c.keyId]);
  });

  test("loadTrustedKeys() reports an unreadable path and an empty directory, naming the item", () => {
    const dir = mkdtempSync(join(tmpdir(), "kpcd-keys-"));
    const { keys, problems } = loadTrustedKeys(["/nonexistent/key.pem", dir]);
    expect(keys.size).toBe(0);
    expect(problems[0]).toStartWith("trusted key 1: cannot read /nonexistent/key.pem: ");
    expect(problems[1]).toBe(`trusted key 2: the directory ${dir} holds no *.pem or *.pub file`);
  });
});

describe("checkSignature()", () => {
  const { key, publicKeyPem } = signingKey();
  const trusted = trustedOf(publicKeyPem);

  test("checkSignature() accepts a body signed by a trusted key", () => {
    expect(() => checkSignature(decodeMessage(signedBody(key, "prod")), trusted)).not.toThrow();
  });

  test("checkSignature() accepts any key of several trusted ones (rotation)", () => {
    const next = signingKey();
    const both = trustedOf(publicKeyPem, next.publicKeyPem);
    expect(() => checkSignature(decodeMessage(signedBody(key)), both)).not.toThrow();
    expect(() => checkSignature(decodeMessage(signedBody(next.key)), both)).not.toThrow();
  });

  test("checkSignature() checks nothing when no key is trusted", () => {
    expect(() => checkSignature(decodeMessage(encodeMessage({ build, objects }).body), new Map())).not.toThrow();
  });

  test("checkSignature() rejects an unsigned body as unsigned", () => {
    const r = rejection(() => checkSignature(decodeMessage(encodeMessage({ build, objects }).body), trusted));
    expect(r).toEqual({ reason: "unsigned", message: `Rejected message: build "abc-1-1" is not signed, and this listener applies only bundles signed by a trusted key (${key.keyId})` });
  });

  test("checkSignature() rejects a legacy message as unsigned", () => {
    const legacy = JSON.stringify({ data: { BUILD_TIMESTAMP: "1700000000", COMMIT_HASH: "abc" }, manifests: "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: web\n" });
    expect(rejection(() => checkSignature(decodeMessage(legacy), trusted)).message).toContain("is not signed (a legacy message cannot be signed)");
  });

  test("checkSignature() rejects a key it does not trust as unknown-key", () => {
    const other = signingKey();
    const r = rejection(() => checkSignature(decodeMessage(signedBody(other.key)), trusted));
    expect(r).toEqual({ reason: "unknown-key", message: `Rejected message: build "abc-1-1" is signed by key ${other.key.keyId}, which this listener does not trust (trusted: ${key.keyId})` });
  });

  test("checkSignature() rejects a changed covered field as bad-signature: timestamp, id, target, a build field", () => {
    const body = signedBody(key, "prod");
    const changes: ((m: Record<string, any>) => void)[] = [
      (m) => (m.build.timestampMs += 1),
      (m) => (m.build.id = "other"),
      (m) => (m.target = "staging"),
      (m) => delete m.target,
      (m) => (m.build.ref = "refs/heads/evil"),
      (m) => delete m.build.commit,
    ];
    for (const change of changes) {
      const r = rejection(() => checkSignature(decodeMessage(edited(body, change)), trusted));
      expect(r.reason).toBe("bad-signature");
    }
  });

  test("checkSignature() rejects changed manifests (with a matching digest) as bad-signature", () => {
    const signed = JSON.parse(signedBody(key)) as { signature: unknown };
    const other = JSON.parse(encodeMessage({ build, objects: [{ ...objects[0]!, data: { color: "red" } }] }).body) as Record<string, unknown>;
    const forged = JSON.stringify({ ...other, signature: signed.signature });
    const r = rejection(() => checkSignature(decodeMessage(forged), trusted));
    expect(r).toEqual({
      reason: "bad-signature",
      message: `Rejected message: the signature of build "abc-1-1" by key ${key.keyId} does not match: the manifests or a signed field (app, mode, build, target, targets, manifests, sources) changed after signing`,
    });
  });

  test("checkSignature() rejects malformed signatures as malformed-signature", () => {
    const body = signedBody(key);
    const cases: [(m: Record<string, any>) => void, string][] = [
      [(m) => (m.signature.value = Buffer.alloc(10).toString("base64")), "value decodes to 10 bytes, not 64"],
      [(m) => (m.signature.keyId = "CI-2024"), 'keyId "CI-2024" is not 16 lowercase hex digits'],
    ];
    for (const [change, problem] of cases) {
      const r = rejection(() => checkSignature(decodeMessage(edited(body, change)), trusted));
      expect(r).toEqual({ reason: "malformed-signature", message: `Rejected message: the signature of build "abc-1-1" is malformed: ${problem}` });
    }
  });

  test("signatureFormProblem() is undefined for what signFields() makes", () => {
    const decoded: DecodedMessage = decodeMessage(signedBody(key));
    expect(signatureFormProblem(decoded.signature!)).toBeUndefined();
  });
});

describe("publish signs", () => {
  async function publish(argv: string[], env: Record<string, string> = {}) {
    const { main } = await import("../../publish.ts");
    let stdout = "";
    let stderr = "";
    const dir = mkdtempSync(join(tmpdir(), "kpcd-publish-"));
    writeFileSync(join(dir, "app.yaml"), "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\n  namespace: web\ndata:\n  color: blue\n");
    const code = await main(argv, env, { cwd: dir, stdout: (t) => void (stdout += t), stderr: (t) => void (stderr += t), now: () => 1_700_000_000_000 });
    return { code, stdout, stderr, dir };
  }

  function pemsOf(text: string): { privateKeyPem: string; publicKeyPem: string; keyId: string } {
    const privateKeyPem = /-----BEGIN PRIVATE KEY-----[\s\S]*?-----END PRIVATE KEY-----/.exec(text)?.[0];
    const publicKeyPem = /-----BEGIN PUBLIC KEY-----[\s\S]*?-----END PUBLIC KEY-----/.exec(text)?.[0];
    const keyId = /key id ([0-9a-f]{16})/.exec(text)?.[1];
    if (!privateKeyPem || !publicKeyPem || !keyId) throw new Error(`keygen printed no key pair:\n${text}`);
    return { privateKeyPem, publicKeyPem, keyId };
  }

  test("publish --keygen prints a private and a public key with the key id and where each goes", async () => {
    const run = await publish(["--keygen"]);
    expect(run.code).toBe(0);
    const pair = pemsOf(run.stdout);
    expect(keyIdOf(createPublicKey(pair.publicKeyPem))).toBe(pair.keyId);
    expect(parseSigningKey(pair.privateKeyPem)).toMatchObject({ keyId: pair.keyId });
    expect(run.stdout).toContain("KUBE_PICO_CD_SIGNING_KEY");
    expect(run.stdout).toContain("KUBE_PICO_CD_TRUSTED_KEYS");
  });

  test("publish signs with the PEM in KUBE_PICO_CD_SIGNING_KEY, and the body verifies with the public key", async () => {
    const pair = pemsOf((await publish(["--keygen"])).stdout);
    const run = await publish(["app.yaml", "--dry-run", "--json", "--output-body", "body.json", "--target", "prod"], { KUBE_PICO_CD_SIGNING_KEY: pair.privateKeyPem });
    expect(run.stderr).toBe("");
    expect(JSON.parse(run.stdout).signedBy).toBe(pair.keyId);
    const body = (await import("node:fs")).readFileSync(join(run.dir, "body.json"), "utf8");
    const decoded = decodeMessage(body);
    expect(decoded.signature).toMatchObject({ algorithm: "ed25519", keyId: pair.keyId });
    expect(() => checkSignature(decoded, trustedOf(pair.publicKeyPem))).not.toThrow();
  });

  test("publish signs with --signing-key-file, which wins over the variable", async () => {
    const [a, b] = [generateSigningKeyPair(), generateSigningKeyPair()];
    const keyDir = mkdtempSync(join(tmpdir(), "kpcd-key-"));
    writeFileSync(join(keyDir, "signing.pem"), a.privateKeyPem);
    const run = await publish(["app.yaml", "--dry-run", "--json", "--signing-key-file", join(keyDir, "signing.pem")], { KUBE_PICO_CD_SIGNING_KEY: b.privateKeyPem });
    expect(JSON.parse(run.stdout).signedBy).toBe(a.keyId);
  });

  test("publish refuses a signing key that is not an Ed25519 private key, without printing it", async () => {
    const run = await publish(["app.yaml", "--dry-run"], { KUBE_PICO_CD_SIGNING_KEY: "SECRET-NOT-A-KEY" });
    expect(run.code).toBe(1);
    expect(run.stderr).toBe(
      "publish: Invalid configuration:\n  - KUBE_PICO_CD_SIGNING_KEY: is not a PEM private key (expected -----BEGIN PRIVATE KEY----- as printed by 'publish keygen')\n",
    );
  });
});

describe("listener configuration of trust", () => {
  const base = { KUBE_PICO_CD_QUEUE: "q", KUBE_PICO_CD_NAMESPACE: "ns" };

  test("parseListenerConfig() reads trusted keys from the variable, several at once", async () => {
    const { parseListenerConfig } = await import("../../lib/listener/config.ts");
    const [a, b] = [generateSigningKeyPair(), generateSigningKeyPair()];
    const config = parseListenerConfig([], { ...base, KUBE_PICO_CD_TRUSTED_KEYS: `${a.publicKeyPem},${b.publicKeyPem}` });
    expect([...config.trustedKeys.keys()]).toEqual([a.keyId, b.keyId]);
    expect(parseListenerConfig([], base).trustedKeys.size).toBe(0);
  });

  test("parseListenerConfig() refuses --require-signatures without keys, and keys it cannot read", async () => {
    const { parseListenerConfig } = await import("../../lib/listener/config.ts");
    const { ConfigError } = await import("../../lib/errors.ts");
    const problems = (fn: () => unknown) => {
      try {
        fn();
      } catch (error) {
        if (error instanceof ConfigError) return error.problems;
        throw error;
      }
      throw new Error("accepted");
    };
    expect(problems(() => parseListenerConfig(["--require-signatures"], base))).toEqual([
      "--require-signatures: signatures are required but no trusted key is given (set KUBE_PICO_CD_TRUSTED_KEYS to the public key printed by 'publish keygen')",
    ]);
    expect(problems(() => parseListenerConfig([], { ...base, KUBE_PICO_CD_TRUSTED_KEYS: "/nonexistent.pem" }))[0]).toStartWith(
      "KUBE_PICO_CD_TRUSTED_KEYS (item 1): cannot read /nonexistent.pem: ",
    );
  });
});

describe("signatures and apps", () => {
  const { key, publicKeyPem } = signingKey();
  const trusted = trustedOf(publicKeyPem);

  // Signed before messages named apps, and not to be regenerated: it proves that a message
  // without an app still verifies, i.e. that its signed bytes did not change.
  const vectorPublicKey = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAzDxleP5cqDp0aLTwowQFiHw7Q61Byu09jBz0METRWxc=\n-----END PUBLIC KEY-----\n";
  const vectorBody =
    '{"kind":"kube-pico-cd.bundle","version":1,"build":{"id":"abc-1-1","timestampMs":1700000000000,"commit":"abc","ref":"refs/heads/main"},"target":"prod",' +
    '"manifests":{"encoding":"gzip+base64","data":"H4sIAAAAAAACAzWKqxKAIBBF/+VmipVqtlocw6Krs6PCDvgIDv8uBON5DC9IpeeYJHhY3A0MZjoJ9sUU9hCLdPvFyAab+LlgG/wia0da1oNP+ndPB5dMWkOFpDRV87BDzuMHdzbGh2wAAAA=",' +
    '"sha256":"e560be638abf1d281e5259357f1ed0c1b14ca846e70852d51e30630d31f691ea","objects":1,"bytes":108},' +
    '"signature":{"algorithm":"ed25519","keyId":"4c413edfe5f3cf97","value":"ZvWfC353PpHmeXmLCGDgItPqiT9l5f28DnOkaVVpJWyY6oEZiHYgHx1LrEH8d6+fMM6OWhLgOgXCIi2ArLt/Dg=="}}';

  test("a message signed before apps existed still verifies, before and after decoding, and is the default app's", () => {
    const vectorKeys = trustedOf(vectorPublicKey);
    const decoded = decodeMessage(vectorBody, { checkEnvelope: (envelope) => checkEnvelopeSignature(envelope, vectorKeys) });
    expect(decoded.app).toBe("default");
    expect(decoded.signature?.keyId).toBe("4c413edfe5f3cf97");
    expect(() => checkSignature(decoded, vectorKeys)).not.toThrow();
  });

  test("the fixed vector fails once any covered field changes, so the check above can fail", () => {
    const vectorKeys = trustedOf(vectorPublicKey);
    for (const change of [(m: Record<string, any>) => (m.app = "shop"), (m: Record<string, any>) => (m.target = "staging")]) {
      expect(rejection(() => checkSignature(decodeMessage(edited(vectorBody, change)), vectorKeys)).reason).toBe("bad-signature");
    }
  });

  test("a message signed with an app verifies, before and after decoding", () => {
    const body = signedBody(key, "prod", "shop-api");
    expect(decodeMessage(body, { checkEnvelope: (envelope) => checkEnvelopeSignature(envelope, trusted) }).app).toBe("shop-api");
    expect(() => checkSignature(decodeMessage(body), trusted)).not.toThrow();
  });

  test("a changed, removed or added app fails verification as bad-signature, before and after decoding", () => {
    const withApp = signedBody(key, undefined, "shop");
    const withoutApp = signedBody(key);
    const tampered = [
      edited(withApp, (m) => (m.app = "payments")),
      edited(withApp, (m) => delete m.app),
      edited(withApp, (m) => (m.app = "default")),
      edited(withoutApp, (m) => (m.app = "shop")),
    ];
    for (const body of tampered) {
      expect(rejection(() => checkSignature(decodeMessage(body), trusted)).reason).toBe("bad-signature");
      expect(rejection(() => decodeMessage(body, { checkEnvelope: (envelope) => checkEnvelopeSignature(envelope, trusted) })).reason).toBe("bad-signature");
    }
  });

  test("naming the default app in a signed body without an app changes nothing it means, and verifies", () => {
    const body = edited(signedBody(key), (m) => (m.app = "default"));
    expect(() => decodeMessage(body, { checkEnvelope: (envelope) => checkEnvelopeSignature(envelope, trusted) })).not.toThrow();
  });
});

describe("checkEnvelopeSignature() as decodeMessage()'s checkEnvelope", () => {
  const { key, publicKeyPem } = signingKey();
  const trusted = trustedOf(publicKeyPem);
  const checkEnvelope = (envelope: Parameters<typeof checkEnvelopeSignature>[0]) => checkEnvelopeSignature(envelope, trusted);
  /** `body` with manifests.data replaced by something that is not gzip: only a check before inflating can name another reason. */
  const uninflatable = (body: string) => edited(body, (m) => (m.manifests.data = "AAAA"));

  test("decodeMessage() accepts a signed body with its envelope checked", () => {
    expect(decodeMessage(signedBody(key, "prod"), { checkEnvelope }).target).toBe("prod");
  });

  test("decodeMessage() refuses an unsigned body as unsigned without inflating it", () => {
    const r = rejection(() => decodeMessage(uninflatable(encodeMessage({ build, objects }).body), { checkEnvelope }));
    expect(r).toEqual({ reason: "unsigned", message: `Rejected message: build "abc-1-1" is not signed, and this listener applies only bundles signed by a trusted key (${key.keyId})` });
  });

  test("decodeMessage() refuses a legacy body as unsigned without parsing its YAML", () => {
    const legacy = JSON.stringify({ data: { BUILD_TIMESTAMP: "1700000000", COMMIT_HASH: "abc" }, manifests: "{{{{" });
    expect(rejection(() => decodeMessage(legacy, { checkEnvelope }))).toEqual({
      reason: "unsigned",
      message: `Rejected message: build "abc" is not signed (a legacy message cannot be signed), and this listener applies only bundles signed by a trusted key (${key.keyId})`,
    });
  });

  test("decodeMessage() refuses an untrusted key as unknown-key without inflating", () => {
    const other = signingKey();
    expect(rejection(() => decodeMessage(uninflatable(signedBody(other.key)), { checkEnvelope })).reason).toBe("unknown-key");
  });

  test("decodeMessage() refuses a changed signed field (a declared size, a count, the digest) as bad-signature without inflating", () => {
    for (const change of [(m: any) => (m.manifests.bytes += 1), (m: any) => (m.manifests.objects += 1), (m: any) => (m.manifests.sha256 = "0".repeat(64))]) {
      expect(rejection(() => decodeMessage(uninflatable(edited(signedBody(key), change)), { checkEnvelope })).reason).toBe("bad-signature");
    }
  });

  test("checkEnvelopeSignature() refuses a v1 envelope without its manifests fields as bad-signature", () => {
    const signature = signFields({ build, manifests: { encoding: "gzip+base64", sha256: "a".repeat(64), objects: 1, bytes: 2 } }, key);
    expect(rejection(() => checkEnvelopeSignature({ format: "v1", build, signature }, trusted)).reason).toBe("bad-signature");
  });
});
