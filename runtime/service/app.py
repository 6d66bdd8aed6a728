"""The Service behind the endpoints (engine, batcher, audio checks) and the API's error shape; the ASGI
app itself is assembled in server.py, the endpoints are in routes.py.

Every bad request gets a 4xx with a JSON error body {"error": {"message", "type", "code"}}; nothing a
client sends can take the server down. Uploaded bytes are read into memory up to the size limit
(Starlette spools large multipart parts to anonymous temporary files, closed after each request);
no client-supplied path is ever opened.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from pathlib import Path
from typing import Callable

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from ..engine import Engine
from qasr.errors import QasrError
from ..prompt import language_name
from ..transcribe import TranscribeOptions, Transcriber, Transcript
from .batcher import DynamicBatcher, QueueFull
from .metrics import Metrics
from .settings import ServiceSettings

OPEN_PATHS = {"/health", "/ready"}
KNOWN_PATHS = OPEN_PATHS | {"/metrics", "/v1/audio/transcriptions", "/v1/transcribe", "/v1/models", "/v1/realtime"}


class ApiError(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", headers: dict | None = None,
                 param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.headers, self.param = status, message, kind, headers or {}, param


def _caused_by(exc: BaseException | None, kind: type) -> bool:
    """Whether `kind` is `exc`, or inside it (exception groups, causes) as Starlette's middleware wraps it."""
    if exc is None:
        return False
    if isinstance(exc, kind):
        return True
    if isinstance(exc, BaseExceptionGroup) and any(_caused_by(e, kind) for e in exc.exceptions):
        return True
    return _caused_by(exc.__cause__, kind)


def error_response(status: int, message: str, kind: str, headers: dict | None = None,
                   param: str | None = None) -> JSONResponse:
    error = {"message": message, "type": kind, "code": status}
    if param:
        error["param"] = param
    return JSONResponse({"error": error}, status, headers=headers)


def served_name(manifest) -> str:
    """The model name an export is served under: the hub id it was exported from, else its folder's name."""
    model = manifest.source.model.rstrip("/")
    local = str(Path(model).expanduser()) == manifest.source.path.rstrip("/")   # exported from a directory
    if model.count("/") == 1 and not model.startswith((".", "/", "~")) and not local:
        return model
    return model.rsplit("/", 1)[-1] or "qasr"


class Service:
    """What the endpoints share: settings, metrics, and (once loaded) the engine and the batcher."""

    def __init__(self, settings: ServiceSettings):
        self.settings = settings
        self.metrics = Metrics()
        self.engine: Engine | None = None
        self.aligner = None                # runtime.aligner.Aligner when started with an aligner
        self.batcher: DynamicBatcher | None = None
        self.load_error: str | None = None
        self.model_name: str | None = settings.model_name
        self.created = int(time.time())
        self.live_streams = 0             # open /v1/realtime connections
        self.stopping = asyncio.Event()   # set when shutdown begins: open requests get 503 at the deadline

    async def load(self) -> None:
        s = self.settings
        try:
            self.engine = await run_in_threadpool(Engine, s.engine_dir, s.providers, s.threads, s.checksums,
                                                  max_batch=s.max_batch)   # CUDA-graph buckets up to it
            if s.aligner_dir is not None:
                from ..aligner import Aligner

                self.aligner = await run_in_threadpool(Aligner, s.aligner_dir, s.providers, s.threads, s.checksums)
        except QasrError as exc:
            self.load_error = str(exc)
            return
        except Exception as exc:  # ONNX Runtime's own errors (a provider it lacks, a graph it refuses), or ours
            self.load_error = f"{type(exc).__name__}: {exc}"
            return
        self.model_name = self.model_name or served_name(self.engine.manifest)
        options = TranscribeOptions(batch_size=s.max_batch, decode=s.decode)
        batcher = DynamicBatcher
        if s.batching == "ray":   # a Ray Serve replica (ray_serve.py): Ray's request batching
            from .ray_batcher import RayBatcher as batcher
        self.batcher = batcher(Transcriber(self.engine, self.aligner), options, s.max_batch, s.max_wait_ms / 1000, s.max_queue,
                               self.metrics)
        self.batcher.start()
        self.metrics.ready.set(1)

    @property
    def sample_rate(self) -> int:
        return self.engine.features.settings.sample_rate

    def decode_audio(self, data: bytes):
        """Bytes of an audio file to checked 16 kHz mono samples; ApiError for anything unusable."""
        from ..audio import decode_bytes

        if not data:
            raise ApiError(400, "the audio is empty (0 bytes)")
        try:   # what libsndfile reads, else FFmpeg through PyAV (m4a, webm/opus, ...)
            samples = decode_bytes(data, self.sample_rate, name="the audio")
        except QasrError as exc:
            raise ApiError(400, str(exc)) from None
        seconds = len(samples) / self.sample_rate
        if seconds > self.settings.max_audio_seconds:
            raise ApiError(413, f"the audio lasts {seconds:.1f} s; this server takes at most "
                                f"{self.settings.max_audio_seconds:g} s", "audio_too_long")
        return samples

    async def transcribe(self, data: bytes, language: str | None, context: str,
                         partial: Callable[[str], None] | None = None, overrides: tuple = (),
                         disconnected=None) -> Transcript:
        """The transcript of `data`; `partial` (streaming) is called on the event loop with the text so far;
        `overrides`: (option, value) pairs of TranscribeOptions this request changes; `disconnected` (the request's
        ASGI receive, its body already read): a client that hangs up has its work dropped (queued) or stopped at
        the next decode step."""
        if self.batcher is None:
            raise ApiError(503, "the engine is not loaded yet", "not_ready", {"Retry-After": "5"})
        if self.stopping.is_set():   # work that arrives while the server drains is not started
            raise self._shutting_down()
        try:
            language = language_name(language, tuple(self.engine.manifest.model.support_languages))
        except QasrError as exc:
            raise ApiError(400, str(exc)) from None
        samples = await run_in_threadpool(self.decode_audio, data)
        try:
            loop = asyncio.get_running_loop()
            relay = (lambda text: loop.call_soon_threadsafe(partial, text)) if partial else None
            future = self.batcher.submit(samples, self.sample_rate, language, context or "", relay, overrides)
        except QueueFull:
            raise ApiError(503, "the server is busy; try again shortly", "server_busy",
                           {"Retry-After": str(self.settings.retry_after_s)}) from None
        try:
            transcript = await self._await(future, disconnected)
        except asyncio.TimeoutError:
            future.cancel()
            raise ApiError(504, f"transcription took longer than {self.settings.request_timeout_s:g} s",
                           "timeout") from None
        except asyncio.CancelledError:   # the handler itself was cancelled (a streamed response's client left)
            future.cancel()
            raise
        self.metrics.audio_seconds.inc(transcript.duration)
        return transcript

    async def _await(self, future: asyncio.Future, disconnected=None) -> Transcript:
        """The transcript, or ApiError 503 when the server's graceful shutdown deadline passes first (its
        queued work is then dropped: the batcher skips requests whose future is done, and a running batch drops
        its rows at the next decode step). A client that hangs up cancels the future the same way."""
        stop = asyncio.ensure_future(self._shutdown_deadline())
        gone = asyncio.ensure_future(client_gone(disconnected)) if disconnected is not None else None
        try:
            done, _ = await asyncio.wait({future, stop} | ({gone} if gone else set()),
                                         timeout=self.settings.request_timeout_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if gone is not None:
                gone.cancel()
        if future in done:
            return future.result()
        future.cancel()
        if gone is not None and gone in done:
            raise ApiError(499, "the client closed the request", "client_closed")
        if stop in done:
            raise self._shutting_down()
        raise asyncio.TimeoutError

    def _shutting_down(self) -> ApiError:
        return ApiError(503, "the server is shutting down; try again on another instance", "shutting_down",
                        {"Retry-After": str(self.settings.retry_after_s)})

    async def _shutdown_deadline(self) -> None:
        await self.stopping.wait()
        await asyncio.sleep(self.settings.graceful_timeout_s)

    def begin_shutdown(self) -> None:
        """Called (on the event loop) when the server starts shutting down."""
        self.stopping.set()
        self.metrics.ready.set(0)

    def authorized(self, request: Request) -> bool:
        key = self.settings.api_key
        if not key or request.url.path in OPEN_PATHS:
            return True
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), key.encode())


async def client_gone(receive) -> None:
    """Returns once the client has hung up. `receive` is the request's ASGI receive: once the body is read, the next
    message is the disconnect. (Polling Starlette's is_disconnected does not see it behind an http middleware.)"""
    while (await receive()).get("type") != "http.disconnect":
        pass


async def read_limited(stream, limit: int) -> bytes:
    """At most `limit` bytes from an async byte stream; 413 beyond that."""
    chunks, size = [], 0
    async for chunk in stream:
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"the upload exceeds {limit} bytes", "upload_too_large")
        chunks.append(chunk)
    return b"".join(chunks)
