/** Workload objects for the health tests: they really roll out on the test environment's kwok Node. */
import type { KubeObject } from "../../lib/manifests/bundle.ts";

export interface DeploymentOptions {
  replicas?: number;
  /** A nodeSelector no Node matches keeps every Pod Pending, so the rollout never completes. */
  unschedulable?: boolean;
  progressDeadlineSeconds?: number;
  image?: string;
  annotations?: Record<string, string>;
}

export function deployment(namespace: string, name: string, options: DeploymentOptions = {}): KubeObject {
  const { replicas = 1, unschedulable = false, progressDeadlineSeconds, image = "example.invalid/app:1", annotations } = options;
  return {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name, namespace, ...(annotations ? { annotations } : {}) },
    spec: {
      replicas,
      ...(progressDeadlineSeconds === undefined ? {} : { progressDeadlineSeconds }),
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels: { app: name } },
        spec: {
          containers: [{ name: "app", image }],
          ...(unschedulable ? { nodeSelector: { "kube-pico-cd.test/no-such-node": "true" } } : {}),
        },
      },
    },
  } as KubeObject;
}

/** A Deployment the API server refuses (no selector, no containers): its apply fails every time. */
export function brokenDeployment(namespace: string): KubeObject {
  return { apiVersion: "apps/v1", kind: "Deployment", metadata: { name: "broken", namespace }, spec: { template: { spec: { containers: [] } } } } as unknown as KubeObject;
}
