#!/usr/bin/env bash
# Builds the control-plane binaries the integration tests run against, from the Go module
# proxy only (no release downloads are possible or wanted). Results are cached under
# $KPCD_CACHE_DIR (default: ${XDG_CACHE_HOME:-~/.cache}/kube-pico-cd) keyed by version, so
# a second run returns at once.
#
# Why a wrapper module: k8s.io/kubernetes cannot be `go install`ed because its go.mod
# replaces its staging modules (k8s.io/api, …) with local paths. A module that requires it
# and replaces every staging module by its published v0.Y.Z tag builds the same code.
set -euo pipefail

K8S_VERSION="${KPCD_K8S_VERSION:-v1.35.4}"
KWOK_VERSION="${KPCD_KWOK_VERSION:-v0.7.0}"
# The etcd server that k8s.io/kubernetes itself requires, so one module graph builds both.
ETCD_MODULE="go.etcd.io/etcd/server/v3"

cache_root="${KPCD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kube-pico-cd}"
bin_dir="$cache_root/k8s-$K8S_VERSION-kwok-$KWOK_VERSION/bin"
want=(kube-apiserver kube-controller-manager kube-scheduler kubectl etcd kwok)

have_all() {
  for b in "${want[@]}"; do [ -x "$bin_dir/$b" ] || return 1; done
}
if have_all; then
  echo "$bin_dir"
  exit 0
fi

command -v go >/dev/null 2>&1 || {
  echo "build-binaries: Go is required to build the test control plane but 'go' is not on PATH. Install Go 1.24+ (https://go.dev/doc/install or 'apt-get install golang')." >&2
  exit 3
}

log() { echo "build-binaries: $*" >&2; }
mkdir -p "$bin_dir"
# One build at a time: a second test run started meanwhile waits for the first, then finds
# the cache filled.
exec 9>"$cache_root/.build.lock"
if ! flock -n 9; then
  log "another build is running; waiting for it"
  flock 9
fi
if have_all; then
  echo "$bin_dir"
  exit 0
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

minor="${K8S_VERSION#v1.}"          # 35.4
staging_version="v0.${minor}"       # v0.35.4
log "building Kubernetes $K8S_VERSION control plane into $bin_dir (cold build: about 9 minutes on 2 cores)"

cd "$work"
go mod init kpcd-testenv-build >/dev/null 2>&1
# Read k8s's own go.mod to list its staging modules and its godebug line.
go mod download -json "k8s.io/kubernetes@$K8S_VERSION" > dl.json
k8s_mod="$(sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p' dl.json)"
[ -f "$k8s_mod" ] || { log "cannot read go.mod of k8s.io/kubernetes@$K8S_VERSION from the module proxy"; exit 4; }
go_line="$(grep -m1 '^go ' "$k8s_mod")"
godebug_line="$(grep -m1 '^godebug ' "$k8s_mod" || true)"
{
  echo "module kpcd-testenv-build"
  echo
  echo "$go_line"
  [ -n "$godebug_line" ] && echo "$godebug_line"
  echo
  echo "require k8s.io/kubernetes $K8S_VERSION"
  echo
  echo "replace ("
  grep -E '^\s+k8s\.io/[a-z0-9-]+ => \./staging/' "$k8s_mod" | awk -v v="$staging_version" '{print "\t" $1 " => " $1 " " v}'
  echo ")"
} > go.mod
cat > tools.go <<'GO'
//go:build tools

package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
log "resolving modules"
# etcd at exactly the version k8s.io/kubernetes requires: an unversioned `go get` would
# move to the newest etcd and drag grpc and friends past what Kubernetes was built with.
etcd_version="$(awk -v m="$ETCD_MODULE" '$1 == m {print $2; exit}' "$k8s_mod")"
[ -n "$etcd_version" ] || { log "k8s.io/kubernetes@$K8S_VERSION does not require $ETCD_MODULE; set the etcd version by hand"; exit 4; }
GOFLAGS=-mod=mod go get "k8s.io/kubernetes@$K8S_VERSION" "$ETCD_MODULE@$etcd_version" >&2

ldflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=${minor%%.*} -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

export CGO_ENABLED=0
for cmd in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
  [ -x "$bin_dir/$cmd" ] && continue
  log "go build $cmd"
  GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w $ldflags" -o "$bin_dir/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd"
  mv "$bin_dir/$cmd.tmp" "$bin_dir/$cmd"
done
if [ ! -x "$bin_dir/etcd" ]; then
  log "go build etcd"
  GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" -o "$bin_dir/etcd.tmp" "$ETCD_MODULE"
  mv "$bin_dir/etcd.tmp" "$bin_dir/etcd"
fi
if [ ! -x "$bin_dir/kwok" ]; then
  log "go install kwok $KWOK_VERSION"
  GOBIN="$work/gobin" GOFLAGS= go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
  mv "$work/gobin/kwok" "$bin_dir/kwok"
fi
have_all
log "done"
echo "$bin_dir"
