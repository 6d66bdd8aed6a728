"""Where the project's test data is: the trained test model and its speech splits (testmodel/ in the source
repository, testmodel/README.md). They are not part of the installed package (the runtime never uses them):
a checkout finds them beside the package source (an editable install, as scripts/install.sh makes), any other
install through QASR_TESTMODEL=<path of a testmodel/ folder>. Exporter defaults that read them (the shipped
calibration split, the held-out split of asr-export's drift check) refuse in one line when they are absent.

- test-model/: a 5.6M-parameter Qwen3-ASR checkpoint in the original layout (bf16), trained on synthetic English speech;
- speech/eval.jsonl + speech/eval/: the held-out split (voice variants and sentences training never saw);
- speech/eval_accents.jsonl + speech/eval_accents/: the second held-out split (whole accents training never heard);
- speech/calibration.jsonl + speech/calibration/: the calibration split (never used for evaluation);
- test-aligner/: a forced aligner made from the test model (Qwen3-ForcedAligner's form), trained on separately
  spoken words with exact boundaries;
- speech/words.jsonl + speech/words/: held-out words with exact boundaries (voices the aligner never heard).
"""

from __future__ import annotations

import os
from pathlib import Path

from qasr.errors import QasrError

ROOT = Path(os.environ.get("QASR_TESTMODEL") or Path(__file__).resolve().parents[1] / "testmodel")
TEST_MODEL = ROOT / "test-model"
SPEECH = ROOT / "speech"
EVAL_MANIFEST = SPEECH / "eval.jsonl"
ACCENTS_MANIFEST = SPEECH / "eval_accents.jsonl"
CALIBRATION_MANIFEST = SPEECH / "calibration.jsonl"
TEST_ALIGNER = ROOT / "test-aligner"
WORDS_MANIFEST = SPEECH / "words.jsonl"


def shipped(path: Path, what: str, instead: str) -> Path:
    """`path` if the test data is here, else one line saying where it lives and what to pass `instead`."""
    if not path.exists():
        raise QasrError(f"{what} is not installed with the package (it lives in the source repository's testmodel/, "
                        f"or set QASR_TESTMODEL to such a folder); {instead}")
    return path
