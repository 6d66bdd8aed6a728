"""Audio in: read any format soundfile knows, downmix, resample to the model's rate, check, split.

Every failure is an AudioError with one line naming the file and what is wrong with it.
"""

from __future__ import annotations

from math import gcd
from pathlib import Path

import numpy as np

from qasr.errors import AudioError


def load_audio(path: str | Path, sample_rate: int) -> np.ndarray:
    """Mono float32 samples at `sample_rate` from a file."""
    data, rate = read_file(path)
    return prepare_waveform(data, rate, sample_rate, name=str(path))


def read_file(path: str | Path) -> tuple[np.ndarray, int]:
    """([frames, channels] float32 samples, their rate) of an audio file, as it is."""
    import soundfile as sf

    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if not path.is_file():
        raise AudioError(f"{path}: not a file")
    try:
        return sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # libsndfile reports corrupt and unknown formats alike
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise AudioError(f"{path}: cannot decode audio ({reason})") from None


def decode_bytes(data: bytes, sample_rate: int, name: str = "<bytes>") -> np.ndarray:
    """Mono float32 samples at `sample_rate` from encoded audio in memory (any format soundfile reads)."""
    import io

    import soundfile as sf

    if not data:
        raise AudioError(f"{name}: no bytes (empty input)")
    try:
        samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise AudioError(f"{name}: cannot decode audio ({reason})") from None
    return prepare_waveform(samples, rate, sample_rate, name=name)


MIN_SAMPLE_RATE = 1000   # below this a file's declared rate is a mistake, not speech


def prepare_waveform(data: np.ndarray, rate: int, sample_rate: int, name: str = "audio") -> np.ndarray:
    """Check samples ([frames] or [frames, channels]), downmix to mono and resample to `sample_rate`."""
    data = mono(data, name)
    if data.size == 0:
        raise AudioError(f"{name}: the audio is empty (0 samples)")
    if rate < MIN_SAMPLE_RATE:
        raise AudioError(f"{name}: a sample rate of {rate} Hz is not audio we can transcribe (at least "
                         f"{MIN_SAMPLE_RATE} Hz)")
    if rate != sample_rate:
        data = resample(data, rate, sample_rate)
    return data


def mono(data, name: str = "audio") -> np.ndarray:
    """Samples ([frames] or [frames, channels]) downmixed to mono float32; NaN or infinite samples refused."""
    data = np.asarray(data)
    if data.ndim == 2:
        data = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    elif data.ndim != 1:
        raise AudioError(f"{name}: expected samples as [frames] or [frames, channels], got shape {data.shape}")
    data = data.astype(np.float32, copy=False)
    if not np.isfinite(data).all():
        raise AudioError(f"{name}: the audio contains NaN or infinite samples")
    return data


def resample(data: np.ndarray, source: int, target: int) -> np.ndarray:
    """Polyphase resampling (scipy's resample_poly, Kaiser-windowed FIR)."""
    from scipy.signal import resample_poly

    common = gcd(source, target)
    return resample_poly(data, target // common, source // common).astype(np.float32)


def is_silent(samples: np.ndarray, threshold: float) -> bool:
    """True when no sample reaches `threshold` (peak amplitude, full scale 1.0)."""
    return float(np.max(np.abs(samples))) < threshold


def split_points(samples: np.ndarray, sample_rate: int, max_seconds: float, search_seconds: float = 5.0,
                 window_seconds: float = 0.1) -> list[int]:
    """Cut points for audio longer than `max_seconds`, as the official qwen-asr package chooses them.

    Each cut lies at the quietest `window_seconds` window within +/- `search_seconds` of where the
    segment would reach `max_seconds`; returns the sample offsets of the segment boundaries,
    starting with 0 and ending with len(samples).
    """
    limit = int(max_seconds * sample_rate)
    search = int(search_seconds * sample_rate)
    window = max(1, int(window_seconds * sample_rate))
    bounds = [0]
    start = 0
    while len(samples) - start > limit:
        target = start + limit
        lo = max(start + window, target - search)
        hi = min(len(samples) - window, target + search, start + limit)
        cut = target if hi <= lo else quietest(samples, lo, hi + window, window)
        bounds.append(cut)
        start = cut
    bounds.append(len(samples))
    return bounds


def quietest(samples: np.ndarray, lo: int, hi: int, window: int) -> int:
    """The middle of the quietest `window` samples (least energy) within samples[lo:hi]."""
    energy = np.convolve(samples[lo:hi].astype(np.float64) ** 2, np.ones(window), mode="valid")
    return lo + int(np.argmin(energy)) + window // 2
