"""Audio files (or arrays) in, transcripts out: the whole pipeline over an Engine.

Per input: load and check the audio, skip digital silence, split long audio at quiet points, compute
features per segment. Segments are then batched (sorted by length, so short ones do not pay for
long ones), encoded, decoded greedily and parsed; a file's segment texts are joined.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Callable

import numpy as np

from .audio import is_silent, split_points
from .engine import Engine
from qasr.errors import QasrError
from .generate import Prompt
from .inputs import input_name, is_pair, read_input
from .prompt import language_name, parse_output, partial_text
from .stopping import DecodeOptions
from .vad import Stopped
from .words import Word

if TYPE_CHECKING:
    from .aligner import Aligner

NO_ALIGNER = ("word timestamps need a forced aligner export (asr-export --model Qwen/Qwen3-ForcedAligner-0.6B); "
              "give it with --aligner DIR")


@dataclass(frozen=True)
class TranscribeOptions:
    language: str | None = None          # force a language ('English' or 'en'); None lets the model say
    context: str = ""                    # system-prompt context (hot words, domain text)
    batch_size: int = 8
    max_segment_seconds: float | None = None  # None: the model's own limit (the export's manifest)
    vad: str = "auto"                    # auto: voice activity segments audio longer than that; on: always; off: never
    pauses: str | None = None            # merge | split speech regions at pauses; None: the model's (its manifest)
    silence_threshold: float = 1e-4      # peak amplitude below which audio counts as silence
    max_cache_gb: float = 4.0            # batches are cut so that their KV cache stays under this (one row may exceed)
    decode: DecodeOptions = field(default_factory=DecodeOptions)
    word_timestamps: bool = False        # each segment's words with start and end (needs the Transcriber's aligner)


@dataclass
class Segment:
    start: float
    end: float
    text: str
    language: str | None
    stop_reason: str
    tokens: int
    words: list[Word] | None = None      # with word timestamps: the text's words, times from the input's start

    def to_json(self) -> dict:
        data = {k: v for k, v in asdict(self).items() if k != "words"}
        if self.words is not None:
            data["words"] = [w.to_json() for w in self.words]
        return data


@dataclass
class Transcript:
    source: str
    text: str = ""
    language: str | None = None
    duration: float = 0.0
    segments: list[Segment] = field(default_factory=list)
    error: str | None = None

    def to_json(self) -> dict:
        return {**{k: v for k, v in asdict(self).items() if k != "segments"},
                "segments": [s.to_json() for s in self.segments]}


VAD_MODES = ("auto", "on", "off")


def load_segments(item, sample_rate: int, options: TranscribeOptions, model_max_seconds: float = 1200.0,
                  model_pauses: str = "merge", stop: Callable[[], bool] | None = None
                  ) -> tuple[Transcript, list[tuple[float, float, np.ndarray]]]:
    """Load and check one input, apply the silence rule and segment it: (transcript, segments).

    Segments are at most `options.max_segment_seconds` (default: `model_max_seconds`, the model's own
    limit). With voice activity (`vad` on, or auto and the audio is longer than the limit) they are
    speech regions merged up to the limit and split at the longest pauses, or one segment per region
    (`options.pauses`, default `model_pauses`: qasr.runtime.vad), and what is not speech is never
    decoded; with `vad` off long audio is cut at its quietest points.
    Bad input sets transcript.error; silence adds its empty segment; the segments left to decode come
    back as (start s, end s, samples). The PyTorch reference uses the same function, so comparisons
    isolate the model. `stop` (a caller that may stop wanting the input) is asked during voice activity, which
    then raises vad.Stopped.
    """
    transcript = Transcript(source=input_name(item))
    try:
        samples = read_input(item, sample_rate)
    except QasrError as exc:
        transcript.error = str(exc)
        return transcript, []
    transcript.duration = len(samples) / sample_rate
    if is_silent(samples, options.silence_threshold):
        transcript.segments.append(Segment(0.0, transcript.duration, "", None, "silence", 0))
        return transcript, []
    limit = options.max_segment_seconds or model_max_seconds
    if options.vad not in VAD_MODES:
        raise QasrError(f"vad must be one of {', '.join(VAD_MODES)}, not {options.vad!r}")
    if options.vad == "on" or (options.vad == "auto" and transcript.duration > limit):
        from qasr.exportformat.schema import check_pauses
        from .vad import vad_segments

        pieces = vad_segments(samples, limit, pauses=check_pauses(options.pauses or model_pauses, error=QasrError),
                              stop=stop)
        if not pieces:
            transcript.segments.append(Segment(0.0, transcript.duration, "", None, "no speech", 0))
    else:
        bounds = split_points(samples, sample_rate, limit)
        pieces = list(zip(bounds[:-1], bounds[1:]))
    return transcript, [(lo / sample_rate, hi / sample_rate, samples[lo:hi]) for lo, hi in pieces]


def finish(transcript: Transcript, language: str | None) -> None:
    """Join the segments' texts in time order; the language is the first one the model named, else the forced one."""
    transcript.segments.sort(key=lambda s: s.start)
    transcript.text = " ".join(s.text for s in transcript.segments if s.text).strip()
    languages = [s.language for s in transcript.segments if s.language]
    transcript.language = languages[0] if languages else (language if transcript.segments else None)


@dataclass
class _Job:
    transcript: Transcript
    index: int
    start: float
    end: float
    features: np.ndarray
    source: int = 0        # which input of the transcribe() call
    samples: np.ndarray | None = None   # kept for word alignment only


class _Partials:
    """Streaming: each watched input's text so far, as its segments decode (in any order, in batches).

    The text is stable in time order: finished segments up to the first unfinished one, then that one's
    text so far. Each watcher gets the whole text so far whenever it grows."""

    def __init__(self, watchers: dict[int, Callable[[str], None]], jobs: list[_Job]):
        self.watchers = watchers
        self.counts = {i: sum(1 for j in jobs if j.source == i) for i in watchers}
        self.texts: dict[int, dict[int, str]] = {i: {} for i in watchers}     # segment index -> text
        self.done: dict[int, set[int]] = {i: set() for i in watchers}
        self.sent = {i: "" for i in watchers}

    def update(self, job: _Job, text: str, finished: bool) -> None:
        if job.source not in self.watchers:
            return
        self.texts[job.source][job.index] = text
        if finished:
            self.done[job.source].add(job.index)
        parts = []
        for index in range(self.counts[job.source]):
            if index in self.texts[job.source] and self.texts[job.source][index]:
                parts.append(self.texts[job.source][index])
            if index not in self.done[job.source]:
                break
        whole = " ".join(parts)
        if whole != self.sent[job.source]:
            self.sent[job.source] = whole
            self.watchers[job.source](whole)


class _Ticker:
    """Progress inside a long batch: at most one line every TICK_SECONDS while it decodes."""
    TICK_SECONDS = 5.0

    def __init__(self, progress: Callable[[str], None], what: str):
        import time

        self.progress, self.what, self.clock = progress, what, time.monotonic
        self.last = self.clock()

    def __call__(self, tokens: int) -> None:
        if self.clock() - self.last >= self.TICK_SECONDS:
            self.last = self.clock()
            self.progress(f"{self.what}: {tokens} tokens so far")


class Transcriber:
    """`aligner` (runtime.aligner.Aligner): word timestamps for the options that ask for them."""

    def __init__(self, engine: Engine, aligner: "Aligner | None" = None):
        self.engine = engine
        self.aligner = aligner
        self.sample_rate = engine.features.settings.sample_rate
        self.batches_run = 0   # encoder + decoder runs so far (what cancellation saves shows here)

    def transcribe(self, inputs: list, options: TranscribeOptions = TranscribeOptions(),
                   partial: dict[int, Callable[[str], None]] | None = None, riders=None,
                   progress: Callable[[str], None] | None = None,
                   cancelled: dict[int, Callable[[], bool]] | None = None) -> list[Transcript]:
        """Each input is what qasr.runtime.inputs reads (a path, samples, bytes, ...). Bad inputs get `error`, others
        go on. `partial` (streaming): {input index: called with that input's text so far, as it decodes}.
        `riders` (runtime.live.runner.Riders, the service): live steps run in the first batch's encoder and decoder
        calls; their results are left in riders.results (None when there was nothing to decode). `progress`: called
        with a line after each batch (how much of the speech is done). `cancelled`: {input index: says whether that
        input is still wanted}; a cancelled input's segments are dropped before their batch and leave a batch
        already running at its next decode step (its transcript gets error "cancelled")."""
        if not isinstance(inputs, (list, tuple)) or is_pair(inputs):
            raise QasrError(f"transcribe() takes a list of inputs, not one {type(inputs).__name__}; wrap it in a list")
        options = self.checked(options)
        language = language_name(options.language, self.engine.languages)
        cancelled = cancelled or {}

        def unwanted(source: int) -> bool:
            return source in cancelled and cancelled[source]()

        transcripts, jobs = [], []
        for source, item in enumerate(inputs):
            try:
                if unwanted(source):
                    raise Stopped
                transcript, item_jobs = self._prepare(item, options, cancelled.get(source))
            except Stopped:   # gone before or while its audio was cut
                transcripts.append(Transcript(source=input_name(item)))
                continue
            transcripts.append(transcript)
            for job in item_jobs:
                job.source = source
            jobs.extend(item_jobs)
        partials = _Partials(partial, jobs) if partial else None
        jobs.sort(key=lambda j: j.features.shape[1])
        total, done = sum(j.end - j.start for j in jobs), 0.0
        gone = (lambda job: unwanted(job.source)) if cancelled else None
        for batch in self._batches(jobs, options):
            if gone is not None:
                batch = [job for job in batch if not gone(job)]
                if not batch and riders is None:
                    continue
            seconds = sum(j.end - j.start for j in batch)
            ticker = _Ticker(progress, f"decoding {done:.0f}-{done + seconds:.0f} s of {total:.0f} s") \
                if progress is not None else None
            self._run_batch(batch, language, options, partials, riders, gone, ticker)
            riders = None
            done += seconds
            if progress is not None:
                progress(f"transcribed {done:.0f} of {total:.0f} s of speech ({100 * done / max(total, 1e-9):.0f}%)")
        for source, transcript in enumerate(transcripts):
            if unwanted(source):
                transcript.error = "cancelled"
            finish(transcript, language)
        return transcripts

    def checked(self, options: TranscribeOptions) -> TranscribeOptions:
        """`options` as they will run: word timestamps need the aligner, and segments no longer than it aligns at
        a time (180 s, as the official package cuts audio when timestamps are on)."""
        if not options.word_timestamps:
            return options
        if self.aligner is None:
            raise QasrError(NO_ALIGNER)
        cap = self.aligner.max_seconds
        limit = min(options.max_segment_seconds or self.engine.manifest.limits.max_seconds, cap)
        return replace(options, max_segment_seconds=limit)

    def split(self, item, options: TranscribeOptions, stop: Callable[[], bool] | None = None
              ) -> tuple[Transcript, list[tuple[float, float, np.ndarray]]]:
        """One input read, checked and cut into the segments to decode (load_segments with this model's limits)."""
        options = self.checked(options)
        limits = self.engine.manifest.limits
        return load_segments(item, self.sample_rate, options, limits.max_seconds, limits.pauses, stop)

    def decode(self, transcript: Transcript, pieces: list[tuple[float, float, np.ndarray]], first_index: int,
               language: str | None, options: TranscribeOptions) -> list[Segment]:
        """Decode some of one input's segments as one batch (they are added to `transcript`); the new segments."""
        options = self.checked(options)
        jobs = self._jobs(transcript, pieces, first_index, options)
        before = len(transcript.segments)
        for batch in self._batches(sorted(jobs, key=lambda j: j.features.shape[1]), options):
            self._run_batch(batch, language, options)
        return sorted(transcript.segments[before:], key=lambda s: s.start)

    def _prepare(self, item, options: TranscribeOptions, stop: Callable[[], bool] | None = None
                 ) -> tuple[Transcript, list[_Job]]:
        transcript, pieces = self.split(item, options, stop)
        return transcript, self._jobs(transcript, pieces, 0, options)

    def _jobs(self, transcript: Transcript, pieces: list[tuple[float, float, np.ndarray]], first_index: int,
              options: TranscribeOptions) -> list[_Job]:
        """A job per segment, its features computed (and its samples kept when its words will be aligned)."""
        return [_Job(transcript, first_index + i, start, end, self.engine.features(samples),
                     samples=samples if options.word_timestamps else None)
                for i, (start, end, samples) in enumerate(pieces)]

    def _batches(self, jobs: list[_Job], options: TranscribeOptions):
        """Length-sorted jobs in batches of at most batch_size rows and max_cache_gb of KV cache."""
        limit = options.max_cache_gb * (1 << 30)
        batch: list[_Job] = []
        for job in jobs:
            slots = self.engine.audio_tokens(job.features.shape[1]) + 64 + options.decode.budget(job.end - job.start)
            too_big = (len(batch) + 1) * slots * self.engine.cache_slot_bytes > limit
            if batch and (len(batch) == options.batch_size or too_big):
                yield batch
                batch = []
            batch.append(job)
        if batch:
            yield batch

    def _run_batch(self, jobs: list[_Job], language: str | None, options: TranscribeOptions,
                   partials: _Partials | None = None, riders=None, gone=None, ticker: "_Ticker | None" = None) -> None:
        engine = self.engine
        self.batches_run += 1
        extra = riders.features() if riders is not None else []
        embeds = engine.encode([j.features for j in jobs] + extra)
        prompts = [
            Prompt(engine.prompts.build(len(e), options.context, language), e,
                   options.decode.budget(j.end - j.start))
            for j, e in zip(jobs, embeds)
        ]
        if riders is not None:
            prompts += riders.prompts(embeds[len(jobs):])
        watched = [row for row, job in enumerate(jobs) if partials and job.source in partials.watchers]

        def on_step(tokens: list[list[int]]) -> None:
            for row in watched:
                text = partial_text(engine.prompts.decode(tokens[row]), language, engine.languages)
                partials.update(jobs[row], text, finished=False)
            if ticker is not None:
                ticker(max((len(t) for t in tokens[:len(jobs)]), default=0))

        rows = len(prompts)
        cancelled = (lambda: [gone(job) for job in jobs] + [False] * (rows - len(jobs))) if gone else None
        generations = engine.generate(prompts, options.decode, on_step=on_step if watched or ticker else None,
                                      cancelled=cancelled)
        if riders is not None:
            riders.results = generations[len(jobs):]
        segments = []
        for job, generation in zip(jobs, generations):
            parsed = parse_output(engine.prompts.decode(generation.tokens), language, engine.languages)
            segments.append(Segment(job.start, job.end, parsed.text, parsed.language, generation.stop_reason,
                                    len(generation.tokens)))
        if options.word_timestamps:
            self._align(jobs, segments, language)
        for job, segment in zip(jobs, segments):
            job.transcript.segments.append(segment)
            if partials:
                partials.update(job, segment.text, finished=True)

    def _align(self, jobs: list[_Job], segments: list[Segment], language: str | None) -> None:
        """Each segment's words, timed in its own audio and offset by its start (voice activity's cuts)."""
        words = self.aligner.align_batch([(job.samples, segment.text, segment.language or language, job.start)
                                          for job, segment in zip(jobs, segments)])
        for segment, found in zip(segments, words):
            segment.words = found
