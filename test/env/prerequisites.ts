/**
 * Everything the test environment needs on disk: the Kubernetes control-plane binaries
 * (built from the Go module proxy by build-binaries.sh) and ElasticMQ's jars (resolved from
 * Maven Central). Both are cached under the user's cache directory keyed by version, so only
 * the first run pays for them. A missing tool fails loudly, naming what is missing and how to
 * get it: integration tests are never skipped.
 */
import { spawn, spawnSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));

export const ELASTICMQ_VERSION = "1.7.1";
export const K8S_VERSION = process.env.KPCD_K8S_VERSION ?? "v1.35.4";
export const KWOK_VERSION = process.env.KPCD_KWOK_VERSION ?? "v0.7.0";

export class MissingPrerequisiteError extends Error {
  override name = "MissingPrerequisiteError";
}

export function cacheRoot(): string {
  return process.env.KPCD_CACHE_DIR ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "kube-pico-cd");
}

export interface KubeBinaries {
  dir: string;
  etcd: string;
  kubeApiserver: string;
  kubeControllerManager: string;
  kubeScheduler: string;
  kubectl: string;
  kwok: string;
}

function kubeBinaries(dir: string): KubeBinaries {
  return {
    dir,
    etcd: join(dir, "etcd"),
    kubeApiserver: join(dir, "kube-apiserver"),
    kubeControllerManager: join(dir, "kube-controller-manager"),
    kubeScheduler: join(dir, "kube-scheduler"),
    kubectl: join(dir, "kubectl"),
    kwok: join(dir, "kwok"),
  };
}

function requireTool(tool: string, versionArgs: string[], howToGet: string): void {
  const result = spawnSync(tool, versionArgs, { stdio: "ignore" });
  if (result.error || result.status !== 0) {
    throw new MissingPrerequisiteError(`The test environment needs '${tool}', which is not usable here (${result.error?.message ?? `exit ${result.status}`}). ${howToGet}`);
  }
}

/** Builds (first time) or finds (later) the control-plane binaries; progress goes to stderr. */
export async function ensureKubeBinaries(): Promise<KubeBinaries> {
  const cached = kubeBinaries(join(cacheRoot(), `k8s-${K8S_VERSION}-kwok-${KWOK_VERSION}`, "bin"));
  if (Object.values(cached).every((p) => existsSync(p))) return cached;
  requireTool("go", ["version"], "Install Go 1.24 or newer (https://go.dev/doc/install, or 'apt-get install golang' where Debian's is new enough) and put it on PATH.");
  const started = Date.now();
  const ticker = setInterval(() => {
    process.stderr.write(`test-env: still building the Kubernetes control plane (${Math.round((Date.now() - started) / 1000)} s elapsed; a cold build takes about 9 minutes on 2 cores)\n`);
  }, 30_000);
  try {
    const code = await new Promise<number>((resolve, reject) => {
      const child = spawn("bash", [join(here, "build-binaries.sh")], {
        stdio: ["ignore", "ignore", "inherit"],
        env: { ...process.env, KPCD_CACHE_DIR: cacheRoot(), KPCD_K8S_VERSION: K8S_VERSION, KPCD_KWOK_VERSION: KWOK_VERSION },
      });
      child.once("error", reject);
      child.once("exit", (c) => resolve(c ?? 1));
    });
    if (code !== 0) {
      throw new MissingPrerequisiteError(`Building the Kubernetes ${K8S_VERSION} control plane failed (build-binaries.sh exit ${code}); its output is above. It needs Go 1.24+ and access to the Go module proxy.`);
    }
  } finally {
    clearInterval(ticker);
  }
  return cached;
}

export interface ElasticMQInstall {
  classpath: string;
}

/** Resolves ElasticMQ and its runtime classpath from Maven Central into the cache. */
export async function ensureElasticMQ(): Promise<ElasticMQInstall> {
  const lib = join(cacheRoot(), `elasticmq-${ELASTICMQ_VERSION}`, "lib");
  const hasServerJar = () => existsSync(lib) && readdirSync(lib).some((f) => f.startsWith(`elasticmq-server_2.13-${ELASTICMQ_VERSION}`));
  if (!hasServerJar()) {
    requireTool("java", ["-version"], "Install Java 17 or newer (for example 'apt-get install openjdk-17-jre-headless').");
    requireTool("mvn", ["-v"], "Install Maven ('apt-get install maven'); it resolves ElasticMQ from Maven Central.");
    process.stderr.write(`test-env: resolving ElasticMQ ${ELASTICMQ_VERSION} from Maven Central into ${lib}\n`);
    const result = spawnSync(
      "mvn",
      ["-B", "-q", "-f", join(here, "elasticmq", "pom.xml"), `-Delasticmq.version=${ELASTICMQ_VERSION}`, "dependency:copy-dependencies", "-DincludeScope=runtime", `-DoutputDirectory=${lib}`],
      { stdio: ["ignore", "inherit", "inherit"] },
    );
    if (result.status !== 0 || !hasServerJar()) {
      throw new MissingPrerequisiteError(`Maven could not resolve org.elasticmq:elasticmq-server_2.13:${ELASTICMQ_VERSION} (exit ${result.status}); its output is above. Check that Maven Central is reachable.`);
    }
  } else {
    requireTool("java", ["-version"], "Install Java 17 or newer (for example 'apt-get install openjdk-17-jre-headless').");
  }
  return { classpath: join(lib, "*") };
}
