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
    from qasr.reference.verify import verify_export
    from qasr.training.train import TrainSettings, train

    root, _ = corpus
    # a stage 1 of a few milliseconds: the first step trains the audio tower alone, the rest the whole model
    out = train(TrainSettings(corpus=root, out=tmp_path / "model", steps=3, encoder_minutes=1e-4),
                progress=lambda _: None)
    log = json.loads((out / "training_log.json").read_text())
    assert log["finished"]["steps"] == 3 and log["evals"]
    checkpoint = load_checkpoint(str(out))
    assert checkpoint.spec.layout == "original"
    assert all(t.dtype == torch.bfloat16 for t in checkpoint.weights.values())
    assert (out / "model.safetensors").stat().st_size < 25 << 20
    exported = export(ExportSettings(model=str(out), out=tmp_path / "onnx"))
    report, ok = verify_export(exported, str(out), new_tokens=8)
    assert ok, report


def test_shipped_splits_are_what_the_seed_generates_and_disjoint_from_training():
    """The held-out and calibration splits in qasr.assets equal the seed-0 plan (texts, voices, noise),
    share no voice or sentence with the seed-0 training plan, and stay within their size budgets."""
    from qasr.assets import CALIBRATION_MANIFEST, EVAL_MANIFEST
    from qasr.training.corpus import plan_splits

    planned = plan_splits(seed=0)
    shipped = {"eval": EVAL_MANIFEST, "calibration": CALIBRATION_MANIFEST}
    train_texts = {u.text for u in planned["train"]}
    train_combos = {(u.voice, u.variant) for u in planned["train"]}
    train_words = {w for t in train_texts for w in t.split()}
    for split, manifest in shipped.items():
        rows = [json.loads(l) for l in manifest.read_text().splitlines()]
        assert [(r["audio"], r["text"], r["voice"], r["variant"], r["snr_db"]) for r in rows] == \
            [(u.audio, u.text, u.voice, u.variant, u.snr_db) for u in planned[split]]
        texts = {r["text"] for r in rows}
        assert not texts & train_texts
        words = {w for t in texts for w in t.split()}
        print(f"{split}: {len(rows)} utterances, {len(words)} distinct words, "
              f"{100 * len(words & train_words) / len(words):.1f}% of them heard in training")
        size = sum((manifest.parent / r["audio"]).stat().st_size for r in rows)
        assert size <= {"eval": 10e6, "calibration": 5e6}[split], size
        for r in rows[:5]:
            info = sf.info(manifest.parent / r["audio"])
            assert info.samplerate == 16000 and info.channels == 1 and info.format == "FLAC"
    eval_combos = {(json.loads(l)["voice"], json.loads(l)["variant"]) for l in EVAL_MANIFEST.read_text().splitlines()}
    assert eval_combos <= EVAL_COMBOS and not eval_combos & train_combos
    calib_texts = {json.loads(l)["text"] for l in CALIBRATION_MANIFEST.read_text().splitlines()}
    assert not calib_texts & {json.loads(l)["text"] for l in EVAL_MANIFEST.read_text().splitlines()}


def test_guided_attention_rewards_attention_on_the_spoken_word():
    """Real attention tensors: mass on each word's share of the audio scores near 0, mass on the wrong
    end of the audio near 1, uniform attention in between."""
    from qasr.training.train import GUIDED_HEADS, GUIDED_LAYER, guided_attention_loss

    audio_id, prefix = 7, 2
    ids = torch.tensor([[1] + [audio_id] * 20 + [2, 3, 4, 5, 6, 8, 9]])  # 20 audio tokens, then prompt/target
    labels = torch.full_like(ids, -100)
    labels[0, 22:] = ids[0, 22:]  # target: 2 prefix tokens, 3 words, EOS
    length, words = ids.shape[1], 3
    queries = [24 + k - 1 for k in range(words)]  # the positions that predict each word (at 24, 25, 26)

    def attention(place):
        weights = torch.full((1, len(GUIDED_HEADS), length, length), 1e-9)
        for k, q in enumerate(queries):
            weights[0, :, q, 1 + place(k)] = 1.0
        return [weights if i == GUIDED_LAYER else None for i in range(GUIDED_LAYER + 1)]

    batch = {"input_ids": ids, "labels": labels}
    right = guided_attention_loss(attention(lambda k: int((k + 0.5) / words * 20)), batch, audio_id, prefix)
    wrong = guided_attention_loss(attention(lambda k: 19 - int((k + 0.5) / words * 20) // 4), batch, audio_id, prefix)
    uniform = torch.zeros(1, len(GUIDED_HEADS), length, length)
    uniform[..., 1:21] = 1 / 20
    spread = guided_attention_loss([uniform if i == GUIDED_LAYER else None for i in range(GUIDED_LAYER + 1)],
                                   batch, audio_id, prefix)
    assert float(right) < 0.05 < float(spread) < float(wrong)


def test_curriculum_grows_to_the_longest_sentence():
    from qasr.training.train import CURRICULUM_START_WORDS, allowed_words

    limits = [allowed_words(step, 600, 12) for step in range(0, 700, 50)]
    assert limits[0] == CURRICULUM_START_WORDS and limits[-1] == 12 and limits == sorted(limits)
    assert allowed_words(0, 0, 12) == 12  # no curriculum
