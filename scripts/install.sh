#!/usr/bin/env bash
# Create .venv and install qasr with the exporter and test dependencies.
# torch is pinned to 2.13.0 here: on this project's machines that is the CPU build lying on disk (seconds);
# an unpinned torch would pull a multi-GB CUDA build. The package itself does not pin torch, so users
# with a CUDA build keep it (install torch first, then `pip install -e ".[export]"`).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[export,serve,bench,train,test,ray,peers]"
.venv/bin/python -c "import qasr.runtime, qasr.export, torch, transformers, onnxruntime; \
print(f'installed qasr {qasr.runtime.__version__}: torch {torch.__version__}, transformers {transformers.__version__}, onnxruntime {onnxruntime.__version__}')"
