#!/usr/bin/env bash
# Runs moto's server (a local SNS and SQS, from PyPI, pinned), installed on first use into a
# virtualenv in the user's cache ($KPCD_CACHE_DIR, else ~/.cache/kube-pico-cd/moto-VERSION),
# where the test environment keeps its other servers.
#
#   scripts/moto-server.sh -H 127.0.0.1 -p 5000   # moto_server with these arguments
#   scripts/moto-server.sh --prepare              # only install it
set -euo pipefail

version=5.2.5
root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${KPCD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kube-pico-cd}"
venv="$cache/moto-$version"

# shellcheck source=python-venv.sh
source "$root/scripts/python-venv.sh"
ensure_venv "$venv" moto "$version" server

if [ "${1:-}" = "--prepare" ]; then
  echo "$venv/bin/moto_server"
  exit 0
fi
exec "$venv/bin/moto_server" "$@"
