#!/usr/bin/env bash
# Set up decolle-brian on a fresh machine: find a Python >= 3.12 (brian2 2.10.1 needs it), make .venv,
# install the package with its test extra. Idempotent: a second call only re-installs the package.
#   bash bootstrap.sh            # install (editable) into .venv
#   DECOLLE_PYTHON=/path/python3.12 bash bootstrap.sh   # use this interpreter
set -euo pipefail
cd "$(dirname "$0")"

version_ok() { "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' 2>/dev/null; }

find_python() {
    local candidates=()
    [ -n "${DECOLLE_PYTHON:-}" ] && candidates+=("$DECOLLE_PYTHON")
    candidates+=(python3.12 python3.13 python3)
    # pyenv keeps versions installed but inactive: look there too
    local root="${PYENV_ROOT:-$HOME/.pyenv}"
    for p in "$root"/versions/3.12*/bin/python3 "$root"/versions/3.1[3-9]*/bin/python3; do
        [ -x "$p" ] && candidates+=("$p")
    done
    for c in "${candidates[@]}"; do
        local path
        path=$(command -v "$c" 2>/dev/null) || continue
        if version_ok "$path"; then echo "$path"; return 0; fi
    done
    return 1
}

if [ ! -x .venv/bin/python ] || ! version_ok .venv/bin/python; then
    if ! PY=$(find_python); then
        echo "bootstrap: no Python >= 3.12 found (brian2 2.10.1 needs it)." >&2
        echo "  Install one (e.g. 'pyenv install 3.12') or point DECOLLE_PYTHON at it." >&2
        exit 3
    fi
    echo "bootstrap: using $PY ($("$PY" --version))"
    rm -rf .venv
    "$PY" -m venv .venv
    .venv/bin/python -m pip install -q --upgrade pip
fi
extras="test,dask"
# where a CUDA compiler exists, also install brian2cuda so CUDA builds are tested (no GPU needed to compile)
if command -v nvcc >/dev/null 2>&1; then extras="$extras,cuda"; fi
.venv/bin/python -m pip install -q -e ".[$extras]"
echo "bootstrap: ready (.venv/bin/decolle-brian, .venv/bin/python -m pytest)"
