/**
 * Ed25519 signatures of version 1 bundles: the exact bytes that are signed, key pairs, key
 * ids, signing and checking one signature. Which keys a listener trusts, and what it does
 * with an unsigned or badly signed message, is lib/listener/trust.ts.
 *
 * The signed bytes are specified in docs/protocol.md ("Signature") so that a publisher in
 * any language can sign: a fixed header line, then one line per covered field, in a fixed
 * order, each `name=<UTF-8 byte length>:<value>` or `name=-` when the field is absent.
 * Length-prefixed values make the string unambiguous whatever the values hold (newlines,
 * `=`, `:`), and the fixed header keeps these bytes from ever meaning anything else.
 *
 * The `app` line came later: it is written only for a message that names an app other than
 * the default one, so every message without one signs exactly the bytes it signed before,
 * and signatures made then still verify. The `targets` line (a fleet's message) is written
 * the same way: only when the body has `targets`.
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from "node:crypto";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { errorMessage } from "../errors.ts";
import { DEFAULT_APP } from "./app.ts";
import { MANIFESTS_ENCODING, MESSAGE_KIND, MESSAGE_VERSION, type MessageSignature, type SignedFields } from "./message.ts";

/** The only signature algorithm of version 1. */
export const SIGNATURE_ALGORITHM = "ed25519";

/** The first line of the signed bytes (with its newline). */
export const SIGNED_BYTES_HEADER = "kube-pico-cd signed bundle v1\n";

/** Length of an Ed25519 signature in bytes. */
export const SIGNATURE_BYTES = 64;

/** A key id: the first 16 lowercase hex digits of the SHA-256 of the public key's SPKI DER. */
export const KEY_ID_PATTERN = /^[0-9a-f]{16}$/;

/** The optional build fields, in the order they are signed. */
const SIGNED_BUILD_FIELDS = ["commit", "ref", "repository", "runId", "runAttempt", "actor", "url"] as const;

/**
 * The exact bytes an Ed25519 signature is made over (UTF-8), for `fields` signed by
 * `keyId`. Every field of a version 1 body is covered except `manifests.data`, which is
 * covered through `manifests.sha256`; the algorithm and key id are covered too, so neither
 * can be swapped without breaking the signature. `app` is one line after `version`, present
 * only when `fields.app` is an app other than {@link DEFAULT_APP} (which signs as no app).
 *
 * @example
 * signedBytes({ build: { id: "b1", timestampMs: 1700000000000 }, manifests: { encoding: "gzip+base64", sha256: "ab…", objects: 1, bytes: 90 } }, "0123456789abcdef")
 * // "kube-pico-cd signed bundle v1\nalgorithm=7:ed25519\nkeyId=16:0123456789abcdef\nkind=19:kube-pico-cd.bundle\nversion=1:1\n
 * //  build.id=2:b1\nbuild.timestampMs=13:1700000000000\nbuild.commit=-\n…\ntarget=-\nmanifests.encoding=11:gzip+base64\n…"
 */
export function signedBytes(fields: SignedFields, keyId: string): Buffer {
  const lines: [string, string | undefined][] = [
    ["algorithm", SIGNATURE_ALGORITHM],
    ["keyId", keyId],
    ["kind", MESSAGE_KIND],
    ["version", String(MESSAGE_VERSION)],
    // Only when named: without it these are the bytes every signature before apps covered.
    ...(fields.app === undefined || fields.app === DEFAULT_APP ? [] : [["app", fields.app] as [string, string]]),
    // Likewise only when present: a plan request must never verify as a deploy.
    ...(fields.mode === undefined ? [] : [["mode", fields.mode] as [string, string]]),
    ["build.id", fields.build.id],
    ["build.timestampMs", String(fields.build.timestampMs)],
    ...SIGNED_BUILD_FIELDS.map((name): [string, string | undefined] => [`build.${name}`, fields.build[name]]),
    ["target", fields.target],
    // Only when present, as app: a message without it signs the bytes it signed before fleets.
    ...(fields.targets === undefined ? [] : [["targets", fields.targets.join(",")] as [string, string]]),
    ["manifests.encoding", fields.manifests.encoding],
    ["manifests.sha256", fields.manifests.sha256],
    ["manifests.objects", String(fields.manifests.objects)],
    ["manifests.bytes", String(fields.manifests.bytes)],
    ...(fields.sources === undefined
      ? []
      : [
          ["sources.sha256", fields.sources.sha256] as [string, string],
          ["sources.count", String(fields.sources.count)] as [string, string],
        ]),
  ];
  let text = SIGNED_BYTES_HEADER;
  for (const [name, value] of lines) {
    text += value === undefined ? `${name}=-\n` : `${name}=${Buffer.byteLength(value, "utf8")}:${value}\n`;
  }
  return Buffer.from(text, "utf8");
}

/** The key id of an Ed25519 public key: first 16 hex digits of SHA-256 of its SPKI DER. */
export function keyIdOf(publicKey: KeyObject): string {
  const der = publicKey.export({ type: "spki", format: "der" });
  return createHash("sha256").update(der).digest("hex").slice(0, 16);
}

/** A new key pair, as PEM text (PKCS #8 private key, SPKI public key), with its key id. */
export interface SigningKeyPair {
  privateKeyPem: string;
  publicKeyPem: string;
  keyId: string;
}

/** Generates an Ed25519 key pair. */
export function generateSigningKeyPair(): SigningKeyPair {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  return {
    privateKeyPem: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
    publicKeyPem: publicKey.export({ type: "spki", format: "pem" }).toString(),
    keyId: keyIdOf(publicKey),
  };
}

/** A private key ready to sign, with the id of its public half. */
export interface SigningKey {
  privateKey: KeyObject;
  keyId: string;
}

/**
 * Reads an Ed25519 private key from PEM text (`-----BEGIN PRIVATE KEY-----`, PKCS #8).
 * Returns what is wrong instead when it is not one; the problem never quotes the text.
 */
export function parseSigningKey(pem: string): SigningKey | { problem: string } {
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey({ key: pem, format: "pem" });
  } catch {
    return { problem: "is not a PEM private key (expected -----BEGIN PRIVATE KEY----- as printed by 'publish keygen')" };
  }
  if (privateKey.asymmetricKeyType !== "ed25519") {
    return { problem: `is a ${privateKey.asymmetricKeyType ?? "unknown"} key, not an Ed25519 key` };
  }
  return { privateKey, keyId: keyIdOf(createPublicKey(privateKey)) };
}

/**
 * Reads every Ed25519 public key (`-----BEGIN PUBLIC KEY-----`, SPKI) in `text`, which may
 * hold several PEM blocks and other text around them. Returns the keys and one problem per
 * block that is not an Ed25519 public key.
 */
export function parsePublicKeys(text: string): { keys: KeyObject[]; problems: string[] } {
  const keys: KeyObject[] = [];
  const problems: string[] = [];
  const blocks = text.match(/-----BEGIN [A-Z0-9 ]+-----[\s\S]*?-----END [A-Z0-9 ]+-----/g) ?? [];
  blocks.forEach((block, index) => {
    const label = /^-----BEGIN ([A-Z0-9 ]+)-----/.exec(block)?.[1] ?? "";
    const which = `PEM block ${index + 1}`;
    if (label !== "PUBLIC KEY") {
      problems.push(`${which} is a ${label}, not a PUBLIC KEY${label.includes("PRIVATE") ? " (the listener needs the public key only; never give it the private key)" : ""}`);
      return;
    }
    let key: KeyObject;
    try {
      key = createPublicKey({ key: block, format: "pem" });
    } catch {
      problems.push(`${which} is not a valid public key`);
      return;
    }
    if (key.asymmetricKeyType !== "ed25519") problems.push(`${which} is a ${key.asymmetricKeyType ?? "unknown"} key, not an Ed25519 key`);
    else keys.push(key);
  });
  if (blocks.length === 0) problems.push("holds no PEM public key (-----BEGIN PUBLIC KEY-----)");
  return { keys, problems };
}

/** Signs `fields` with `key`: the `signature` field of the body. */
export function signFields(fields: SignedFields, key: SigningKey): MessageSignature {
  const value = sign(null, signedBytes(fields, key.keyId), key.privateKey).toString("base64");
  return { algorithm: SIGNATURE_ALGORITHM, keyId: key.keyId, value };
}

/**
 * Checks a signature's form: what is wrong with it, or undefined when it is a well-formed
 * Ed25519 signature (algorithm, a key id of {@link KEY_ID_PATTERN}, 64 bytes of base64).
 */
export function signatureFormProblem(signature: MessageSignature): string | undefined {
  if (signature.algorithm !== SIGNATURE_ALGORITHM) return `algorithm ${JSON.stringify(signature.algorithm)} is not ${SIGNATURE_ALGORITHM}`;
  if (!KEY_ID_PATTERN.test(signature.keyId)) {
    return `keyId ${JSON.stringify(signature.keyId.slice(0, 64))} is not 16 lowercase hex digits`;
  }
  const length = Buffer.from(signature.value, "base64").length;
  if (length !== SIGNATURE_BYTES) return `value decodes to ${length} bytes, not ${SIGNATURE_BYTES}`;
  return undefined;
}

/** True when `signature` (well-formed) is `publicKey`'s signature of `fields`. Never throws. */
export function signatureMatches(fields: SignedFields, signature: MessageSignature, publicKey: KeyObject): boolean {
  try {
    return verify(null, signedBytes(fields, signature.keyId), publicKey, Buffer.from(signature.value, "base64"));
  } catch {
    return false;
  }
}

/** The signed fields of a decoded version 1 message (what {@link signedBytes} needs). */
export function signedFieldsOf(decoded: {
  app?: string;
  mode?: SignedFields["mode"];
  build: SignedFields["build"];
  target?: string;
  targets?: readonly string[];
  digest: string;
  objects: readonly unknown[];
  payloadBytes?: number;
  sources?: { list: readonly string[]; sha256: string };
}): SignedFields {
  return {
    ...(decoded.app === undefined || decoded.app === DEFAULT_APP ? {} : { app: decoded.app }),
    ...(decoded.mode === undefined ? {} : { mode: decoded.mode }),
    build: decoded.build,
    ...(decoded.target === undefined ? {} : { target: decoded.target }),
    ...(decoded.targets === undefined ? {} : { targets: [...decoded.targets] }),
    manifests: { encoding: MANIFESTS_ENCODING, sha256: decoded.digest, objects: decoded.objects.length, bytes: decoded.payloadBytes ?? -1 },
    ...(decoded.sources === undefined ? {} : { sources: { sha256: decoded.sources.sha256, count: decoded.sources.list.length } }),
  };
}

/** The variable holding the signing key's PEM text (a CI secret). */
export const SIGNING_KEY_ENV = "KUBE_PICO_CD_SIGNING_KEY";

/**
 * The signing key of a publish run: from `file` (PEM, read relative to `cwd`) when given,
 * else from `pem` (the PEM text itself, as {@link SIGNING_KEY_ENV} holds it); undefined
 * when neither is given. `fileOrigin` names where `file` came from in the problem.
 */
export function loadSigningKey(options: { file?: string; fileOrigin?: string; pem?: string; cwd: string }): SigningKey | { problem: string } | undefined {
  const { file, fileOrigin = "--signing-key-file", pem, cwd } = options;
  if (file !== undefined) {
    let text: string;
    try {
      text = readFileSync(resolve(cwd, file), "utf8");
    } catch (error) {
      return { problem: `${fileOrigin}: cannot read ${file}: ${errorMessage(error)}` };
    }
    const key = parseSigningKey(text);
    return "problem" in key ? { problem: `${fileOrigin}: ${file} ${key.problem}` } : key;
  }
  if (pem === undefined || pem.trim() === "") return undefined;
  const key = parseSigningKey(pem);
  return "problem" in key ? { problem: `${SIGNING_KEY_ENV}: ${key.problem}` } : key;
}

/** What `publish --keygen` prints: both halves of a new key pair and where each goes. */
export function keygenText(pair: SigningKeyPair): string {
  return [
    `Generated an Ed25519 signing key pair; key id ${pair.keyId}.`,
    "",
    "1. The PRIVATE key signs bundles. Store it as a CI secret, never in the repository, and",
    `   hand it to publish as ${SIGNING_KEY_ENV} (GitHub Actions: a secret passed to the`,
    "   action's signing-key input), or in a file given with --signing-key-file:",
    "",
    pair.privateKeyPem.trimEnd(),
    "",
    "2. The PUBLIC key verifies them. Give it to each cluster's listener, e.g. in a ConfigMap",
    "   mounted as a directory and KUBE_PICO_CD_TRUSTED_KEYS=/etc/kube-pico-cd/keys, or as",
    "   the variable's value itself. Add --require-signatures so a listener without keys",
    "   refuses to start:",
    "",
    pair.publicKeyPem.trimEnd(),
    "",
    "To rotate: trust the new public key next to the old one, switch CI to the new private",
    "key, then remove the old public key (docs/security.md).",
    "",
  ].join("\n");
}
