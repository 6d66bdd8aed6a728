"""Voice activity in a stream: when a turn starts and ends, as OpenAI's server_vad does.

The shipped Silero model (runtime/vad.py) scores each 512-sample window at 16 kHz, its recurrent state
carried from window to window. A turn starts at the first window scoring `threshold` or more, and takes
the `prefix_padding_ms` of audio heard before it; it ends once `silence_duration_ms` of windows have scored
below `threshold - 0.15` (the offline segmenter's hysteresis), keeping that silence.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..vad import CONTEXT, RATE, WINDOW, SileroVad

HYSTERESIS = 0.15


@dataclass(frozen=True)
class TurnDetection:
    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500

    def check(self) -> "TurnDetection":
        from qasr.errors import QasrError

        if not 0.0 < self.threshold < 1.0:
            raise QasrError(f"turn detection threshold must be between 0 and 1, not {self.threshold}")
        if not 0 <= self.prefix_padding_ms <= 5000 or not 0 < self.silence_duration_ms <= 10000:
            raise QasrError("prefix_padding_ms must be 0..5000 and silence_duration_ms 1..10000")
        return self


_SHARED: SileroVad | None = None


def shared_vad() -> SileroVad:
    global _SHARED
    if _SHARED is None:
        _SHARED = SileroVad()
    return _SHARED


class StreamingVad:
    """Speech probabilities of consecutive 512-sample windows of one stream."""

    def __init__(self, vad: SileroVad | None = None):
        self.vad = vad or shared_vad()
        self.state = np.zeros((2, 1, 128), dtype=np.float32)
        self.context = np.zeros((1, CONTEXT), dtype=np.float32)
        self.sr = np.array(RATE, dtype=np.int64)

    def probability(self, window: np.ndarray) -> float:
        x = np.concatenate([self.context, window[None, :]], axis=1)
        out, self.state = self.vad.session.run(None, {"input": x, "state": self.state, "sr": self.sr})
        self.context = x[:, -CONTEXT:]
        return float(out[0, 0])


class TurnTracker:
    """Turn boundaries from window probabilities: feed() each window, it says 'start', 'stop' or None."""

    def __init__(self, settings: TurnDetection):
        self.settings = settings
        self.speaking = False
        self.quiet = 0
        self.silence_windows = max(1, round(settings.silence_duration_ms / 1000 * RATE / WINDOW))
        self.off = max(settings.threshold - HYSTERESIS, 0.01)

    def feed(self, probability: float) -> str | None:
        if not self.speaking:
            if probability >= self.settings.threshold:
                self.speaking, self.quiet = True, 0
                return "start"
            return None
        if probability < self.off:
            self.quiet += 1
            if self.quiet >= self.silence_windows:
                self.speaking = False
                return "stop"
        else:
            self.quiet = 0
        return None

    @property
    def prefix_samples(self) -> int:
        return int(self.settings.prefix_padding_ms / 1000 * RATE)

    @property
    def silence_samples(self) -> int:
        return self.quiet * WINDOW
