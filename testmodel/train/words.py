"""Synthetic speech whose word boundaries are known exactly: each word spoken alone by espeak-ng, trimmed to
where its samples start and stop, and joined with measured gaps (silence or touching), for training and
measuring the test aligner.

    python -m testmodel.train.words OUT_DIR [--count 40] [--seed 7] [--held-out]

A word's truth is the span of its own trimmed samples in the joined audio, exact to the sample. Held-out
utterances (`--held-out`) are spoken by voice variants and accents that the aligner's training never hears
(the test model's held-out variants); training draws from the test model's training variants and accents.
Output: 16 kHz FLAC files and `words.jsonl` (`audio`, `text`, `words`: [{word, start, end}] in seconds).
"""

from __future__ import annotations

import json
import random
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np

from qasr.runtime.cli_support import Progress, handle_errors

from .corpus import ACCENTS, HELD_OUT_VARIANTS, SAMPLE_RATE, VARIANTS, speak, vocabulary

TRIM_LEVEL = 0.02          # a word starts and ends where |sample| first and last reaches 2% of its peak
GAPS = (0.03, 0.45)        # seconds of silence between words ...
TOUCHING = 0.3             # ... or none (the words touch) this often
LEAD = (0.05, 0.8)         # silence before the first word and after the last
WORDS = (2, 10)
RATES = (130, 210)
PITCHES = (20, 80)
HELD_OUT_ACCENTS = ("en-us", "en-gb")
NOISE_SNR = (25.0, 45.0)   # light white noise on half the utterances (it moves no boundary)


@dataclass(frozen=True)
class Voice:
    accent: str
    variant: str
    rate: int
    pitch: int


def voices(count: int, seed: int, held_out: bool) -> list[Voice]:
    rng = random.Random(seed)
    variants = HELD_OUT_VARIANTS if held_out else tuple(v for v in VARIANTS if v != "michael")
    accents = HELD_OUT_ACCENTS if held_out else ACCENTS
    return [Voice(rng.choice(accents), rng.choice(variants), rng.randint(*RATES), rng.randint(*PITCHES))
            for _ in range(count)]


def trimmed(samples: np.ndarray) -> np.ndarray:
    loud = np.flatnonzero(np.abs(samples) >= TRIM_LEVEL * max(float(np.abs(samples).max()), 1e-6))
    return samples[loud[0]: loud[-1] + 1] if len(loud) else samples[:0]


def _speak_words(job: tuple[Voice, tuple[str, ...]]) -> list[np.ndarray]:
    voice, words = job
    return [trimmed(speak(w, voice.accent, voice.variant, voice.rate, voice.pitch)) for w in words]


def word_bank(voice_list: list[Voice], words: list[str], workers: int = 2, progress=lambda _: None
              ) -> dict[int, dict[str, np.ndarray]]:
    """{voice index: {word: trimmed samples}}: every word spoken alone by every voice."""
    bank: dict[int, dict[str, np.ndarray]] = {}
    with ProcessPoolExecutor(workers) as pool:
        for i, spoken in enumerate(pool.map(_speak_words, [(v, tuple(words)) for v in voice_list])):
            bank[i] = {w: s for w, s in zip(words, spoken) if len(s)}
            progress(f"word bank: voice {i + 1}/{len(voice_list)} ({voice_list[i].accent}+{voice_list[i].variant})")
    return bank


def join(spoken: list[tuple[str, np.ndarray]], rng: random.Random) -> tuple[np.ndarray, list[dict]]:
    """The words joined with random gaps, and each word's exact span (seconds)."""
    pieces, truth = [], []
    at = int(rng.uniform(*LEAD) * SAMPLE_RATE)
    pieces.append(np.zeros(at, np.float32))
    for i, (word, samples) in enumerate(spoken):
        if i:
            gap = 0 if rng.random() < TOUCHING else int(rng.uniform(*GAPS) * SAMPLE_RATE)
            pieces.append(np.zeros(gap, np.float32))
            at += gap
        truth.append({"word": word, "start": at / SAMPLE_RATE, "end": (at + len(samples)) / SAMPLE_RATE})
        pieces.append(samples.astype(np.float32))
        at += len(samples)
    pieces.append(np.zeros(int(rng.uniform(*LEAD) * SAMPLE_RATE), np.float32))
    audio = np.concatenate(pieces)
    if rng.random() < 0.5:
        snr = rng.uniform(*NOISE_SNR)
        power = float(np.mean(audio ** 2)) / 10 ** (snr / 10)
        audio = audio + np.random.default_rng(rng.getrandbits(32)).normal(0, power ** 0.5, len(audio)).astype(np.float32)
    return audio.astype(np.float32), truth


def utterance(bank: dict[int, dict[str, np.ndarray]], rng: random.Random, lengths: tuple[int, int] = WORDS,
              max_seconds: float = 9.0) -> tuple[np.ndarray, list[dict]]:
    voice = rng.choice(list(bank))
    words = list(bank[voice])
    chosen = []
    for _ in range(rng.randint(*lengths)):
        word = rng.choice(words)
        if sum(len(bank[voice][w]) for w in chosen + [word]) / SAMPLE_RATE > max_seconds * 0.7:
            break
        chosen.append(word)
    return join([(w, bank[voice][w]) for w in chosen or [words[0]]], rng)


def write_split(out: Path, count: int, seed: int, held_out: bool, progress=lambda _: None) -> Path:
    import soundfile as sf

    rng = random.Random(seed)
    words = vocabulary()
    voice_list = voices(6, seed, held_out)
    needed = sorted(set(rng.sample(words, min(len(words), 240))))
    bank = word_bank(voice_list, needed, progress=progress)
    (out / "words").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(count):
        audio, truth = utterance(bank, rng)
        name = f"words/{i:06d}.flac"
        sf.write(out / name, audio, SAMPLE_RATE, subtype="PCM_16")
        rows.append({"audio": name, "text": " ".join(t["word"] for t in truth),
                     "words": [{**t, "start": round(t["start"], 5), "end": round(t["end"], 5)} for t in truth]})
    manifest = out / "words.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


@click.command()
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--count", type=int, default=40, show_default=True)
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--held-out", is_flag=True, help="Voices the test aligner's training never hears.")
@handle_errors
def main(out: Path, count: int, seed: int, held_out: bool) -> None:
    """Write COUNT utterances of separately spoken words with their exact boundaries to OUT."""
    progress = Progress()
    manifest = write_split(out, count, seed, held_out, progress)
    progress(f"wrote {count} utterances and {manifest}")


if __name__ == "__main__":
    main()
