"""The endpoints. Each reads its input, hands the audio to the Service, and shapes the answer."""

from __future__ import annotations

import base64
import binascii

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from ..subtitles import to_srt, to_vtt
from ..transcribe import Transcript
from .app import ApiError, Service, read_limited

RESPONSE_FORMATS = ("json", "text", "verbose_json", "srt", "vtt")
GRANULARITIES = ("segment",)   # "word" needs word alignment, which the runtime does not do yet
RAW_TYPES = ("audio/", "application/octet-stream")


def verbose(transcript: Transcript) -> dict:
    """OpenAI's verbose_json: segments with start/end in seconds (from the segmentation), plus why each stopped."""
    segments = sorted(transcript.segments, key=lambda s: s.start)
    return {"task": "transcribe", "language": transcript.language, "duration": transcript.duration,
            "text": transcript.text,
            "segments": [{"id": i, "seek": 0, "start": s.start, "end": s.end, "text": s.text, "tokens": [],
                          "temperature": 0.0, "stop_reason": s.stop_reason, "language": s.language}
                         for i, s in enumerate(segments)]}


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
        return {"status": "ok"}

    @app.get("/ready")
    async def ready():
        if service.batcher is not None:
            return {"status": "ready", "engine": str(service.settings.engine_dir), "providers": service.engine.providers}
        if service.load_error:
            return JSONResponse({"status": "failed", "error": service.load_error}, 503)
        return JSONResponse({"status": "loading"}, 503, headers={"Retry-After": "5"})

    @app.get("/metrics")
    async def metrics():
        return Response(service.metrics.render(), media_type="text/plain; version=0.0.4")

    @app.post("/v1/audio/transcriptions")
    async def openai_transcriptions(file: UploadFile = File(...), model: str = Form(""), language: str = Form(""),
                                    prompt: str = Form(""), response_format: str = Form("json"),
                                    temperature: float = Form(0.0),
                                    granularities: list[str] | None = Form(None, alias="timestamp_granularities[]"),
                                    granularities_plain: list[str] | None = Form(None, alias="timestamp_granularities")):
        """OpenAI-compatible: multipart `file`; `prompt` becomes the context; decoding is greedy."""
        asked = [*(granularities or []), *(granularities_plain or [])]
        problem = None
        if response_format not in RESPONSE_FORMATS:
            problem = f"response_format {response_format!r} is not supported; use one of {RESPONSE_FORMATS}"
        elif "word" in asked:
            problem = "timestamp_granularities ['word'] is not supported yet (no word alignment); use ['segment']"
        elif unknown := [g for g in asked if g not in GRANULARITIES]:
            problem = f"unknown timestamp_granularities {unknown}; use ['segment']"
        elif asked and response_format != "verbose_json":
            problem = "timestamp_granularities needs response_format verbose_json"
        if problem:
            await file.close()
            raise ApiError(400, problem)
        data = await _upload_bytes(file, limit)
        transcript = await service.transcribe(data, language or None, prompt)
        if response_format == "text":
            return PlainTextResponse(transcript.text)
        if response_format == "verbose_json":
            return verbose(transcript)
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
        return verbose(await service.transcribe(data, language, context))


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
