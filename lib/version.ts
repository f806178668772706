/**
 * The version of kube-pico-cd: package.json's `version`, read at build time. Bundles and
 * compiled executables carry it inside (the JSON import is inlined), so no package.json has to
 * ship beside them; publish's `--version`, the listener's `--version`, its "listening" log line
 * and its `kube_pico_cd_build_info` metric all print this one value. A named import, so that
 * bun inlines this one string rather than all of package.json: otherwise every edit of its
 * scripts or dependencies would change dist/publish.mjs.
 */
import { version } from "../package.json" with { type: "json" };

/** The release, e.g. `0.1.0`. */
export const VERSION: string = version;
