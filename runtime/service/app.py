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
import io

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from ..audio import prepare_waveform
from ..engine import Engine
from ..errors import QasrError
from ..prompt import language_name
from ..transcribe import TranscribeOptions, Transcriber, Transcript
from .batcher import DynamicBatcher, QueueFull
from .metrics import Metrics
from .settings import ServiceSettings

OPEN_PATHS = {"/health", "/ready"}
KNOWN_PATHS = OPEN_PATHS | {"/metrics", "/v1/audio/transcriptions", "/v1/transcribe"}


class ApiError(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.headers = status, message, kind, headers or {}


def _caused_by(exc: BaseException | None, kind: type) -> bool:
    """Whether `kind` is `exc`, or inside it (exception groups, causes) as Starlette's middleware wraps it."""
    if exc is None:
        return False
    if isinstance(exc, kind):
        return True
    if isinstance(exc, BaseExceptionGroup) and any(_caused_by(e, kind) for e in exc.exceptions):
        return True
    return _caused_by(exc.__cause__, kind)


def error_response(status: int, message: str, kind: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status, headers=headers)


class Service:
    """What the endpoints share: settings, metrics, and (once loaded) the engine and the batcher."""

    def __init__(self, settings: ServiceSettings):
        self.settings = settings
        self.metrics = Metrics()
        self.engine: Engine | None = None
        self.batcher: DynamicBatcher | None = None
        self.load_error: str | None = None

    async def load(self) -> None:
        s = self.settings
        try:
            self.engine = await run_in_threadpool(Engine, s.engine_dir, s.providers, s.threads, s.verify_checksums,
                                                  max_batch=s.max_batch)   # CUDA-graph buckets up to it
        except QasrError as exc:
            self.load_error = str(exc)
            return
        options = TranscribeOptions(batch_size=s.max_batch, decode=s.decode)
        self.batcher = DynamicBatcher(Transcriber(self.engine), options, s.max_batch, s.max_wait_ms / 1000,
                                      s.max_queue, self.metrics)
        self.batcher.start()
        self.metrics.ready.set(1)

    @property
    def sample_rate(self) -> int:
        return self.engine.features.settings.sample_rate

    def decode_audio(self, data: bytes):
        """Bytes of an audio file to checked 16 kHz mono samples; ApiError for anything unusable."""
        import soundfile as sf

        if not data:
            raise ApiError(400, "the audio is empty (0 bytes)")
        try:
            samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
        except Exception:  # libsndfile: corrupt or unsupported
            raise ApiError(400, "cannot decode the audio (corrupt, or a format libsndfile does not read)") from None
        try:
            samples = prepare_waveform(samples, rate, self.sample_rate, name="the audio")
        except QasrError as exc:
            raise ApiError(400, str(exc)) from None
        seconds = len(samples) / self.sample_rate
        if seconds > self.settings.max_audio_seconds:
            raise ApiError(413, f"the audio lasts {seconds:.1f} s; this server takes at most "
                                f"{self.settings.max_audio_seconds:g} s", "audio_too_long")
        return samples

    async def transcribe(self, data: bytes, language: str | None, context: str) -> Transcript:
        if self.batcher is None:
            raise ApiError(503, "the engine is not loaded yet", "not_ready", {"Retry-After": "5"})
        try:
            language = language_name(language, tuple(self.engine.manifest.model.get("support_languages", ())))
        except QasrError as exc:
            raise ApiError(400, str(exc)) from None
        samples = await run_in_threadpool(self.decode_audio, data)
        try:
            future = self.batcher.submit(samples, self.sample_rate, language, context or "")
        except QueueFull:
            raise ApiError(503, "the server is busy; try again shortly", "server_busy",
                           {"Retry-After": str(self.settings.retry_after_s)}) from None
        try:
            transcript = await asyncio.wait_for(asyncio.shield(future), self.settings.request_timeout_s)
        except asyncio.TimeoutError:
            future.cancel()
            raise ApiError(504, f"transcription took longer than {self.settings.request_timeout_s:g} s",
                           "timeout") from None
        self.metrics.audio_seconds.inc(transcript.duration)
        return transcript

    def authorized(self, request: Request) -> bool:
        key = self.settings.api_key
        if not key or request.url.path in OPEN_PATHS:
            return True
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), key.encode())


async def read_limited(stream, limit: int) -> bytes:
    """At most `limit` bytes from an async byte stream; 413 beyond that."""
    chunks, size = [], 0
    async for chunk in stream:
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"the upload exceeds {limit} bytes", "upload_too_large")
        chunks.append(chunk)
    return b"".join(chunks)
