/**
 * Which signatures the listener trusts: the public keys it is given (PEM text, files or
 * directories of them), and the check of a message's signed envelope against them, before its
 * manifests are inflated. With no keys, every message is trusted as before (the listener warns
 * at start-up); with keys, only messages signed by one of them are applied, and several keys
 * may be trusted at once so that a key can be rotated without downtime (docs/security.md).
 */
import type { KeyObject } from "node:crypto";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { errorMessage, MessageRejectedError } from "../errors.ts";
import type { DecodedMessage, MessageEnvelope, SignedFields } from "../wire/message.ts";
import { keyIdOf, parsePublicKeys, signatureFormProblem, signatureMatches, signedFieldsOf } from "../wire/signature.ts";

/** Trusted public keys by key id. Empty: signatures are not checked. */
export type TrustedKeys = ReadonlyMap<string, KeyObject>;

/** File name endings read from a directory of trusted keys. */
export const TRUSTED_KEY_FILE_ENDINGS: readonly string[] = [".pem", ".pub"];

/**
 * Loads trusted keys from `items`, each one of: PEM text holding one or more public keys
 * (`-----BEGIN PUBLIC KEY-----`), the path of a file holding such text, or the path of a
 * directory whose `*.pem` and `*.pub` files hold it (a mounted ConfigMap, say; other entries
 * are skipped). Returns the keys by id, and one problem per item or PEM block that is not a
 * readable Ed25519 public key, each starting with `where(index)`.
 */
export function loadTrustedKeys(items: readonly string[], where: (index: number) => string = (i) => `trusted key ${i + 1}`): { keys: Map<string, KeyObject>; problems: string[] } {
  const keys = new Map<string, KeyObject>();
  const problems: string[] = [];
  const add = (text: string, what: string) => {
    const parsed = parsePublicKeys(text);
    for (const problem of parsed.problems) problems.push(`${what} ${problem}`);
    for (const key of parsed.keys) keys.set(keyIdOf(key), key);
  };
  items.forEach((item, index) => {
    const name = where(index);
    if (item.includes("-----BEGIN")) {
      add(item, `${name}: PEM text`);
      return;
    }
    let isDirectory: boolean;
    try {
      isDirectory = statSync(item).isDirectory();
    } catch (error) {
      problems.push(`${name}: cannot read ${item}: ${errorMessage(error)} (give PEM text, a file or a directory)`);
      return;
    }
    try {
      if (!isDirectory) {
        add(readFileSync(item, "utf8"), `${name}: ${item}`);
        return;
      }
      const files = readdirSync(item)
        .filter((entry) => !entry.startsWith(".") && TRUSTED_KEY_FILE_ENDINGS.some((ending) => entry.endsWith(ending)))
        .sort();
      if (files.length === 0) problems.push(`${name}: the directory ${item} holds no ${TRUSTED_KEY_FILE_ENDINGS.map((e) => `*${e}`).join(" or ")} file`);
      for (const file of files) add(readFileSync(join(item, file), "utf8"), `${name}: ${join(item, file)}`);
    } catch (error) {
      problems.push(`${name}: cannot read ${item}: ${errorMessage(error)}`);
    }
  });
  return { keys, problems };
}

function quoted(text: string): string {
  return JSON.stringify(text.length > 200 ? `${text.slice(0, 200)}…` : text);
}

/**
 * Checks that a message's envelope is signed by one of `trusted`; does nothing when `trusted`
 * is empty. This is `decodeMessage`'s `checkEnvelope`: it runs before the manifests are
 * inflated, since the signed fields fix their digest, size and object count, so an unsigned or
 * untrusted message costs no inflating and no parsing. A legacy message cannot be signed, so
 * it is rejected as unsigned when keys are configured.
 *
 * @throws {MessageRejectedError} with reason `unsigned`, `malformed-signature`,
 * `unknown-key` or `bad-signature`.
 */
export function checkEnvelopeSignature(envelope: MessageEnvelope, trusted: TrustedKeys): void {
  if (trusted.size === 0) return;
  const build = `build ${quoted(envelope.build.id)}`;
  const ids = [...trusted.keys()].join(", ");
  const { signature } = envelope;
  if (signature === undefined) {
    const legacy = envelope.format === "legacy" ? " (a legacy message cannot be signed)" : "";
    throw new MessageRejectedError("unsigned", `Rejected message: ${build} is not signed${legacy}, and this listener applies only bundles signed by a trusted key (${ids})`);
  }
  const problem = signatureFormProblem(signature);
  if (problem !== undefined) throw new MessageRejectedError("malformed-signature", `Rejected message: the signature of ${build} is malformed: ${problem}`);
  const key = trusted.get(signature.keyId);
  if (key === undefined) {
    throw new MessageRejectedError("unknown-key", `Rejected message: ${build} is signed by key ${signature.keyId}, which this listener does not trust (trusted: ${ids})`);
  }
  const { manifests } = envelope;
  const fields: SignedFields | undefined =
    manifests === undefined
      ? undefined
      : {
          ...(envelope.app === undefined ? {} : { app: envelope.app }),
          ...(envelope.mode === undefined ? {} : { mode: envelope.mode }),
          build: envelope.build,
          ...(envelope.target === undefined ? {} : { target: envelope.target }),
          ...(envelope.targets === undefined ? {} : { targets: envelope.targets }),
          manifests,
          ...(envelope.sources === undefined ? {} : { sources: envelope.sources }),
        };
  if (fields === undefined || !signatureMatches(fields, signature, key)) {
    throw new MessageRejectedError(
      "bad-signature",
      `Rejected message: the signature of ${build} by key ${signature.keyId} does not match: the manifests or a signed field (app, mode, build, target, targets, manifests, sources) changed after signing`,
    );
  }
}

/**
 * Checks that an already decoded message is signed by one of `trusted` (as
 * {@link checkEnvelopeSignature}, for a message decoded without it); does nothing when
 * `trusted` is empty.
 *
 * @throws {MessageRejectedError} with reason `unsigned`, `malformed-signature`,
 * `unknown-key` or `bad-signature`.
 */
export function checkSignature(decoded: DecodedMessage, trusted: TrustedKeys): void {
  checkEnvelopeSignature(
    {
      format: decoded.format,
      app: decoded.app,
      build: decoded.build,
      ...(decoded.target === undefined ? {} : { target: decoded.target }),
      ...(decoded.targets === undefined ? {} : { targets: decoded.targets }),
      ...(decoded.signature === undefined ? {} : { signature: decoded.signature }),
      ...(decoded.mode === undefined ? {} : { mode: decoded.mode }),
      ...(decoded.sources === undefined ? {} : { sources: { sha256: decoded.sources.sha256, count: decoded.sources.list.length } }),
      ...(decoded.payloadBytes === undefined ? {} : { manifests: signedFieldsOf(decoded).manifests }),
    },
    trusted,
  );
}
