/**
 * The whole test environment: ElasticMQ plus a Kubernetes control plane, in one temporary
 * directory that also holds their logs. `stop()` ends every process and removes the
 * directory; `reapAbandoned()` cleans up after a run that was killed too hard to clean up
 * after itself (kill -9), so leaks never accumulate.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SQS_REGION, startElasticMQ, type ElasticMQ } from "./elasticmq.ts";
import { startControlPlane, type ControlPlane } from "./kube.ts";

const DIR_PREFIX = "kube-pico-cd-env-";

export interface EnvironmentInfo {
  /** The directory holding configs, data and logs/. */
  dir: string;
  sqsEndpoint: string;
  region: string;
  kubeconfig: string;
  unprivilegedKubeconfig: string;
  kubectl: string;
  /** The API server's URL, e.g. `https://127.0.0.1:39123`. */
  kubeServer: string;
  /** PEM files of the CA the API server trusts for client certificates, and of an admin (system:masters) certificate it signed. */
  clientCaCertFile: string;
  clientCaKeyFile: string;
  adminCertFile: string;
  adminKeyFile: string;
  /** The API server's serving certificate and its CA (PEM): what a client that verifies TLS trusts. */
  servingCertFile: string;
  /** The process that owns the environment; when it is gone, the environment is abandoned. */
  ownerPid: number;
}

export interface Environment extends EnvironmentInfo {
  controlPlane: ControlPlane;
  elasticmq: ElasticMQ;
  stop(): Promise<void>;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Processes whose command line names `dir`: every server of an environment does. */
export function processesUsing(dir: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, "utf8");
      if (cmdline.includes(dir)) pids.push(Number(entry));
    } catch {
      // The process ended while we looked.
    }
  }
  return pids;
}

/** Kills the servers of environments whose owner died, and removes their directories. */
export function reapAbandoned(): number {
  let reaped = 0;
  for (const name of readdirSync(tmpdir())) {
    if (!name.startsWith(DIR_PREFIX)) continue;
    const dir = join(tmpdir(), name);
    let owner = 0;
    try {
      owner = Number(readFileSync(join(dir, "owner.pid"), "utf8"));
    } catch {
      // No owner file: an environment that died while starting.
    }
    if (owner && alive(owner)) continue;
    for (const pid of processesUsing(dir)) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // Already gone.
      }
    }
    rmSync(dir, { recursive: true, force: true });
    reaped++;
  }
  return reaped;
}

export async function startEnvironment(): Promise<Environment> {
  reapAbandoned();
  const dir = mkdtempSync(join(tmpdir(), DIR_PREFIX));
  mkdirSync(join(dir, "logs"));
  writeFileSync(join(dir, "owner.pid"), String(process.pid));
  let elasticmq: ElasticMQ | undefined;
  let controlPlane: ControlPlane | undefined;
  const stop = async () => {
    await Promise.all([controlPlane?.stop(), elasticmq?.stop()]);
    if (!process.env.KPCD_KEEP_ENV_DIR) rmSync(dir, { recursive: true, force: true });
  };
  try {
    [elasticmq, controlPlane] = await Promise.all([startElasticMQ(dir), startControlPlane(join(dir, "kube"))]);
  } catch (error) {
    await stop();
    throw error;
  }
  return {
    dir,
    sqsEndpoint: elasticmq.endpoint,
    region: SQS_REGION,
    kubeconfig: controlPlane.kubeconfig,
    unprivilegedKubeconfig: controlPlane.unprivilegedKubeconfig,
    kubectl: controlPlane.kubectl,
    kubeServer: controlPlane.server,
    clientCaCertFile: controlPlane.clientCaCertFile,
    clientCaKeyFile: controlPlane.clientCaKeyFile,
    adminCertFile: controlPlane.adminCertFile,
    adminKeyFile: controlPlane.adminKeyFile,
    servingCertFile: controlPlane.servingCertFile,
    ownerPid: process.pid,
    controlPlane,
    elasticmq,
    stop,
  };
}

export function environmentInfo(env: Environment): EnvironmentInfo {
  const { dir, sqsEndpoint, region, kubeconfig, unprivilegedKubeconfig, kubectl, kubeServer, clientCaCertFile, clientCaKeyFile, adminCertFile, adminKeyFile, servingCertFile, ownerPid } = env;
  return { dir, sqsEndpoint, region, kubeconfig, unprivilegedKubeconfig, kubectl, kubeServer, clientCaCertFile, clientCaKeyFile, adminCertFile, adminKeyFile, servingCertFile, ownerPid };
}

export function isEnvironmentAlive(info: EnvironmentInfo): boolean {
  return alive(info.ownerPid) && existsSync(info.kubeconfig);
}
