"""Token budgets follow the audio; the repetition guard catches loops and nothing else."""

from __future__ import annotations

from qasr.runtime.stopping import DecodeOptions, repeating_period, trim_repetition
import pytest

pytestmark = pytest.mark.fast   # no export: the fast tier (pytest -m fast)


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


def test_logit_rules_forbid_eos_before_min_new_tokens_on_the_host_and_in_the_graph_bias():
    """min_new_tokens is one rule: on host logits it forbids EOS for the first N choices; a choosing graph gets the
    same as its logit_bias (set for choice 0, cleared exactly at choice N, untouched otherwise)."""
    import numpy as np

    from qasr.runtime.generate import Greedy
    from qasr.runtime.stopping import SUPPRESS, LogitRules

    rules = LogitRules((3, 5), min_new_tokens=2)
    logits = np.zeros((2, 8), dtype=np.float32)
    logits[:, 5], logits[:, 1] = 9.0, 1.0   # EOS first, token 1 second
    for step, expected in ((0, 1), (1, 1), (2, 5)):
        row = logits.copy()
        rules.apply(row, step)
        assert list(Greedy().choose(row)) == [expected, expected]
    bias0, bias2 = rules.bias(0, 8), rules.bias(2, 8)
    assert list(np.flatnonzero(bias0 == SUPPRESS)) == [3, 5] and not bias2.any()
    assert rules.bias(1, 8) is None and rules.bias(3, 8) is None and not rules.needs_logits
    none = LogitRules((3,), min_new_tokens=0, filters=(lambda l, s: None,))
    assert not none.bias(0, 8).any() and none.bias(1, 8) is None and none.needs_logits
