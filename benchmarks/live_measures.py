"""What the live benchmarks share: held-out utterances joined into streams, word ends estimated as recognition
points, percentiles (qasr.benchmarks.live and qasr.benchmarks.live_load)."""

from __future__ import annotations

import numpy as np

from qasr.reference.wer import normalise

PREFIX_STEP = 0.1     # seconds between the audio prefixes that estimate word ends
PAUSE_SECONDS = 1.0   # between utterances joined into a long recording


def recognition_points(transcriber, samples: np.ndarray, words: list[str]) -> list[float | None]:
    """For each word of `words`, the shortest prefix (s) whose offline transcript begins with words[:i+1]."""
    from qasr.runtime.transcribe import TranscribeOptions

    points: list[float | None] = [None] * len(words)
    ends = np.arange(PREFIX_STEP, len(samples) / 16000 + PREFIX_STEP, PREFIX_STEP)
    prefixes = [samples[: int(min(t, len(samples) / 16000) * 16000)] for t in ends]
    texts = [t.text for t in transcriber.transcribe(prefixes, TranscribeOptions(vad="off"))]
    for t, text in zip(ends, texts):
        got = normalise(text).split()
        for i in range(len(words)):
            if points[i] is None and got[: i + 1] == words[: i + 1]:
                points[i] = float(min(t, len(samples) / 16000))
    return points


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def joined(utterances, count: int | None = None, seconds: float | None = None,
           pause: float = PAUSE_SECONDS) -> tuple[np.ndarray, list[str]]:
    """Held-out utterances joined with `pause` seconds of silence: the first `count`, or as many as fill `seconds`
    (cycling through the set)."""
    from qasr.runtime.audio import load_audio

    parts, texts, total, i = [], [], 0.0, 0
    while (count is not None and i < count) or (seconds is not None and total < seconds):
        utt = utterances[i % len(utterances)]
        audio = load_audio(utt.audio, 16000)
        parts += [audio, np.zeros(int(pause * 16000), dtype=np.float32)]
        texts.append(utt.text)
        total += len(audio) / 16000 + pause
        i += 1
    samples = np.concatenate(parts)
    if seconds is not None:
        samples = samples[: int(seconds * 16000)]
    return samples, texts
