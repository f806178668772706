/**
 * Builds and sends real version 1 messages (with lib/wire/message.ts, as publish does) so listener
 * tests control build timestamps and contents exactly.
 */
import { randomBytes } from "node:crypto";
import { SendMessageCommand } from "@aws-sdk/client-sqs";
import type { KubeObject } from "../../lib/manifests/bundle.ts";
import { encodeMessage, type BuildInfo } from "../../lib/wire/message.ts";
import { sqsClient } from "../env/testenv.ts";

export function configMap(namespace: string, name: string, data: Record<string, string>): KubeObject {
  return { apiVersion: "v1", kind: "ConfigMap", metadata: { name, namespace }, data } as KubeObject;
}

export function namespaceObject(name: string): KubeObject {
  return { apiVersion: "v1", kind: "Namespace", metadata: { name } } as KubeObject;
}

export interface SentBundle {
  messageId: string;
  body: string;
  digest: string;
  build: BuildInfo;
}

export function bundleBody(objects: readonly KubeObject[], build: Partial<BuildInfo> & { timestampMs: number }, target?: string, app?: string) {
  const fullBuild: BuildInfo = { id: build.id ?? `build-${build.timestampMs}-${randomBytes(3).toString("hex")}`, ...build };
  return { ...encodeMessage({ build: fullBuild, objects, ...(target === undefined ? {} : { target }), ...(app === undefined ? {} : { app }) }), build: fullBuild };
}

/**
 * Sends a bundle of app `app`, as publish --app does; on a FIFO queue (`fifo`) in the app's
 * message group, deduplicated by build.
 */
export async function sendAppBundle(queueUrl: string, app: string, objects: readonly KubeObject[], build: Partial<BuildInfo> & { timestampMs: number }, options: { fifo?: boolean } = {}): Promise<SentBundle> {
  const encoded = bundleBody(objects, build, undefined, app);
  const sqs = await sqsClient();
  const sent = await sqs.send(
    new SendMessageCommand({
      QueueUrl: queueUrl,
      MessageBody: encoded.body,
      ...(options.fifo ? { MessageGroupId: app, MessageDeduplicationId: `${app}-${encoded.build.id}` } : {}),
    }),
  );
  return { messageId: sent.MessageId!, body: encoded.body, digest: encoded.digest, build: encoded.build };
}

/** Sends a bundle of `objects` as build `build` to `queueUrl`. */
export async function sendBundle(queueUrl: string, objects: readonly KubeObject[], build: Partial<BuildInfo> & { timestampMs: number }, target?: string): Promise<SentBundle> {
  const encoded = bundleBody(objects, build, target);
  return { ...(await sendRaw(queueUrl, encoded.body)), body: encoded.body, digest: encoded.digest, build: encoded.build };
}

/** Sends any body, valid or not. */
export async function sendRaw(queueUrl: string, body: string): Promise<{ messageId: string }> {
  const sqs = await sqsClient();
  const sent = await sqs.send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: body }));
  return { messageId: sent.MessageId! };
}

/** Messages still in the queue, visible or in flight. */
export async function queueDepth(queueUrl: string): Promise<{ visible: number; inFlight: number; delayed: number }> {
  const { GetQueueAttributesCommand } = await import("@aws-sdk/client-sqs");
  const sqs = await sqsClient();
  const { Attributes = {} } = await sqs.send(
    new GetQueueAttributesCommand({
      QueueUrl: queueUrl,
      AttributeNames: ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessagesDelayed"],
    }),
  );
  return {
    visible: Number(Attributes.ApproximateNumberOfMessages ?? 0),
    inFlight: Number(Attributes.ApproximateNumberOfMessagesNotVisible ?? 0),
    delayed: Number(Attributes.ApproximateNumberOfMessagesDelayed ?? 0),
  };
}
