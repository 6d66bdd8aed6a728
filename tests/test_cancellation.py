"""Abandoned work stops costing compute: a client that hangs up (or times out) has its queued segments dropped and
its rows leave a running batch at the next decode step. Real clients over loopback; what the engine ran is counted
(the transcriber's batches), not timed."""

from __future__ import annotations

import io
import socket
import threading
import time

import httpx
import pytest
import numpy as np
import soundfile as sf

from qasr.benchmarks.faults import upload_and_hang_up
from qasr.runtime.service.live import LiveServer
from qasr.runtime.service.settings import ServiceSettings


def _long_recording(seconds: float) -> bytes:
    """Held-out utterances one after another with short pauses, as 16 kHz WAV bytes."""
    from qasr.assets import EVAL_MANIFEST
    from qasr.runtime.audio import load_audio
    from qasr.runtime.speech_manifest import read_manifest

    utterances, _ = read_manifest(EVAL_MANIFEST)
    parts, total = [], 0
    for u in utterances * 10:
        x = load_audio(str(u.audio), 16000)
        parts += [x, np.zeros(8000, np.float32)]
        total += len(x) + 8000
        if total >= seconds * 16000:
            break
    buffer = io.BytesIO()
    sf.write(buffer, np.concatenate(parts), 16000, format="WAV")
    return buffer.getvalue()


def test_a_client_that_hangs_up_stops_its_work(shipped_export):
    data = _long_recording(240)
    settings = ServiceSettings(engine_dir=shipped_export, max_batch=4, max_wait_ms=5, max_audio_seconds=600,
                               max_upload_bytes=64 << 20)
    with LiveServer(settings) as server:
        transcriber = server.service.batcher.transcriber
        from qasr.runtime.transcribe import TranscribeOptions

        _, pieces = transcriber.split(sf.read(io.BytesIO(data), dtype="float32")[0], TranscribeOptions())
        whole = -(-len(pieces) // 4)                       # the batches the whole recording needs
        assert whole >= 10
        before = transcriber.batches_run
        hang_up = threading.Thread(target=upload_and_hang_up, args=(server.url, data, 1.0))
        hang_up.start()
        hang_up.join()
        # the next request is answered, and the abandoned recording did not run to its end
        short = io.BytesIO()
        sf.write(short, sf.read("examples/call.flac", dtype="float32")[0], 44100, format="WAV")
        answer = httpx.post(server.url + "/v1/audio/transcriptions",
                            files={"file": ("call.wav", short.getvalue(), "audio/wav")}, timeout=120)
        assert answer.status_code == 200 and answer.json()["text"] == "please call me at seven thirty tomorrow morning"
        ran = transcriber.batches_run - before - 1          # less the short request's batch
        assert ran < whole / 2, (ran, whole)


def test_a_timed_out_request_stops_its_work(shipped_export):
    data = _long_recording(240)
    settings = ServiceSettings(engine_dir=shipped_export, max_batch=4, max_wait_ms=5, max_audio_seconds=600,
                               max_upload_bytes=64 << 20, request_timeout_s=1.0)
    with LiveServer(settings) as server:
        transcriber = server.service.batcher.transcriber
        before = transcriber.batches_run
        answer = httpx.post(server.url + "/v1/audio/transcriptions",
                            files={"file": ("long.wav", data, "audio/wav")}, timeout=120)
        assert answer.status_code == 504
        time.sleep(3.0)
        ran = transcriber.batches_run - before
        time.sleep(3.0)
        assert transcriber.batches_run - before == ran      # nothing more runs for it


def test_shutdown_ends_within_seconds_whatever_is_open(shipped_export, tmp_path):
    """SIGTERM with a 1 s grace while a long recording is being transcribed: the client gets its JSON 503 and the
    process exits within a few seconds (the open work leaves its batch at the next decode step), not after the
    whole recording."""
    import os
    import signal
    import subprocess
    import sys

    from qasr.runtime.service.ray_serve import free_port

    data = _long_recording(600)
    port = free_port()
    server = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "asr-serve"), "--engine",
                               str(shipped_export), "--port", str(port), "--graceful-timeout", "1",
                               "--max-audio-seconds", "900", "--max-upload-mb", "64", "--max-batch", "4"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/ready", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        answers = []
        client = threading.Thread(target=lambda: answers.append(httpx.post(
            url + "/v1/audio/transcriptions", files={"file": ("long.wav", data, "audio/wav")}, timeout=300)))
        client.start()
        time.sleep(2.0)
        signalled = time.monotonic()
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=120)
        took = time.monotonic() - signalled
        client.join(timeout=60)
    finally:
        if server.poll() is None:
            server.kill()
    assert answers and answers[0].status_code == 503 and answers[0].json()["error"]["type"] == "shutting_down"
    assert took < 8.0, took


@pytest.mark.parametrize("decoder", ["standard", "fused"])
def test_cancelled_rows_leave_the_running_batch(decoder, engines, fused_engine, waves):
    """Rows cancelled mid-run leave the batch at the next step: every later decode step runs only the rows still
    wanted (counted at the decoder's feeds), and those rows' tokens equal the run nobody cancelled (their cache
    rows moved to the front intact); a cancelled row keeps the tokens it had."""
    from qasr.exportformat import names
    from qasr.runtime.generate import Prompt
    from qasr.runtime.stopping import CANCELLED, DecodeOptions

    engine = engines["original"] if decoder == "standard" else fused_engine
    embeds = engine.encode([engine.features(w) for w in waves.values()])
    prompts = [Prompt(engine.prompts.build(len(e)), e, 30) for e in embeds]
    options = DecodeOptions(max_new_tokens=30, min_new_tokens=30, repetition_max_period=0)
    whole = engine.generate(prompts, options)
    assert [len(g.tokens) for g in whole] == [30] * 4

    asked = []

    def cancelled():   # asked before each step: row 1 goes before step 5, row 0 before step 12
        step = len(asked)
        asked.append(step)
        return [step >= 12, step >= 5, False, False]

    rows_fed = []
    steps = engine.generator.steps
    steps.observer = lambda graph, feeds: rows_fed.append(feeds[names.INPUT_IDS].shape)
    try:
        cut = engine.generate(prompts, options, cancelled=cancelled)
    finally:
        steps.observer = None
    decode_rows = [shape[0] for shape in rows_fed if shape[1] == 1][-29:]   # the 29 decode steps' feeds
    assert decode_rows == [4] * 5 + [3] * 7 + [2] * 17
    assert engine.generator.last_run["rows_left"] == 2
    assert [g.stop_reason for g in cut] == [CANCELLED, CANCELLED, "budget", "budget"]
    assert cut[0].tokens == whole[0].tokens[:12] and cut[1].tokens == whole[1].tokens[:5]
    assert [g.tokens for g in cut[2:]] == [g.tokens for g in whole[2:]]


def test_connections_open_at_shutdown_get_an_answer(shipped_export):
    """Clients opening connections in a tight loop while the server begins shutting down (what SIGTERM does): every
    connection the server's kernel accepted gets an HTTP answer (200, or 503 JSON for work refused while
    stopping), including those accepted but not yet read and those whose request comes a moment after the
    connect; once the port is closed a connect is refused (a clean signal to retry elsewhere). Nothing is reset."""
    settings = ServiceSettings(engine_dir=shipped_export, max_batch=4, max_wait_ms=5)
    host, answered, refused, unanswered = "127.0.0.1", [], [], []
    with LiveServer(settings) as server:
        port = int(server.url.rsplit(":", 1)[1])
        closing = threading.Event()

        wav = io.BytesIO()
        sf.write(wav, np.zeros(8000, np.float32), 16000, format="WAV")
        boundary = "qasrboundary"
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\n"
                .encode() + wav.getvalue() + f"\r\n--{boundary}--\r\n".encode())
        requests = [f"GET /v1/models HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode(),
                    (f"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Type: "
                     f"multipart/form-data; boundary={boundary}\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body]

        def client(delay: float, request: bytes) -> None:
            while True:
                try:
                    connection = socket.create_connection((host, port), timeout=30)
                except OSError:
                    refused.append(1)
                    if closing.is_set():
                        return
                    continue
                with connection:
                    reply = b""
                    try:
                        time.sleep(delay)
                        connection.sendall(request)
                        while chunk := connection.recv(65536):
                            reply += chunk
                    except OSError as exc:
                        unanswered.append(repr(exc))
                        continue
                    (answered if reply.startswith(b"HTTP/1.1 ") else unanswered).append(reply)

        clients = [threading.Thread(target=client, args=(0.02 * (i % 2), requests[i % 3 == 0])) for i in range(12)]
        for thread in clients:
            thread.start()
        time.sleep(1.0)
        late = socket.create_connection((host, port), timeout=30)   # connected before the shutdown, speaks after
        closing.set()
        server.stop_async()
        while not server.service.stopping.is_set():   # the server has begun shutting down
            time.sleep(0.005)
        with late:
            late.sendall(requests[1])
            reply = b""
            while chunk := late.recv(65536):
                reply += chunk
        assert reply.startswith(b"HTTP/1.1 503") and b'"shutting_down"' in reply and b"retry-after" in reply.lower()
        server.thread.join(timeout=60)
        for thread in clients:
            thread.join(timeout=60)
    assert not unanswered, (len(unanswered), unanswered[:5], len(answered))
    assert answered and refused
    statuses = {reply.split(b" ", 2)[1] for reply in answered}
    assert statuses <= {b"200", b"503"}, statuses
    refusals = [reply for reply in answered if reply.split(b" ", 2)[1] == b"503"]
    assert all(b'"shutting_down"' in r and b"retry-after" in r.lower() for r in refusals)


def test_an_input_cancelled_while_its_audio_is_cut_is_not_decoded(engines):
    """The voice-activity pass of a long input asks whether it is still wanted: cancelled meanwhile, the input is
    dropped there (no batch runs for it) and the next input is transcribed as usual."""
    from qasr.runtime.synthetic_audio import synthetic_speech
    from qasr.runtime.transcribe import TranscribeOptions, Transcriber

    transcriber = Transcriber(engines["original"])
    long, short = synthetic_speech(300.0, seed=1), synthetic_speech(3.0, seed=2)
    asked = []

    def wanted_for_a_while() -> bool:   # asked once before the cut, then during it: gone at the third question
        asked.append(1)
        return len(asked) >= 3

    alone = transcriber.transcribe([short], TranscribeOptions(vad="on"))[0]
    before = transcriber.batches_run
    out = transcriber.transcribe([long, short], TranscribeOptions(vad="on"), cancelled={0: wanted_for_a_while})
    assert out[0].error == "cancelled" and out[0].segments == [] and len(asked) >= 3
    assert transcriber.batches_run - before == 1 and out[1].text == alone.text
