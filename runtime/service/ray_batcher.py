"""Ray Serve's request batching inside one replica, behind the DynamicBatcher's interface (ray_serve.py)."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np

from ..transcribe import TranscribeOptions, Transcriber
from .batcher import QueueFull, _Request, transcribe_requests
from .metrics import Metrics


class RayBatcher:
    """Requests batched by Ray Serve's @serve.batch (up to max_batch, waiting at most max_wait) and
    transcribed in one worker thread; a bounded number of requests may wait (then QueueFull: 503)."""

    def __init__(self, transcriber: Transcriber, options: TranscribeOptions, max_batch: int, max_wait_s: float,
                 max_queue: int, metrics: Metrics):
        from ray import serve

        self.transcriber, self.options, self.metrics = transcriber, options, metrics
        self.max_queue = max_queue
        self.waiting = 0
        self.batch_sizes: list[int] = []
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qasr-engine")

        @serve.batch(max_batch_size=max_batch, batch_wait_timeout_s=max_wait_s)
        async def run(requests: list[_Request]) -> list:
            live = [r for r in requests if not r.future.done()]   # answered meanwhile (timeout, shutdown)
            self.batch_sizes.append(len(requests))
            self.metrics.batch_size.observe(len(requests))
            if not live:
                return [None] * len(requests)
            loop = asyncio.get_running_loop()
            results = await loop.run_in_executor(self.executor, transcribe_requests, self.transcriber,
                                                 self.options, live)
            by_id = {id(r): t for r, t in zip(live, results)}
            return [by_id.get(id(r)) for r in requests]

        self._run = run

    def start(self) -> None:
        pass

    async def stop(self) -> None:
        self.executor.shutdown(wait=True)

    def submit(self, samples: np.ndarray, sample_rate: int, language: str | None, context: str,
               partial: Callable[[str], None] | None = None, overrides: tuple = ()) -> asyncio.Future:
        if self.waiting >= self.max_queue:
            raise QueueFull
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        request = _Request(samples, sample_rate, language, context, future, partial, overrides)
        self.waiting += 1
        self.metrics.queue_depth.set(self.waiting)

        async def go() -> None:
            try:
                result = await self._run(request)
                if not future.done():
                    future.set_result(result)
            except Exception as exc:  # an engine failure fails this request, not the replica
                if not future.done():
                    future.set_exception(exc)
            finally:
                self.waiting -= 1
                self.metrics.queue_depth.set(self.waiting)

        asyncio.ensure_future(go())
        return future
