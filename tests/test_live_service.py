"""The service's live side, on the shipped trained model: /v1/realtime spoken to by the official `openai` client
and by plain WebSocket frames, and the streamed (SSE) transcription without a forced language."""

from __future__ import annotations

import base64
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from qasr.runtime.audio import resample

from qasr.runtime.audio import load_audio
from qasr.runtime.service.live import LiveServer
from qasr.runtime.service.settings import ServiceSettings

ROOT = Path(__file__).resolve().parents[1]
CALL = ROOT / "examples" / "call.flac"
CALL_TEXT = (ROOT / "examples" / "call.txt").read_text().strip()
KEY = "live-secret"


@pytest.fixture(scope="module")
def call_pcm24() -> bytes:
    x = load_audio(CALL, 16000)
    return (np.clip(resample(x, 16000, 24000), -1, 1) * 32767).astype("<i2").tobytes()


@pytest.fixture(scope="module")
def live(shipped_export):
    with LiveServer(ServiceSettings(engine_dir=shipped_export, api_key=KEY, max_wait_ms=20)) as server:
        yield server


def _ws_url(server, query: str = "?intent=transcription") -> str:
    return server.url.replace("http://", "ws://") + "/v1/realtime" + query


def _connect(server, key: str | None = KEY, query: str = "?intent=transcription"):
    from websockets.sync.client import connect

    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return connect(_ws_url(server, query), additional_headers=headers, open_timeout=30)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _until(ws, kind: str, timeout: float = 60) -> list[dict]:
    """Events up to and including the first of type `kind`."""
    events = []
    deadline = time.monotonic() + timeout
    while True:
        event = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
        events.append(event)
        if event["type"] == kind:
            return events


def _paced(send, pcm: bytes, rate: int = 24000, chunk_s: float = 0.1, speed: float = 4.0) -> None:
    size = int(rate * chunk_s) * 2
    for lo in range(0, len(pcm), size):
        send(pcm[lo: lo + size])
        time.sleep(chunk_s / speed)


def test_the_openai_client_transcribes_live_with_server_vad(live, call_pcm24):
    """GA session.update at 24 kHz, audio appended at 4x real time: speech_started, deltas while the audio plays,
    speech_stopped, committed, completed with the example's text; the deltas add up to it."""
    from openai import OpenAI

    client = OpenAI(base_url=live.url + "/v1", api_key=KEY, max_retries=0)
    with client.realtime.connect(extra_query={"intent": "transcription"}) as conn:
        assert conn.recv().type == "session.created"
        conn.session.update(session={"type": "transcription", "audio": {"input": {
            "format": {"type": "audio/pcm", "rate": 24000},
            "transcription": {"model": live.service.model_name},
            "turn_detection": {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300,
                               "silence_duration_ms": 500}}}})
        updated = conn.recv()
        assert updated.type == "session.updated"
        _paced(lambda b: conn.input_audio_buffer.append(audio=_b64(b)), call_pcm24 + bytes(2 * 24000))
        events = []
        while not events or events[-1].type != "conversation.item.input_audio_transcription.completed":
            events.append(conn.recv())
    kinds = [e.type for e in events]
    assert kinds.index("input_audio_buffer.speech_started") < kinds.index("input_audio_buffer.speech_stopped") \
        < kinds.index("input_audio_buffer.committed") < len(kinds) - 1
    deltas = [e for e in events if e.type == "conversation.item.input_audio_transcription.delta"]
    assert len(deltas) >= 2 and kinds.index(deltas[0].type) < kinds.index("input_audio_buffer.speech_stopped")
    assert "".join(d.delta for d in deltas) == events[-1].transcript == CALL_TEXT
    items = {e.item_id for e in events if hasattr(e, "item_id")}
    assert len(items) == 1


def test_legacy_session_16k_and_manual_commits(live, call_pcm24):
    """transcription_session.update (the older shape) with turn detection off: the client commits; a second
    session.update switches to 16 kHz audio; each commit gives a completed item, chained by previous_item_id."""
    with _connect(live) as ws:
        assert json.loads(ws.recv())["type"] == "session.created"
        ws.send(json.dumps({"type": "transcription_session.update", "session": {
            "input_audio_format": "pcm16", "input_audio_transcription": {"language": "en"}, "turn_detection": None}}))
        updated = _until(ws, "transcription_session.updated")[-1]
        assert updated["session"]["turn_detection"] is None
        assert updated["session"]["input_audio_transcription"]["language"] == "English"
        for lo in range(0, len(call_pcm24), 9600):
            ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": _b64(call_pcm24[lo: lo + 9600])}))
        ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
        first = _until(ws, "conversation.item.input_audio_transcription.completed")
        committed = next(e for e in first if e["type"] == "input_audio_buffer.committed")
        assert first[-1]["transcript"] == CALL_TEXT and committed["previous_item_id"] is None
        ws.send(json.dumps({"type": "session.update", "session": {"type": "transcription", "audio": {"input": {
            "format": {"type": "audio/pcm", "rate": 16000}, "turn_detection": None}}}}))
        assert _until(ws, "session.updated")[-1]["session"]["audio"]["input"]["format"]["rate"] == 16000
        pcm16 = (load_audio(CALL, 16000) * 32767).astype("<i2").tobytes()
        ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": _b64(pcm16)}))
        ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
        second = _until(ws, "conversation.item.input_audio_transcription.completed")
        assert second[-1]["transcript"] == CALL_TEXT
        assert next(e for e in second if e["type"] == "input_audio_buffer.committed")["previous_item_id"] == \
            committed["item_id"]


def test_bad_events_get_error_events_and_the_connection_stays(live, call_pcm24):
    bad = [
        ("not json", "invalid_json"),
        (json.dumps({"type": "response.create"}), "unknown_event"),
        (json.dumps({"type": "input_audio_buffer.append", "audio": "@@not base64@@"}), "invalid_base64"),
        (json.dumps({"type": "input_audio_buffer.append", "audio": _b64(b"\x01\x02\x03")}), "invalid_audio"),
        (json.dumps({"type": "input_audio_buffer.append", "audio": "A" * (21 << 20)}), "audio_too_large"),
        (json.dumps({"type": "input_audio_buffer.commit"}), "input_audio_buffer_commit_empty"),
        (json.dumps({"type": "session.update", "session": {"type": "realtime"}}), "unsupported_session_type"),
        (json.dumps({"type": "session.update", "session": {"audio": {"input": {"format": {"type": "audio/pcmu"}}}}}),
         "unsupported_audio_format"),
        (json.dumps({"type": "session.update", "session": {"audio": {"input": {"format": {"type": "audio/pcm",
                                                                                              "rate": 44100}}}}}),
         "unsupported_audio_format"),
        (json.dumps({"type": "session.update", "session": {"audio": {"input": {
            "turn_detection": {"type": "semantic_vad"}}}}}), "unsupported_turn_detection"),
        (json.dumps({"type": "session.update", "session": {"audio": {"input": {
            "transcription": {"model": "gpt-4o-transcribe"}}}}}), "model_not_found"),
        (json.dumps({"type": "session.update", "session": {"audio": {"input": {
            "transcription": {"language": "klingon"}}}}}), "invalid_value"),
    ]
    with _connect(live) as ws:
        json.loads(ws.recv())
        for frame, code in bad:
            ws.send(frame)
            event = json.loads(ws.recv(timeout=30))
            assert event["type"] == "error" and event["error"]["code"] == code, (frame[:80], event)
            assert event["error"]["message"]
        ws.send(b"binary")
        assert json.loads(ws.recv(timeout=30))["error"]["code"] == "invalid_event"
        # still a working session afterwards
        for lo in range(0, len(call_pcm24), 4800):
            ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": _b64(call_pcm24[lo: lo + 4800])}))
        ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": _b64(bytes(2 * 24000))}))
        assert _until(ws, "conversation.item.input_audio_transcription.completed")[-1]["transcript"] == CALL_TEXT
        ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": _b64(call_pcm24[:48000])}))
        ws.send(json.dumps({"type": "input_audio_buffer.clear"}))
        assert _until(ws, "input_audio_buffer.cleared")[-1]["type"] == "input_audio_buffer.cleared"


def test_the_key_and_the_model_are_checked(live):
    from websockets.exceptions import InvalidStatus

    for key in (None, "wrong"):
        with pytest.raises(InvalidStatus) as refused:
            _connect(live, key)
        assert refused.value.response.status_code == 403
    with _connect(live, query=f"?intent=transcription&model={live.service.model_name}") as ws:
        assert json.loads(ws.recv())["type"] == "session.created"
    with _connect(live, query="?model=whisper-1") as ws:
        assert json.loads(ws.recv())["error"]["code"] == "model_not_found"
        with pytest.raises(Exception):
            ws.recv(timeout=10)
        assert ws.close_code == 1008


def test_streams_share_batches_with_each_other_and_with_files(live, call_pcm24):
    """Three streams at once and a file request: the batcher runs several streams' steps (and the file) in one
    engine slot; every stream gets the example's text."""
    batcher = live.service.batcher
    before = len(batcher.batch_mix)

    def one_stream() -> str:
        with _connect(live) as ws:
            json.loads(ws.recv())
            _paced(lambda b: ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": _b64(b)})),
                   call_pcm24 + bytes(2 * 24000), speed=2.0)
            return _until(ws, "conversation.item.input_audio_transcription.completed")[-1]["transcript"]

    def one_file() -> int:
        time.sleep(1.0)
        with open(CALL, "rb") as handle:
            return httpx.post(live.url + "/v1/audio/transcriptions", files={"file": ("call.flac", handle)},
                              headers={"Authorization": f"Bearer {KEY}"}, timeout=120).status_code

    with ThreadPoolExecutor(4) as pool:
        streams = [pool.submit(one_stream) for _ in range(3)]
        upload = pool.submit(one_file)
        assert [s.result() for s in streams] == [CALL_TEXT] * 3
        assert upload.result() == 200
    mix = batcher.batch_mix[before:]
    assert max(live_steps for _, live_steps in mix) >= 2
    assert sum(files for files, _ in mix) == 1


def test_stream_limits_idle_timeout_and_disconnects(shipped_export, call_pcm24):
    settings = ServiceSettings(engine_dir=shipped_export, max_streams=1, stream_idle_s=1.0)
    with LiveServer(settings) as server:
        with _connect(server, None) as first:
            json.loads(first.recv())
            assert server.service.live_streams == 1
            with _connect(server, None) as second:
                refused = json.loads(second.recv(timeout=10))
                assert refused["error"]["code"] == "too_many_streams"
                with pytest.raises(Exception):
                    second.recv(timeout=10)
                assert second.close_code == 1013
            # the first stream says nothing: it is closed after the idle timeout
            event = json.loads(first.recv(timeout=10))
            assert event["type"] == "error" and event["error"]["code"] == "idle_timeout"
            with pytest.raises(Exception):
                first.recv(timeout=10)
        _wait_for_no_streams(server)
        # a client that hangs up mid-stream frees its stream at once
        with _connect(server, None) as third:
            json.loads(third.recv())
            for lo in range(0, 96000, 4800):
                third.send(json.dumps({"type": "input_audio_buffer.append", "audio": _b64(call_pcm24[lo: lo + 4800])}))
        _wait_for_no_streams(server)
        metrics = httpx.get(server.url + "/metrics").text
        assert "qasr_live_streams 0.0" in metrics


def _wait_for_no_streams(server) -> None:
    deadline = time.monotonic() + 10
    while server.service.live_streams and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.service.live_streams == 0


def test_sse_stream_without_a_language_sends_only_text(live):
    """stream=true, language not forced, the trained model: the deltas are the transcript's text (no piece of the
    model's `language English<asr_text>` header), add up to the done event's text, and arrive in several parts."""
    from openai import OpenAI

    client = OpenAI(base_url=live.url + "/v1", api_key=KEY, max_retries=0)
    with open(CALL, "rb") as handle:
        events = list(client.audio.transcriptions.create(model=live.service.model_name, file=handle, stream=True))
    deltas = [e.delta for e in events if e.type == "transcript.text.delta"]
    assert events[-1].type == "transcript.text.done" and events[-1].text == CALL_TEXT
    assert len(deltas) >= 2 and "".join(deltas) == CALL_TEXT


def test_the_live_benchmark_prints_its_tables(shipped_export, tmp_path):
    """python -m qasr.benchmarks.live end to end on a small slice (two utterances, one 6 s stream, two concurrent
    WebSocket clients against an asr-serve process): every table, numbers in the JSON; a bad option is one line."""
    import subprocess
    import sys

    report = tmp_path / "live.json"
    command = [sys.executable, "-m", "qasr.benchmarks.live", "--engine", str(shipped_export), "--limit", "2",
               "--long-count", "2", "--lengths", "6", "--policies", "agreement", "--streams", "2",
               "--stream-seconds", "6", "--json", str(report)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    for title in ("## Each held-out utterance streamed alone", "held-out utterances joined with 1 s pauses",
                  "## Compute per audio second", "## Concurrent real-time streams"):
        assert title in done.stdout
    numbers = json.loads(report.read_text())
    assert numbers["utterances"] == 2 and numbers["concurrency"][0]["streams"] == 2
    assert numbers["concurrency"][0]["turns"] >= 1 and numbers["flat"][0]["steps"] > 0
    refused = subprocess.run(command[:5] + ["--policies", "eager"], capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "unknown policy 'eager'" in refused.stderr
    again = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "exists; pass --force" in again.stderr


def test_file_segments_and_live_steps_share_one_encoder_and_decoder_call(shipped_export):
    """A batch holding a file request and two streams' steps: the steps ride in the file's encoder and decoder
    calls, and every result equals what each gets alone."""
    import asyncio

    from qasr.runtime.engine import Engine
    from qasr.runtime.live.runner import run_work
    from qasr.runtime.live.stream import LiveOptions, LiveStream, StepWork
    from qasr.runtime.service.batcher import DynamicBatcher, _LiveRequest, _Request
    from qasr.runtime.service.metrics import Metrics
    from qasr.runtime.transcribe import TranscribeOptions, Transcriber

    engine = Engine(shipped_export)
    x = load_audio(CALL, 16000)
    loop = asyncio.new_event_loop()

    def steps() -> list[StepWork]:
        works = []
        for seconds in (1.5, 2.5):
            stream = LiveStream(engine, LiveOptions(turn_detection=None))
            stream.ingest(x[: int(seconds * 16000)])
            works.append(stream.work())
        return works

    alone = run_work(engine, steps())
    batcher = DynamicBatcher(Transcriber(engine), TranscribeOptions(), 8, 0.01, 8, Metrics())
    batch = [_LiveRequest(w, loop.create_future()) for w in steps()]
    batch.insert(1, _Request(x, 16000, None, "", loop.create_future()))
    results = batcher._transcribe(batch)
    loop.close()
    assert batcher.joint_calls == 1
    assert results[1].text == CALL_TEXT
    assert [results[0].tokens, results[2].tokens] == [g.tokens for g in alone]
