"""Subtitle cues from transcripts: the limits people read by (2 lines of 42 characters, 7 s), cut at pauses and
word boundaries; parsed back with the srt and webvtt libraries."""

from __future__ import annotations

import io

import pytest

from qasr.runtime.subtitles import CueLimits, cues, to_srt, to_vtt, wrap
from qasr.runtime.transcribe import Segment, Transcript
from qasr.runtime.words import Word

pytestmark = pytest.mark.fast

TEXT = ("the quick brown fox jumps over the lazy dog while seven small birds sing. one two three four five six "
        "seven eight nine ten hundred thousand numbers, speech audio model hello world this is a test")


def _timed_words(text: str, start: float = 0.0, per_word: float = 0.3, pause_after: int | None = None) -> list[Word]:
    words, at = [], start
    for i, w in enumerate(text.split()):
        words.append(Word(w, at, at + per_word * 0.8))
        at += per_word + (1.0 if i == pause_after else 0.0)
    return words


def _check_limits(found, limits=CueLimits()):
    for cue in found:
        lines = wrap(cue.text, limits)
        assert 1 <= len(lines) <= limits.lines and all(len(line) <= limits.line_chars for line in lines), cue
        assert cue.end - cue.start <= limits.max_seconds + 1e-9, cue


def test_word_timed_cues_keep_the_limits_and_every_word():
    words = _timed_words(TEXT)
    transcript = Transcript("x", TEXT, segments=[Segment(0.0, words[-1].end, TEXT, "English", "eos", 40, words)])
    found = cues(transcript)
    assert len(found) > 2
    _check_limits(found)
    assert " ".join(c.text for c in found) == TEXT
    for cue in found:   # a cue starts at its first word and ends at its last
        assert any(abs(cue.start - w.start) < 1e-9 for w in words)


def test_a_pause_ends_a_cue_and_a_sentence_end_is_preferred():
    words = _timed_words("hello there my friend how are you today", pause_after=3)
    transcript = Transcript("x", segments=[Segment(0, 10, " ".join(w.word for w in words), None, "eos", 9, words)])
    assert [c.text for c in cues(transcript)] == ["hello there my friend", "how are you today"]
    sentence = _timed_words("this first sentence is long enough to end a cue. and then this one goes on")
    transcript = Transcript("x", segments=[Segment(0, 30, " ".join(w.word for w in sentence), None, "eos", 9,
                                                   sentence)])
    assert cues(transcript)[0].text.endswith("cue.")


def test_segments_without_words_are_cut_at_word_boundaries_within_their_times():
    segment = Segment(12.0, 40.0, TEXT, "English", "eos", 40)
    found = cues(Transcript("x", TEXT, segments=[segment, Segment(41.0, 42.0, "", None, "silence", 0)]))
    _check_limits(found)
    assert " ".join(c.text for c in found) == TEXT
    assert found[0].start == 12.0 and found[-1].end == 40.0
    assert all(a.end <= b.start + 1e-9 for a, b in zip(found, found[1:]))


def test_srt_and_vtt_parse_and_agree():
    import srt
    import webvtt

    words = _timed_words(TEXT, start=3.0)
    transcript = Transcript("x", TEXT, segments=[Segment(3.0, words[-1].end, TEXT, "English", "eos", 40, words)])
    parsed = list(srt.parse(to_srt(transcript)))
    captions = webvtt.from_buffer(io.StringIO(to_vtt(transcript))).captions
    assert [c.content for c in parsed] == [c.text for c in captions]
    assert [c.content.replace("\n", " ") for c in parsed] == [c.text for c in cues(transcript)]


def test_wrap_balances_two_lines():
    lines = wrap("one two three four five six seven eight nine ten eleven twelve")
    assert len(lines) == 2 and abs(len(lines[0]) - len(lines[1])) <= 8
    assert wrap("short line") == ["short line"]
    assert wrap("字" * 60) == ["字" * 30, "字" * 30]


def test_a_one_word_segment_stays_a_word():
    found = cues(Transcript("x", "six", segments=[Segment(1.0, 1.4, "six", "English", "eos", 1)]))
    assert [c.text for c in found] == ["six"]
