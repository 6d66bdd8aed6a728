"""Scale-out on Ray Serve: the same routes, N engine replicas, Ray's request batching inside each.

    asr-serve --engine DIR --ray --replicas 2 [--port 8000]        (a local Ray instance)
    RAY_ADDRESS=ray://head:10001 asr-serve --engine DIR --ray --replicas 8 --replica-gpus 1   (a cluster)

Each replica builds the service's own FastAPI app (server.create_app: routes, limits, errors, metrics)
and loads its own engine; Ray's HTTP proxy spreads requests over the replicas. Inside a replica,
concurrent requests are batched by Ray Serve's `@serve.batch` (RayBatcher, the DynamicBatcher's
interface), so requests of different clients still share one engine call. On a cluster of GPU
machines, `--replica-gpus 1` gives each replica one GPU and Ray places replicas where GPUs are free;
every machine needs the export directory at the same path (or a shared file system).
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np

from ..transcribe import TranscribeOptions, Transcriber
from .batcher import QueueFull, _Request, transcribe_requests
from .metrics import Metrics
from .settings import ServiceSettings


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
               partial: Callable[[str], None] | None = None) -> asyncio.Future:
        if self.waiting >= self.max_queue:
            raise QueueFull
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        request = _Request(samples, sample_rate, language, context, future, partial)
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


def deployment(settings: ServiceSettings, replicas: int, replica_cpus: float = 1.0, replica_gpus: float = 0.0):
    """The bound Ray Serve application: `replicas` copies of the service's app, each with its own engine."""
    from ray import serve

    from .server import create_app

    ray_settings = _with_ray_batching(settings)

    def build():   # runs in each replica: its own Service, engine and batcher
        return create_app(ray_settings)

    @serve.deployment(name="qasr", num_replicas=replicas,
                      ray_actor_options={"num_cpus": replica_cpus, "num_gpus": replica_gpus},
                      max_ongoing_requests=max(2 * settings.max_batch, settings.max_queue))
    @serve.ingress(build)
    class QasrService:
        pass

    return QasrService.bind()


def _with_ray_batching(settings: ServiceSettings) -> ServiceSettings:
    from dataclasses import replace

    return replace(settings, batching="ray")


def start(settings: ServiceSettings, replicas: int, host: str, port: int, replica_cpus: float = 1.0,
          replica_gpus: float = 0.0, num_cpus: int | None = None) -> None:
    """Start Ray (a local instance, or the cluster RAY_ADDRESS names) and the deployment on host:port."""
    import ray
    from ray import serve

    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS"), num_cpus=None if os.environ.get("RAY_ADDRESS") else num_cpus,
                 include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": host, "port": port})
    serve.run(deployment(settings, replicas, replica_cpus, replica_gpus), name="qasr", route_prefix="/")


def stop() -> None:
    import ray
    from ray import serve

    serve.shutdown()
    ray.shutdown()


def serve_forever(settings: ServiceSettings, replicas: int, host: str, port: int, replica_cpus: float,
                  replica_gpus: float) -> None:
    """asr-serve --ray: run until SIGTERM or Ctrl-C, then shut Serve and Ray down."""
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    start(settings, replicas, host, port, replica_cpus, replica_gpus)
    try:
        done.wait()
    finally:
        stop()
