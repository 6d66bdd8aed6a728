"""The endpoints. Each reads its input, hands the audio to the Service, and shapes the answer."""

from __future__ import annotations

import asyncio
import base64
import binascii

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from ..subtitles import to_srt, to_vtt
from ..transcribe import Transcript
from .app import ApiError, Service, read_limited

RESPONSE_FORMATS = ("json", "text", "verbose_json", "srt", "vtt")
GRANULARITIES = ("segment", "word")   # "word" needs the server started with --aligner
RAW_TYPES = ("audio/", "application/octet-stream")


def verbose(transcript: Transcript, granularities: tuple[str, ...] = ("segment",)) -> dict:
    """OpenAI's verbose_json: segments with start/end in seconds (from the segmentation), plus why each stopped;
    with the word granularity, `words` (each with start and end) over the whole input."""
    segments = sorted(transcript.segments, key=lambda s: s.start)
    out = {"task": "transcribe", "language": transcript.language, "duration": transcript.duration,
           "text": transcript.text}
    if "word" in granularities:
        out["words"] = [w.to_json() for s in segments for w in (s.words or [])]
    if "segment" in granularities or "word" not in granularities:
        out["segments"] = [{"id": i, "seek": 0, "start": s.start, "end": s.end, "text": s.text, "tokens": [],
                            "temperature": 0.0, "stop_reason": s.stop_reason, "language": s.language}
                           for i, s in enumerate(segments)]
    return out


def request_overrides(service: Service, response_format: str, granularities: list[str]) -> tuple:
    """What a request changes: words when asked for (or for subtitles when the server has an aligner), and a
    segment per run of speech for subtitles without one (cues never span a pause)."""
    if "word" in granularities or (response_format in ("srt", "vtt") and service.aligner is not None):
        return (("word_timestamps", True),)
    if response_format in ("srt", "vtt"):
        return (("vad", "on"), ("pauses", "split"))
    return ()


async def _upload_bytes(upload: UploadFile, limit: int) -> bytes:
    async def chunks():
        while chunk := await upload.read(1 << 16):
            yield chunk

    try:
        return await read_limited(chunks(), limit)
    finally:
        await upload.close()


def install_routes(app: FastAPI, service: Service) -> None:
    limit = service.settings.max_upload_bytes

    @app.get("/health")
    async def health():
        if service.load_error:   # the process is on its way out: never healthy
            return JSONResponse({"status": "failed"}, 503)
        return {"status": "ok"}

    @app.get("/ready")
    async def ready():
        """Ready or not, and what is served; never a file system path (anyone may ask)."""
        if service.stopping.is_set():
            return JSONResponse({"status": "stopping"}, 503)
        if service.batcher is not None:
            return {"status": "ready", "model": service.model_name, "providers": service.engine.providers}
        if service.load_error:
            return JSONResponse({"status": "failed", "error": "the engine could not be loaded (see the server log)"}, 503)
        return JSONResponse({"status": "loading"}, 503, headers={"Retry-After": "5"})

    def model_card() -> dict:
        return {"id": service.model_name, "object": "model", "created": service.created, "owned_by": "qasr"}

    @app.get("/v1/models")
    async def models():
        """OpenAI's model list: the one model this server serves."""
        if service.model_name is None:
            raise ApiError(503, "the engine is not loaded yet", "not_ready", {"Retry-After": "5"})
        return {"object": "list", "data": [model_card()]}

    @app.get("/v1/models/{model:path}")
    async def model(model: str):
        check_model(model)
        return model_card()

    def check_model(model: str) -> None:
        """A request naming another model gets OpenAI's 404 (an empty name means this server's model)."""
        if model and service.model_name is not None and model != service.model_name:
            raise ApiError(404, f"The model '{model}' does not exist; this server serves '{service.model_name}'",
                           "invalid_request_error", param="model")

    @app.get("/metrics")
    async def metrics():
        return Response(service.metrics.render(), media_type="text/plain; version=0.0.4")

    @app.post("/v1/audio/transcriptions")
    async def openai_transcriptions(request: Request, file: UploadFile = File(...), model: str = Form(""),
                                    language: str = Form(""),
                                    prompt: str = Form(""), response_format: str = Form("json"),
                                    temperature: float = Form(0.0),
                                    granularities: list[str] | None = Form(None, alias="timestamp_granularities[]"),
                                    granularities_plain: list[str] | None = Form(None, alias="timestamp_granularities"),
                                    stream: bool = Form(False)):
        """OpenAI-compatible: multipart `file`; `prompt` becomes the context; decoding is greedy."""
        asked = [*(granularities or []), *(granularities_plain or [])]
        problem = None
        if response_format not in RESPONSE_FORMATS:
            problem = f"response_format {response_format!r} is not supported; use one of {RESPONSE_FORMATS}"
        elif unknown := [g for g in asked if g not in GRANULARITIES]:
            problem = f"unknown timestamp_granularities {unknown}; use ['segment'], ['word'] or both"
        elif "word" in asked and service.aligner is None and service.batcher is not None:
            problem = ("timestamp_granularities ['word'] needs word alignment: start the server with --aligner DIR "
                       "(a forced aligner export)")
        elif asked and response_format != "verbose_json":
            problem = "timestamp_granularities needs response_format verbose_json"
        elif stream and response_format not in ("json", "text"):
            problem = f"stream=true sends text events; response_format {response_format!r} cannot be streamed"
        if problem:
            await file.close()
            raise ApiError(400, problem)
        if model:
            try:
                check_model(model)
            except ApiError:
                await file.close()
                raise
        data = await _upload_bytes(file, limit)
        if stream:
            return await _stream(service, data, language or None, prompt)
        transcript = await service.transcribe(data, language or None, prompt,
                                              overrides=request_overrides(service, response_format, asked),
                                              disconnected=request.receive)
        if response_format == "text":
            return PlainTextResponse(transcript.text)
        if response_format == "verbose_json":
            return verbose(transcript, tuple(asked) or ("segment",))
        if response_format == "srt":
            return PlainTextResponse(to_srt(transcript))
        if response_format == "vtt":
            return PlainTextResponse(to_vtt(transcript), media_type="text/vtt")
        return {"text": transcript.text}

    @app.post("/v1/transcribe")
    async def transcribe(request: Request):
        """JSON {"audio_base64", "language"?, "context"?} or raw audio bytes (Content-Type audio/*)."""
        content_type = request.headers.get("content-type", "")
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit * 4 // 3 + 1024:
            raise ApiError(413, f"the upload exceeds {limit} bytes", "upload_too_large")
        if content_type.startswith(RAW_TYPES):
            data = await read_limited(request.stream(), limit)
            language, context = request.query_params.get("language"), request.query_params.get("context", "")
        elif content_type.startswith("application/json"):
            body = await read_limited(request.stream(), limit * 4 // 3 + 1024)
            data, language, context = _json_request(body, limit)
        else:
            raise ApiError(415, "send JSON with audio_base64, or raw audio with Content-Type audio/*")
        return verbose(await service.transcribe(data, language, context, disconnected=request.receive))


async def _stream(service: Service, data: bytes, language: str | None, context: str) -> StreamingResponse:
    """OpenAI's streamed transcription: server-sent events, `transcript.text.delta` as text is decoded (the
    request still shares batches with others), then `transcript.text.done` with the whole text. A request
    that fails before any text answers with its JSON error as usual; one that fails later ends with an
    `error` event."""
    updates: asyncio.Queue = asyncio.Queue()
    task = asyncio.ensure_future(service.transcribe(data, language, context, updates.put_nowait))
    task.add_done_callback(lambda _: updates.put_nowait(None))
    first = await updates.get()
    if first is None and task.exception() is not None:
        raise task.exception()

    async def events():
        try:
            async for event in _events(first):
                yield event
        finally:   # the client left mid-stream (Starlette cancels this generator): stop its work too
            if not task.done():
                task.cancel()

    async def _events(first):
        sent, item = "", first
        while item is not None:
            if item.startswith(sent) and len(item) > len(sent):   # only text that extends what was sent
                yield _event({"type": "transcript.text.delta", "delta": item[len(sent):]})
                sent = item
            item = await updates.get()
        try:
            transcript = task.result()
        except ApiError as exc:
            yield _event({"type": "error", "error": {"message": exc.message, "type": exc.kind, "code": exc.status}})
            return
        if transcript.text.startswith(sent) and len(transcript.text) > len(sent):
            yield _event({"type": "transcript.text.delta", "delta": transcript.text[len(sent):]})
        yield _event({"type": "transcript.text.done", "text": transcript.text})

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


def _event(payload: dict) -> str:
    import json

    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


def _json_request(body: bytes, limit: int) -> tuple[bytes, str | None, str]:
    import json

    try:
        payload = json.loads(body)
    except ValueError:
        raise ApiError(400, "the body is not valid JSON") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("audio_base64"), str):
        raise ApiError(400, "missing field: audio_base64 (a base64 string of an audio file)")
    try:
        data = base64.b64decode(payload["audio_base64"], validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "audio_base64 is not valid base64") from None
    if len(data) > limit:
        raise ApiError(413, f"the upload exceeds {limit} bytes", "upload_too_large")
    language = payload.get("language")
    context = payload.get("context") or ""
    if language is not None and not isinstance(language, str) or not isinstance(context, str):
        raise ApiError(400, "language and context must be strings")
    return data, language, context
