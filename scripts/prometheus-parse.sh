#!/usr/bin/env bash
# Parses Prometheus text exposition from stdin with the reference Python client's parser
# (prometheus_client from PyPI, pinned, installed on first use into a project-local
# virtualenv, .venv-prometheus or $KUBE_PICO_CD_PROMETHEUS_VENV), and prints the parsed
# samples as JSON: [{"family", "type", "name", "labels", "value"}, …]. Any format error
# exits non-zero with the parser's message. The /metrics test uses it so that our output is
# checked by an independent implementation of the format, not by our own reader.
set -euo pipefail

version=0.26.0
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${KUBE_PICO_CD_PROMETHEUS_VENV:-$root/.venv-prometheus}"

installed() {
  [ "$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("prometheus_client"))' 2>/dev/null)" = "$version" ]
}

if ! installed; then
  mkdir -p "$(dirname "$venv")"
  # Two runs at once must not build the same venv concurrently.
  exec 9>"$venv.lock"
  flock 9
  if ! installed; then
    echo "prometheus-parse: installing prometheus_client==$version into $venv" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "prometheus_client==$version" >&2
  fi
  flock -u 9
fi

exec "$venv/bin/python" -c '
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        out.append({"family": family.name, "type": family.type, "name": s.name, "labels": s.labels, "value": s.value})
print(json.dumps(out))
'
