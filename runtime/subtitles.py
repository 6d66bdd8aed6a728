"""Subtitles people can read: SubRip (.srt) and WebVTT (.vtt) cues of at most two lines of 42 characters and 7
seconds (the usual subtitle guidelines: CueLimits), never across a pause in speech.

With word times (an aligner) a cue is cut at a word boundary: before a word that would overflow it, after a
pause of PAUSE_SECONDS or more between words, or after a sentence's end once the cue holds a line's worth.
Without them each decoded segment is a run of speech (asr-transcribe and the service decode subtitles a speech
region at a time: voice activity on, pauses split), and a segment too long for one cue is cut at word
boundaries with times shared out by characters across the segment: an estimate, said so in the README.
"""

from __future__ import annotations

from dataclasses import dataclass

from .transcribe import Segment, Transcript
from .words import Word, is_cjk

FORMATS = ("txt", "json", "srt", "vtt")
SENTENCE_END = (".", "?", "!", "。", "？", "！")


@dataclass(frozen=True)
class CueLimits:
    line_chars: int = 42
    lines: int = 2
    max_seconds: float = 7.0
    pause_seconds: float = 0.5      # a gap between words this long ends a cue
    min_seconds: float = 0.7        # a cue stays up at least this long when the next one leaves room

    @property
    def chars(self) -> int:
        return self.line_chars * self.lines


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    text: str


def _join(left: str, right: str) -> str:
    if not left:
        return right
    return left + ("" if is_cjk(left[-1]) and is_cjk(right[0]) else " ") + right


def _word_cues(words: list[Word], limits: CueLimits) -> list[Cue]:
    cues, text, start, last = [], "", 0.0, None
    for word in words:
        if last is not None:
            joined = _join(text, word.word)
            if (len(joined) > limits.chars or word.end - start > limits.max_seconds
                    or word.start - last.end >= limits.pause_seconds
                    or (text.endswith(SENTENCE_END) and len(text) >= limits.line_chars)):
                cues.append(Cue(start, last.end, text))
                text, last = "", None
        if last is None:
            text, start = word.word, word.start
        else:
            text = _join(text, word.word)
        last = word
    if last is not None:
        cues.append(Cue(start, last.end, text))
    return cues


def _segment_cues(segment: Segment, limits: CueLimits) -> list[Cue]:
    """A segment without word times: cut at word boundaries, times shared out by characters."""
    text = segment.text.strip()
    unspaced = " " not in text and any(is_cjk(c) for c in text)   # CJK text: cut between characters
    tokens = list(text) if unspaced else text.split()
    total = max(1, sum(len(t) for t in tokens))
    per_char = (segment.end - segment.start) / total
    words, at = [], segment.start
    for token in tokens:
        words.append(Word(token, at, at + len(token) * per_char))
        at += len(token) * per_char
    cues = _word_cues(words, limits)
    if cues:   # the segment's own bounds, not the estimate, at its ends
        cues[0] = Cue(segment.start, cues[0].end, cues[0].text)
        cues[-1] = Cue(cues[-1].start, segment.end, cues[-1].text)
    return cues


def cues(transcript: Transcript, limits: CueLimits = CueLimits()) -> list[Cue]:
    out: list[Cue] = []
    for segment in sorted(transcript.segments, key=lambda s: s.start):
        if not segment.text:
            continue
        out += _word_cues(segment.words, limits) if segment.words else _segment_cues(segment, limits)
    for i, cue in enumerate(out):   # short cues stay up a little longer where the next one leaves room
        room = out[i + 1].start if i + 1 < len(out) else cue.end + limits.min_seconds
        if cue.end - cue.start < limits.min_seconds:
            out[i] = Cue(cue.start, max(cue.end, min(cue.start + limits.min_seconds, room)), cue.text)
    return out


def wrap(text: str, limits: CueLimits = CueLimits()) -> list[str]:
    """At most `lines` lines of `line_chars`, split at the space nearest the middle (balanced lines)."""
    if len(text) <= limits.line_chars:
        return [text]
    spaces = [i for i, c in enumerate(text) if c == " "]
    fits = [i for i in spaces if i <= limits.line_chars and len(text) - i - 1 <= limits.line_chars]
    if fits:
        cut = min(fits, key=lambda i: abs(len(text) / 2 - i))
        return [text[:cut], text[cut + 1:]]
    if not spaces:   # unspaced scripts (CJK): split by characters
        half = -(-len(text) // 2)
        return [text[:half], text[half:]]
    cut = max((i for i in spaces if i <= limits.line_chars), default=spaces[0])
    return [text[:cut], text[cut + 1:]]


def _clock(seconds: float, separator: str) -> str:
    millis = max(0, int(round(seconds * 1000)))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def to_srt(transcript: Transcript, limits: CueLimits = CueLimits()) -> str:
    blocks = [f"{i}\n{_clock(c.start, ',')} --> {_clock(c.end, ',')}\n" + "\n".join(wrap(c.text, limits)) + "\n"
              for i, c in enumerate(cues(transcript, limits), 1)]
    return "\n".join(blocks)


def to_vtt(transcript: Transcript, limits: CueLimits = CueLimits()) -> str:
    blocks = [f"{_clock(c.start, '.')} --> {_clock(c.end, '.')}\n" + "\n".join(wrap(c.text, limits)) + "\n"
              for c in cues(transcript, limits)]
    return "WEBVTT\n\n" + "\n".join(blocks)
