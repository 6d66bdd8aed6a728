"""Audio in: read what libsndfile or FFmpeg (PyAV) decodes, downmix, resample to the model's rate, check, split.

Every failure is an AudioError with one line naming the file and what is wrong with it.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from qasr.errors import AudioError


def load_audio(path: str | Path, sample_rate: int) -> np.ndarray:
    """Mono float32 samples at `sample_rate` from a file."""
    data, rate = read_file(path)
    return prepare_waveform(data, rate, sample_rate, name=str(path))


def read_file(path: str | Path) -> tuple[np.ndarray, int]:
    """([frames, channels] float32 samples, their rate) of an audio file, as it is: what libsndfile reads (wav,
    flac, ogg, mp3, ...), else what FFmpeg decodes through PyAV (m4a/mp4/aac, webm/opus, video files' audio)."""
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if not path.is_file():
        raise AudioError(f"{path}: not a file")
    return _decode(str(path), str(path))


def decode_bytes(data: bytes, sample_rate: int, name: str = "<bytes>") -> np.ndarray:
    """Mono float32 samples at `sample_rate` from encoded audio in memory (any format read_file reads)."""
    import io

    if not data:
        raise AudioError(f"{name}: no bytes (empty input)")
    samples, rate = _decode(lambda: io.BytesIO(data), name)
    return prepare_waveform(samples, rate, sample_rate, name=name)


def _decode(source, name: str) -> tuple[np.ndarray, int]:
    """libsndfile first (exact, fast), then PyAV; `source` is a path or a callable giving a fresh file object."""
    import soundfile as sf

    try:
        return sf.read(source() if callable(source) else source, dtype="float32", always_2d=True)
    except Exception as exc:  # libsndfile reports corrupt and unknown formats alike
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        # "Error opening <_io.BytesIO object at 0x...>: Format not recognised.": the name is ours to say
        first = re.sub(r"^Error opening .*?: ", "", first)
    try:
        return _decode_with_av(source() if callable(source) else source)
    except AudioError as exc:
        raise AudioError(f"{name}: cannot decode audio ({first}; FFmpeg: {exc})") from None


def _decode_with_av(source) -> tuple[np.ndarray, int]:
    """The first audio stream through FFmpeg (PyAV), as [frames, channels] float32 and its rate."""
    try:
        import av
    except ImportError:
        raise AudioError("PyAV is not installed (pip install av)") from None
    try:
        with av.open(source, mode="r") as container:
            streams = container.streams.audio
            if not streams:
                raise AudioError("no audio stream")
            stream = streams[0]
            rate = stream.codec_context.sample_rate or stream.rate
            chunks = []
            for frame in container.decode(stream):
                array = frame.to_ndarray()                      # planar: [channels, n]; packed: [1, n * channels]
                channels = len(frame.layout.channels)
                if frame.format.is_planar:
                    array = array.T
                else:
                    array = array.reshape(-1, channels)
                chunks.append(_as_float(array))
    except AudioError:
        raise
    except Exception as exc:  # FFmpeg's errors (invalid data, unknown container) are all the same to the user
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        # "[Errno 1094995529] Invalid data found when processing input: '<none>'": the words only
        raise AudioError(re.sub(r"^\[Errno -?\d+\] |: '<none>'$", "", message)) from None
    if not chunks:
        raise AudioError("no audio frames")
    return np.concatenate(chunks), int(rate)


def _as_float(array: np.ndarray) -> np.ndarray:
    if np.issubdtype(array.dtype, np.floating):
        return array.astype(np.float32, copy=False)
    scale = float(np.iinfo(array.dtype).max) + 1.0
    return array.astype(np.float32) / np.float32(scale)


RESAMPLE_QUALITY = "HQ"   # libsoxr's high quality (its default): 20-bit precision, a steep anti-alias filter
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
    """Band-limited resampling with libsoxr (python-soxr, its "HQ" quality); live streams use the same resampler
    chunk by chunk and get the same samples (live/audio.py)."""
    import soxr

    if source == target:
        return np.asarray(data, dtype=np.float32)
    return soxr.resample(np.asarray(data, dtype=np.float32), source, target, quality=RESAMPLE_QUALITY)


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
