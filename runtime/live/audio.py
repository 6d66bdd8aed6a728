"""Live audio in: samples of any declared rate, float or int16, to float32 at the model's rate, in a stream.

Resampling is the offline path's (libsoxr through python-soxr) run as a stream: a stream fed in pieces gives the
samples one resample of the whole recording gives (tested), with no edge effects at chunk borders.
"""

from __future__ import annotations

import numpy as np

from qasr.errors import AudioError

from ..audio import mono


def as_float(samples, name: str = "audio") -> np.ndarray:
    """Mono float32 in [-1, 1] from int16 or float samples ([frames] or [frames, channels])."""
    data = np.asarray(samples)
    if data.dtype == np.int16:
        data = data.astype(np.float32) / 32768.0
    elif not np.issubdtype(data.dtype, np.floating):
        raise AudioError(f"{name}: samples must be float or int16, not {data.dtype}")
    return mono(data, name)


class StreamResampler:
    """The offline resampler (audio.resample: libsoxr) on a signal that arrives in pieces: `push` returns the output
    samples ready so far, `flush` the rest; together the same samples as one resample of the whole (tested)."""

    def __init__(self, source: int, target: int):
        import soxr

        from ..audio import RESAMPLE_QUALITY

        if source <= 0 or target <= 0:
            raise AudioError(f"invalid sample rate {source}")
        self.identity = source == target
        if not self.identity:
            self.stream = soxr.ResampleStream(source, target, 1, dtype="float32", quality=RESAMPLE_QUALITY)

    def push(self, samples: np.ndarray) -> np.ndarray:
        if self.identity:
            return samples
        return self.stream.resample_chunk(np.asarray(samples, dtype=np.float32), last=False)

    def flush(self) -> np.ndarray:
        if self.identity:
            return np.zeros(0, dtype=np.float32)
        return self.stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)


class LiveInput:
    """A stream's declared rate to the model's: float32 samples at `target` Hz."""

    def __init__(self, source: int, target: int):
        if not isinstance(source, int) or isinstance(source, bool) or source <= 0:
            raise AudioError(f"the sample rate must be a positive integer, not {source!r}")
        self.source, self.target = source, target
        self.resampler = StreamResampler(source, target)

    def push(self, samples) -> np.ndarray:
        return self.resampler.push(as_float(samples))

    def flush(self) -> np.ndarray:
        return self.resampler.flush()
