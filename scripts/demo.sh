#!/usr/bin/env bash
# The README's first command: install, then export and transcribe with the small model of the project.
# Until the trained test model exists, that model is a tiny RANDOM checkpoint the project writes itself:
# the export is real and checked against the PyTorch reference, but the transcript is noise.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
.venv/bin/python -m qasr.export.tiny out/tiny-random
.venv/bin/asr-export --model out/tiny-random --out out/tiny-random-fp32-onnx --force
.venv/bin/asr-transcribe --engine out/tiny-random-fp32-onnx --json examples/hello.flac
