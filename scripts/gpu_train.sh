#!/usr/bin/env bash
# Test model training on the GPU machine (issue #15), run through the `device` tool from the repository
# root. UNVERIFIED: written against the machine as ../shared/GPU.md describes it (torch with CUDA,
# transformers 5.17, no network, no espeak-ng, no soundfile/jiwer); no GPU was lent when it was written.
#
# Here, once:  mkdir -p .devcarry && (cd .devcarry && apt-get download espeak-ng espeak-ng-data \
#                  libespeak-ng1 libpcaudio0 libsonic0)                       # 4.8 MB of Debian packages
#              python3 -m pip download -d .devcarry --only-binary=:all: --python-version 3.12 \
#                  --platform manylinux2014_x86_64 soundfile cffi pycparser jiwer rapidfuzz
# Device, call 1 (carry [".devcarry"]; ~2 min of corpus on 16 cores, then training):
#              bash scripts/gpu_train.sh corpus-and-train --minutes 7 --init assets/test-model \
#                  --lr 8e-4 --ctc-weight 0.5 --warp 0.5 --spec-augment 0.5   (the v4 and v5 recipes' flags)
# Device, next calls while the machine is warm (each continues from the last checkpoint, warm start):
#              bash scripts/gpu_train.sh train --minutes 8 --lr 8e-4 --ctc-weight 0.5 --warp 0.5 --spec-augment 0.5
# The checkpoint, its training_log.json and the logs come back in $OUT/model; install it here with
#              cp -r <files_at>/model/* assets/test-model/   (and the splits: python -m qasr.training.corpus)
set -euo pipefail
WORK=/tmp/qasr-train
mkdir -p "$WORK"
setup() {
  if [ ! -x "$WORK/espeak/usr/bin/espeak-ng" ]; then
    for deb in .devcarry/*.deb; do dpkg -x "$deb" "$WORK/espeak"; done
  fi
  [ -f "$WORK/site/soundfile.py" ] || python3 -m pip install -q --no-index --no-deps --target "$WORK/site" .devcarry/*.whl
  rm -rf "$WORK/qasr" && python3 -m pip install -q --no-index --no-deps --no-build-isolation --target "$WORK/qasr" . >/dev/null
  export PATH="$WORK/espeak/usr/bin:$PATH"
  export LD_LIBRARY_PATH="$WORK/espeak/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
  export ESPEAK_DATA_PATH="$WORK/espeak/usr/lib/x86_64-linux-gnu/espeak-ng-data"
  export PYTHONPATH="$WORK/site:$WORK/qasr" PYTHONUNBUFFERED=1
  espeak-ng --version
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
}
train() {
  local init=()
  if [ -f "$WORK/model/model.safetensors" ]; then
    rm -rf "$WORK/previous" && mv "$WORK/model" "$WORK/previous" && init=(--init "$WORK/previous")
  fi
  python3 -m qasr.training.train --corpus "$WORK/corpus" --out "$WORK/model" --device cuda \
      --eval-every 500 "${init[@]}" "$@" 2>&1 | tee "$WORK/train-$(date +%H%M%S).log"
  mkdir -p "${OUT:-/tmp/out}/model" && cp "$WORK"/model/* "$WORK"/train-*.log "${OUT:-/tmp/out}/model/"
}
case "${1:-}" in
  corpus-and-train)
    shift; setup
    [ -f "$WORK/corpus/train.jsonl" ] || python3 -m qasr.training.corpus "$WORK/corpus" --workers 16
    train "$@"
    ;;
  train)
    shift; setup; train "$@"
    ;;
  *)
    sed -n '2,17p' "$0"; exit 2
    ;;
esac
