#!/usr/bin/env bash
# The README's first command: install, export the project's trained test model (testmodel/test-model)
# to ONNX (checked against the PyTorch reference), and transcribe the shipped example audio with it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
.venv/bin/asr-export --model testmodel/test-model --out out/test-model-fp32-onnx --force
.venv/bin/asr-transcribe --engine out/test-model-fp32-onnx examples/call.flac
echo "expected (examples/call.txt): $(cat examples/call.txt)"
