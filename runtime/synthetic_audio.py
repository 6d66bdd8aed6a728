"""Speech-like test audio made from numbers: for checks against the reference and for benchmarks, with
no data files and no torch (it runs in a runtime-only install)."""

from __future__ import annotations

import numpy as np


def synthetic_speech(seconds: float, sample_rate: int = 16000, seed: int = 0) -> np.ndarray:
    """Deterministic speech-like audio: gliding harmonics with a syllable-rate envelope, plus noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    pitch = 120 + 40 * np.sin(2 * np.pi * 0.7 * t + seed)
    phase = 2 * np.pi * np.cumsum(pitch) / sample_rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 6))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3.1 * t + rng.uniform(0, 6))
    return (0.2 * voice * envelope + 0.01 * rng.standard_normal(len(t))).astype(np.float32)
