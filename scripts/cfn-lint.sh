#!/usr/bin/env bash
# Lints the CloudFormation templates with cfn-lint from PyPI, pinned, installed on first use
# into a project-local virtualenv (.venv-cfn-lint, or $KUBE_PICO_CD_CFN_LINT_VENV).
#
#   scripts/cfn-lint.sh                  # lints deploy/aws/*.yaml
#   scripts/cfn-lint.sh path/to/t.yaml   # lints the given templates (any cfn-lint arguments)
#
# Exit code: cfn-lint's (0 clean; non-zero for errors, warnings or informational findings).
set -euo pipefail

version=1.58.0
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${KUBE_PICO_CD_CFN_LINT_VENV:-$root/.venv-cfn-lint}"

installed() {
  [ "$("$venv/bin/cfn-lint" --version 2>/dev/null)" = "cfn-lint $version" ]
}

if ! installed; then
  mkdir -p "$(dirname "$venv")"
  # Two runs at once (a test and a person) must not build the same venv concurrently.
  exec 9>"$venv.lock"
  flock 9
  if ! installed; then
    echo "cfn-lint: installing cfn-lint==$version into $venv" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "cfn-lint==$version" >&2
  fi
  flock -u 9
fi

if [ $# -eq 0 ]; then
  set -- "$root"/deploy/aws/*.yaml
fi
exec "$venv/bin/cfn-lint" "$@"
