"""Audio in: formats, rates, channels, bad files, silence and long-audio split points."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from qasr.runtime.audio import is_silent, load_audio, split_points
from qasr.errors import AudioError

pytestmark = pytest.mark.fast   # no export: the fast tier (pytest -m fast)


def _tone(freq, seconds, rate):
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize("rate,fmt", [(44100, "flac"), (8000, "wav"), (48000, "ogg"), (16000, "wav")])
def test_any_rate_is_resampled_and_stereo_downmixed(tmp_path, rate, fmt):
    stereo = np.stack([_tone(440, 1.0, rate), _tone(440, 1.0, rate) * 0.5], axis=1)
    path = tmp_path / f"tone.{fmt}"
    sf.write(path, stereo, rate)
    audio = load_audio(path, 16000)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) - 16000) <= 2
    spectrum = np.abs(np.fft.rfft(audio))
    assert abs(np.argmax(spectrum) * 16000 / len(audio) - 440) < 3  # still a 440 Hz tone
    assert 0.3 < np.abs(audio).max() < 0.45                          # the mean of both channels


def test_bad_files_give_one_line_errors(tmp_path):
    sf.write(tmp_path / "empty.wav", np.zeros(0, dtype=np.float32), 16000)
    sf.write(tmp_path / "nan.wav", np.full(800, np.nan, dtype=np.float32), 16000, subtype="FLOAT")
    (tmp_path / "corrupt.flac").write_bytes(b"fLaC" + bytes(100))
    (tmp_path / "text.wav").write_text("not audio at all")
    cases = {"missing.wav": "no such file", "empty.wav": "empty", "nan.wav": "NaN", "corrupt.flac": "cannot decode",
             "text.wav": "cannot decode", ".": "not a file"}
    for name, reason in cases.items():
        with pytest.raises(AudioError) as info:
            load_audio(tmp_path / name, 16000)
        assert reason in str(info.value) and "\n" not in str(info.value)


def test_silence_detection():
    assert is_silent(np.zeros(16000, dtype=np.float32), 1e-4)
    assert not is_silent(_tone(100, 0.1, 16000), 1e-4)


def test_long_audio_is_cut_in_the_quiet_gap_near_the_limit():
    rate = 1000
    loud = np.ones(100 * rate, dtype=np.float32)
    loud[57 * rate: 57 * rate + 300] = 0.0          # a quiet 0.3 s gap, 3 s before the 60 s limit
    bounds = split_points(loud, rate, max_seconds=60)
    assert bounds[0] == 0 and bounds[-1] == len(loud) and len(bounds) == 3
    assert 57 * rate <= bounds[1] <= 57 * rate + 300
    assert all(b - a <= 60 * rate for a, b in zip(bounds, bounds[1:]))


def test_audio_under_the_limit_is_one_segment():
    assert split_points(np.ones(5000, dtype=np.float32), 1000, max_seconds=60) == [0, 5000]
