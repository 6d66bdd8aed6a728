"""One live stream: audio in, decode work out, events back. No engine calls here (runner.py makes them), so
the service can batch many streams' work together and a session can run its own.

A stream is a sequence of turns. With turn detection (server_vad) voice activity starts and ends them;
without it the caller commits. Each turn is decoded every `step_seconds` of new audio: the prompt is the
official one over all the turn's audio (its completed encoder windows kept, encoding.py), followed by the
turn's confirmed tokens, and the model continues from there. The policy (policy.py) confirms part of that
continuation; confirmed text only ever grows (`delta` events), the rest is the unconfirmed `tail`. When the
turn ends, a final decode continues the confirmed tokens to the end of the audio and `completed` carries its
text. A turn longer than `max_turn_seconds` (the model's segment limit, at most LIVE_TURN_SECONDS) is cut at
its quietest point within its last two steps and goes on as a new turn, so the work of one step stays bounded
however long the speech runs. Confirmed words end before that stretch (a word is confirmed once two steps saw
the next word start), so no confirmed word is heard again by the next turn.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from qasr.errors import QasrError

from ..audio import is_silent, quietest
from ..generate import Generation, PrefixCache, Prompt
from ..prompt import parse_output, partial_text
from ..stopping import DecodeOptions
from ..vad import WINDOW, trim_leading_silence
from .encoding import TurnEncoding
from .policy import POLICIES, Policy, WordStarts
from .turns import StreamingVad, TurnDetection, TurnTracker

LIVE_TURN_SECONDS = 30.0     # the longest turn decoded at once (docs/decisions/0024-live.md)
SILENCE = 1e-4               # digital silence at a turn's start is dropped, as offline (vad.trim_leading_silence)

SPEECH_STARTED, SPEECH_STOPPED, COMMITTED = "speech_started", "speech_stopped", "committed"
DELTA, TAIL, COMPLETED = "delta", "tail", "completed"


@dataclass(frozen=True)
class LiveOptions:
    language: str | None = None                  # a forced language (its canonical name); None: the model says
    context: str = ""
    turn_detection: TurnDetection | None = field(default_factory=TurnDetection)   # None: the caller commits
    policy: str = "agreement"                    # agreement (LocalAgreement-2) | rollback (official prefix)
    step_seconds: float = 0.5                    # a decode step per this much new audio
    rollback_tokens: int = 5                     # rollback: unconfirmed tokens at the end of each hypothesis
    max_turn_seconds: float | None = None        # None: the model's segment limit, at most LIVE_TURN_SECONDS
    reuse_prefix: bool = True                    # bring back the decoder cache up to the open window (when the engine can)
    decode: DecodeOptions = field(default_factory=DecodeOptions)

    def check(self) -> "LiveOptions":
        if self.policy not in POLICIES:
            raise QasrError(f"policy must be one of {', '.join(POLICIES)}, not {self.policy!r}")
        if not 0.05 <= self.step_seconds <= 10:
            raise QasrError(f"step_seconds must be between 0.05 and 10, not {self.step_seconds}")
        if self.max_turn_seconds is not None and self.max_turn_seconds < 2:
            raise QasrError(f"max_turn_seconds must be at least 2, not {self.max_turn_seconds}")
        if self.rollback_tokens < 0:
            raise QasrError("rollback_tokens must not be negative")
        if self.turn_detection is not None:
            self.turn_detection.check()
        return self


@dataclass(frozen=True)
class LiveEvent:
    kind: str                  # speech_started | speech_stopped | committed | delta | tail | completed
    turn: int                  # the turn's number in the stream, from 0
    text: str = ""             # delta: the confirmed text appended; tail: the unconfirmed text; completed: all
    start: float = 0.0         # the turn's start in the stream (s)
    end: float = 0.0           # speech_stopped: where speech stopped; committed/completed: the turn's end (s)
    at: float = 0.0            # the stream time (s of audio received) when it was made
    language: str | None = None   # completed: the language written or forced


class _Turn:
    def __init__(self, index: int, start: int, engine, speech: bool):
        self.index, self.start = index, start          # start: the stream sample of its first kept sample
        self.encoding = TurnEncoding(engine)
        self.confirmed: list[int] = []
        self.previous: list[int] | None = None         # the last step's unconfirmed continuation
        self.sent, self.tail = "", ""
        self.stepped_at = 0
        self.sound = False                              # any sample above digital silence yet
        self.speech = speech                            # any window voice activity called speech
        self.end: int | None = None                     # stream sample where it ended
        self.prefix: PrefixCache | None = None          # the decoder cache of the prompt up to the open window
        self.prefix_windows = 0                         # the completed windows it covers

    @property
    def samples(self) -> int:
        return self.encoding.mel.count

    def audio(self) -> np.ndarray:
        return self.encoding.mel.samples[: self.samples]


class StepWork:
    """One decode step of one turn: features to encode, then a prompt, then the result back to the stream."""

    def __init__(self, stream: "LiveStream", turn: _Turn, final: bool):
        self.stream, self.turn, self.final = stream, turn, final
        self.features = turn.encoding.pending()
        self.samples = turn.samples
        self.windows, self.reused = 0, 0

    def prompt(self) -> Prompt:
        """The official prompt over the turn's audio so far, then its confirmed tokens. The cache of the prompt up to
        the open window is kept (the template's head and the completed windows' audio tokens do not change) and
        brought back next step, so only the open window and what follows it are prefilled again."""
        stream, turn = self.stream, self.turn
        encoding = turn.encoding
        ids = stream.engine.prompts.build(encoding.audio_tokens(), stream.options.context, stream.options.language)
        budget = stream.options.decode.budget(self.samples / stream.rate) - len(turn.confirmed)
        reuse, keep = None, 0
        if stream.options.reuse_prefix and stream.engine.reuses_prefixes:
            window = encoding.window_tokens()
            if turn.prefix is not None:   # what is still the same: up to the first window encoded again
                still = stream.head + min(turn.prefix_windows, encoding.changed_from) * window
                if still > stream.head:
                    reuse = PrefixCache(still, tuple(kv[:, :still] for kv in turn.prefix.kv))
            if not self.final and encoding.complete:
                keep = stream.head + encoding.complete * window
        self.windows = encoding.complete
        prompt = Prompt(ids + turn.confirmed, encoding.embeddings(), max(budget, 8), reuse=reuse, keep=keep)
        self.reused = prompt.reused()
        return prompt


class LiveStream:
    def __init__(self, engine, options: LiveOptions = LiveOptions(), vad=None):
        self.engine, self.options = engine, options.check()
        self.rate = engine.features.settings.sample_rate
        limit = engine.manifest.limits.max_seconds
        self.max_turn = int((options.max_turn_seconds or min(limit, LIVE_TURN_SECONDS)) * self.rate)
        self.step = int(options.step_seconds * self.rate)
        self.policy = Policy(options.policy, WordStarts(engine.prompts.tokenizer), options.rollback_tokens)
        # prompt ids before the first audio placeholder: the part of every prompt that never changes
        self.head = engine.prompts.build(1, options.context, options.language).index(engine.prompts.audio_token_id)
        detect = options.turn_detection
        self.vad = StreamingVad(vad) if detect else None
        self.tracker = TurnTracker(detect) if detect else None
        self.received = 0                              # samples received (the stream clock)
        self.position = 0                              # samples past voice activity (whole windows)
        self.pending = np.zeros(0, dtype=np.float32)   # samples waiting for a whole VAD window
        self.recent = np.zeros(0, dtype=np.float32)    # the prefix padding heard before a turn starts
        self.open: _Turn | None = None
        self.closing: list[_Turn] = []
        self.turns = 0
        self.events: list[LiveEvent] = []
        self.stats = {"steps": 0, "final_steps": 0, "encoded_frames": 0, "prompt_tokens": 0, "generated": 0,
                      "reencoded_windows": 0, "reused_tokens": 0}

    # -- audio in ----------------------------------------------------------------------------------------
    def ingest(self, samples: np.ndarray) -> None:
        """Samples at the model's rate (float32)."""
        self.received += len(samples)
        if self.tracker is None:
            if len(samples):
                self._append(self._open(self.position, speech=True), samples)
            self.position += len(samples)
            return
        self.pending = np.concatenate([self.pending, samples]) if len(self.pending) else samples
        while len(self.pending) >= WINDOW:
            window, self.pending = self.pending[:WINDOW], self.pending[WINDOW:]
            self._window(window)

    def _window(self, window: np.ndarray) -> None:
        probability = self.vad.probability(window)
        change = self.tracker.feed(probability)
        start = self.position
        self.position += WINDOW
        if self.open is None and change == "start":
            prefix = self.recent[-self.tracker.prefix_samples:] if self.tracker.prefix_samples else self.recent[:0]
            turn = self._open(start - len(prefix), speech=True)
            self._emit(SPEECH_STARTED, turn, start=(start - len(prefix)) / self.rate)
            self._append(turn, prefix)
            self.recent = np.zeros(0, dtype=np.float32)
        if self.open is None:
            keep = self.tracker.prefix_samples
            self.recent = np.concatenate([self.recent, window])[-keep:] if keep else self.recent
            return
        turn = self.open
        turn.speech = turn.speech or probability >= self.tracker.settings.threshold
        self._append(turn, window)
        if change == "stop":
            stopped = self.position - self.tracker.silence_samples
            self._emit(SPEECH_STOPPED, turn, end=stopped / self.rate)
            self._close(turn, self.position)

    def _open(self, start: int, speech: bool) -> _Turn:
        if self.open is None:
            self.open = _Turn(self.turns, max(0, start), self.engine, speech)
            self.turns += 1
        return self.open

    def _append(self, turn: _Turn, samples: np.ndarray) -> None:
        if not turn.sound:   # digital silence before the first sound carries nothing (and the model hears words in it)
            kept = trim_leading_silence(samples, 0, len(samples), SILENCE)
            if kept is None:
                turn.start += len(samples)
                return
            turn.start += kept[0]
            samples = samples[kept[0]:]
            turn.sound = True
        turn.encoding.append(samples)
        if turn.samples >= self.max_turn:
            self._cut(turn)

    def _cut(self, turn: _Turn) -> None:
        """The turn reached its limit: end it at its quietest point near the end; the rest opens the next turn."""
        audio = turn.audio()
        frame = self.rate // 50
        lo = max(len(audio) // 2, len(audio) - 2 * self.step)
        cut = quietest(audio, lo, len(audio), frame) if len(audio) - lo >= frame else len(audio)
        first = _Turn(turn.index, turn.start, self.engine, turn.speech)
        first.encoding.append(audio[:cut])
        first.sound, first.confirmed, first.sent = True, turn.confirmed, turn.sent
        first.end = turn.start + cut
        self.closing.append(first)
        self._emit(COMMITTED, first, end=first.end / self.rate)
        rest = _Turn(self.turns, turn.start + cut, self.engine, speech=self.tracker is None)
        self.turns += 1
        rest.encoding.append(audio[cut:])
        rest.sound = not is_silent(audio[cut:], SILENCE) if cut < len(audio) else False
        self.open = rest
        if self.tracker is not None:
            self._emit(SPEECH_STARTED, rest, start=rest.start / self.rate)

    def _close(self, turn: _Turn, end: int) -> None:
        turn.end = end
        self.open = None
        self.closing.append(turn)
        self._emit(COMMITTED, turn, end=end / self.rate)

    # -- what the caller asks ----------------------------------------------------------------------------------
    def commit(self) -> bool:
        """End the open turn now (the caller's commit); False when there is no audio to commit."""
        self._flush_pending()
        if self.open is None or self.open.samples == 0:
            self.open = None
            return False
        self._close(self.open, self.position)
        if self.tracker is not None:
            self.tracker.speaking = False
        return True

    def clear(self) -> None:
        """Drop the open turn's audio (nothing is decoded of it)."""
        self.open, self.pending = None, np.zeros(0, dtype=np.float32)
        if self.tracker is not None:
            self.tracker.speaking = False

    def finish(self) -> None:
        """The audio ended: the open turn (if any) ends here."""
        self._flush_pending()
        if self.open is not None:
            if self.tracker is not None and self.open.speech:
                self._emit(SPEECH_STOPPED, self.open, end=self.position / self.rate)
            self._close(self.open, self.position)

    def _flush_pending(self) -> None:
        if len(self.pending) and self.open is not None:
            self._append(self.open, self.pending)
        self.position += len(self.pending)
        self.pending = np.zeros(0, dtype=np.float32)

    # -- decode work ---------------------------------------------------------------------------------------
    def work(self) -> StepWork | None:
        """The next decode step due, or None: a closed turn's final step first, else the open turn's next step."""
        while self.closing:
            turn = self.closing[0]
            if turn.sound and turn.speech and turn.samples:
                return StepWork(self, turn, final=True)
            self.closing.pop(0)   # nothing to decode: silence, or no speech in it
            self._emit(COMPLETED, turn, text=turn.sent, end=(turn.end or self.position) / self.rate)
        turn = self.open
        if turn is not None and turn.sound and turn.speech and turn.samples - turn.stepped_at >= self.step:
            return StepWork(self, turn, final=False)
        return None

    def apply(self, work: StepWork, generation: Generation) -> None:
        turn, engine = work.turn, self.engine
        language, languages = self.options.language, engine.languages
        self.stats["steps"] += 1
        self.stats["final_steps"] += work.final
        self.stats["encoded_frames"] += sum(f.shape[1] for f in work.features)
        self.stats["prompt_tokens"] += turn.encoding.audio_tokens() + len(turn.confirmed) - work.reused
        self.stats["generated"] += len(generation.tokens)
        turn.stepped_at = work.samples
        if generation.kept is not None:
            turn.prefix, turn.prefix_windows = generation.kept, work.windows
        elif work.final:
            turn.prefix = None
        self.stats["reused_tokens"] += work.reused
        hypothesis = generation.tokens
        if work.final:
            tokens = turn.confirmed + hypothesis
            parsed = parse_output(engine.prompts.decode(tokens), language, languages)
            self._delta(turn, parsed.text)
            self.closing.remove(turn)
            self.stats["reencoded_windows"] += turn.encoding.reencoded
            self._emit(COMPLETED, turn, text=parsed.text, end=(turn.end or self.position) / self.rate,
                       language=parsed.language)
            return
        if turn is not self.open:   # the turn was cut or cleared while its step ran
            return
        n = self.policy.confirm(hypothesis, turn.previous)
        turn.confirmed = turn.confirmed + hypothesis[:n]
        turn.previous = hypothesis[n:]
        confirmed = partial_text(engine.prompts.decode(turn.confirmed), language, languages)
        self._delta(turn, confirmed)
        whole = partial_text(engine.prompts.decode(turn.confirmed + hypothesis[n:]), language, languages)
        tail = whole[len(turn.sent):].strip() if whole.startswith(turn.sent) else ""
        if tail != turn.tail:
            turn.tail = tail
            self._emit(TAIL, turn, text=tail)

    def _delta(self, turn: _Turn, text: str) -> None:
        """Send what `text` adds to the confirmed text already sent (never anything that rewrites it)."""
        if text.startswith(turn.sent) and len(text) > len(turn.sent):
            self._emit(DELTA, turn, text=text[len(turn.sent):])
            turn.sent = text

    def _emit(self, kind: str, turn: _Turn, text: str = "", start: float | None = None, end: float = 0.0,
              language: str | None = None) -> None:
        self.events.append(LiveEvent(kind, turn.index, text, turn.start / self.rate if start is None else start,
                                     end, self.received / self.rate, language))

    def take_events(self) -> list[LiveEvent]:
        events, self.events = self.events, []
        return events
