"""The log-mel features of a turn that grows while it is spoken, each frame's spectrum computed once.

Offline features (runtime/features.py) floor the log-mel at the utterance's maximum less 8 (log10 units)
and pad the signal at both ends by reflection. Here a frame's spectrum is final as soon as the samples its
window covers have arrived (only the last couple of frames touch the end reflection, and they are
recomputed each time); the floor is applied to all frames with the maximum of the turn so far. The result
equals the offline features of the same samples (tested); a frame's *floored* value changes only when a
louder frame arrives, which encoding.py detects (docs/decisions/0024-live.md).
"""

from __future__ import annotations

import numpy as np

from ..features import LogMel


class StreamingLogMel:
    def __init__(self, logmel: LogMel):
        self.logmel = logmel
        s = logmel.settings
        self.hop, self.n_fft, self.half, self.min_samples = s.hop_length, s.n_fft, s.n_fft // 2, s.min_samples
        self.samples = np.zeros(1 << 16, dtype=np.float32)
        self.count = 0                                        # samples received
        self.spec = np.zeros((0, s.n_mels), dtype=np.float32)  # final frames' log10 mel (grown by doubling)
        self.final = 0                                        # frames in self.spec that are final
        self.peak = -np.inf                                   # the maximum over final frames

    def append(self, samples: np.ndarray) -> None:
        need = self.count + len(samples)
        if need > len(self.samples):
            grown = np.zeros(max(need, 2 * len(self.samples)), dtype=np.float32)
            grown[: self.count] = self.samples[: self.count]
            self.samples = grown
        self.samples[self.count: need] = samples
        self.count = need

    def _frames(self, lo: int, hi: int) -> np.ndarray:
        """Windows of frames lo..hi-1 of the reflect-padded signal received so far."""
        n = self.count
        index = np.arange(lo * self.hop, (hi - 1) * self.hop + self.n_fft) - self.half
        index = np.abs(index)                                   # reflection at the start
        index = np.where(index >= n, 2 * (n - 1) - index, index)  # and at the end
        padded = self.samples[index]
        return np.lib.stride_tricks.as_strided(padded, shape=(hi - lo, self.n_fft),
                                               strides=(padded.strides[0] * self.hop, padded.strides[0]),
                                               writeable=False)

    def log_spectrum(self) -> tuple[np.ndarray, float]:
        """([frames, n_mels] log10 mel of every frame so far, before the floor; their maximum)."""
        n = self.count
        if n < self.min_samples:   # offline pads a short utterance with zeros: no frame is final yet
            spec = self.logmel.utterance_spectrum(self.samples[:n])
            return spec, float(spec.max())
        total = n // self.hop
        final = min(total, max(0, (n - self.half) // self.hop + 1))
        if final > self.final:
            new = self.logmel.log_spectrum(self._frames(self.final, final))
            if len(self.spec) < final:
                grown = np.zeros((max(final, 2 * len(self.spec)), self.spec.shape[1]), dtype=np.float32)
                grown[: self.final] = self.spec[: self.final]
                self.spec = grown
            self.spec[self.final: final] = new
            self.peak = max(self.peak, float(new.max()))
            self.final = final
        tail = self.logmel.log_spectrum(self._frames(final, total)) if total > final else None
        spec = self.spec[:final] if tail is None else np.concatenate([self.spec[:final], tail])
        peak = self.peak if tail is None else max(self.peak, float(tail.max()))
        return spec, peak
