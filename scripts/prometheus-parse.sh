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

# shellcheck source=python-venv.sh
source "$root/scripts/python-venv.sh"
ensure_venv "$venv" prometheus_client "$version"

exec "$venv/bin/python" -c '
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        out.append({"family": family.name, "type": family.type, "name": s.name, "labels": s.labels, "value": s.value})
print(json.dumps(out))
'
