"""Data that ships with qasr: the project's trained test model and its speech splits.

- test-model/: a 5.6M-parameter Qwen3-ASR checkpoint in the original layout (bf16), trained on
  synthetic English speech (qasr.training; see docs/test-model.md);
- speech/eval.jsonl + speech/eval/: the held-out split (voice variants and sentences training never saw);
- speech/eval_accents.jsonl + speech/eval_accents/: the second held-out split (whole accents training
  never heard, spoken by training's variants);
- speech/calibration.jsonl + speech/calibration/: the calibration split (never used for evaluation).
"""

from pathlib import Path

ROOT = Path(__file__).parent
TEST_MODEL = ROOT / "test-model"
SPEECH = ROOT / "speech"
EVAL_MANIFEST = SPEECH / "eval.jsonl"
ACCENTS_MANIFEST = SPEECH / "eval_accents.jsonl"
CALIBRATION_MANIFEST = SPEECH / "calibration.jsonl"
