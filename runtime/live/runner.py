"""Decode work of many live streams as one encoder batch and one decoder batch (runs on the engine's thread).

`Riders` lets the steps ride along in a file transcription's first batch (Transcriber.transcribe): their windows
are encoded in the same encoder call as the file's segments and their prompts decoded in the same decoder call.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..generate import Generation, Prompt
from ..stopping import DecodeOptions
from .stream import StepWork


@dataclass
class Riders:
    """Live steps to run inside another batch; `results` is set (in order) once they ran."""
    works: list[StepWork]
    results: list[Generation] | None = None

    def features(self) -> list[np.ndarray]:
        return [f for work in self.works for f in work.features]

    def prompts(self, embeds: list[np.ndarray]) -> list[Prompt]:
        """Each step's embeddings (of features(), in order) handed to its turn, then its prompt."""
        at = 0
        for work in self.works:
            count = len(work.features)
            work.turn.encoding.accept(embeds[at: at + count])
            at += count
        return [work.prompt() for work in self.works]


def run_work(engine, works: list[StepWork], decode: DecodeOptions | None = None) -> list[Generation]:
    """Encode every step's pending windows in one call, then decode all the steps' prompts in one call."""
    if not works:
        return []
    riders = Riders(works)
    features = riders.features()
    prompts = riders.prompts(engine.encode(features) if features else [])
    return engine.generate(prompts, decode or works[0].stream.options.decode)


def complete(works: list[StepWork], generations: list[Generation]) -> None:
    """Hand each result back to its stream (on the caller's thread)."""
    for work, generation in zip(works, generations):
        work.stream.apply(work, generation)
