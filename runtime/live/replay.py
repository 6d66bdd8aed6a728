"""Replay a recording into a live session at real-time pace (or `speed` times faster): asr-transcribe --live,
the live benchmark and the tests feed audio the way a microphone would."""

from __future__ import annotations

import time
from typing import Callable, Iterable

import numpy as np

from .stream import LiveEvent

CHUNK_SECONDS = 0.1   # a microphone's buffer


def chunks(samples: np.ndarray, rate: int, seconds: float = CHUNK_SECONDS) -> Iterable[np.ndarray]:
    size = max(1, int(rate * seconds))
    for lo in range(0, len(samples), size):
        yield samples[lo: lo + size]


def replay(session, samples: np.ndarray, rate: int, speed: float | None = 1.0,
           on_event: Callable[[LiveEvent, float], None] | None = None) -> list[LiveEvent]:
    """Feed `samples` (at `rate`) in 100 ms chunks, each no earlier than its time in the recording divided by
    `speed` (None: as fast as the session takes them); `on_event(event, wall seconds since the start)`."""
    start = time.perf_counter()
    events: list[LiveEvent] = []
    fed = 0
    for chunk in chunks(samples, rate):
        fed += len(chunk)
        if speed:
            wait = start + fed / rate / speed - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
        for event in session.feed(chunk, rate):
            events.append(event)
            if on_event:
                on_event(event, time.perf_counter() - start)
    for event in session.finish():
        events.append(event)
        if on_event:
            on_event(event, time.perf_counter() - start)
    return events
