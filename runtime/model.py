"""The Python API: `qasr.Model(export_dir).transcribe(audio)`, in faster-whisper's shape.

`transcribe` returns `(segments, info)`: `segments` is a lazy iterator (each batch of segments is decoded when
iteration reaches it, in time order; stop iterating and nothing more is computed), `info` says the language,
the duration and the duration voice activity kept. Without a forced language the first batch is decoded at once
to name it, as faster-whisper detects the language before it returns. `transcribe_batch` runs many inputs
through the runtime's length-sorted batching at once and returns whole transcripts. `live` opens a live session
(audio fed while it is spoken, text confirmed as it is heard: qasr.runtime.live).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from .engine import Engine
from qasr.errors import AudioError, QasrError
from .inputs import is_pair
from .prompt import language_name
from .session import DEVICE_PROVIDERS
from .stopping import DecodeOptions
from .transcribe import VAD_MODES, Segment, TranscribeOptions, Transcriber, Transcript
from qasr.exportformat.schema import PAUSE_MODES

log = logging.getLogger(__name__)
TURN_DETECTION_DEFAULT = object()   # Model.live(): server_vad with OpenAI's defaults unless told otherwise


@dataclass(frozen=True)
class TranscriptionInfo:
    source: str                    # the input's name (its path, or <array>, <bytes>, ...)
    language: str | None           # the forced language, else the one the model named first (None: no speech)
    language_forced: bool
    duration: float                # seconds of audio
    duration_after_vad: float      # seconds left to decode after silence and voice activity removed the rest
    segments: int                  # how many segments will be decoded


class Model:
    """An export directory loaded for transcription.

    `device`: auto (CUDA when onnxruntime-gpu has it, else the CPU), cpu or cuda; `threads`: ONNX Runtime's
    intra-op threads (0: its default); `batch_size`: segments decoded together (and the CUDA-graph buckets);
    `checksums`: how the export's files are checked on load: cached (sha256 once per file version), full, size.
    `aligner`: a forced aligner export (asr-export of Qwen3-ForcedAligner) for `word_timestamps=True`.
    """

    def __init__(self, export_dir: str | os.PathLike, device: str = "auto", threads: int = 0, *, batch_size: int = 8,
                 checksums: str = "cached", cuda_graph: bool | None = None, aligner: str | os.PathLike | None = None):
        if device not in DEVICE_PROVIDERS:
            raise QasrError(f"unknown device {device!r}; choose from {', '.join(DEVICE_PROVIDERS)}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise QasrError(f"batch_size must be a positive integer, not {batch_size!r}")
        self.path = Path(export_dir)
        self.batch_size = batch_size
        self.engine = Engine(self.path, providers=DEVICE_PROVIDERS[device], threads=threads, checksums=checksums,
                             max_batch=batch_size, cuda_graph=cuda_graph)
        self.aligner = None
        if aligner is not None:
            from .aligner import Aligner

            self.aligner = Aligner(aligner, providers=DEVICE_PROVIDERS[device], threads=threads, checksums=checksums)
        self._transcriber = Transcriber(self.engine, self.aligner)

    @property
    def languages(self) -> tuple[str, ...]:
        """The languages the model may name (and may be forced to)."""
        return self.engine.languages

    @property
    def sample_rate(self) -> int:
        return self._transcriber.sample_rate

    @property
    def providers(self) -> list[str]:
        return self.engine.providers

    def options(self, language: str | None = None, *, context: str = "", vad: str = "auto", pauses: str | None = None,
                max_segment_seconds: float | None = None, batch_size: int | None = None,
                max_new_tokens: int | None = None, tokens_per_second: float = DecodeOptions.tokens_per_second,
                budget_base: int = DecodeOptions.budget_base, repetition_guard: bool = True,
                word_timestamps: bool = False) -> TranscribeOptions:
        """The options one transcription runs with, checked (one clear error each) before any audio is read."""
        if vad not in VAD_MODES:
            raise QasrError(f"vad must be one of {', '.join(VAD_MODES)}, not {vad!r}")
        if pauses is not None and pauses not in PAUSE_MODES:
            raise QasrError(f"pauses must be one of {', '.join(PAUSE_MODES)} or None, not {pauses!r}")
        if max_segment_seconds is not None and max_segment_seconds < 1.0:
            raise QasrError(f"max_segment_seconds must be at least 1, not {max_segment_seconds}")
        if max_new_tokens is not None and max_new_tokens < 1:
            raise QasrError(f"max_new_tokens must be at least 1, not {max_new_tokens}")
        batch_size = self.batch_size if batch_size is None else batch_size
        if not isinstance(batch_size, int) or batch_size < 1:
            raise QasrError(f"batch_size must be a positive integer, not {batch_size!r}")
        language_name(language, self.languages)   # an unknown language is refused here
        if tokens_per_second <= 0 or budget_base < 1:
            raise QasrError("tokens_per_second must be positive and budget_base at least 1")
        decode = DecodeOptions(tokens_per_second=tokens_per_second, budget_base=budget_base, max_new_tokens=max_new_tokens,
                               repetition_max_period=DecodeOptions.repetition_max_period if repetition_guard else 0)
        return self._transcriber.checked(TranscribeOptions(
            language=language, context=context, batch_size=batch_size, max_segment_seconds=max_segment_seconds, vad=vad,
            pauses=pauses, decode=decode, word_timestamps=bool(word_timestamps)))

    def transcribe(self, audio, language: str | None = None, **options) -> tuple[Iterator[Segment], TranscriptionInfo]:
        """One input (a path, a 16 kHz array, (array, sample_rate), bytes, a data URI or a binary file object):
        (a lazy iterator of its decoded segments in time order, TranscriptionInfo). Keyword options: see
        `options()`. Audio that cannot be read raises AudioError; silence gives no segments."""
        if isinstance(audio, (list, tuple)) and not (is_pair(audio) or _samples_and_rate(audio)):
            raise QasrError("transcribe() takes one input; use transcribe_batch() for several")
        settings = self.options(language, **options)
        transcript, pieces = self._transcriber.split(audio, settings)
        if transcript.error:
            raise AudioError(transcript.error)
        forced = language_name(language, self.languages)
        batches = [pieces[i:i + settings.batch_size] for i in range(0, len(pieces), settings.batch_size)]
        first: list[Segment] = []
        detected = forced
        if forced is None and batches:   # the first batch names the language, as faster-whisper's detection does
            first = self._transcriber.decode(transcript, batches[0], 0, None, settings)
            detected = next((s.language for s in first if s.language), None)
        info = TranscriptionInfo(transcript.source, detected, forced is not None, transcript.duration,
                                 sum(end - start for start, end, _ in pieces), len(pieces))
        log.debug("%s: %.1f s, %d segments to decode (%.1f s after voice activity)", info.source, info.duration,
                  info.segments, info.duration_after_vad)
        return self._segments(transcript, batches, first, forced, settings), info

    def _segments(self, transcript: Transcript, batches, first: list[Segment], language: str | None,
                  options: TranscribeOptions) -> Iterator[Segment]:
        yield from first
        index = len(batches[0]) if first else 0
        for batch in batches[1 if first else 0:]:
            yield from self._transcriber.decode(transcript, batch, index, language, options)
            index += len(batch)

    def live(self, language: str | None = None, *, sample_rate: int = 16000, context: str = "",
             turn_detection: "TurnDetection | None" = TURN_DETECTION_DEFAULT, policy: str = "agreement",
             step_seconds: float = 0.5, max_turn_seconds: float | None = None) -> "LiveSession":
        """A live transcription session: feed it audio as it is spoken (`sample_rate`: the rate you will feed,
        float or int16 samples), get events back (qasr.runtime.live: speech_started, delta, tail, completed...).
        `turn_detection`: voice activity ends turns (TurnDetection(threshold, prefix_padding_ms,
        silence_duration_ms)); None: you end them with session.commit(). `policy`: agreement or rollback."""
        from .live.session import LiveSession
        from .live.stream import LiveOptions
        from .live.turns import TurnDetection

        if turn_detection is TURN_DETECTION_DEFAULT:
            turn_detection = TurnDetection()
        options = LiveOptions(language=language_name(language, self.languages), context=context,
                              turn_detection=turn_detection, policy=policy, step_seconds=step_seconds,
                              max_turn_seconds=max_turn_seconds)
        return LiveSession(self.engine, options.check(), sample_rate)

    def transcribe_batch(self, audios: Iterable, language: str | None = None, *, progress=None,
                         **options) -> list[Transcript]:
        """Many inputs at once, batched by length across all of them: one Transcript each (text, language,
        duration, segments). An input that cannot be read gets `error` set and the others go on. `progress`: called
        with a line after each batch."""
        if isinstance(audios, (str, bytes, os.PathLike)) or is_pair(audios) or hasattr(audios, "read"):
            raise QasrError("transcribe_batch() takes a list of inputs; use transcribe() for one")
        return self._transcriber.transcribe(list(audios), self.options(language, **options), progress=progress)


def _samples_and_rate(item) -> bool:
    """(array, a number): meant as one input, whatever its rate's type (read_input says what is wrong with it)."""
    import numpy as np

    return len(item) == 2 and isinstance(item[0], np.ndarray) and isinstance(item[1], (int, float, np.number))
