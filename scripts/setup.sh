#!/usr/bin/env bash
# Set up dforce on a fresh machine: system data packages (when root with apt), a virtual
# environment in .venv, and the package with every extra, torch pinned by constraints.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && [ ! -d /usr/share/datasets/fashion-mnist ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist) >/dev/null \
    || echo "setup: could not install dataset-fashion-mnist (video tests that need it will fail)" >&2
fi
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q -c constraints.txt -e ".[all]"
echo "setup: ok ($(.venv/bin/python -c 'import torch, dforce; print("dforce", dforce.__version__, "torch", torch.__version__)'))"
