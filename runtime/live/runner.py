"""Decode work of many live streams as one encoder batch and one decoder batch (runs on the engine's thread)."""

from __future__ import annotations

from ..generate import Generation
from ..stopping import DecodeOptions
from .stream import StepWork


def run_work(engine, works: list[StepWork], decode: DecodeOptions | None = None) -> list[Generation]:
    """Encode every step's pending windows in one call, then decode all the steps' prompts in one call."""
    if not works:
        return []
    features = [f for work in works for f in work.features]
    embeds = engine.encode(features) if features else []
    at = 0
    for work in works:
        count = len(work.features)
        work.turn.encoding.accept(embeds[at: at + count])
        at += count
    return engine.generate([work.prompt() for work in works], decode or works[0].stream.options.decode)


def complete(works: list[StepWork], generations: list[Generation]) -> None:
    """Hand each result back to its stream (on the caller's thread)."""
    for work, generation in zip(works, generations):
        work.stream.apply(work, generation)
