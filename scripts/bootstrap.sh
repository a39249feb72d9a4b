#!/usr/bin/env bash
# Set up everything `make test` and `make demo` need on a fresh Debian machine: system packages
# (RE2, a C++ compiler, Python headers and venv), the .venv, and an editable build of leakwatch
# with its native core. Safe to re-run: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
EXTRAS=${LEAKWATCH_EXTRAS:-dev}

need_apt=()
pkg-config --exists re2 2>/dev/null || need_apt+=(libre2-dev)
command -v pkg-config >/dev/null || need_apt+=(pkg-config)
command -v g++ >/dev/null || need_apt+=(g++)
"$PY" -c 'import sysconfig,os,sys; sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_paths()["include"],"Python.h")) else 1)' 2>/dev/null \
  || need_apt+=(python3-dev)
"$PY" -c 'import ensurepip, venv' 2>/dev/null || need_apt+=(python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "bootstrap: installing system packages: ${need_apt[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq || true
  $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv with $("$PY" --version)"
  "$PY" -m venv .venv
fi

# Reinstall only when the packaging or native sources changed since the last install.
stamp=.venv/.leakwatch-installed
want=$(cat pyproject.toml setup.py src/leakwatch/_core/*.pyx src/leakwatch/_core/*.pxd | sha256sum | cut -c1-16)-$EXTRAS
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || ! .venv/bin/python -c 'import leakwatch._core.scanner' 2>/dev/null; then
  echo "bootstrap: installing leakwatch[$EXTRAS] (editable, builds the native core)"
  .venv/bin/python -m pip install -q --upgrade pip setuptools wheel
  .venv/bin/python -m pip install -q -e ".[$EXTRAS]"
  # pip's editable build may leave the extension in a temp build dir; build in place for src/.
  .venv/bin/python setup.py -q build_ext --inplace
  echo "$want" > "$stamp"
fi
