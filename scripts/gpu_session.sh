#!/usr/bin/env bash
# The GPU machine's side of the GPU runtime work, run through the `device` tool from the repository root
# (read ../shared/GPU.md first). The machine has no network: onnxruntime-gpu travels in parts.
#
# Here, once:   PART_MB=30 ../shared/tools/ort-gpu-parts.sh prepare
# Then for each part K in order, back to back (the machine stays warm ~30 s between calls):
#   here:       ../shared/tools/ort-gpu-parts.sh stage K
#   device:     bash scripts/gpu_session.sh part            (carry [".devcarry"])
# Then, in the same warm machine, one call per model (each well under the 10-minute call limit;
# checkpoints and exports stay in /tmp/qasr-suite between calls and are reused):
#   device:     bash scripts/gpu_session.sh suite --model 0.6b
#               bash scripts/gpu_session.sh suite --model 1.7b --no-check
#               bash scripts/gpu_session.sh suite --model test-model
# Results land in $OUT (<model>.md, <model>-latency.json): copy them into benchmarks/results/ and
# benchmarks/RESULTS.md with the device, date and command.
set -euo pipefail
case "${1:-}" in
  part)
    mkdir -p /tmp/ortparts && cp .devcarry/* /tmp/ortparts/ && ls -la /tmp/ortparts
    ;;
  suite)
    shift
    if [ ! -d /tmp/ortsite/onnxruntime ]; then
      # the parts are pieces of an xz tarball of the installed package (since 2026-11-24), not of the wheel;
      # the last part's call also carried the small wheels (soundfile, jiwer)
      mkdir -p /tmp/ortsite && cat /tmp/ortparts/ort.part* | xz -d | tar x -C /tmp/ortsite
      python3 -m pip install -q --no-index --no-deps --target /tmp/ortsite /tmp/ortparts/*.whl
    fi
    # this checkout's code, every call (the tree is copied afresh each call)
    rm -rf /tmp/qasrsite
    python3 -m pip install -q --no-index --no-deps --no-build-isolation --target /tmp/qasrsite . >/dev/null
    export PYTHONPATH=/tmp/ortsite:/tmp/qasrsite PYTHONUNBUFFERED=1
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    python3 -m qasr.benchmarks.suite "${OUT:-/tmp/suite-out}" --device cuda "$@"
    ;;
  *)
    sed -n '2,18p' "$0"
    exit 2
    ;;
esac
