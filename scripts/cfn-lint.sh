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

# shellcheck source=python-venv.sh
source "$root/scripts/python-venv.sh"
ensure_venv "$venv" cfn-lint "$version"

if [ $# -eq 0 ]; then
  set -- "$root"/deploy/aws/*.yaml
fi
exec "$venv/bin/cfn-lint" "$@"
