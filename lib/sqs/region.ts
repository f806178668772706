/**
 * Regions of queues. AWS signs every request for one region (the credential scope
 * `…/<region>/sqs/aws4_request`), and a queue only answers requests signed for its own. A
 * queue URL of AWS names its region, so each queue is sent to with a client of that region;
 * other URLs (a custom endpoint such as ElasticMQ, a proxy) and queues given by name use the
 * configured region.
 */
import { SQSClient, type SQSClientConfig } from "@aws-sdk/client-sqs";

/** Host names of AWS queue URLs, each with the region in its first group. */
const AWS_QUEUE_HOSTS: readonly RegExp[] = [
  // https://sqs.eu-west-1.amazonaws.com/… (and FIPS, China, dual-stack)
  /^sqs(?:-fips)?\.([a-z]{2}(?:-[a-z]+)+-\d+)\.amazonaws\.com(?:\.cn)?$/,
  /^sqs(?:-fips)?\.([a-z]{2}(?:-[a-z]+)+-\d+)\.api\.aws$/,
  // The legacy form: https://eu-west-1.queue.amazonaws.com/…
  /^([a-z]{2}(?:-[a-z]+)+-\d+)\.queue\.amazonaws\.com(?:\.cn)?$/,
  // Interface VPC endpoints: https://vpce-….sqs.eu-west-1.vpce.amazonaws.com/…
  /\.sqs\.([a-z]{2}(?:-[a-z]+)+-\d+)\.vpce\.amazonaws\.com(?:\.cn)?$/,
];

/** The legacy global host, which is us-east-1's. */
const LEGACY_GLOBAL_HOST = "queue.amazonaws.com";

/**
 * The region an AWS queue URL names: `https://sqs.<region>.amazonaws.com/<account>/<name>`,
 * the legacy `https://<region>.queue.amazonaws.com/…` (and `queue.amazonaws.com`, us-east-1),
 * FIPS, China, dual-stack and VPC endpoint hosts. Undefined for any other URL (a custom
 * endpoint) and for a queue name.
 */
export function regionOfQueueUrl(queue: string): string | undefined {
  let host: string;
  try {
    host = new URL(queue).hostname.toLowerCase();
  } catch {
    return undefined;
  }
  if (host === LEGACY_GLOBAL_HOST) return "us-east-1";
  for (const pattern of AWS_QUEUE_HOSTS) {
    const region = pattern.exec(host)?.[1];
    if (region !== undefined) return region;
  }
  return undefined;
}

/**
 * The region requests to `queue` (a URL, a name, or undefined for "no queue in particular")
 * are signed for: the one its URL names, else `configured`; undefined leaves it to the AWS
 * SDK's own chain (AWS_REGION, the profile).
 */
export function signingRegion(queue: string | undefined, configured: string | undefined): string | undefined {
  return (queue === undefined ? undefined : regionOfQueueUrl(queue)) ?? configured;
}

/** Options of {@link createSqsClients}. */
export interface SqsClientsOptions {
  /** The configured region (--region); absent: the AWS SDK's chain. */
  region?: string | undefined;
  /**
   * The endpoint of every client (--endpoint-url): requests go there whatever the region,
   * and are still signed for the queue's region. Absent: AWS's endpoint of each region.
   */
  endpoint?: string | undefined;
  /** Makes one client. Default `new SQSClient(config)`. */
  create?: (config: SQSClientConfig) => SQSClient;
}

/** One SQS client per signing region, made on first use. */
export interface SqsClients {
  /** The client for requests to `queue` (URL or name; undefined: the configured region's). */
  forQueue(queue: string | undefined): SQSClient;
  /** Destroys every client made so far. */
  destroy(): void;
}

/** The clients of one program run: one per region that a queue's requests are signed for. */
export function createSqsClients(options: SqsClientsOptions = {}): SqsClients {
  const { region, endpoint, create = (config) => new SQSClient(config) } = options;
  const clients = new Map<string, SQSClient>();
  return {
    forQueue(queue) {
      const signing = signingRegion(queue, region);
      const key = signing ?? "";
      let client = clients.get(key);
      if (client === undefined) {
        client = create({ ...(signing === undefined ? {} : { region: signing }), ...(endpoint === undefined ? {} : { endpoint }) });
        clients.set(key, client);
      }
      return client;
    },
    destroy() {
      for (const client of clients.values()) client.destroy();
      clients.clear();
    },
  };
}
