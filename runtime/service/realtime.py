"""`/v1/realtime`: OpenAI's Realtime *transcription* protocol over a WebSocket, on live streams (runtime/live).

Client events: `session.update` (the GA shape, `session.type = "transcription"`) or the older
`transcription_session.update`; `input_audio_buffer.append` (base64 PCM16 mono, 24 kHz as OpenAI sends it, or
16 kHz when the session's format says `rate: 16000`), `.commit`, `.clear`. Server events: `session.created`,
`session.updated` / `transcription_session.updated`, `input_audio_buffer.speech_started`, `.speech_stopped`,
`.committed`, `.cleared`, `conversation.item.input_audio_transcription.delta` (append-only) and `.completed`,
and `error` for bad input, after which the connection stays open as OpenAI's does. Turn detection is
`server_vad` (threshold, prefix_padding_ms, silence_duration_ms) or null (the client commits).

Each connection is one live stream; its decode steps go through the service's batcher, so streams share
encoder and decoder batches with each other and with file requests. One step per stream is in flight at a
time: audio that arrives meanwhile is covered by the next step. Over `max_streams` a connection gets an error
event and is closed; one idle for `stream_idle_s` likewise; a disconnect frees the stream at once.
Decisions and the protocol subset: docs/decisions/0024-live.md.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import logging
import secrets

from fastapi import FastAPI, WebSocket, WebSocketDisconnect

from qasr.errors import QasrError

from ..live.audio import LiveInput
from ..live.stream import COMMITTED, COMPLETED, DELTA, SPEECH_STARTED, SPEECH_STOPPED, LiveOptions, LiveStream
from ..live.turns import TurnDetection
from ..prompt import language_name
from .app import Service
from .batcher import QueueFull

log = logging.getLogger(__name__)

MAX_APPEND_BYTES = 15 << 20        # OpenAI's limit for one input_audio_buffer.append
MAX_FRAME_BYTES = 32 << 20         # a frame up to this is read (an append over the limit gets an error event)
RATES = (24000, 16000)             # audio/pcm rates taken (OpenAI sends 24 kHz)
CLOSE_POLICY, CLOSE_TRY_LATER = 1008, 1013


class ProtocolError(Exception):
    def __init__(self, message: str, code: str, param: str | None = None):
        super().__init__(message)
        self.message, self.code, self.param = message, code, param


def _id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


class RealtimeConnection:
    def __init__(self, service: Service, ws: WebSocket):
        self.service, self.ws = service, ws
        self.session_id = _id("sess")
        self.rate = 24000
        self.model = service.model_name
        self.language: str | None = None
        self.prompt = ""
        self.detection: TurnDetection | None = TurnDetection()
        self.stream = self._new_stream()
        self.input = LiveInput(self.rate, self.stream.rate)
        self.items: dict[int, str] = {}          # turn -> item id
        self.last_item: str | None = None
        self.stepping: asyncio.Task | None = None
        self.inflight = None                     # the step queued or running (batcher._LiveRequest)
        self.closed = False

    # -- the session -----------------------------------------------------------------------------------
    def _new_stream(self) -> LiveStream:
        s = self.service.settings
        options = LiveOptions(language=self.language, context=self.prompt, turn_detection=self.detection,
                              step_seconds=s.live_step_s, decode=s.decode)
        return LiveStream(self.service.engine, options)

    def session_object(self) -> dict:
        detection = None if self.detection is None else {
            "type": "server_vad", "threshold": self.detection.threshold,
            "prefix_padding_ms": self.detection.prefix_padding_ms,
            "silence_duration_ms": self.detection.silence_duration_ms}
        return {"type": "transcription", "object": "realtime.transcription_session", "id": self.session_id,
                "audio": {"input": {"format": {"type": "audio/pcm", "rate": self.rate},
                                    "transcription": {"model": self.model, "language": self.language,
                                                      "prompt": self.prompt},
                                    "turn_detection": detection, "noise_reduction": None}},
                "include": None}

    def legacy_session_object(self) -> dict:
        new = self.session_object()["audio"]["input"]
        return {"id": self.session_id, "object": "realtime.transcription_session", "input_audio_format": "pcm16",
                "input_audio_transcription": new["transcription"], "turn_detection": new["turn_detection"]}

    def _busy(self) -> bool:
        return self.stream.open is not None or bool(self.stream.closing) or self.stepping is not None

    def update(self, session: dict, legacy: bool) -> None:
        """Apply a session.update (GA) or transcription_session.update (legacy); ProtocolError when it asks for
        something this server does not do. Nothing changes unless all of it is valid."""
        if not isinstance(session, dict):
            raise ProtocolError("session must be an object", "invalid_value", "session")
        if legacy:
            audio_format = session.get("input_audio_format", "pcm16")
            if audio_format != "pcm16":
                raise ProtocolError(f"input_audio_format {audio_format!r} is not supported; use pcm16",
                                    "unsupported_audio_format", "session.input_audio_format")
            rate, transcription = 24000, session.get("input_audio_transcription")
            detection = session.get("turn_detection", _UNSET)
        else:
            kind = session.get("type", "transcription")
            if kind != "transcription":
                raise ProtocolError(f"session type {kind!r} is not served; this server transcribes only "
                                    "(type: transcription)", "unsupported_session_type", "session.type")
            audio_input = (session.get("audio") or {}).get("input") or {}
            rate = self._rate(audio_input.get("format"))
            transcription = audio_input.get("transcription")
            detection = audio_input.get("turn_detection", _UNSET)
        language, prompt, model = self.language, self.prompt, self.model
        if transcription is not None:
            if not isinstance(transcription, dict):
                raise ProtocolError("transcription must be an object", "invalid_value")
            model = transcription.get("model") or self.model
            if model != self.service.model_name:
                raise ProtocolError(f"The model '{model}' does not exist; this server serves "
                                    f"'{self.service.model_name}'", "model_not_found", "transcription.model")
            try:
                language = language_name(transcription.get("language") or None, self.service.engine.languages)
            except QasrError as exc:
                raise ProtocolError(str(exc), "invalid_value", "transcription.language") from None
            prompt = transcription.get("prompt") or ""
            if not isinstance(prompt, str):
                raise ProtocolError("transcription.prompt must be a string", "invalid_value")
        turn = self.detection if detection is _UNSET else self._detection(detection)
        changes = (rate, language, prompt, turn) != (self.rate, self.language, self.prompt, self.detection)
        if changes and self._busy():
            raise ProtocolError("the session cannot change while audio is buffered or being transcribed; commit or "
                                "clear the buffer first", "session_busy")
        self.model = model
        if changes:
            self.rate, self.language, self.prompt, self.detection = rate, language, prompt, turn
            self.stream = self._new_stream()
            self.input = LiveInput(self.rate, self.stream.rate)

    @staticmethod
    def _rate(audio_format) -> int:
        if audio_format is None:
            return 24000
        if not isinstance(audio_format, dict) or audio_format.get("type") not in ("audio/pcm", None):
            kind = audio_format.get("type") if isinstance(audio_format, dict) else audio_format
            raise ProtocolError(f"audio format {kind!r} is not supported; use audio/pcm (16-bit mono)",
                                "unsupported_audio_format", "session.audio.input.format")
        rate = audio_format.get("rate", 24000)
        if rate not in RATES:
            raise ProtocolError(f"audio/pcm at {rate} Hz is not supported; use 24000 or 16000",
                                "unsupported_audio_format", "session.audio.input.format.rate")
        return rate

    @staticmethod
    def _detection(value) -> TurnDetection | None:
        if value is None:
            return None
        if not isinstance(value, dict) or value.get("type", "server_vad") != "server_vad":
            kind = value.get("type") if isinstance(value, dict) else value
            raise ProtocolError(f"turn_detection {kind!r} is not supported; use server_vad or null",
                                "unsupported_turn_detection", "turn_detection")
        defaults = TurnDetection()
        try:
            return TurnDetection(float(value.get("threshold", defaults.threshold)),
                                 int(value.get("prefix_padding_ms", defaults.prefix_padding_ms)),
                                 int(value.get("silence_duration_ms", defaults.silence_duration_ms))).check()
        except (TypeError, ValueError, QasrError) as exc:
            raise ProtocolError(f"turn_detection: {exc}", "invalid_value", "turn_detection") from None

    # -- events ----------------------------------------------------------------------------------------
    async def send(self, payload: dict) -> None:
        if not self.closed:
            await self.ws.send_text(json.dumps({"event_id": _id("event"), **payload}, ensure_ascii=False))

    async def error(self, message: str, code: str, param: str | None = None, event_id: str | None = None,
                    kind: str = "invalid_request_error") -> None:
        await self.send(error_event(message, code, param, event_id, kind))

    def _item(self, turn: int) -> str:
        if turn not in self.items:
            self.items[turn] = _id("item")
        return self.items[turn]

    async def flush(self) -> None:
        """Send the stream's events in OpenAI's shapes."""
        for event in self.stream.take_events():
            item = self._item(event.turn)
            if event.kind == SPEECH_STARTED:
                await self.send({"type": "input_audio_buffer.speech_started", "audio_start_ms": int(event.start * 1000),
                                 "item_id": item})
            elif event.kind == SPEECH_STOPPED:
                await self.send({"type": "input_audio_buffer.speech_stopped", "audio_end_ms": int(event.end * 1000),
                                 "item_id": item})
            elif event.kind == COMMITTED:
                await self.send({"type": "input_audio_buffer.committed", "previous_item_id": self.last_item,
                                 "item_id": item})
                self.last_item = item
            elif event.kind == DELTA:
                await self.send({"type": "conversation.item.input_audio_transcription.delta", "item_id": item,
                                 "content_index": 0, "delta": event.text})
            elif event.kind == COMPLETED:
                self.service.metrics.audio_seconds.inc(max(0.0, event.end - event.start))
                await self.send({"type": "conversation.item.input_audio_transcription.completed", "item_id": item,
                                 "content_index": 0, "transcript": event.text})
                self.items.pop(event.turn, None)

    # -- decode steps ------------------------------------------------------------------------------------
    def kick(self) -> None:
        if self.stepping is None and not self.closed:
            self.stepping = asyncio.create_task(self._steps())

    async def _steps(self) -> None:
        """Run the stream's due steps one after another through the batcher, sending events after each."""
        try:
            while not self.closed and (work := self.stream.work()) is not None:
                await self.flush()   # completed events of turns with nothing to decode
                try:
                    self.inflight = self.service.batcher.submit_live(work)
                except QueueFull:
                    await asyncio.sleep(self.service.settings.retry_after_s / 10)
                    continue
                future = self.inflight.future
                await asyncio.wait({future})
                self.inflight = None
                if future.cancelled():   # a partial step dropped before it ran: a turn ended, its final goes first
                    continue
                if future.exception() is not None:   # an engine failure fails this step, not the connection
                    log.error("live step failed: %s", future.exception())
                    await self.error(f"transcription failed: {future.exception()}", "transcription_failed",
                                     kind="server_error")
                    return
                self.stream.apply(work, future.result())
                await self.flush()
            await self.flush()
        finally:
            self.stepping = None
            if self.inflight is not None:
                self.inflight.future.cancel()
                self.inflight = None

    def hurry(self) -> None:
        """A turn just ended: a partial step still waiting in the queue is dropped, so the final step goes next."""
        request = self.inflight
        if request is not None and not request.started and not request.work.final and self.stream.closing:
            request.future.cancel()

    # -- client events -------------------------------------------------------------------------------------
    async def handle(self, text: str) -> None:
        try:
            event = json.loads(text)
        except ValueError:
            return await self.error("the message is not valid JSON", "invalid_json")
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            return await self.error("an event is a JSON object with a string `type`", "invalid_event")
        kind, event_id = event["type"], event.get("event_id")
        try:
            if kind in ("session.update", "transcription_session.update"):
                legacy = kind == "transcription_session.update"
                self.update(event.get("session"), legacy)
                await self.send({"type": "transcription_session.updated", "session": self.legacy_session_object()}
                                if legacy else {"type": "session.updated", "session": self.session_object()})
            elif kind == "input_audio_buffer.append":
                self.append(event.get("audio"))
                self.hurry()
                await self.flush()
                self.kick()
            elif kind == "input_audio_buffer.commit":
                if not self.stream.commit():
                    raise ProtocolError("the input audio buffer is empty; append audio before committing",
                                        "input_audio_buffer_commit_empty")
                self.hurry()
                await self.flush()
                self.kick()
            elif kind == "input_audio_buffer.clear":
                self.stream.clear()
                await self.send({"type": "input_audio_buffer.cleared"})
            else:
                raise ProtocolError(f"unknown or unsupported event type {kind!r}", "unknown_event", "type")
        except ProtocolError as exc:
            await self.error(exc.message, exc.code, exc.param, event_id)

    def append(self, audio) -> None:
        if not isinstance(audio, str):
            raise ProtocolError("input_audio_buffer.append needs `audio`: base64 of 16-bit PCM", "invalid_value",
                                "audio")
        if len(audio) > MAX_APPEND_BYTES * 4 // 3 + 4:
            raise ProtocolError(f"one append may carry at most {MAX_APPEND_BYTES} bytes of audio", "audio_too_large",
                                "audio")
        try:
            data = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            raise ProtocolError("audio is not valid base64", "invalid_base64", "audio") from None
        if len(data) % 2:
            raise ProtocolError("audio/pcm is 16-bit: an append must hold a whole number of samples",
                                "invalid_audio", "audio")
        import numpy as np

        self.stream.ingest(self.input.push(np.frombuffer(data, dtype="<i2")))


_UNSET = object()


def install_realtime(app: FastAPI, service: Service) -> None:
    @app.websocket("/v1/realtime")
    async def realtime(ws: WebSocket):
        settings = service.settings
        if not _authorized(ws, settings.api_key):
            await ws.close(code=CLOSE_POLICY, reason="missing or wrong API key (Authorization: Bearer <key>)")
            return
        await ws.accept(subprotocol="realtime" if "realtime" in ws.scope.get("subprotocols", []) else None)
        if service.batcher is None or getattr(service.batcher, "submit_live", None) is None:
            reason = "the engine is not loaded yet" if service.batcher is None else \
                "live transcription is not available with Ray Serve batching"
            await _refuse(ws, reason, "not_ready", CLOSE_TRY_LATER, "server_error")
            return
        model = ws.query_params.get("model")
        if model and model != service.model_name:
            await _refuse(ws, f"The model '{model}' does not exist; this server serves '{service.model_name}'",
                          "model_not_found", CLOSE_POLICY)
            return
        if service.live_streams >= settings.max_streams:
            await _refuse(ws, f"this server holds at most {settings.max_streams} live streams; try again later",
                          "too_many_streams", CLOSE_TRY_LATER)
            return
        service.live_streams += 1
        service.metrics.live_streams.set(service.live_streams)
        connection = RealtimeConnection(service, ws)
        try:
            await connection.send({"type": "session.created", "session": connection.session_object()})
            while True:
                try:
                    message = await asyncio.wait_for(ws.receive(), timeout=settings.stream_idle_s)
                except asyncio.TimeoutError:
                    await connection.error(f"no event for {settings.stream_idle_s:g} s; closing the stream",
                                           "idle_timeout")
                    await ws.close(code=1000)
                    return
                if message["type"] == "websocket.disconnect":
                    return
                if message.get("text") is not None:
                    await connection.handle(message["text"])
                else:
                    await connection.error("send events as JSON text frames", "invalid_event")
        except WebSocketDisconnect:
            return
        finally:
            connection.closed = True
            if connection.stepping is not None:
                connection.stepping.cancel()
            service.live_streams -= 1
            service.metrics.live_streams.set(service.live_streams)


def error_event(message: str, code: str, param: str | None = None, event_id: str | None = None,
                kind: str = "invalid_request_error") -> dict:
    """OpenAI's `error` server event (`event_id` inside: the client event it answers)."""
    return {"type": "error", "error": {"type": kind, "code": code, "message": message, "param": param,
                                       "event_id": event_id}}


async def _refuse(ws: WebSocket, message: str, code: str, close_code: int,
                  kind: str = "invalid_request_error") -> None:
    """An error event, then the close: for a connection refused before its session starts."""
    await ws.send_text(json.dumps({"event_id": _id("event"), **error_event(message, code, kind=kind)}))
    await ws.close(code=close_code)


def _authorized(ws: WebSocket, key: str | None) -> bool:
    """The bearer key of the HTTP API, in the Authorization header (or, for browsers, OpenAI's
    `openai-insecure-api-key.<key>` subprotocol)."""
    if not key:
        return True
    scheme, _, token = ws.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), key.encode()):
        return True
    prefix = "openai-insecure-api-key."
    return any(p.startswith(prefix) and hmac.compare_digest(p[len(prefix):].encode(), key.encode())
               for p in ws.scope.get("subprotocols", []))
