"""The export equals the PyTorch reference: every graph alone, then whole greedy token sequences."""

from __future__ import annotations

import pytest

from qasr.reference.parity import format_report, graph_parity, token_parity, within_tolerance

NEW_TOKENS = 24


@pytest.mark.parametrize("layout", ["original", "hf"])
def test_each_graph_matches_reference(layout, references, engines, waves):
    errors = graph_parity(references[layout], engines[layout], list(waves.values()))
    print(format_report(errors, []))
    assert {e.graph.split()[0] for e in errors} == {"encoder", "projector", "decoder"}
    for error in errors:
        assert within_tolerance(error, "fp32"), error
        assert error.scale > 1.0  # the outputs compared are not all near zero


def _assert_sequences_equal(checks):
    print(format_report([], checks))
    for check in checks:
        assert len(check.reference) == NEW_TOKENS
        assert check.ours == check.reference, check.label
        # A constant or degenerate sequence cannot pass as parity, and the argmax must be stable.
        assert check.distinct >= 5, f"{check.label}: only {check.distinct} distinct tokens"
        assert check.min_margin > 1e-2, f"{check.label}: top-2 margin {check.min_margin} too small to trust"


@pytest.mark.parametrize("layout", ["original", "hf"])
@pytest.mark.parametrize("batched", [False, True], ids=["unbatched", "batched"])
def test_greedy_tokens_equal_generate(layout, batched, references, engines, waves):
    checks = token_parity(references[layout], engines[layout], list(waves.values()), NEW_TOKENS, batched=batched)
    _assert_sequences_equal(checks)


def test_forced_language_tokens_equal_generate(references, engines, waves):
    checks = token_parity(references["original"], engines["original"], [waves[0.3], waves[8.0]], NEW_TOKENS,
                          language="English", batched=True)
    _assert_sequences_equal(checks)


def test_batched_rows_equal_unbatched_rows(references, engines, waves):
    one = token_parity(references["hf"], engines["hf"], list(waves.values()), NEW_TOKENS, batched=False)
    many = token_parity(references["hf"], engines["hf"], list(waves.values()), NEW_TOKENS, batched=True)
    assert [c.ours for c in one] == [c.ours for c in many]
