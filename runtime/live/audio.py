"""Live audio in: samples of any declared rate, float or int16, to float32 at the model's rate, in a stream.

Resampling is the same polyphase filter as the offline path (scipy's resample_poly: Kaiser-windowed FIR,
zero phase), computed chunk by chunk with the filter's history kept, so a stream fed in pieces gives the
samples resample_poly gives for the whole recording (tested), with no edge effects at chunk borders.
"""

from __future__ import annotations

from math import gcd

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
    """resample_poly(x, up, down) of a signal that arrives in pieces: `push` returns the output samples the
    input so far determines, `flush` the rest (as if the signal ended with zeros, as resample_poly pads)."""

    def __init__(self, source: int, target: int):
        from scipy.signal import firwin

        if source <= 0 or target <= 0:
            raise AudioError(f"invalid sample rate {source}")
        common = gcd(source, target)
        self.up, self.down = target // common, source // common
        self.identity = self.up == self.down
        if self.identity:
            return
        big = max(self.up, self.down)
        self.half = 10 * big                                   # resample_poly's half length
        self.h = firwin(2 * self.half + 1, 1.0 / big, window=("kaiser", 5.0)).astype(np.float64) * self.up
        self.history = np.zeros(0, dtype=np.float64)           # input samples still needed
        self.first = 0                                         # index of history[0] in the input
        self.total = 0                                         # input samples seen
        self.emitted = 0                                       # output samples returned

    def _outputs(self, end: int) -> np.ndarray:
        """Output samples self.emitted .. end-1 from the history (zeros past the input's end)."""
        from scipy.signal import upfirdn

        if end <= self.emitted:
            return np.zeros(0, dtype=np.float32)
        first = self.emitted * self.down + self.half          # their indices in the upsampled signal
        last = (end - 1) * self.down + self.half
        lo = max(0, -(-(first - len(self.h) + 1) // self.up))  # the inputs that reach them
        hi = min(self.total - 1, last // self.up)
        if hi < lo:
            out = np.zeros(end - self.emitted, dtype=np.float32)
        else:
            filtered = upfirdn(self.h, self.history[lo - self.first: hi + 1 - self.first], self.up, 1)
            index = np.arange(first, last + 1, self.down) - lo * self.up
            out = np.where(index < len(filtered), filtered[np.minimum(index, len(filtered) - 1)], 0.0)
            out = out.astype(np.float32)
        self.emitted = end
        return out

    def push(self, samples: np.ndarray) -> np.ndarray:
        if self.identity:
            return samples
        self.history = np.concatenate([self.history, samples.astype(np.float64)])
        self.total += len(samples)
        # output j is final once every input it touches has arrived: centre // up < total
        ready = max(0, (self.total * self.up - self.half - 1) // self.down + 1) if self.total else 0
        out = self._outputs(ready)
        keep_from = max(0, (self.emitted * self.down + self.half - len(self.h)) // self.up)
        if keep_from > self.first:
            self.history = self.history[keep_from - self.first:]
            self.first = keep_from
        return out

    def flush(self) -> np.ndarray:
        """The output samples that remain when the input ends (resample_poly's length: ceil(n * up / down))."""
        if self.identity:
            return np.zeros(0, dtype=np.float32)
        return self._outputs(-(-self.total * self.up // self.down))


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
