"""The audio half every export shares: log-mel features, the encoder graph and the projector graph.

An Engine (speech recognition) and an Aligner (word timestamps) each hold one.
"""

from __future__ import annotations

import numpy as np

from qasr.exportformat import Manifest, names
from qasr.exportformat.audio_tokens import audio_token_count

from .features import LogMel
from .session import ObservedRunner, OrtRunner

NP_DTYPES = {"float32": np.float32, "float16": np.float16}

# The encoder runs long audio piece by piece (pieces cut at its attention windows: same result, bounded memory).
ENCODER_PIECE_WINDOWS = 8          # 8 windows of 800 frames: 64 s of audio per piece
ENCODER_RUN_FRAMES = 8 * 6400      # padded frames per encoder run (8 pieces of 64 s)


class AudioFront:
    """`observer` (calibration): called with host copies of every graph run's feeds, (graph name, feeds)."""

    def __init__(self, manifest: Manifest, providers: list[str] | None, threads: int, disabled, observer=None):
        m = manifest
        self.encoder = ObservedRunner.wrap(OrtRunner(m.graph_path(names.ENCODER), providers, threads, disabled),
                                           names.ENCODER, observer)
        self.projector = ObservedRunner.wrap(OrtRunner(m.graph_path(names.PROJECTOR), providers, threads, disabled),
                                             names.PROJECTOR, observer)
        self.features = LogMel(m.features)
        self.feature_dtype = np.dtype(NP_DTYPES[m.graph_dtype(names.ENCODER, names.INPUT_FEATURES)])
        audio = m.model.audio
        self.chunk_frames = audio.chunk_frames
        self.window_frames = audio.n_window_infer   # the encoder's attention window
        self.tokens_per_chunk = m.model.tokens_per_chunk

    def audio_tokens(self, frames: int) -> int:
        return audio_token_count(frames, self.chunk_frames, self.tokens_per_chunk)

    def encode(self, features: list[np.ndarray]) -> list[np.ndarray]:
        """Audio embeddings ([tokens, hidden]) for per-utterance features ([mels, frames]).

        The encoder attends within windows of n_window_infer frames only, so a long row is cut at window
        boundaries into pieces of at most ENCODER_PIECE_WINDOWS windows, and pieces run in batches of at
        most ENCODER_RUN_FRAMES padded frames: memory stays bounded however long the audio, and the
        embeddings are the same as one run over the whole row (tested)."""
        size = self.window_frames * ENCODER_PIECE_WINDOWS
        pieces = [(row, f[:, i: i + size]) for row, f in enumerate(features) for i in range(0, f.shape[1], size)]
        by_length = sorted(range(len(pieces)), key=lambda i: -pieces[i][1].shape[1])   # little padding per run
        runs, run = [], []
        for index in by_length:
            if run and (len(run) + 1) * self._padded(pieces[run[0]][1].shape[1]) > ENCODER_RUN_FRAMES:
                runs.append(run)
                run = []
            run.append(index)
        runs.append(run)
        embeds: dict[int, np.ndarray] = {}
        for run in runs:
            embeds.update(zip(run, self._encode_run([pieces[i][1] for i in run])))
        parts: list[list[np.ndarray]] = [[] for _ in features]
        for index, (row, _) in enumerate(pieces):   # pieces are in row and time order
            parts[row].append(embeds[index])
        return [np.concatenate(p) if len(p) > 1 else p[0] for p in parts]

    def _padded(self, frames: int) -> int:
        return -(-frames // self.chunk_frames) * self.chunk_frames

    def _encode_run(self, features: list[np.ndarray]) -> list[np.ndarray]:
        frames = self._padded(max(f.shape[1] for f in features))
        batch = np.zeros((len(features), features[0].shape[0], frames), dtype=self.feature_dtype)
        for row, f in enumerate(features):
            batch[row, :, : f.shape[1]] = f
        lengths = np.array([f.shape[1] for f in features], dtype=np.int64)
        hidden = self.encoder.infer({names.INPUT_FEATURES: batch, names.FEATURE_LENGTHS: lengths})[names.AUDIO_HIDDEN]
        embeds = self.projector.infer({names.AUDIO_HIDDEN: hidden})[names.AUDIO_EMBEDS]
        return [embeds[row, : self.audio_tokens(int(n))] for row, n in enumerate(lengths)]

