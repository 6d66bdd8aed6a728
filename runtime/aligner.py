"""Word timestamps: an aligner export (Qwen3-ForcedAligner, asr-export --model ALIGNER) loaded for inference.

One pass per utterance, no decoding loop: features, the encoder and projector (AudioFront, as for speech
recognition), then the aligner graph over `<|audio_start|>` + audio placeholders + `<|audio_end|>` + each word
followed by two `<timestamp>` slots. The time bin at each slot times the bin width is a start or an end; the
times are made monotonic (words.monotonic) and clipped to the audio. Audio longer than CHUNK_SECONDS is
aligned by the caller in pieces (the transcriber's segments never exceed it when words are asked for).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from qasr.errors import QasrError
from qasr.exportformat import Manifest, load_manifest, names

from .audio_front import NP_DTYPES, AudioFront
from .session import OrtRunner, disabled_optimizers_for
from .words import Word, monotonic, split_words

log = logging.getLogger(__name__)

# The official package aligns at most 180 s at a time (its segments are cut to this with timestamps on).
CHUNK_SECONDS = 180.0
# Rows of one aligner run: at most this many padded positions in all (attention is quadratic in a row's length;
# one 180 s row is ~2,400 positions), so memory stays bounded however many segments a batch holds.
RUN_POSITIONS = 4096


class Aligner:
    def __init__(self, export_dir: str | Path, providers: list[str] | None = None, threads: int = 0,
                 checksums: str = "cached"):
        start = time.perf_counter()
        self.manifest: Manifest = load_manifest(export_dir, checksums=checksums)
        m = self.manifest
        if not m.is_aligner:
            raise QasrError(f"{export_dir} is a speech recognition export, not an aligner; export a forced aligner "
                            "checkpoint (Qwen3-ForcedAligner) with asr-export and give that")
        disabled = disabled_optimizers_for(m.export)
        self.front = AudioFront(m, providers, threads, disabled)
        self.graph = OrtRunner(m.graph_path(names.ALIGNER), providers, threads, disabled)
        self.dtype = np.dtype(NP_DTYPES[m.graph_dtype(names.ALIGNER, names.DECODER_AUDIO_EMBEDS)])
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(m.tokenizer_path))
        self.alignment = m.alignment
        self.slot_id = self.alignment.timestamp_token_id
        self.audio_id = m.tokens.audio_token_id
        self.start_id, self.end_id = m.tokens.special["<|audio_start|>"], m.tokens.special["<|audio_end|>"]
        self.pad_id = m.tokens.pad_token_id
        self.sample_rate = m.features.sample_rate
        self.max_seconds = min(CHUNK_SECONDS, self.alignment.max_seconds)
        log.info("loaded aligner %s (%s) in %.2f s", export_dir, m.precision, time.perf_counter() - start)

    @property
    def providers(self) -> list[str]:
        return self.graph.providers

    def ids(self, audio_tokens: int, words: list[str]) -> list[int]:
        """The official input: audio delimiters around the placeholders, then each word and its two slots."""
        slot = self.alignment.timestamp_token
        text = "".join(w + slot + slot for w in words)
        return [self.start_id] + [self.audio_id] * audio_tokens + [self.end_id] + \
            self.tokenizer.encode(text, add_special_tokens=False).ids

    def align(self, samples: np.ndarray, text: str, language: str | None = None, offset: float = 0.0) -> list[Word]:
        """Words of `text` with start and end times (seconds, plus `offset`) in `samples` (16 kHz mono)."""
        return self.align_batch([(samples, text, language, offset)])[0]

    def align_batch(self, items: list[tuple[np.ndarray, str, str | None, float]]) -> list[list[Word]]:
        """align() for several (samples, text, language, offset) at once: one encoder and one aligner run."""
        split = [split_words(text, language) for _, text, language, _ in items]
        todo = [i for i, pairs in enumerate(split) if pairs]
        out: list[list[Word]] = [[] for _ in items]
        if not todo:
            return out
        for i in todo:
            seconds = len(items[i][0]) / self.sample_rate
            if seconds > self.max_seconds + 1e-6:
                raise QasrError(f"the aligner takes at most {self.max_seconds:g} s at a time, not {seconds:.1f} s; "
                                "align shorter pieces")
        features = [self.front.features(items[i][0]) for i in todo]
        embeds = self.front.encode(features)
        rows = [self.ids(len(e), [w for w, _ in split[i]]) for i, e in zip(todo, embeds)]
        bins: list[np.ndarray] = []
        for run in _runs([len(r) for r in rows], RUN_POSITIONS):
            bins += self.slot_outputs([rows[k] for k in run], [embeds[k] for k in run])
        for i, row_bins in zip(todo, bins):
            if len(row_bins) != 2 * len(split[i]):
                raise QasrError(f"the aligner's input has {len(row_bins)} timestamp slots for {len(split[i])} words: "
                                f"a word of {items[i][1]!r} holds the slot token")
            samples, _, _, offset = items[i]
            out[i] = self.words_at(row_bins, split[i], len(samples) / self.sample_rate, offset)
        return out

    def words_at(self, bins, pairs: list[tuple[str, str]], duration: float, offset: float = 0.0) -> list[Word]:
        """The official post-processing of one row's slot bins: times (bin x width) made monotonic, clipped to the
        audio's `duration`, plus `offset`; a Word per (word, surface form) of split_words."""
        ms = monotonic([float(b) * self.alignment.segment_ms for b in bins])
        times = [min(t / 1000.0, duration) + offset for t in ms]
        return [Word(surface, times[2 * k], times[2 * k + 1]) for k, (_, surface) in enumerate(pairs)]

    def slot_outputs(self, rows: list[list[int]], embeds: list[np.ndarray], output: str = names.SLOT_BINS
                     ) -> list[np.ndarray]:
        """Each row's `output` (SLOT_BINS, or SLOT_LOGITS) at its slots: one aligner run over the rows, right padded
        (attention is causal, so no real position sees the padding)."""
        length = max(len(r) for r in rows)
        slots = [np.flatnonzero(np.array(r) == self.slot_id) for r in rows]
        width = max(len(s) for s in slots)
        ids = np.full((len(rows), length), self.pad_id, dtype=np.int64)
        audio = np.zeros((len(rows), length, embeds[0].shape[-1]), dtype=self.dtype)
        positions = np.zeros((len(rows), width), dtype=np.int64)
        for row, (r, e, s) in enumerate(zip(rows, embeds, slots)):
            ids[row, :len(r)] = r
            audio[row, 1:1 + len(e)] = e
            positions[row, :len(s)] = s
            positions[row, len(s):] = s[-1]
        found = self.graph.infer({names.INPUT_IDS: ids, names.DECODER_AUDIO_EMBEDS: audio,
                                  names.SLOT_POSITIONS: positions})[output]
        return [found[row, :len(s)] for row, s in enumerate(slots)]


def _runs(lengths: list[int], limit: int) -> list[list[int]]:
    """Consecutive indices grouped so that each group's rows, padded to its longest, hold at most `limit`
    positions (a longer row runs alone)."""
    runs, run, longest = [], [], 0
    for i, n in enumerate(lengths):
        if run and (len(run) + 1) * max(longest, n) > limit:
            runs.append(run)
            run, longest = [], 0
        run.append(i)
        longest = max(longest, n)
    return runs + ([run] if run else [])
