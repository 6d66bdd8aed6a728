"""Dynamic batching: concurrent requests wait briefly in a bounded queue and are decoded together.

The event loop only queues and awaits; the engine runs in one worker thread (it is not re-entrant),
so the loop never blocks on inference. A batch closes when it holds `max_batch` requests or
`max_wait` has passed since its first one. Requests with different options (language, context)
share the batch's time slot and are decoded in one engine call per option group. Live streams' decode steps
(runtime/live) queue here too: the steps of all streams in a batch are encoded in one encoder call and decoded
in one decoder call, in the same engine slot as the file requests beside them.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from ..transcribe import TranscribeOptions, Transcriber, Transcript
from .metrics import Metrics


_NOTHING = object()


class QueueFull(Exception):
    """The bounded queue is full: the caller answers 503 with Retry-After."""


@dataclass
class _Request:
    samples: np.ndarray
    sample_rate: int
    language: str | None
    context: str
    future: asyncio.Future
    partial: Callable[[str], None] | None = None   # streaming: called (from the engine thread) with the text so far
    overrides: tuple = ()        # (option, value) pairs this request changes (word timestamps, subtitle segmentation)


@dataclass
class _LiveRequest:
    work: object                 # runtime.live.stream.StepWork
    future: asyncio.Future
    started: bool = False        # taken into a batch (from then on it runs; before, cancelling drops it)


class DynamicBatcher:
    def __init__(self, transcriber: Transcriber, options: TranscribeOptions, max_batch: int, max_wait_s: float,
                 max_queue: int, metrics: Metrics):
        self.transcriber, self.options, self.metrics = transcriber, options, metrics
        self.max_batch, self.max_wait_s = max_batch, max_wait_s
        self.queue: asyncio.Queue[_Request | None] = asyncio.Queue(maxsize=max_queue)
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qasr-engine")
        self.batch_sizes: list[int] = []   # every batch formed, in order (also in the metrics)
        self.batch_mix: list[tuple[int, int]] = []   # (file requests, live steps) of each batch
        self.joint_calls = 0               # batches whose files and live steps shared the encoder and decoder calls
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Finish everything queued, then stop the worker."""
        if self._task is None:
            return
        await self.queue.put(None)
        await self._task
        self.executor.shutdown(wait=True)

    def submit(self, samples: np.ndarray, sample_rate: int, language: str | None, context: str,
               partial: Callable[[str], None] | None = None, overrides: tuple = ()) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        self._enqueue(_Request(samples, sample_rate, language, context, future, partial, overrides))
        return future

    def submit_live(self, work) -> _LiveRequest:
        """Queue one live stream's decode step; its future gets the Generation (apply it on the event loop). Until the
        batcher takes it (`started`), cancelling the future drops the step."""
        request = _LiveRequest(work, asyncio.get_running_loop().create_future())
        self._enqueue(request)
        return request

    def _enqueue(self, request) -> None:
        try:
            self.queue.put_nowait(request)
        except asyncio.QueueFull:
            raise QueueFull from None
        self.metrics.queue_depth.set(self.queue.qsize())

    async def _collect(self, first: _Request) -> tuple[list[_Request], bool]:
        loop = asyncio.get_running_loop()
        batch, deadline = [first], loop.time() + self.max_wait_s
        while len(batch) < self.max_batch:
            item = await self._get_within(deadline - loop.time())
            if item is _NOTHING:
                break
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    async def _get_within(self, timeout: float):
        """The next queued item, or _NOTHING after `timeout` seconds (never losing an item to the race)."""
        if timeout <= 0:
            try:
                return self.queue.get_nowait()
            except asyncio.QueueEmpty:
                return _NOTHING
        getter = asyncio.ensure_future(self.queue.get())
        done, _ = await asyncio.wait({getter}, timeout=timeout)
        if getter in done:
            return getter.result()
        getter.cancel()
        try:
            return await getter  # it may have got an item just before the cancel
        except asyncio.CancelledError:
            return _NOTHING

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        stopping = False
        while not stopping:
            first = await self.queue.get()
            if first is None:
                break
            batch, stopping = await self._collect(first)
            self.metrics.queue_depth.set(self.queue.qsize())
            batch = [r for r in batch if not r.future.done()]  # timed out or disconnected meanwhile
            for request in batch:
                if isinstance(request, _LiveRequest):
                    request.started = True
            if not batch:
                continue
            self.batch_sizes.append(len(batch))
            live = sum(isinstance(r, _LiveRequest) for r in batch)
            self.batch_mix.append((len(batch) - live, live))
            self.metrics.batch_size.observe(len(batch))
            start = time.perf_counter()
            try:
                results = await loop.run_in_executor(self.executor, self._transcribe, batch)
            except Exception as exc:  # an engine failure fails this batch, not the server
                results = [exc] * len(batch)
            self.metrics.inference.observe(time.perf_counter() - start)
            for request, result in zip(batch, results):
                if request.future.done():
                    continue
                if isinstance(result, Exception):
                    request.future.set_exception(result)
                else:
                    request.future.set_result(result)

    def _transcribe(self, batch: list) -> list:
        """Results in the batch's order. File requests by transcribe_requests; live steps ride in its first encoder
        and decoder calls (run_work runs them alone when there is no file, or nothing of it to decode)."""
        from ..live.runner import Riders, run_work

        files = [i for i, r in enumerate(batch) if isinstance(r, _Request)]
        live = [i for i, r in enumerate(batch) if isinstance(r, _LiveRequest)]
        results: list = [None] * len(batch)
        riders = Riders([batch[i].work for i in live]) if live else None
        if files:
            done = transcribe_requests(self.transcriber, self.options, [batch[i] for i in files], riders)
            for i, transcript in zip(files, done):
                results[i] = transcript
        joint = riders is not None and riders.results is not None and bool(files)
        if riders is not None and riders.results is None:
            riders.results = run_work(self.transcriber.engine, riders.works, self.options.decode)
        if riders is not None:
            for i, generation in zip(live, riders.results):
                results[i] = generation
        self.joint_calls += joint
        return results


def transcribe_requests(transcriber: Transcriber, options: TranscribeOptions, batch: list[_Request],
                        riders=None) -> list[Transcript]:
    """One engine call per (language, context, overrides) group of a batch of requests; `riders` (live steps) go
    along in the first group's first batch."""
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, request in enumerate(batch):
        groups[(request.language, request.context, request.overrides)].append(i)
    results: list[Transcript | None] = [None] * len(batch)
    for (language, context, overrides), rows in groups.items():
        # every request's segments (long audio is segmented as in asr-transcribe) share batches of up
        # to max_batch rows with the other requests' segments
        group_options = replace(options, language=language, context=context, **dict(overrides))
        inputs = [(batch[i].samples, batch[i].sample_rate) for i in rows]
        partial = {k: batch[i].partial for k, i in enumerate(rows) if batch[i].partial is not None}
        # a request answered meanwhile (timed out, client gone, shutdown) stops costing compute at the next step
        cancelled = {k: batch[i].future.done for k, i in enumerate(rows)}
        for i, transcript in zip(rows, transcriber.transcribe(inputs, group_options, partial or None, riders,
                                                              cancelled=cancelled)):
            results[i] = transcript
        if riders is not None and riders.results is not None:
            riders = None
    return results
