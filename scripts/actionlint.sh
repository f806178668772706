#!/usr/bin/env bash
# Lints the GitHub workflows with actionlint, pinned, built from the Go module proxy on first
# use into the project's cache (${KPCD_CACHE_DIR:-${XDG_CACHE_HOME:-~/.cache}/kube-pico-cd}/
# actionlint-<version>/, the directory the test environment's binaries use). When shellcheck
# is on PATH (.ci/run installs it), actionlint runs it on each `run:` script as well.
#
#   scripts/actionlint.sh                    # lints .github/workflows/*.yml
#   scripts/actionlint.sh path/to/wf.yml     # lints the given files (any actionlint arguments)
#
# Needs Go 1.24+ on PATH for the first run only. Exit code: actionlint's (0 clean, 1 findings).
set -euo pipefail

version=1.7.12
root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${KPCD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kube-pico-cd}"
dir="$cache/actionlint-$version"
bin="$dir/actionlint"

if [ ! -x "$bin" ]; then
  command -v go >/dev/null 2>&1 || { echo "actionlint.sh: Go 1.24+ is needed to build actionlint $version and is not on PATH" >&2; exit 2; }
  mkdir -p "$cache"
  # Two runs at once (a test and a person) must not build into the same directory.
  exec 9>"$dir.lock"
  flock 9
  if [ ! -x "$bin" ]; then
    echo "actionlint.sh: building actionlint $version from the Go module proxy into $dir" >&2
    staging="$(mktemp -d "$cache/actionlint-$version.XXXXXX")"
    GOBIN="$staging" GOFLAGS=-trimpath go install "github.com/rhysd/actionlint/cmd/actionlint@v$version" >&2
    rm -rf "$dir"
    mv "$staging" "$dir"
  fi
  flock -u 9
fi

if [ $# -eq 0 ]; then
  set -- "$root"/.github/workflows/*.yml
fi
exec "$bin" "$@"
