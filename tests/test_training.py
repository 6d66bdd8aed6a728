"""The corpus generator and the trainer of the project's small test model, on a handful of utterances."""

from __future__ import annotations

import json
import shutil

import pytest
import soundfile as sf
import torch

from qasr.export.checkpoint import load_checkpoint
from qasr.training.corpus import EVAL_COMBOS, NUMBERS, build, split_report, vocabulary

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="espeak-ng (Debian package) is not installed; .ci/run installs it")


def test_vocabulary_is_large_and_has_numbers():
    words = vocabulary()
    assert len(words) >= 1000 and set(NUMBERS) <= set(words)
    assert all(w.isalpha() and w.islower() for w in words)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng (Debian package) is not installed; .ci/run installs it")
    root = tmp_path_factory.mktemp("corpus")
    return root, build(root, seed=3, train=24, eval_count=8, calibration=6, progress=lambda _: None)


@needs_espeak
def test_splits_share_neither_voices_nor_sentences(corpus):
    root, manifests = corpus
    report = split_report(manifests)
    print(json.dumps(report, indent=2))
    assert report["voice_overlap_train_eval"] == []
    assert set(report["sentence_overlap"].values()) == {0}
    rows = [json.loads(l) for l in manifests["eval"].read_text().splitlines()]
    assert len(rows) == 8 and all((r["voice"], r["variant"]) in EVAL_COMBOS for r in rows)
    for row in rows:
        info = sf.info(root / row["audio"])
        assert info.samplerate == 16000 and info.channels == 1 and info.format == "FLAC" and info.duration > 0.5
        assert {"text", "voice", "variant", "rate", "pitch", "snr_db", "reverb"} <= set(row)


@needs_espeak
def test_trainer_writes_an_original_layout_checkpoint_that_exports(corpus, tmp_path):
    from qasr.export.api import ExportSettings, export
    from qasr.export.verify import verify_export
    from qasr.training.train import TrainSettings, train

    root, _ = corpus
    out = train(TrainSettings(corpus=root, out=tmp_path / "model", steps=2), progress=lambda _: None)
    checkpoint = load_checkpoint(str(out))
    assert checkpoint.spec.layout == "original"
    assert all(t.dtype == torch.bfloat16 for t in checkpoint.weights.values())
    assert (out / "model.safetensors").stat().st_size < 25 << 20
    exported = export(ExportSettings(model=str(out), out=tmp_path / "onnx"))
    report, ok = verify_export(exported, str(out), new_tokens=8)
    assert ok, report
