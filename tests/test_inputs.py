"""Every input kind the runtime reads, on real files and bytes (no model): one place, one line per refusal."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import soundfile as sf

from qasr.errors import AudioError
from qasr.runtime.inputs import input_name, is_pair, read_input

pytestmark = pytest.mark.fast   # no export: the fast tier (pytest -m fast)


@pytest.fixture(scope="module")
def tone(tmp_path_factory):
    """0.5 s at 8 kHz, stereo: read at 16 kHz mono whatever the kind."""
    t = np.arange(4000) / 8000
    samples = np.stack([0.3 * np.sin(2 * np.pi * 440 * t), 0.1 * np.sin(2 * np.pi * 660 * t)], axis=1).astype(np.float32)
    path = tmp_path_factory.mktemp("audio") / "tone.flac"
    sf.write(path, samples, 8000)
    return path, samples


def test_every_kind_reads_the_same_samples(tone):
    path, samples = tone
    reference = read_input(str(path), 16000)
    raw = path.read_bytes()
    decoded, rate = sf.read(str(path), dtype="float32")
    kinds = [path, raw, bytearray(raw), memoryview(raw), io.BytesIO(raw), open(path, "rb"),
             "data:audio/flac;base64," + base64.b64encode(raw).decode(), (decoded, rate), [decoded, np.int64(rate)]]
    assert reference.shape == (8000,) and reference.dtype == np.float32
    for kind in kinds:
        assert np.array_equal(read_input(kind, 16000), reference), type(kind).__name__
    mono16 = read_input(str(path), 16000)
    assert np.array_equal(read_input(mono16, 16000), mono16)      # a bare array is taken as 16 kHz, as it is


def test_names_and_pairs():
    assert input_name("a.wav") == "a.wav" and input_name(b"x") == "<bytes>" and input_name(np.zeros(3)) == "<array>"
    assert input_name("data:audio/wav;base64,AAAA") == "<data URI>"
    assert is_pair((np.zeros(3), 16000)) and not is_pair(("a.wav", "b.wav")) and not is_pair((np.zeros(3), True))


@pytest.mark.parametrize("item,message", [
    ("https://example.com/a.wav", "https://example.com/a.wav: a URL; qasr does not download audio"),
    ("s3://bucket/a.wav", "a URL"),
    (b"", "<bytes>: no bytes \\(empty input\\)"),
    (b"RIFF0000WAVEjunk", "<bytes>: cannot decode audio"),
    ("data:audio/wav,not-base64", "only base64 data URIs"),
    ("data:audio/wav;base64,@@@", "the base64 payload does not decode"),
    (object(), "cannot transcribe an object of type object: give a path, a 16 kHz array"),
    ((np.zeros(10, np.float32), 16000.0), "the sample rate must be an integer, not 16000.0"),
    ((np.zeros(10, np.float32), -5), "a sample rate of -5 Hz is not audio"),
    ((np.zeros(10, np.float32), 1), "a sample rate of 1 Hz is not audio"),
    (np.zeros((2, 2, 2), np.float32), "expected samples as \\[frames\\] or \\[frames, channels\\]"),
    (np.zeros(0, np.float32), "the audio is empty"),
    (np.array([np.inf], np.float32), "NaN or infinite"),
])
def test_each_refusal_is_one_line(item, message):
    with pytest.raises(AudioError, match=message) as error:
        read_input(item, 16000)
    assert "\n" not in str(error.value)


def test_files_that_are_not_audio(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(AudioError, match="notes.txt: cannot decode audio"):
        read_input(tmp_path / "notes.txt", 16000)
    with open(tmp_path / "notes.txt") as handle, pytest.raises(AudioError, match="binary mode"):
        read_input(handle, 16000)
    with pytest.raises(AudioError, match="not a file"):
        read_input(tmp_path, 16000)
