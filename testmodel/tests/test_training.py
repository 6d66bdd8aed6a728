"""The corpus generator and the trainer of the project's small test model, on a handful of utterances."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import soundfile as sf
import torch

from qasr.export.checkpoint import load_checkpoint
from testmodel.train.accents import ACCENT_PREFIX, SHIFT_PREFIX
from testmodel.train.corpus import (ACCENTS, HELD_OUT_ACCENTS, HELD_OUT_VARIANTS, NUMBERS, RANDOM_PREFIX, VARIANTS,
                                  build, split_report, vocabulary)

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="espeak-ng (Debian package) is not installed; .ci/run installs it")


def test_vocabulary_is_large_and_has_numbers():
    words = vocabulary()
    assert len(words) >= 1000 and set(NUMBERS) <= set(words)
    assert all(w.isalpha() and w.islower() for w in words)


def test_shipped_vocabulary_is_what_wordfreq_gives():
    """training/data/vocabulary.txt (the corpus reads it, so a machine without wordfreq can make the corpus)
    is exactly the list wordfreq's top words give, in order."""
    pytest.importorskip("wordfreq", reason="wordfreq is in the train extra, which .ci/run installs")
    from testmodel.train.corpus import wordfreq_vocabulary

    assert vocabulary() == wordfreq_vocabulary()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng (Debian package) is not installed; .ci/run installs it")
    root = tmp_path_factory.mktemp("corpus")
    return root, build(root, seed=3, train=50, eval_count=8, accents=6, calibration=6, progress=lambda _: None,
                       train_random=12, train_accents=12, train_shifts=10)


@needs_espeak
def test_splits_share_neither_voices_nor_sentences(corpus):
    """Held-out variants never speak in training, nor held-out accents; no sentence is in two splits; the
    training split has its long multi-sentence utterances and every kind of noise."""
    root, manifests = corpus
    report = split_report(manifests)
    print(json.dumps(report, indent=2))
    assert report["variant_overlap_train_eval"] == [] and report["accent_overlap_train_eval_accents"] == []
    assert set(report["sentence_overlap"].values()) == {0}
    rows = {n: [json.loads(l) for l in m.read_text().splitlines()] for n, m in manifests.items()}
    assert len(rows["eval"]) == 8 and all(r["variant"] in HELD_OUT_VARIANTS and r["voice"] in ACCENTS
                                          for r in rows["eval"])
    assert len(rows["eval_accents"]) == 6 and all(r["voice"] in HELD_OUT_ACCENTS and r["variant"] in VARIANTS
                                                  for r in rows["eval_accents"])
    assert all(r["voice"] in ACCENTS and r["variant"] in VARIANTS for r in rows["train"] + rows["calibration"])
    assert len(rows["train_random"]) == 12
    assert all(r["voice"] in ACCENTS and r["variant"].startswith(RANDOM_PREFIX) for r in rows["train_random"])
    assert len(rows["train_accents"]) == 12
    assert all(r["voice"].startswith(ACCENT_PREFIX) and (r["variant"] in VARIANTS or r["variant"].startswith(
        RANDOM_PREFIX)) for r in rows["train_accents"])
    assert len(rows["train_shifts"]) == 10
    assert all(r["voice"].startswith(SHIFT_PREFIX) and (r["variant"] in VARIANTS or r["variant"].startswith(
        RANDOM_PREFIX)) for r in rows["train_shifts"])
    for row in rows["train_random"] + rows["train_accents"] + rows["train_shifts"]:
        assert sf.info(root / row["audio"]).duration > 0.5
    long = [r for r in rows["train"] if r["sentences"]]
    assert long and all(sum(r["sentences"]) == len(r["text"].split()) for r in long)
    for row in rows["eval"] + long:
        info = sf.info(root / row["audio"])
        assert info.samplerate == 16000 and info.channels == 1 and info.format == "FLAC" and info.duration > 0.5
        assert {"text", "voice", "variant", "rate", "pitch", "snr_db", "noise", "reverb"} <= set(row)
    assert max(sf.info(root / r["audio"]).duration for r in long) > 15


@needs_espeak
def test_every_variant_name_is_a_real_espeak_variant():
    """espeak-ng falls back to its default voice for an unknown variant name without an error: each named
    variant must sound different from the default voice (the one known alias of it excepted)."""
    import subprocess

    from testmodel.train.corpus import DEFAULT_VOICE_ALIAS

    def audio(voice):
        return subprocess.run(["espeak-ng", "-v", voice, "--stdout", "one two three"], capture_output=True,
                              check=True).stdout

    default = audio("en-us")
    for variant in VARIANTS + HELD_OUT_VARIANTS:
        assert (audio(f"en-us+{variant}") == default) == (variant == DEFAULT_VOICE_ALIAS), variant


@needs_espeak
def test_random_voices_are_spoken_as_drawn(corpus):
    """Every random variant file is within its ranges (vocal tract scale 0.8-1.5 with +-8% per formant, base
    pitch 60-320 Hz), the same seed draws the same voices, and espeak-ng speaks each one (the last included:
    espeak-ng ignores voices beyond its 349th) differently from its default voice."""
    import subprocess

    from testmodel.train.corpus import RANDOM_PITCH, RANDOM_SCALE, RANDOM_VOICES, VOICES_DIR, random_voices

    root, _ = corpus
    voices = random_voices(RANDOM_VOICES, 3)
    assert voices == random_voices(RANDOM_VOICES, 3) and voices != random_voices(RANDOM_VOICES, 4)
    scales = []
    for name, text in voices.items():
        fields = {l.split()[0]: l.split()[1:] for l in text.splitlines()}
        assert fields["name"] == [name] and (root / VOICES_DIR / "espeak-ng-data/voices/!v" / name).is_file()
        base, top = map(int, fields["pitch"])
        assert RANDOM_PITCH[0] - 1 <= base <= RANDOM_PITCH[1] + 1 and base < top <= 1.7 * base + 1
        formants = [int(l.split()[2]) for l in text.splitlines() if l.startswith("formant")]
        assert len(formants) == 9
        scales.append(sum(formants) / 900)
    assert RANDOM_SCALE[0] * 0.9 < min(scales) < 0.85 and 1.4 < max(scales) < RANDOM_SCALE[1] * 1.1

    def audio(voice, *path):
        return subprocess.run(["espeak-ng", *path, "-v", voice, "--stdout", "one two three"], capture_output=True,
                              check=True).stdout

    default = audio("en-us")
    for name in (f"{RANDOM_PREFIX}0000", f"{RANDOM_PREFIX}{RANDOM_VOICES - 1:04d}"):
        assert audio(f"en-us+{name}", f"--path={root / VOICES_DIR}") != default


def phonemes(voice: str, *path: str) -> list[str]:
    """espeak-ng's phonemes (its mnemonics, stress marks stripped) of PROBE in `voice`."""
    import subprocess

    out = subprocess.run(["espeak-ng", *path, "-q", "-x", "--sep=|", "-v", voice, PROBE], capture_output=True,
                         text=True, check=True).stdout
    return [p.strip("',;") for p in out.replace("|", " ").split()]


PROBE = ("the thing that he had was a long song about birds, her eyes were near the boat, my house is good food, "
         "they say go, we have a little bottle of water, very well, pure tour, four doors, sitting, nurse, "
         "but the square bath was caught on the hot cup")


@needs_espeak
@pytest.mark.parametrize("split", ["train_accents", "train_shifts"])
def test_random_accents_are_spoken_as_drawn(corpus, split):
    """Random accents (corpus v4; v5: with vowel shifts): the same seed draws the same ones; each starts from
    a training accent's file (never a held-out accent's phoneme table) with 2-5 processes (v5: 1-3 and 2-4
    vowel shifts, no phoneme replaced twice); espeak-ng speaks every one (it lists at most 349 voices)
    differently from its base accent."""
    from testmodel.train.accents import (ACCENT_SPLITS, BASE_FILES, BASE_PROCESSES, PROCESS_COUNT, PROCESSES, RULES,
                                       SHIFT_COUNTS, VOWEL_SHIFTS, random_accents)
    from testmodel.train.corpus import espeak_data

    root, _ = corpus
    _, directory, count, shifts = ACCENT_SPLITS[split]
    accents = random_accents(count, 3, shifts)
    assert accents == random_accents(count, 3, shifts) and accents != random_accents(count, 4, shifts)
    assert set(BASE_FILES) == set(ACCENTS)
    languages = root / directory / "espeak-ng-data" / "lang" / "rnd"
    assert sorted(p.name for p in languages.iterdir()) == sorted(accents)
    for name, accent in accents.items():
        processes = accent["processes"]
        assert accent["base"] in ACCENTS and not set(processes) & BASE_PROCESSES[accent["base"]]
        if shifts:
            consonants = [p for p in processes if p in PROCESSES]
            assert processes == consonants + [p for p in processes if p in VOWEL_SHIFTS]
            assert SHIFT_COUNTS[0][0] <= len(consonants) <= SHIFT_COUNTS[0][1]
            assert SHIFT_COUNTS[1][0] <= len(processes) - len(consonants) <= SHIFT_COUNTS[1][1]
            sources = [rule.split()[1] for p in processes for rule in RULES[p]]
            assert len(sources) == len(set(sources)), name
        else:
            assert set(processes) <= set(PROCESSES) and PROCESS_COUNT[0] <= len(processes) <= PROCESS_COUNT[1]
        tables = [l.split()[1] for l in (languages / name).read_text().splitlines() if l.startswith("phonemes")]
        assert set(tables) <= {"en-us", "en-rp", "en-sc", "en-n", "en-us-nyc"}, name

    data = espeak_data()
    for base, file in BASE_FILES.items():  # the processes each base already has are not drawn for it
        replaced = {l.split()[2] for l in (data / "lang" / file).read_text().splitlines() if l.startswith("replace")}
        assert BASE_PROCESSES[base] == {p for p, rules in RULES.items() if {r.split()[1] for r in rules} & replaced}
    bases = {base: phonemes(base) for base in ACCENTS}
    for name in accents:
        assert phonemes(name, f"--path={root / directory}") != bases[accents[name]["base"]], name


@needs_espeak
def test_every_accent_process_is_spoken(tmp_path):
    """Each process and vowel shift alone on British English: a phoneme its unconditional rules replace is
    spoken less often (function words keep some) and the replacement is spoken: espeak-ng drops an unknown
    phoneme without a word (`aI a:` once made "my" /m/)."""
    from testmodel.train.accents import ACCENTS_DIR, RULES, install_accents
    from testmodel.train.corpus import espeak_data

    accents = {f"{ACCENT_PREFIX}{i:04d}": {"base": "en-gb", "processes": [p], "stress": [150] * 8}
               for i, p in enumerate(RULES)}
    install_accents(tmp_path, espeak_data(), accents, (), {})
    base = phonemes("en-gb")
    for name, accent in accents.items():
        spoken = phonemes(name, f"--path={tmp_path / ACCENTS_DIR}")
        assert spoken != base, accent
        for flags, source, target in (rule.split() for rule in RULES[accent["processes"][0]]):
            if flags == "00":
                assert spoken.count(source) < base.count(source), (name, source)
                assert target == "NULL" or target in spoken, (name, target)


def test_random_accents_need_their_base_files(tmp_path):
    """espeak-ng data without the training accents' language files: one clear error, not a traceback."""
    from qasr.errors import QasrError
    from testmodel.train.accents import install_accents, random_accents

    (tmp_path / "data").mkdir()
    with pytest.raises(QasrError, match="has no lang/gmw/.* the language file of the training accent"):
        install_accents(tmp_path / "out", tmp_path / "data", random_accents(3, 0), (), {})


def test_larger_held_out_sets_use_no_sentence_a_training_seed_used():
    """--unseen-by SEED: a new seed's held-out and calibration splits draw no sentence of SEED's training
    splits (the shipped model's seeds 0 and 1), where the seed alone would (2-word sentences recur);
    without it the seed's own plan is unchanged."""
    from testmodel.train.corpus import plan_splits, training_sentences

    trained = training_sentences(0) | training_sentences(1)
    sizes = dict(train=10, eval_count=600, accents=200, calibration=100, train_random=0, train_accents=0, train_shifts=0)
    own, apart = plan_splits(7, **sizes), plan_splits(7, **sizes, unseen=trained)
    held = ("eval", "eval_accents", "calibration")
    assert any(u.text in trained for split in held for u in own[split])
    assert not any(u.text in trained for split in held for u in apart[split])
    assert [len(apart[split]) for split in held] == [600, 200, 100]
    assert plan_splits(7, **sizes, unseen=frozenset()) == own


def test_corpus_plan_covers_the_ranges():
    """The seed-0 training plan: every training accent x variant, rates 120-220, pitches 20-80, 2-16 word
    sentences and 20-30 s multi-sentence utterances, clean audio and all four noises, reverberation."""
    from collections import Counter

    from testmodel.train.corpus import NOISES, plan_splits

    train = plan_splits(seed=0)["train"]
    assert {(u.voice, u.variant) for u in train} == {(a, v) for a in ACCENTS for v in VARIANTS}
    assert min(u.rate for u in train) == 120 and max(u.rate for u in train) == 220
    assert min(u.pitch for u in train) == 20 and max(u.pitch for u in train) == 80
    single = Counter(len(u.text.split()) for u in train if not u.sentences)
    assert min(single) == 2 and max(single) == 16
    long = [u for u in train if u.sentences]
    assert 0.02 <= len(long) / len(train) <= 0.06 and all(len(u.sentences) >= 3 for u in long)
    noises = Counter(u.noise for u in train)
    assert set(noises) == {None, *NOISES} and all(n > 0.1 * len(train) for n in noises.values())
    assert all(3 <= len(u.babble) <= 5 for u in train if u.noise == "babble")
    assert 0.1 < sum(u.reverb for u in train) / len(train) < 0.2


def test_noise_colours_have_their_spectra():
    """Pink noise loses about 3 dB per octave, brown about 6; white is flat (real FFTs of the generator)."""
    import numpy as np

    from testmodel.train.corpus import coloured_noise

    rng = np.random.default_rng(0)

    def octave_drop(colour):
        power = np.abs(np.fft.rfft(coloured_noise(160000, colour, rng))) ** 2
        freqs = np.fft.rfftfreq(160000, 1 / 16000)
        band = lambda lo: power[(freqs >= lo) & (freqs < 2 * lo)].mean()  # noqa: E731
        return 10 * np.log10(band(500) / band(1000))

    assert abs(octave_drop("white")) < 0.5
    assert 2.0 < octave_drop("pink") < 4.0
    assert 5.0 < octave_drop("brown") < 7.0


@needs_espeak
def test_trainer_writes_an_original_layout_checkpoint_that_exports(corpus, tmp_path):
    from qasr.export.api import ExportSettings, export
    from qasr.reference.verify import verify_export
    from qasr.errors import QasrError
    from testmodel.train.train import TrainSettings, train

    root, _ = corpus
    # a stage 1 of a few milliseconds: the first step trains the audio tower alone, the rest the whole model
    out = train(TrainSettings(corpus=root, out=tmp_path / "model", steps=3, encoder_minutes=1e-4),
                progress=lambda _: None)
    log = json.loads((out / "training_log.json").read_text())
    assert log["finished"]["steps"] == 3 and log["evals"]
    assert log["examples"] == {"train": 50, "train_random": 12, "train_accents": 12, "train_shifts": 10}
    checkpoint = load_checkpoint(str(out))
    assert checkpoint.spec.layout == "original"
    # it learns single utterances: long audio must reach it a speech region per segment, within 5 s
    assert (checkpoint.spec.segment_pauses, checkpoint.spec.max_audio_seconds) == ("split", 5.0)
    assert all(t.dtype == torch.bfloat16 for t in checkpoint.weights.values())
    assert (out / "model.safetensors").stat().st_size < 25 << 20
    exported = export(ExportSettings(model=str(out), out=tmp_path / "onnx"))
    report, ok = verify_export(exported, str(out), new_tokens=8)
    assert ok, report

    # a warm start continues from those weights with their tokenizer, and its log keeps the first run's
    # (with both augmentations, on the random voices' utterances too)
    again = train(TrainSettings(corpus=root, out=tmp_path / "again", steps=2, init=out, warp=1.0, spec_augment=1.0,
                                joined=4), progress=lambda _: None)
    assert (again / "vocab.json").read_bytes() == (out / "vocab.json").read_bytes()
    assert load_checkpoint(str(again)).spec.segment_pauses == "split"
    log2 = json.loads((again / "training_log.json").read_text())
    assert log2["examples"] == {"train": 50, "train_random": 12, "train_accents": 12, "train_shifts": 10, "joined": 4}
    assert log2["finished"]["steps"] == 2 and log2["init"]["log"]["finished"]["steps"] == 3
    assert "stage 2" not in json.dumps(log2["steps"])
    first = load_checkpoint(str(out)).weights
    second = load_checkpoint(str(again)).weights
    assert any(not torch.equal(first[k], second[k]) for k in first)  # trained ...
    before = torch.cat([w.float().flatten() for w in first.values()])  # ... from the first run's weights:
    after = torch.cat([second[k].float().flatten() for k in first])   # a fresh init would differ by ~100%
    assert (after - before).norm() <= 0.05 * before.norm()

    # another corpus's training splits are read too, minus the held-out splits' sentences; with --average
    # the checkpoint is the mean of the weights at the last evaluations
    more = tmp_path / "more"
    more.mkdir()
    (more / "train_shifts").symlink_to(root / "train_shifts")
    (more / "eval").symlink_to(root / "eval")
    rows = (root / "train_shifts.jsonl").read_text().splitlines() + [(root / "eval.jsonl").read_text().splitlines()[0]]
    (more / "train_shifts.jsonl").write_text("\n".join(rows) + "\n")
    said = []
    third = train(TrainSettings(corpus=root, out=tmp_path / "third", steps=3, init=out, eval_every=1, average=2,
                                more_corpora=(more,)), progress=said.append)
    log3 = json.loads((third / "training_log.json").read_text())
    assert log3["examples"] == {"train": 50, "train_random": 12, "train_accents": 12, "train_shifts": 10,
                                "train_shifts@more": 10}
    assert any("1 sentences of the held-out splits left out" in line for line in said)
    assert log3["averaged"] == [2, 3] and log3["evals"][-1]["averaged"]
    # a corpus without held-out splits trains and saves, saying there is nothing to evaluate on
    told = []
    alone = train(TrainSettings(corpus=more, out=tmp_path / "alone", steps=1, init=out), progress=told.append)
    assert (alone / "model.safetensors").is_file() and any("no held-out split" in line for line in told)
    with pytest.raises(QasrError, match="another directory"):  # the same corpus twice would be read twice
        train(TrainSettings(corpus=root, out=tmp_path / "fourth", steps=1, init=out, more_corpora=(root,)))


@needs_espeak
def test_bf16_training_runs_where_the_cpu_computes_bf16_and_is_refused_where_it_does_not(corpus, tmp_path,
                                                                                        monkeypatch):
    """--bf16: forward passes under bf16 autocast, fp32 weights and optimizer, the same bf16 checkpoint; on a
    CPU without native bf16 (no AVX512-BF16 or AMX) a one-line refusal, since emulated bf16 would be slower."""
    from qasr.errors import QasrError
    from testmodel.train.train import TrainSettings, check_bf16, train

    root, _ = corpus
    if torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported():
        out = train(TrainSettings(corpus=root, out=tmp_path / "bf16", steps=3, encoder_minutes=1e-4, bf16=True),
                    progress=lambda _: None)
        log = json.loads((out / "training_log.json").read_text())
        assert log["settings"]["bf16"] == "True" and log["finished"]["steps"] == 3
        weights = load_checkpoint(str(out)).weights.values()
        assert all(t.dtype == torch.bfloat16 and bool(torch.isfinite(t).all()) for t in weights)
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: False)
    with pytest.raises(QasrError, match="--bf16: this CPU has no native bf16"):
        check_bf16("cpu")
    with pytest.raises(QasrError, match="--bf16"):
        train(TrainSettings(corpus=root, out=tmp_path / "refused", steps=1, bf16=True), progress=lambda _: None)


@needs_espeak
def test_one_command_recipe_on_an_existing_corpus_and_what_it_will_not_overwrite(corpus, tmp_path):
    """python -m testmodel.train OUT --corpus C trains C into OUT/model (a checkpoint that declares its segment
    rule); run again, it refuses in one line to replace OUT/model without --force, and with --force does;
    the corpus command refuses to render a split the corpus already has."""
    import subprocess
    import sys

    root = corpus[0]
    command = [sys.executable, "-m", "testmodel.train", str(tmp_path / "run"), "--corpus", str(root), "--steps", "2"]

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(list(args), capture_output=True, text=True, timeout=600)

    first = run(*command)
    assert first.returncode == 0, first.stderr
    assert load_checkpoint(str(tmp_path / "run" / "model")).spec.segment_pauses == "split"
    log = json.loads((tmp_path / "run" / "model" / "training_log.json").read_text())
    assert log["finished"]["steps"] == 2 and not (tmp_path / "run" / "corpus").exists()
    # its defaults are the measured CPU recipe: stage 1, the easy phase, augmentation, averaging
    recipe = {"minutes": "85.0", "encoder_minutes": "15.0", "easy_minutes": "25.0", "eval_every": "500",
              "warp": "0.5", "spec_augment": "0.5", "average": "5"}
    assert {k: log["settings"][k] for k in recipe} == recipe and log["easy_phase"]["steps"] == 2
    again = run(*command)
    assert again.returncode == 2 and "already holds files" in again.stderr and "--force" in again.stderr
    assert "Traceback" not in again.stderr and len(again.stderr.strip().splitlines()) == 1
    assert json.loads((tmp_path / "run" / "model" / "training_log.json").read_text()) == log   # untouched
    forced = run(*command, "--force", "--encoder-minutes", "0", "--easy-minutes", "0", "--eval-every", "1")
    assert forced.returncode == 0, forced.stderr
    log = json.loads((tmp_path / "run" / "model" / "training_log.json").read_text())
    assert "easy_phase" not in log and [e["step"] for e in log["evals"] if not e.get("averaged")] == [1, 2]
    warm = run(sys.executable, "-m", "testmodel.train", str(tmp_path / "warm"), "--corpus", str(root), "--steps", "1",
               "--init", str(tmp_path / "run" / "model"))
    assert warm.returncode == 0, warm.stderr
    log = json.loads((tmp_path / "warm" / "model" / "training_log.json").read_text())
    assert log["settings"]["easy_minutes"] == "0.0" and "easy_phase" not in log  # a warm start: no easy phase
    render = run(sys.executable, "-m", "testmodel.train.corpus", str(root), "--only", "calibration", "--seed", "3",
                 "--calibration", "6")
    assert render.returncode == 2 and "already has the split(s) calibration; add --force" in render.stderr


def test_shipped_splits_are_what_the_seed_generates_and_disjoint_from_training():
    """The two held-out splits and the calibration split in qasr.assets equal the seed-0 plan (texts, voices,
    noise), share no sentence with the seed-0 training plan, no held-out variant or accent with its
    voices, and stay within the 15 MB audio budget."""
    from qasr.assets import ACCENTS_MANIFEST, CALIBRATION_MANIFEST, EVAL_MANIFEST
    from testmodel.train.corpus import plan_splits

    planned = plan_splits(seed=0)
    shipped = {"eval": EVAL_MANIFEST, "eval_accents": ACCENTS_MANIFEST, "calibration": CALIBRATION_MANIFEST}
    train_texts = {u.text for u in planned["train"]}
    train_accents, train_variants = {u.voice for u in planned["train"]}, {u.variant for u in planned["train"]}
    train_words = {w for t in train_texts for w in t.split()}
    total, texts_by_split = 0, {}
    for split, manifest in shipped.items():
        rows = [json.loads(l) for l in manifest.read_text().splitlines()]
        assert [(r["audio"], r["text"], r["voice"], r["variant"], r["snr_db"], r["noise"]) for r in rows] == \
            [(u.audio, u.text, u.voice, u.variant, u.snr_db, u.noise) for u in planned[split]]
        texts = texts_by_split[split] = {r["text"] for r in rows}
        assert not texts & train_texts
        words = {w for t in texts for w in t.split()}
        print(f"{split}: {len(rows)} utterances, {len(words)} distinct words, "
              f"{100 * len(words & train_words) / len(words):.1f}% of them heard in training")
        total += sum((manifest.parent / r["audio"]).stat().st_size for r in rows)
        for r in rows[:5]:
            info = sf.info(manifest.parent / r["audio"])
            assert info.samplerate == 16000 and info.channels == 1 and info.format == "FLAC"
        if split == "eval":
            assert not {r["variant"] for r in rows} & train_variants
        if split == "eval_accents":
            assert not {r["voice"] for r in rows} & train_accents
    assert total <= 15e6, total
    assert not texts_by_split["calibration"] & (texts_by_split["eval"] | texts_by_split["eval_accents"])


def test_guided_attention_rewards_attention_on_the_spoken_word():
    """Real attention tensors: mass on each word's share of the audio scores near 0, mass on the wrong
    end of the audio near 1, uniform attention in between."""
    from testmodel.train.train import GUIDED_HEADS, GUIDED_LAYER, guided_attention_loss

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
    from testmodel.train.train import CURRICULUM_START_WORDS, allowed_words

    limits = [allowed_words(step, 600, 12) for step in range(0, 700, 50)]
    assert limits[0] == CURRICULUM_START_WORDS and limits[-1] == 12 and limits == sorted(limits)
    assert allowed_words(0, 0, 12) == 12  # no curriculum


def test_frequency_warp_moves_formants_by_its_factor():
    """The spectral peak of a 1 kHz tone in its real log-mel features moves to alpha x 1 kHz;
    alpha 1 changes nothing; channels whose source lies above 8 kHz read as the utterance's quietest value."""
    import numpy as np

    from qasr.runtime.features import FeatureSettings, LogMel
    from testmodel.train.augment import mel_centres, warp_frequency

    t = np.arange(16000) / 16000
    rng = np.random.default_rng(0)
    tone = np.sin(2 * np.pi * 1000 * t) + 0.01 * rng.standard_normal(len(t))
    features = LogMel(FeatureSettings())(tone.astype(np.float32))
    centres = mel_centres()
    peak = lambda f: centres[f.mean(axis=1).argmax()]  # noqa: E731
    assert abs(peak(features) / 1000 - 1) < 0.03
    assert np.array_equal(warp_frequency(features, 1.0), features)
    for alpha in (0.85, 1.2, 1.5):
        assert abs(peak(warp_frequency(features, alpha)) / (1000 * alpha) - 1) < 0.05, alpha
    high = warp_frequency(features, 0.85)
    assert np.all(high[centres / 0.85 > centres[-1]] == features.min())


def test_spec_augment_masks_bands_and_spans_and_shares_are_kept():
    import random

    import numpy as np

    from testmodel.train.augment import Augmentation, mask

    features = np.random.default_rng(0).standard_normal((128, 400)).astype(np.float32)
    masked = mask(features, random.Random(1), freq_masks=1, freq_width=10, time_masks=1, time_share=0.05)
    changed = masked != features
    rows, cols = np.nonzero(changed.all(axis=1))[0], np.nonzero(changed.all(axis=0))[0]
    assert 0 < len(rows) <= 10 and 0 < len(cols) <= 20 and np.all(masked[changed] == features.mean())
    assert not Augmentation() and Augmentation()(features, random.Random(0)) is features
    always = Augmentation(warp_share=1.0, mask_share=1.0)
    outs = [always(features, random.Random(i)) for i in range(3)]
    assert all(o.shape == features.shape and not np.array_equal(o, features) for o in outs)


@needs_espeak
def test_joined_examples_are_training_utterances_in_order_within_the_limit(corpus):
    """Segments like those cut from long recordings: 1-3 single-sentence training utterances, their texts in
    order as the target, at most the segment limit unless one utterance alone is longer."""
    from transformers import AutoTokenizer

    from qasr.assets import TEST_MODEL
    from qasr.export.spec import read_spec
    from testmodel.train.train import TrainSettings, joined_examples

    root, manifests = corpus
    texts = [json.loads(l)["text"] for l in manifests["train"].read_text().splitlines() if not json.loads(l)["sentences"]]
    settings = TrainSettings(corpus=root, out=root / "unused", max_audio_seconds=5.0)
    tokenizer = AutoTokenizer.from_pretrained(str(TEST_MODEL))
    examples = joined_examples(settings, 30, tokenizer, read_spec(TEST_MODEL), lambda _: None)
    counts = []
    for e in examples:
        parts, rest = [], e.text
        while rest:   # the target is training sentences, one after another
            match = max((t for t in texts if rest == t or rest.startswith(t + " ")), key=len)
            parts.append(match)
            rest = rest[len(match):].lstrip()
        counts.append(len(parts))
        assert e.features.shape[1] <= 500 + 70 or len(parts) == 1   # 5 s, plus up to 0.7 s of padding
        assert tokenizer.decode(e.target).endswith(e.text + "<|im_end|>")
    assert {1, 2} <= set(counts) <= {1, 2, 3}   # three rarely fit in 5 s with this corpus's long sentences


def test_easy_utterances_are_short_single_sentences_without_reverberation_or_babble():
    from testmodel.train.train import EASY_MAX_WORDS, is_easy

    row = {"text": "one two three", "noise": None, "snr_db": None, "reverb": False, "sentences": []}
    assert is_easy(row)
    assert is_easy({**row, "noise": "pink", "snr_db": 20.0})
    assert not is_easy({**row, "noise": "pink", "snr_db": 10.0})
    assert not is_easy({**row, "noise": "white", "snr_db": 0.0})  # 0 dB is loud noise, not a missing value
    assert not is_easy({**row, "noise": "babble", "snr_db": 19.0})
    assert not is_easy({**row, "reverb": True})
    assert not is_easy({**row, "sentences": [2, 1]})
    assert not is_easy({**row, "text": " ".join(["word"] * (EASY_MAX_WORDS + 1))})


@needs_espeak
def test_easy_phase_trains_on_the_corpus_easy_utterances_first(corpus, tmp_path):
    from qasr.errors import QasrError
    from testmodel.train.train import TrainSettings, is_easy, train

    root, manifests = corpus
    easy = sum(is_easy(json.loads(line)) for name in ("train", "train_random", "train_accents", "train_shifts")
               for line in manifests[name].read_text().splitlines())
    assert 0 < easy < 84
    out = train(TrainSettings(corpus=root, out=tmp_path / "model", steps=3, encoder_minutes=0, easy_minutes=60,
                              warp=1.0, eval_every=100), progress=lambda _: None)
    log = json.loads((out / "training_log.json").read_text())
    assert log["easy_phase"] == {"examples": easy, "minutes": 60, "steps": 3}
    # a corpus without easy utterances is refused in one line, not trained on everything instead
    hard = tmp_path / "hard"
    hard.mkdir()
    (hard / "train").symlink_to(root / "train")
    rows = [json.loads(line) for line in manifests["train"].read_text().splitlines()]
    (hard / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows if not is_easy(r)))
    with pytest.raises(QasrError, match="no easy utterance"):
        train(TrainSettings(corpus=hard, out=tmp_path / "none", steps=1, encoder_minutes=0, easy_minutes=1),
              progress=lambda _: None)


def test_features_in_worker_processes_are_the_features_in_order():
    """--workers computes the features in spawned processes: the same arrays, in the manifest's order."""
    import numpy as np

    from qasr.assets import SPEECH
    from testmodel.train.train import FeaturePool

    paths = sorted((SPEECH / "eval").glob("*.flac"))[:70]
    serial = list(FeaturePool(1).map(paths))
    with FeaturePool(2) as pool:   # one pool for several lists, as for the splits
        parallel, again = list(pool.map(paths)), list(pool.map(paths[::-1]))
    assert len(parallel) == len(serial) == 70 and again[0] is not parallel[-1]
    assert all(np.array_equal(a, b) for a, b in zip(again, parallel[::-1]))
    assert all(a.dtype == np.float16 and np.array_equal(a, b) for a, b in zip(serial, parallel))
    assert len({a.shape[1] for a in parallel}) > 10   # different utterances, not one repeated


@needs_espeak
def test_training_on_the_shipped_held_out_splits_and_another_seeds_corpus(corpus, tmp_path):
    """What testmodel/gpu_train.sh runs: --corpus holds only held-out splits (the shipped ones), the training
    utterances come from --more-corpus (a corpus of another seed), and a sentence of the held-out splits is
    trained on neither alone nor in joined segments."""
    from transformers import AutoTokenizer

    from qasr.assets import SPEECH, TEST_MODEL
    from qasr.export.spec import read_spec
    from testmodel.train.train import TrainSettings, joined_examples, train

    root, manifests = corpus
    rows = [json.loads(l) for l in manifests["train"].read_text().splitlines()]
    single = [r for r in rows if not r["sentences"]]
    held_row = single[0]
    held_out = tmp_path / "heldout"
    for split in ("eval", "eval_accents", "calibration"):
        (held_out / split).mkdir(parents=True)
        lines = (SPEECH / f"{split}.jsonl").read_text().splitlines()[:6]
        for line in lines:
            shutil.copy(SPEECH / json.loads(line)["audio"], held_out / json.loads(line)["audio"])
        if split == "eval":   # one of the other corpus's training sentences is held out here
            shutil.copy(root / held_row["audio"], held_out / "eval" / "from-training.flac")
            lines.append(json.dumps({**held_row, "audio": "eval/from-training.flac"}))
        (held_out / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    settings = TrainSettings(corpus=held_out, out=tmp_path / "model", steps=2, init=TEST_MODEL, joined=6,
                             more_corpora=(root,), eval_count=3, workers=2)
    log = json.loads((train(settings, progress=lambda _: None) / "training_log.json").read_text())
    same_text = sum(r["text"] == held_row["text"] for r in rows)
    assert log["examples"][f"train@{root.name}"] == len(rows) - same_text
    assert log["examples"]["joined"] == 6 and log["finished"]["steps"] == 2
    assert [e["step"] for e in log["evals"]] == [2]

    tokenizer = AutoTokenizer.from_pretrained(str(TEST_MODEL))
    joined = joined_examples(settings, 40, tokenizer, read_spec(TEST_MODEL), lambda _: None)
    trained = {r["text"] for r in single} - {held_row["text"]}
    for e in joined:
        assert held_row["text"] not in e.text
        assert any(e.text.startswith(t) for t in trained)
    # without any training split anywhere, a clear refusal
    with pytest.raises(Exception, match="no training utterance"):
        train(TrainSettings(corpus=held_out, out=tmp_path / "none", steps=1, init=TEST_MODEL),
              progress=lambda _: None)


@needs_espeak
def test_gpu_training_script_runs_its_whole_call_on_the_cpu(tmp_path):
    """testmodel/gpu_train.sh as the device call runs it, here on the CPU and on a tiny corpus: the preflight,
    the corpus, two runs at once (an @share flag resolved against the minutes left), tarred checkpoints and
    logs in OUT; then a second call reuses the corpus, as on a warm machine."""
    import os
    import subprocess
    import sys
    import tarfile

    from qasr.assets import TEST_MODEL

    repo = Path(__file__).resolve().parents[2]
    out, work = tmp_path / "out", tmp_path / "work"
    env = {**os.environ, "PY": sys.executable, "DEVICE": "cpu", "OUT": str(out), "WORK": str(work), "RESERVE": "30"}
    tiny = ("--train 40 --eval 2 --accents 2 --calibration 2 --random-voices 6 --random-accents 6 "
            "--vowel-shifts 6")
    command = ["bash", "testmodel/gpu_train.sh", "run", "200", "--corpus-seed", "5", "--corpus-args", tiny, "--",
               "--init", str(TEST_MODEL), "--steps", "3", "--eval-every", "3", "--eval-count", "2", "--joined", "4",
               "--", "--steps", "2", "--encoder-minutes", "@0.5", "--eval-count", "2", "--workers", "1"]
    done = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "saved" in (out / "preflight.log").read_text().splitlines()[-1]
    assert (work / "corpus" / "train.jsonl").is_file()
    second_flags = (out / "train-2.log").read_text().splitlines()[0]
    share = float(second_flags.split("--encoder-minutes ")[1].split()[0])
    assert 0 < share < 1.7   # half of the minutes left, not the literal "@0.5"
    # --corpus is the shipped held-out splits: the new corpus's rows are trained on, less their sentences
    shipped = {json.loads(l)["text"] for s in ("eval", "eval_accents", "calibration")
               for l in (repo / "testmodel" / "speech" / f"{s}.jsonl").read_text().splitlines()}
    rows = [json.loads(l) for l in (work / "corpus" / "train.jsonl").read_text().splitlines()]
    for k, steps in ((1, 3), (2, 2)):
        with tarfile.open(out / f"model-{k}.tar") as tar:
            names = {Path(n).name for n in tar.getnames()}
            assert {"model.safetensors", "config.json", "vocab.json"} <= names
            log = json.loads(tar.extractfile("./training_log.json").read())
        assert log["finished"]["steps"] == steps and log["evals"]
        assert log["examples"]["train@corpus"] == sum(r["text"] not in shipped for r in rows) > 0
        assert Path(log["settings"]["corpus"]).name == "heldout"

    again = subprocess.run(["bash", "testmodel/gpu_train.sh", "run", "120", "--corpus-seed", "5", "--",
                            "--init", str(TEST_MODEL), "--steps", "1", "--eval-count", "2"],
                           cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert "reusing" in (out / "corpus.log").read_text()


@needs_espeak
def test_sigterm_ends_training_with_a_checkpoint(corpus, tmp_path):
    """`timeout` and job schedulers send SIGTERM: the run finishes its step and saves as at its time cap."""
    import signal
    import subprocess
    import sys

    from qasr.assets import TEST_MODEL

    root, _ = corpus
    run = subprocess.Popen([sys.executable, "-m", "testmodel.train.train", "--corpus", str(root), "--out",
                            str(tmp_path / "model"), "--init", str(TEST_MODEL), "--minutes", "10", "--eval-every",
                            "1000", "--eval-count", "2", "--workers", "1"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in run.stdout:   # the first progress line of training proper: the handler is in place
        if "step 25:" in line:
            run.send_signal(signal.SIGTERM)
            break
    rest = run.communicate(timeout=300)[0]
    assert run.returncode == 0, rest
    log = json.loads((tmp_path / "model" / "training_log.json").read_text())
    assert log["stopped"]["by"] == "SIGTERM" and 25 <= log["finished"]["steps"] < 200
    assert (tmp_path / "model" / "model.safetensors").is_file() and "stopped (SIGTERM)" in rest
