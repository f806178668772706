/** Addresses on 127.0.0.1 where nothing listens, for tests of servers that cannot be reached. */
import { mkdtempSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** A 127.0.0.1 port that was free a moment ago: connecting to it is refused. */
export async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** A kubeconfig whose API server is 127.0.0.1:`port`; returns its path. */
export function kubeconfigFor(port: number): string {
  const kubeconfig = join(mkdtempSync(join(tmpdir(), "kpcd-unreachable-")), "kubeconfig");
  writeFileSync(
    kubeconfig,
    [
      "apiVersion: v1",
      "kind: Config",
      `clusters: [{ name: closed, cluster: { server: "https://127.0.0.1:${port}", insecure-skip-tls-verify: true } }]`,
      "users: [{ name: nobody, user: { token: nothing } }]",
      "contexts: [{ name: closed, context: { cluster: closed, user: nobody } }]",
      "current-context: closed",
      "",
    ].join("\n"),
  );
  return kubeconfig;
}
