/**
 * Manifests in, message body out: what `publish` sends, built while the files are read.
 *
 * Each object becomes the payload's bytes as soon as its file is parsed
 * (lib/manifests/bundle.ts `readBundle`, lib/wire/payload.ts `createPayloadWriter`), so a
 * large bundle is never held as objects and gzip runs beside the parsing. bench/publish-bundle.ts
 * measures exactly this function.
 */
import { readBundle, type CollectBundleOptions } from "../manifests/bundle.ts";
import { encodeMessage, type EncodedMessage } from "../wire/message.ts";
import { createPayloadWriter } from "../wire/payload.ts";
import type { ObjectKind } from "./summary.ts";

/** The fields of the message other than its objects (lib/wire/message.ts `encodeMessage`). */
export type MessageFields = Omit<Parameters<typeof encodeMessage>[0], "objects" | "payload" | "sources">;

/** The result of {@link bundleMessage}. */
export interface BundledMessage {
  encoded: EncodedMessage;
  /** What was read, in order, as shown to the user. */
  inputs: string[];
  /** One line per Helm hook applied or left out. */
  notices: string[];
  /** The kind and namespace of each object, in bundle order (for publish's summary). */
  kinds: ObjectKind[];
}

/**
 * Reads the manifests under `paths` as {@link readBundle} does and encodes them, with the
 * source of each object, into one message with `fields`.
 *
 * @throws {BundleError} or KubectlError as {@link readBundle}; TypeError for invalid `fields`.
 */
export async function bundleMessage(paths: readonly string[], bundleOptions: CollectBundleOptions, fields: MessageFields): Promise<BundledMessage> {
  const payload = createPayloadWriter();
  const sources: string[] = [];
  const kinds: ObjectKind[] = [];
  let summary;
  try {
    summary = await readBundle(paths, {
      ...bundleOptions,
      onItem: (item) => {
        payload.add(item.object);
        sources.push(item.source);
        kinds.push({ kind: item.object.kind, namespace: item.object.metadata.namespace });
      },
    });
  } catch (error) {
    payload.discard();
    throw error;
  }
  // Where each object came from: the listener's errors and plans name the file.
  const encoded = encodeMessage({ ...fields, payload: await payload.finish(), sources });
  return { encoded, inputs: summary.inputs, notices: summary.notices, kinds };
}
