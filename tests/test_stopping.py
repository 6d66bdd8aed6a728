"""Token budgets follow the audio; the repetition guard catches loops and nothing else."""

from __future__ import annotations

from qasr.runtime.stopping import DecodeOptions, repeating_period, trim_repetition


def test_budget_follows_audio_length():
    options = DecodeOptions()
    assert options.budget(0.5) < options.budget(60) < options.budget(1200)
    assert options.budget(1200) >= 12 * 1200  # no fixed cap that silently truncates long speech
    assert DecodeOptions(max_new_tokens=7).budget(1200) == 7


def test_repetition_guard_finds_loops():
    loop = [5, 6, 7] + [1, 2, 3, 4] * 20
    assert repeating_period(loop, 16, 64) == 4
    assert trim_repetition(loop, 4) == [5, 6, 7, 1, 2, 3, 4]
    assert repeating_period([9] * 64, 16, 64) == 1


def test_repetition_guard_leaves_ordinary_text_alone():
    assert repeating_period(list(range(100)), 16, 64) is None
    assert repeating_period([1, 2] * 10, 16, 64) is None           # shorter than the span
    assert repeating_period([1, 2] * 40, 0, 64) is None             # guard off
    assert repeating_period(list(range(40)) + [3] * 30, 16, 64) is None
