"""LiveSession: one live stream that runs its own decode steps (the Python API, asr-transcribe --live).

    session = model.live(language="en")
    for chunk in microphone():                 # any rate the caller declares, float or int16
        for event in session.feed(chunk, 48000):
            ...                                # speech_started, delta (append-only), tail, completed, ...
    events = session.finish()

`feed` returns the events its audio caused, after running the decode steps that audio made due (a step per
`step_seconds` of new speech); `commit` ends the turn now (needed when turn detection is off); `finish` ends
the audio. Work runs on the caller's thread; the service runs many streams' steps in shared batches instead.
"""

from __future__ import annotations

import time

from .audio import LiveInput
from .runner import complete, run_work
from .stream import LiveEvent, LiveOptions, LiveStream


class LiveSession:
    def __init__(self, engine, options: LiveOptions = LiveOptions(), sample_rate: int = 16000):
        self.engine = engine
        self.stream = LiveStream(engine, options)
        self.input = LiveInput(sample_rate, self.stream.rate)
        self.compute_seconds = 0.0            # wall time spent in decode steps
        self.fed = False

    def feed(self, samples, sample_rate: int | None = None) -> list[LiveEvent]:
        """Audio at `sample_rate` (default: the session's), float or int16; the events it caused."""
        if sample_rate is not None and sample_rate != self.input.source:
            if not self.fed:
                self.input = LiveInput(sample_rate, self.stream.rate)
            else:
                from qasr.errors import AudioError

                raise AudioError(f"this session's audio is at {self.input.source} Hz; it cannot change to {sample_rate}")
        self.stream.ingest(self.input.push(samples))
        self.fed = True
        return self._run()

    def commit(self) -> list[LiveEvent]:
        self.stream.commit()
        return self._run()

    def clear(self) -> list[LiveEvent]:
        self.stream.clear()
        return self.stream.take_events()

    def finish(self) -> list[LiveEvent]:
        rest = self.input.flush()
        if len(rest):
            self.stream.ingest(rest)
        self.stream.finish()
        return self._run()

    def _run(self) -> list[LiveEvent]:
        while (work := self.stream.work()) is not None:
            start = time.perf_counter()
            complete([work], run_work(self.engine, [work]))
            self.compute_seconds += time.perf_counter() - start
        return self.stream.take_events()
