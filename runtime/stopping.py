"""When a row stops (EOS, its token budget, a repeating tail) and the small logit filters.

The budget follows the audio: `budget_base + tokens_per_second * seconds`, so long speech is never
cut by a fixed cap. The repetition guard stops a row whose last `min_span` (or more) tokens are one
pattern of 1..max_period tokens repeated, and drops the repeats (one copy is kept); peers report
about 1 file in 10 looping to the cap without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

EOS, BUDGET, REPETITION = "eos", "budget", "repetition"
CANCELLED = "cancelled"   # the caller no longer wants the row (a client that hung up, a request answered already)

LogitFilter = Callable[[np.ndarray, int], None]  # (logits [batch, vocab], step) -> in place


@dataclass(frozen=True)
class DecodeOptions:
    tokens_per_second: float = 12.0
    budget_base: int = 32
    max_new_tokens: int | None = None   # a fixed budget for every row, instead of the audio-length one
    min_new_tokens: int = 0             # EOS is suppressed before this many tokens (benchmarks force lengths)
    repetition_max_period: int = 16     # 0 turns the guard off
    repetition_min_span: int = 64

    def budget(self, seconds: float) -> int:
        if self.max_new_tokens is not None:
            return self.max_new_tokens
        return int(self.budget_base + np.ceil(self.tokens_per_second * seconds))


def repeating_period(tokens: list[int], max_period: int, min_span: int) -> int | None:
    """The smallest period p <= max_period such that the last max(min_span, 2p) tokens repeat with period p."""
    n = len(tokens)
    if max_period <= 0 or n < min_span:
        return None
    for period in range(1, max_period + 1):
        span = max(min_span, 2 * period)
        if span > n:
            return None
        tail = tokens[n - span:]
        if all(tail[i] == tail[i - period] for i in range(period, span)):
            return period
    return None


def trim_repetition(tokens: list[int], period: int) -> list[int]:
    """Drop the repeated copies at the end, keeping the first copy of the pattern."""
    end = len(tokens)
    start = end
    while start - period >= 0 and tokens[start - period:start] == tokens[end - period:end]:
        start -= period
    return tokens[: start + period]


SUPPRESS = -3.0e38   # a graph's logit bias for a forbidden token: finite, so logits + bias stays a number


class LogitRules:
    """The logit rules of one generate() call, each defined once: the caller's host filters, then EOS forbidden
    for the first `min_new_tokens` tokens. On the host they edit the logits before the chooser; a graph that
    chooses itself (the fused decoder) takes the same EOS rule as its logit_bias input instead."""

    def __init__(self, eos_ids: tuple[int, ...], min_new_tokens: int, filters: tuple[LogitFilter, ...] = ()):
        self.eos = np.array(eos_ids, dtype=np.int64)
        self.min_new_tokens = min_new_tokens
        self.filters = filters

    @property
    def needs_logits(self) -> bool:
        """True when a rule must see the logits on the host (the caller's filters)."""
        return bool(self.filters)

    def apply(self, logits: np.ndarray, step: int) -> None:
        for apply in self.filters:
            apply(logits, step)
        if step < self.min_new_tokens and self.eos.size:
            logits[:, self.eos] = -np.inf

    def bias(self, step: int, vocab: int) -> np.ndarray | None:
        """The graph's logit bias for the choice at `step` when it differs from the step before (None: unchanged)."""
        if step == 0 or step == self.min_new_tokens:
            bias = np.zeros(vocab, dtype=np.float32)
            if step < self.min_new_tokens:
                bias[self.eos] = SUPPRESS
            return bias
        return None


def suppress_tokens_before(token_ids: tuple[int, ...], steps: int) -> LogitFilter:
    """A filter that forbids `token_ids` (EOS) for the first `steps` generated tokens."""
    ids = np.array(token_ids, dtype=np.int64)

    def apply(logits: np.ndarray, step: int) -> None:
        if step < steps and ids.size:
            logits[:, ids] = -np.inf

    return apply
