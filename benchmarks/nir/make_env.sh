#!/usr/bin/env bash
# The import check's simulator environment: a Python with PyTorch (CPU), nir, nirtorch and snnTorch, apart from
# the package's own .venv (PyTorch here exists only as a Python 3.11 CPU wheel; the package needs Python >= 3.12).
#   bash benchmarks/nir/make_env.sh [ENV_DIR]       # default benchmarks/out/nirenv; about 70 s with a warm pip cache
#   NIR_PYTHON=/path/python3.11 TORCH_WHEEL=/path/torch-...whl bash benchmarks/nir/make_env.sh
# Idempotent: an environment that already imports everything is left as it is. Prints its python's path last.
# Concurrent calls take turns (a lock file beside ENV_DIR).
set -euo pipefail
cd "$(dirname "$0")/../.."
ENV_DIR=${1:-benchmarks/out/nirenv}
mkdir -p "$(dirname "$ENV_DIR")"
exec 9>"$ENV_DIR.lock"; flock 9  # one maker at a time (.ci/run starts one early, the test's fixture waits for it)
if [ -x "$ENV_DIR/bin/python" ] && "$ENV_DIR/bin/python" -c "import torch, nir, nirtorch, snntorch, h5py" 2>/dev/null; then
    echo "$ENV_DIR/bin/python"; exit 0
fi
PY=${NIR_PYTHON:-}
if [ -z "$PY" ]; then
    for candidate in python3.11 python3.12 python3.13 python3; do
        if command -v "$candidate" >/dev/null 2>&1; then PY=$(command -v "$candidate"); break; fi
    done
fi
[ -n "$PY" ] || { echo "make_env: no python found; set NIR_PYTHON" >&2; exit 3; }
TORCH=${TORCH_WHEEL:-}
if [ -z "$TORCH" ]; then  # a local CPU wheel for this Python, else PyTorch's CPU index
    tag=$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
    TORCH=$(ls /opt/wheels/torch-*+cpu-"$tag"-*.whl 2>/dev/null | head -n1 || true)
fi
rm -rf "$ENV_DIR"
"$PY" -m venv "$ENV_DIR"
if [ -n "$TORCH" ]; then
    "$ENV_DIR/bin/pip" install -q "$TORCH"
else
    "$ENV_DIR/bin/pip" install -q torch --index-url https://download.pytorch.org/whl/cpu
fi
# nir 1.0.x reads the exported file; nirtorch 2.6 executes it; snnTorch 1.0.0: its own importer's verdict is recorded
"$ENV_DIR/bin/pip" install -q "nir>=1.0,<1.1" "nirtorch==2.6" "snntorch==1.0.0" h5py
echo "$ENV_DIR/bin/python"
