/** publish's exit codes, as documented in its `--help`. */

/** Sent (or, with --dry-run, valid); with --wait, every deploy succeeded. */
export const EXIT_SENT = 0;
/** Invalid input or usage: bad option, invalid manifests, message too large, kustomize failed. */
export const EXIT_INVALID = 1;
/** Sending failed: a queue could not be resolved or did not accept the message. */
export const EXIT_SEND_FAILED = 2;
/** With --wait: a result said the deploy failed, was rejected, or is not healthy. */
export const EXIT_DEPLOY_FAILED = 3;
/** With --wait: some queue gave no result before the timeout. */
export const EXIT_TIMED_OUT = 4;
