"""Augmentations of log-mel features for training: frequency warping and SpecAugment masks.

Both act on the features the model is given (Whisper-style log-mel, [n_mels, frames]), so they cost
nothing in corpus generation and give every epoch new voices:

- frequency warping (vocal tract length perturbation, Jaitly & Hinton 2013): the spectrum is
  stretched by a factor `alpha` (every formant and harmonic frequency times alpha), as a shorter or
  longer vocal tract and a higher or lower voice would move them. Speech recognisers trained on adults
  use it to hear children; the range here (0.85-1.5) reaches child-like voices, which the corpus's
  espeak-ng training variants do not (their formant scales end near 1.35).
- SpecAugment (Park et al., 2019): a few bands of mel channels and spans of frames are set to the
  utterance's mean, so the model cannot lean on any one band or moment.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np

from qasr.runtime.features import FeatureSettings, _hz_to_mel, _mel_to_hz


def mel_centres(settings: FeatureSettings = FeatureSettings()) -> np.ndarray:
    """Centre frequency (Hz) of each mel channel, as slaney_mel_filters places them."""
    points = np.linspace(_hz_to_mel(0.0), _hz_to_mel(settings.sample_rate / 2), settings.n_mels + 2)
    return _mel_to_hz(points[1:-1])


def warp_frequency(features: np.ndarray, alpha: float, centres: np.ndarray | None = None) -> np.ndarray:
    """Features of the same speech with every frequency times `alpha` (>1: a higher, shorter-tract voice).

    Channel m of the result takes the log energy found at centre(m) / alpha in the input, interpolated
    between channels; frequencies above the input's top channel read as its quietest value."""
    centres = mel_centres() if centres is None else centres
    if features.shape[0] != len(centres):
        raise ValueError(f"features have {features.shape[0]} channels, expected {len(centres)}")
    mels = _hz_to_mel(centres)
    source = np.interp(_hz_to_mel(centres / alpha), mels, np.arange(len(centres)), right=np.nan)
    below = np.floor(np.nan_to_num(source)).astype(int).clip(0, len(centres) - 2)
    frac = (np.nan_to_num(source) - below)[:, None]
    warped = features[below] * (1 - frac) + features[below + 1] * frac
    warped[np.isnan(source)] = features.min()
    return warped.astype(features.dtype)


def mask(features: np.ndarray, rng: random.Random, freq_masks: int = 2, freq_width: int = 12,
         time_masks: int = 2, time_share: float = 0.05) -> np.ndarray:
    """SpecAugment: `freq_masks` bands of up to `freq_width` channels and `time_masks` spans of up to
    `time_share` of the frames set to the utterance's mean."""
    out = features.copy()
    fill = out.mean()
    channels, frames = out.shape
    for _ in range(freq_masks):
        width = rng.randint(0, freq_width)
        start = rng.randint(0, channels - width)
        out[start:start + width] = fill
    for _ in range(time_masks):
        width = rng.randint(0, max(0, int(frames * time_share)))
        start = rng.randint(0, frames - width)
        out[:, start:start + width] = fill
    return out


@dataclass(frozen=True)
class Augmentation:
    warp_share: float = 0.0          # share of utterances frequency-warped
    warp_range: tuple[float, float] = (0.85, 1.5)  # alpha, drawn log-uniformly
    mask_share: float = 0.0          # share of utterances given SpecAugment masks

    def __bool__(self) -> bool:
        return bool(self.warp_share or self.mask_share)

    def __call__(self, features: np.ndarray, rng: random.Random) -> np.ndarray:
        if rng.random() < self.warp_share:
            low, high = self.warp_range
            features = warp_frequency(features, math.exp(rng.uniform(math.log(low), math.log(high))))
        if rng.random() < self.mask_share:
            features = mask(features, rng)
        return features
