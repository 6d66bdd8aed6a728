"""Real graph inputs for calibration: the fp32 export transcribes the calibration audio, and every feed each
graph receives is recorded, so the decoder is calibrated on real decoding trajectories (the prefill, then each
greedy step with the KV cache as it really is), not on random tokens.

The runtime is observed, not patched: the Engine is built with a `Recorder` as its observer, which its graph
runners and decode steps hand host copies of their feeds (qasr.runtime.engine, generate.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from qasr.exportformat import names
from qasr.runtime.engine import Engine
from qasr.runtime.transcribe import TranscribeOptions, Transcriber

from .data import CalibrationSet


class Recorder:
    """Keeps a copy of every feed per graph (the cache changes in place): every prefill, every `every_step`-th
    decoder step."""

    def __init__(self, every_step: int = 1):
        self.every_step = every_step
        self.calls = 0
        self.feeds: dict[str, list[dict[str, np.ndarray]]] = {name: [] for name in names.GRAPHS}

    def __call__(self, graph: str, feeds: dict[str, np.ndarray]) -> None:
        ids = feeds.get(names.INPUT_IDS)
        step = ids is not None and ids.shape[1] == 1   # encoder/projector runs and the decoder's prefill are kept
        if not step or self.calls % self.every_step == 0:
            self.feeds[graph].append({name: np.array(value, copy=True) for name, value in feeds.items()})
        self.calls += graph == names.DECODER   # decoder runs counted, prefill included

    def take(self) -> dict[str, list[dict[str, np.ndarray]]]:
        feeds = self.feeds
        self.feeds, self.calls = {name: [] for name in names.GRAPHS}, 0
        return feeds


def recording_engine(export_dir: str | Path, every_step: int = 1) -> tuple[Engine, Recorder]:
    """An Engine on the CPU whose runs are recorded."""
    recorder = Recorder(every_step)
    return Engine(export_dir, providers=["CPUExecutionProvider"], observer=recorder), recorder


def trajectories(engine: Engine, recorder: Recorder, data: CalibrationSet, language: str | None = None
                 ) -> Iterator[dict[str, list[dict[str, np.ndarray]]]]:
    """Per utterance: {graph name: [feeds, ...]} recorded while the engine transcribes it."""
    transcriber = Transcriber(engine)
    options = TranscribeOptions(language=language, batch_size=1)
    recorder.take()
    for path in data.files:
        transcriber.transcribe([path], options)
        yield recorder.take()


def recorded_feeds(export_dir: str | Path, data: CalibrationSet, every_step: int = 4,
                   progress=lambda _: None) -> dict[str, list[dict[str, np.ndarray]]]:
    """{graph name: every feed} an engine of `export_dir` receives while transcribing all of `data` (each prefill,
    every `every_step`-th decoder step): the inputs SmoothQuant measures and GPTQ's Hessians are built from."""
    engine, recorder = recording_engine(export_dir, every_step)
    feeds: dict[str, list] = {name: [] for name in names.GRAPHS}
    for i, recorded in enumerate(trajectories(engine, recorder, data), 1):
        for name in names.GRAPHS:
            feeds[name].extend(recorded[name])
        if i % 10 == 0 or i == len(data.files):
            progress(f"recording calibration inputs: {i}/{len(data.files)} utterances")
    return feeds
