/**
 * Manifests in, message body out: what `publish` sends, built while the files are read.
 *
 * Each object becomes the payload's bytes as soon as its file is parsed
 * (lib/manifests/bundle.ts `readBundle`, lib/wire/payload.ts `createPayloadWriter`), so a
 * large bundle is never held as objects, gzip runs beside the parsing, and a large bundle's
 * parsing is shared with a second thread (lib/manifests/parse-worker.ts). bench/publish-bundle.ts
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
  /** What did not go as it should but did not change the message (lib/manifests/bundle.ts `BundleSummary`). */
  warnings: string[];
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
      onItem: ({ json, source, kind, namespace }) => {
        payload.addJson(json);
        sources.push(source);
        kinds.push({ kind, namespace });
      },
    });
  } catch (error) {
    payload.discard();
    throw error;
  }
  // Where each object came from: the listener's errors and plans name the file.
  const encoded = encodeMessage({ ...fields, payload: await payload.finish(), sources });
  return { encoded, inputs: summary.inputs, notices: summary.notices, kinds, warnings: summary.warnings };
}
