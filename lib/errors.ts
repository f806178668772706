/**
 * The error tree of kube-pico-cd. Every error a user may see is a subclass of
 * {@link KubePicoCdError}: the entry scripts print those as one line and anything else in
 * full, because an unknown error is a bug and its stack is what a maintainer needs.
 *
 * Messages say what could not be done, to what, and why.
 */

/** Base class of every known error; `name` is constant per subclass so it survives minifying. */
export class KubePicoCdError extends Error {
  override name = "KubePicoCdError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** A setting (flag or environment variable) is missing or invalid; one line per problem. */
export class ConfigError extends KubePicoCdError {
  override name = "ConfigError";
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
    this.problems = problems;
  }
}
