"""Real graph inputs for calibration: the fp32 export transcribes the calibration audio, and every
feed each graph receives is recorded, so the decoder is calibrated on real decoding trajectories
(the prefill, then each greedy step with the KV cache as it really is), not on random tokens.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from qasr.runtime import names
from qasr.runtime.engine import Engine
from qasr.runtime.session import Runner
from qasr.runtime.transcribe import TranscribeOptions, Transcriber

from .data import CalibrationSet


class RecordingRunner:
    """A Runner that runs the real graph and keeps a copy of every feed (the cache changes in place); for the
    decoder, `observe` is the decode loop's recorder (qasr.runtime.generate) and `infer` is not used."""

    def __init__(self, inner: Runner, every_step: int = 1):
        self.inner = inner
        self.input_names, self.output_names = inner.input_names, inner.output_names
        self.every_step = every_step
        self.calls = 0
        self.feeds: list[dict[str, np.ndarray]] = []

    def infer(self, feeds, outputs=None):
        self.observe(feeds)
        return self.inner.infer(feeds, outputs)

    def observe(self, feeds) -> None:
        """Keep a copy of `feeds` (every prefill; every `every_step`-th decoder step)."""
        ids = feeds.get(names.INPUT_IDS)
        prefill = ids is None or ids.shape[1] > 1  # encoder/projector calls, and the decoder's prefill
        if prefill or self.calls % self.every_step == 0:
            self.feeds.append({name: np.array(feeds[name], copy=True) for name in self.input_names})
        self.calls += 1

    def take(self) -> list[dict[str, np.ndarray]]:
        feeds, self.feeds, self.calls = self.feeds, [], 0
        return feeds


def trajectories(engine: Engine, data: CalibrationSet, language: str | None = None, every_step: int = 1
                 ) -> Iterator[dict[str, list[dict[str, np.ndarray]]]]:
    """Per utterance: {graph name: [feeds, ...]} recorded while the engine transcribes it."""
    recorders = {name: RecordingRunner(getattr(engine, attr), every_step if name == names.DECODER else 1)
                 for name, attr in ((names.ENCODER, "encoder"), (names.PROJECTOR, "projector"),
                                    (names.DECODER, "decoder"))}
    engine.encoder, engine.projector = recorders[names.ENCODER], recorders[names.PROJECTOR]
    engine.generator.recorder = recorders[names.DECODER].observe   # the decode loop reports every decoder run
    try:
        transcriber = Transcriber(engine)
        options = TranscribeOptions(language=language, batch_size=1)
        for path in data.files:
            transcriber.transcribe([path], options)
            yield {name: recorder.take() for name, recorder in recorders.items()}
    finally:
        engine.encoder, engine.projector = recorders[names.ENCODER].inner, recorders[names.PROJECTOR].inner
        engine.generator.recorder = None


def recorded_feeds(engine: Engine, data: CalibrationSet, every_step: int = 4,
                   progress=lambda _: None) -> dict[str, list[dict[str, np.ndarray]]]:
    """{graph name: every feed} the engine receives while transcribing all of `data` (each prefill, every
    `every_step`-th decoder step): the inputs SmoothQuant measures and GPTQ's Hessians are built from."""
    feeds: dict[str, list] = {name: [] for name in names.GRAPHS}
    for i, recorded in enumerate(trajectories(engine, data, every_step=every_step), 1):
        for name in names.GRAPHS:
            feeds[name].extend(recorded[name])
        if i % 10 == 0 or i == len(data.files):
            progress(f"recording calibration inputs: {i}/{len(data.files)} utterances")
    return feeds
