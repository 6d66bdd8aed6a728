"""Whisper-style log-mel features in numpy (what transformers' feature extractor computes, without torch).

Power STFT (Hann window, centred with reflect padding, last frame dropped), Slaney mel filters,
log10 floored at 1e-10, then at (max - 8) over the utterance, then (x + 4) / 4. Always computed per
utterance: padding waveforms to a common length would change the last frames of the shorter ones.
"""

from __future__ import annotations

import numpy as np

from qasr.exportformat.schema import FeatureSettings  # noqa: F401  (the settings are part of the export format)


def _hz_to_mel(freq: np.ndarray) -> np.ndarray:
    freq = np.asarray(freq, dtype=np.float64)
    min_log_hz, min_log_mel, logstep = 1000.0, 15.0, 27.0 / np.log(6.4)
    mels = 3.0 * freq / 200.0
    return np.where(freq >= min_log_hz, min_log_mel + np.log(np.maximum(freq, 1e-10) / min_log_hz) * logstep, mels)


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    mels = np.asarray(mels, dtype=np.float64)
    min_log_hz, min_log_mel, logstep = 1000.0, 15.0, np.log(6.4) / 27.0
    freq = 200.0 * mels / 3.0
    return np.where(mels >= min_log_mel, min_log_hz * np.exp(logstep * (mels - min_log_mel)), freq)


def slaney_mel_filters(n_fft: int, n_mels: int, sample_rate: int, f_min: float = 0.0,
                       f_max: float | None = None) -> np.ndarray:
    """[n_fft // 2 + 1, n_mels] triangular filters on the Slaney mel scale, Slaney (area) normalised."""
    f_max = sample_rate / 2 if f_max is None else f_max
    fft_freqs = np.linspace(0, sample_rate // 2, n_fft // 2 + 1)
    mel_points = np.linspace(_hz_to_mel(f_min), _hz_to_mel(f_max), n_mels + 2)
    filter_freqs = _mel_to_hz(mel_points)
    diff = np.diff(filter_freqs)
    slopes = filter_freqs[None, :] - fft_freqs[:, None]
    down = -slopes[:, :-2] / diff[:-1]
    up = slopes[:, 2:] / diff[1:]
    filters = np.maximum(0.0, np.minimum(down, up))
    filters *= (2.0 / (filter_freqs[2: n_mels + 2] - filter_freqs[:n_mels]))[None, :]
    return filters


class LogMel:
    def __init__(self, settings: FeatureSettings):
        self.settings = settings
        self.filters = slaney_mel_filters(settings.n_fft, settings.n_mels, settings.sample_rate).astype(np.float32)
        n = settings.n_fft
        self.window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)).astype(np.float32)  # periodic Hann

    def num_frames(self, num_samples: int) -> int:
        return max(num_samples, self.settings.min_samples) // self.settings.hop_length

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        """[n_mels, frames] float32 features of one utterance."""
        log_spec = self.utterance_spectrum(samples)
        return self.floored(log_spec, float(log_spec.max()))

    def utterance_spectrum(self, samples: np.ndarray) -> np.ndarray:
        """[frames, n_mels] log10 mel of one utterance (zero padded to min_samples, reflect padded, the last frame
        dropped as the reference does), before the floor."""
        s = self.settings
        x = np.asarray(samples, dtype=np.float32)
        if len(x) < s.min_samples:
            x = np.pad(x, (0, s.min_samples - len(x)))
        half = s.n_fft // 2
        x = np.pad(x, (half, half), mode="reflect")
        count = 1 + (len(x) - s.n_fft) // s.hop_length
        frames = np.lib.stride_tricks.as_strided(
            x, shape=(count - 1, s.n_fft), strides=(x.strides[0] * s.hop_length, x.strides[0]), writeable=False
        )
        return self.log_spectrum(frames)

    def log_spectrum(self, frames: np.ndarray) -> np.ndarray:
        """[count, n_mels] log10 mel power of windows of n_fft samples, before the utterance's floor."""
        spectrum = np.fft.rfft(frames * self.window, axis=-1)
        power = (spectrum.real ** 2 + spectrum.imag ** 2).astype(np.float32)
        return np.log10(np.maximum(power @ self.filters, self.settings.log_floor))

    def floored(self, log_spec: np.ndarray, peak: float) -> np.ndarray:
        """[n_mels, frames] features: `log_spec` floored at `peak` (the utterance's maximum) less the dynamic range."""
        log_spec = np.maximum(log_spec, peak - self.settings.dynamic_range)
        return ((log_spec + 4.0) / 4.0).T.astype(np.float32)
