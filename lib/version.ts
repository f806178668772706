/**
 * The version of kube-pico-cd: package.json's `version`, read at build time. Bundles and
 * compiled executables carry it inside (the JSON import is inlined), so no package.json has to
 * ship beside them; publish's `--version`, the listener's `--version`, its "listening" log line
 * and its `kube_pico_cd_build_info` metric all print this one value. A default import: Deno
 * allows no named imports from JSON modules. Bun then inlines all of package.json, so the
 * committed dist/publish.mjs changes with any edit of package.json (its test says so).
 */
import packageJson from "../package.json" with { type: "json" };

/** The release, e.g. `0.1.0`. */
export const VERSION: string = packageJson.version;
