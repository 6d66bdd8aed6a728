"""The test aligner's data and trainer: words with exact boundaries, and one short real run that writes an aligner
checkpoint the exporter takes."""

from __future__ import annotations

import json
import random
import shutil

import numpy as np
import pytest

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="espeak-ng (Debian package) is not installed; .ci/run installs it")


@needs_espeak
def test_joined_words_keep_their_exact_spans():
    """Each word's samples sit exactly at its truth span in the joined audio, and nothing else is loud there."""
    from testmodel.train.words import join, speak, trimmed

    words = [(w, trimmed(speak(w, "en-us", "m3", 170, 50))) for w in ("seven", "thirty", "morning")]
    audio, truth = join(words, random.Random(4))
    for (word, samples), t in zip(words, truth):
        lo = round(t["start"] * 16000)
        assert t["word"] == word and lo + len(samples) == round(t["end"] * 16000)
        if np.abs(audio).max() > 0:   # noise may be added: the word is still the loudest thing in its span
            assert np.corrcoef(audio[lo:lo + len(samples)], samples)[0, 1] > 0.95
    assert all(a["end"] <= b["start"] for a, b in zip(truth, truth[1:]))


@needs_espeak
def test_a_short_training_run_writes_an_aligner_the_exporter_takes(tmp_path):
    from qasr.export.checkpoint import load_checkpoint
    from testmodel.train.aligner import train

    report = train(tmp_path / "aligner", __import__("qasr.assets", fromlist=["TEST_MODEL"]).TEST_MODEL, minutes=0.05,
                   voice_count=1, batch_size=2, lr=3e-4, seed=0, progress=lambda _: None)
    assert report["steps"] >= 1 and report["held_out"]["boundaries"] > 0
    checkpoint = load_checkpoint(str(tmp_path / "aligner"))
    assert checkpoint.spec.alignment.classes == 5000 and checkpoint.weights["score.weight"].shape == (5000, 256)
    config = json.loads((tmp_path / "aligner" / "config.json").read_text())
    assert config["thinker_config"]["model_type"] == "qwen3_forced_aligner"
    assert not any(k.startswith("qasr_") for k in config)
