# Sourced by the scripts that run a pinned Python tool from PyPI (cfn-lint.sh,
# prometheus-parse.sh, moto-server.sh): ensure_venv VENV PACKAGE VERSION [EXTRAS] installs
# PACKAGE[EXTRAS]==VERSION into the virtualenv VENV on first use, and does nothing once it is
# there.

# True when VENV holds PACKAGE at exactly VERSION.
venv_has() {
  [ "$("$1/bin/python" -c 'import importlib.metadata as m, sys; print(m.version(sys.argv[1]))' "$2" 2>/dev/null)" = "$3" ]
}

ensure_venv() {
  local venv="$1" package="$2" version="$3" extras="${4:-}"
  venv_has "$venv" "$package" "$version" && return 0
  mkdir -p "$(dirname "$venv")"
  # Two runs at once (a test and a person) must not build the same venv concurrently.
  exec 9>"$venv.lock"
  flock 9
  if ! venv_has "$venv" "$package" "$version"; then
    echo "$(basename "$0"): installing $package==$version into $venv" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "$package${extras:+[$extras]}==$version" >&2
  fi
  flock -u 9
}
