"""Subtitles from a transcript's segments: SubRip (.srt) and WebVTT (.vtt).

One cue per segment that has text, timed by the segmentation (voice-activity regions, or the cuts of
the energy splitter); segments without speech give no cue.
"""

from __future__ import annotations

from .transcribe import Transcript

FORMATS = ("txt", "json", "srt", "vtt")


def _clock(seconds: float, separator: str) -> str:
    millis = max(0, int(round(seconds * 1000)))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def _cues(transcript: Transcript) -> list[tuple[float, float, str]]:
    return [(s.start, s.end, s.text) for s in sorted(transcript.segments, key=lambda s: s.start) if s.text]


def to_srt(transcript: Transcript) -> str:
    blocks = [f"{i}\n{_clock(a, ',')} --> {_clock(b, ',')}\n{text}\n" for i, (a, b, text) in
              enumerate(_cues(transcript), 1)]
    return "\n".join(blocks)


def to_vtt(transcript: Transcript) -> str:
    blocks = [f"{_clock(a, '.')} --> {_clock(b, '.')}\n{text}\n" for a, b, text in _cues(transcript)]
    return "WEBVTT\n\n" + "\n".join(blocks)
