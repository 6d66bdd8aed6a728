"""The front of `asr-serve --ray` (ray_front.RayFront) relays requests and responses as they are (uploads, JSON,
server-sent events, WebSockets, errors), hangs up on the proxy when its client does, and answers in the
service's JSON shape what the proxy behind it cannot: tested here in front of a real single-process service and
of a closed port; tests/test_ray.py kills a real Ray replica behind it."""

from __future__ import annotations

import io
import json
import threading

import httpx
import pytest
import soundfile as sf

from qasr.benchmarks.faults import upload_and_hang_up
from qasr.runtime.service.live import LiveServer
from qasr.runtime.service.ray_serve import FrontThread, free_port
from qasr.runtime.service.settings import ServiceSettings
from test_cancellation import _long_recording

CALL = "please call me at seven thirty tomorrow morning"


@pytest.fixture(scope="module")
def behind(shipped_export):
    """The service, and the front relaying to it."""
    settings = ServiceSettings(engine_dir=shipped_export, max_batch=4, max_wait_ms=5, max_audio_seconds=600,
                               max_upload_bytes=64 << 20)
    with LiveServer(settings) as service, FrontThread(service.url, settings) as front:
        yield service, front


def _call_wav() -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, sf.read("examples/call.flac", dtype="float32")[0], 44100, format="WAV")
    return buffer.getvalue()


def test_the_front_relays_requests_responses_and_errors(behind):
    service, front = behind
    files = {"file": ("call.wav", _call_wav(), "audio/wav")}
    direct = httpx.post(service.url + "/v1/audio/transcriptions", files=files, data={"response_format": "verbose_json"},
                        timeout=120)
    relayed = httpx.post(front.url + "/v1/audio/transcriptions", files=files, data={"response_format": "verbose_json"},
                         timeout=120)
    assert relayed.status_code == 200 and relayed.json() == direct.json() and relayed.json()["text"] == CALL
    assert relayed.headers["x-qasr-worker"] == direct.headers["x-qasr-worker"]
    assert httpx.get(front.url + "/v1/models").json() == httpx.get(service.url + "/v1/models").json()
    # our own errors pass as they are (status, JSON body)
    bad = httpx.post(front.url + "/v1/audio/transcriptions", files={"file": ("x.wav", b"not audio", "audio/wav")})
    assert bad.status_code == 400 and bad.json() == httpx.post(
        service.url + "/v1/audio/transcriptions", files={"file": ("x.wav", b"not audio", "audio/wav")}).json()
    # server-sent events arrive as events, ending with the whole text
    with httpx.stream("POST", front.url + "/v1/audio/transcriptions", files=files, data={"stream": "true"},
                      timeout=120) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[6:]) for line in stream.iter_lines() if line.startswith("data: {")]
    assert events[-1]["type"] == "transcript.text.done" and events[-1]["text"] == CALL
    assert "".join(e["delta"] for e in events[:-1]) == CALL


def test_the_front_relays_websockets(behind):
    from websockets.sync.client import connect

    _, front = behind
    with connect(front.url.replace("http", "ws") + "/v1/realtime?intent=transcription", open_timeout=30) as ws:
        assert json.loads(ws.recv(timeout=30))["type"] == "session.created"


def test_a_client_hanging_up_on_the_front_stops_the_work(behind):
    service, front = behind
    data = _long_recording(240)
    transcriber = service.service.batcher.transcriber
    from qasr.runtime.transcribe import TranscribeOptions

    _, pieces = transcriber.split(sf.read(io.BytesIO(data), dtype="float32")[0], TranscribeOptions())
    whole = -(-len(pieces) // 4)                       # the batches the whole recording needs
    before = transcriber.batches_run
    hang_up = threading.Thread(target=upload_and_hang_up, args=(front.url, data, 1.0))
    hang_up.start()
    hang_up.join()
    answer = httpx.post(front.url + "/v1/audio/transcriptions", files={"file": ("call.wav", _call_wav(), "audio/wav")},
                        timeout=120)
    assert answer.status_code == 200 and answer.json()["text"] == CALL
    ran = transcriber.batches_run - before - 1          # less the short request's batch
    assert ran < whole / 2, (ran, whole)


def test_an_unreachable_proxy_is_a_json_503(shipped_export):
    settings = ServiceSettings(engine_dir=shipped_export)
    with FrontThread(f"http://127.0.0.1:{free_port()}", settings) as front:   # nothing listens there
        answer = httpx.post(front.url + "/v1/audio/transcriptions", files={"file": ("call.wav", b"x", "audio/wav")})
    assert answer.status_code == 503 and answer.headers["retry-after"] == "1"
    assert answer.json()["error"]["type"] == "replica_unavailable"
