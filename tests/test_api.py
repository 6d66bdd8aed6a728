"""The Python API (qasr.Model): every input kind, the lazy segments, the info, the batch call, the refusals.

Real parts only: the shipped test model's fp32 export, the shipped example audio, ONNX Runtime sessions.
"""

from __future__ import annotations

import base64
import io
import logging
import subprocess
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import qasr
from qasr.reference.wer import normalise
from qasr.runtime.audio import resample

ROOT = Path(__file__).resolve().parents[1]
CALL = ROOT / "examples" / "call.flac"
CALL_TEXT = (ROOT / "examples" / "call.txt").read_text().strip()


@pytest.fixture(scope="module")
def model(shipped_export):
    return qasr.Model(shipped_export, device="cpu")


def _text(segments) -> str:
    return " ".join(s.text for s in segments)


def test_every_input_kind_gives_the_same_transcript(model):
    samples, rate = sf.read(str(CALL), dtype="float32")
    expected = _text(model.transcribe(str(CALL), language="English")[0])
    assert normalise(expected) == normalise(CALL_TEXT)          # the shipped model hears the example right
    raw = CALL.read_bytes()
    kinds = {"Path": CALL, "bytes": raw, "bytearray": bytearray(raw), "BytesIO": io.BytesIO(raw),
             "open file": open(CALL, "rb"), "data URI": "data:audio/flac;base64," + base64.b64encode(raw).decode(),
             "(array, rate)": (samples, rate), "16 kHz array": resample(samples, rate, 16000)}
    for kind, audio in kinds.items():
        segments, info = model.transcribe(audio, language="English")
        assert _text(segments) == expected, kind
        assert info.duration == pytest.approx(len(samples) / rate, abs=1e-3), kind


def test_segments_are_decoded_lazily_in_time_order(model):
    """Three utterances apart: nothing is decoded before iteration when the language is forced; each batch when
    the loop reaches it; a loop that stops early computes nothing more."""
    samples, rate = sf.read(str(CALL), dtype="float32")
    speech = resample(samples.mean(axis=1), rate, 16000)   # the example is stereo
    gap = np.zeros(16000 * 2, dtype=np.float32)
    audio = np.concatenate([gap, speech, gap, speech, gap, speech, gap])
    generator = model.engine.generator
    generator.last_run = {}
    segments, info = model.transcribe(audio, language="English", vad="on", pauses="split", batch_size=1)
    assert info.segments == 3 and info.language == "English" and info.language_forced
    assert info.duration == pytest.approx(len(audio) / 16000)
    assert 3 * len(speech) / 16000 <= info.duration_after_vad < info.duration - 4
    assert generator.last_run == {}                              # nothing decoded yet
    first = next(segments)
    assert generator.last_run["batch"] == 1 and first.start < 4.0
    rest = list(segments)
    assert [s.start for s in [first, *rest]] == sorted(s.start for s in [first, *rest]) and len(rest) == 2
    assert all(normalise(s.text) == normalise(CALL_TEXT) for s in [first, *rest])


def test_the_language_is_named_before_segments_are_iterated(model):
    segments, info = model.transcribe(CALL)
    assert info.language == "English" and not info.language_forced
    assert [s.language for s in segments] == ["English"]


def test_transcribe_batch_keeps_batching_and_reports_bad_inputs(model, tmp_path):
    samples, rate = sf.read(str(CALL), dtype="float32")
    transcripts = model.transcribe_batch([CALL, (samples, rate), tmp_path / "absent.wav"], language="English")
    assert [normalise(t.text) for t in transcripts[:2]] == [normalise(CALL_TEXT)] * 2
    assert transcripts[2].error == f"{tmp_path / 'absent.wav'}: no such file" and transcripts[2].text == ""
    assert model.engine.generator.last_run["batch"] == 2          # both inputs decoded in one batch


@pytest.mark.parametrize("audio,message", [
    ("https://example.com/a.wav", "a URL; qasr does not download audio"),
    (["a.wav", "b.wav"], "transcribe\\(\\) takes one input; use transcribe_batch\\(\\)"),
    (42, "cannot transcribe an object of type int: give a path, a 16 kHz array"),
    (b"", "<bytes>: no bytes"),
    (b"not audio at all", "<bytes>: cannot decode audio"),
    ("data:audio/wav,plain", "only base64 data URIs"),
    (np.zeros((2, 3, 4), dtype=np.float32), "expected samples as \\[frames\\] or \\[frames, channels\\]"),
    (np.array([0.0, np.nan], dtype=np.float32), "NaN or infinite"),
    ((np.zeros(100, dtype=np.float32), 16000.0), "the sample rate must be an integer"),
])
def test_each_refused_input_kind_gets_one_clear_error(model, audio, message):
    with pytest.raises(qasr.QasrError, match=message):
        model.transcribe(audio)


def test_a_text_mode_file_and_a_missing_path_are_refused(model, tmp_path):
    (tmp_path / "a.txt").write_text("hello")
    with open(tmp_path / "a.txt") as handle, pytest.raises(qasr.AudioError, match="open audio files in binary mode"):
        model.transcribe(handle)
    with pytest.raises(qasr.AudioError, match="absent.flac: no such file"):
        model.transcribe(tmp_path / "absent.flac")


@pytest.mark.parametrize("options,message", [
    (dict(vad="maybe"), "vad must be one of auto, on, off"), (dict(pauses="join"), "pauses must be one of"),
    (dict(batch_size=0), "batch_size must be a positive integer"), (dict(language="Klingon"), "Klingon"),
    (dict(max_new_tokens=0), "max_new_tokens must be at least 1"),
])
def test_options_are_checked_before_any_audio_is_read(model, tmp_path, options, message):
    with pytest.raises(qasr.QasrError, match=message):
        model.transcribe(tmp_path / "absent.flac", **options)


def test_model_arguments_are_checked(shipped_export, tmp_path):
    with pytest.raises(qasr.QasrError, match="unknown device 'tpu'"):
        qasr.Model(shipped_export, device="tpu")
    with pytest.raises(qasr.ExportDirError, match="not an export directory"):
        qasr.Model(tmp_path)


def test_the_package_is_typed_and_logs_to_the_qasr_logger(shipped_export, caplog):
    assert resources.files("qasr").joinpath("py.typed").is_file()
    assert any(isinstance(h, logging.NullHandler) for h in logging.getLogger("qasr").handlers)
    with caplog.at_level(logging.INFO, logger="qasr"):
        qasr.Model(shipped_export, device="cpu")
    assert any(r.name.startswith("qasr.") and "loaded" in r.getMessage() for r in caplog.records)


def test_the_readme_example_runs(shipped_export):
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "transcribe.py"), str(shipped_export), str(CALL)],
                            capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].endswith("language English") and normalise(lines[1].split("] ", 1)[1]) == normalise(CALL_TEXT)
