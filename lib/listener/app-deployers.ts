/**
 * One listener, many apps: the batch handler that routes each batch to a deployer of its app,
 * and the drift passes of every app with a record.
 *
 * The consumer puts each message into the lane of its app (`laneOf`, from the body's `app`
 * field read without inflating: lib/wire/message.ts `peekApp`), so a lane's batch is of one
 * app. Each batch gets a deployer made for its app as the apps configuration says now
 * (lib/listener/scope.ts): its record, Lease and kept bundle (lib/listener/apps.ts), its
 * default namespace, and its scope on top of the listener-wide policy. Deployers keep nothing
 * between batches, so a configuration reload takes effect with the next batch.
 *
 * An app that the configuration refuses still gets its rejection recorded, in the default
 * app's record (outcomes name their app): an unknown name must not create records.
 */
import { DEFAULT_APP, appObjectName } from "./apps.ts";
import { createDeployer, type DeployerOptions } from "./deployer.ts";
import type { BatchHandler, ReceivedMessage } from "../sqs/consumer.ts";
import { checkPolicy, policyViolations, type Policy } from "./policy.ts";
import { checkAppScope, scopeFor, withDefaultNamespace, type AppScope } from "./scope.ts";
import type { AppsConfig } from "./apps-config.ts";
import { markObjects } from "./ownership.ts";
import { peekMessage, type DecodedMessage } from "../wire/message.ts";
import { createPlanner } from "./planner.ts";
import type { ResultMessage } from "../wire/result.ts";
import { MessageRejectedError } from "../errors.ts";
import type { KubeObject } from "../manifests/bundle.ts";
import type { DriftPassOptions } from "./drift.ts";
import { listRecords } from "./app-records.ts";
import type { KubeApi } from "../kube/api.ts";

/** The base names of the listener's own objects, from which each app's are made. */
export interface BaseNames {
  state: string;
  lock: string;
  bundle: string;
}

/** Options of {@link createAppHandler}. */
export interface AppHandlerOptions {
  /** What every app's deployer shares; the names, app, placement and admission are set per app. */
  deployer: Omit<DeployerOptions, "app" | "recordApp" | "stateName" | "lockName" | "bundleSecret" | "protectedBases" | "place" | "admit" | "markSearchNamespaces">;
  bases: BaseNames;
  /** The listener-wide policy (the flags): every app's ceiling. */
  policy: Policy;
  /** The apps configuration in force now; undefined without `--apps-config`. */
  appsConfig: () => AppsConfig | undefined;
  /** Plan requests (lib/listener/planner.ts): the deploy queue's name, and how to answer. */
  plans?: { queue: string; send: ((result: ResultMessage, message: ReceivedMessage) => Promise<boolean>) | undefined };
}

/** The lane of a message: its app's, or its app's plan lane for a plan request. */
export function laneOf(message: ReceivedMessage): string {
  const { app, plan } = peekMessage(message.body);
  return plan ? `plan:${app}` : app;
}

/** The namespaces an app's marks are searched in: its scope's, when they are names rather than globs. */
function searchNamespaces(scope: AppScope): readonly string[] | undefined {
  const namespaces = scope.policy.allowedNamespaces;
  return namespaces !== undefined && namespaces.every((n) => !/[*?]/.test(n)) ? namespaces : undefined;
}

/** The objects of `app` as they are applied: in its default namespace, with its mark. */
function prepared(objects: readonly KubeObject[], scope: AppScope, policy: Policy, instance: string): KubeObject[] {
  return markObjects(withDefaultNamespace(objects, scope.defaultNamespace, policy.clusterScopedKinds), { app: scope.app, instance });
}

/** The deployer options of `app` under the configuration in force now. */
export function appDeployerOptions(app: string, options: AppHandlerOptions): DeployerOptions {
  const { deployer, bases, policy } = options;
  const found = scopeFor(options.appsConfig(), app);
  const common = { ...deployer, app, protectedBases: bases };
  if ("refused" in found) {
    return {
      ...common,
      recordApp: DEFAULT_APP,
      stateName: bases.state,
      lockName: bases.lock,
      bundleSecret: bases.bundle,
      admit: () => {
        throw new MessageRejectedError("unknown-app", found.refused);
      },
    };
  }
  const { scope } = found;
  return {
    ...common,
    stateName: appObjectName(bases.state, app),
    lockName: appObjectName(bases.lock, app),
    bundleSecret: appObjectName(bases.bundle, app),
    place: (objects) => withDefaultNamespace(objects, scope.defaultNamespace, policy.clusterScopedKinds),
    admit: (decoded: DecodedMessage) => {
      // The lane was chosen from the body before decoding; the signed field decides.
      if (decoded.app !== app) throw new MessageRejectedError("schema", `Rejected message: its app reads as ${JSON.stringify(app)} before decoding and ${JSON.stringify(decoded.app)} after`);
      checkPolicy(decoded.objects, policy);
      checkAppScope(decoded, scope, policy.clusterScopedKinds);
    },
    markSearchNamespaces: searchNamespaces(scope),
  };
}

/** The consumer's handler: each batch (one app's, by lane) to a deployer of its app. */
export function createAppHandler(options: AppHandlerOptions): BatchHandler {
  return async (batch, signal) => {
    const { app, plan } = batch.length === 0 ? { app: DEFAULT_APP, plan: false } : peekMessage(batch[0]!.body);
    const deployer = appDeployerOptions(app, options);
    if (plan) return await createPlanner({ deployer, queue: options.plans?.queue ?? "", send: options.plans?.send })(batch, signal);
    return await createDeployer(deployer)(batch, signal);
  };
}

/** Options of {@link driftPassesOfApps}. */
export interface AppDriftOptions {
  api: KubeApi;
  namespace: string;
  bases: BaseNames;
  policy: Policy;
  appsConfig: () => AppsConfig | undefined;
  /** What every pass shares (kubectl, Lease duration, field manager, …). */
  pass: Omit<DriftPassOptions, "app" | "stateName" | "lockName" | "bundleSecret" | "prepare" | "scopeProblem" | "policy" | "api" | "namespace">;
}

/**
 * The drift passes of one round: one per app with a readable record that the configuration
 * in force allows, each re-applying that app's kept bundle as its deployer would apply it.
 */
export async function driftPassesOfApps(options: AppDriftOptions, signal: AbortSignal): Promise<DriftPassOptions[]> {
  const { api, namespace, bases, policy, appsConfig, pass } = options;
  const { records } = await listRecords({ api, namespace, base: bases.state, signal });
  const passes: DriftPassOptions[] = [];
  for (const listed of records) {
    const found = scopeFor(appsConfig(), listed.app);
    if ("refused" in found) continue;
    const { scope } = found;
    passes.push({
      ...pass,
      api,
      namespace,
      policy,
      app: listed.app,
      stateName: appObjectName(bases.state, listed.app),
      lockName: appObjectName(bases.lock, listed.app),
      bundleSecret: appObjectName(bases.bundle, listed.app),
      prepare: (objects) => prepared(objects, scope, policy, namespace),
      scopeProblem: (objects) => {
        const violations = policyViolations(objects, { ...scope.policy, clusterScopedKinds: policy.clusterScopedKinds });
        return violations.length === 0 ? undefined : `the kept bundle of app ${JSON.stringify(listed.app)} breaks its scope as configured now: ${violations.slice(0, 5).join("; ")}`;
      },
    });
  }
  return passes;
}
