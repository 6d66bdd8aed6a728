"""The HTTP service, started for real on a loopback port and spoken to over HTTP."""

from __future__ import annotations

import base64
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf

from qasr.runtime.synthetic_audio import synthetic_speech
from qasr.runtime.service.live import LiveServer
from qasr.runtime.service.settings import ServiceSettings
from qasr.runtime.transcribe import TranscribeOptions, Transcriber


def _wav(path: Path, seconds: float, seed: int) -> Path:
    sf.write(path, synthetic_speech(seconds, seed=seed), 16000)
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("clips")
    return [_wav(root / f"c{i}.wav", s, i) for i, s in enumerate((0.8, 1.9, 3.1, 4.4))]


@pytest.fixture(scope="module")
def expected(engines, clips):
    """The runtime's own transcripts of the clips, unbatched."""
    transcriber = Transcriber(engines["original"])
    return {c: transcriber.transcribe([c], TranscribeOptions(batch_size=1))[0].text for c in clips}


@pytest.fixture(scope="module")
def server(exports):
    with LiveServer(ServiceSettings(engine_dir=exports["original"], max_batch=8, max_wait_ms=150)) as live:
        yield live


def _post_file(url: str, path: Path, **fields) -> httpx.Response:
    with open(path, "rb") as handle:
        return httpx.post(url + "/v1/audio/transcriptions", files={"file": (path.name, handle, "audio/wav")},
                          data=fields, timeout=120)


def test_health_ready_and_formats(server, clips, expected, engines):
    assert httpx.get(server.url + "/health").json() == {"status": "ok"}
    ready = httpx.get(server.url + "/ready").json()
    assert ready["status"] == "ready" and ready["model"] == "original"
    assert "/" not in httpx.get(server.url + "/ready").text.replace("\\/", "")   # no file system path
    clip = clips[1]
    assert _post_file(server.url, clip).json() == {"text": expected[clip]}
    text = _post_file(server.url, clip, response_format="text")
    assert text.headers["content-type"].startswith("text/plain") and text.text == expected[clip]
    full = _post_file(server.url, clip, response_format="verbose_json", model="original").json()
    assert full["text"] == expected[clip] and full["duration"] == pytest.approx(1.9)
    alone = Transcriber(engines["original"]).transcribe([clip], TranscribeOptions(batch_size=1))[0].segments[0]
    assert full["segments"][0]["stop_reason"] == alone.stop_reason   # what the library says for this clip alone


def test_json_and_raw_endpoints(server, clips, expected):
    clip = clips[2]
    encoded = base64.b64encode(clip.read_bytes()).decode()
    as_json = httpx.post(server.url + "/v1/transcribe", json={"audio_base64": encoded}, timeout=120)
    assert as_json.status_code == 200 and as_json.json()["text"] == expected[clip]
    raw = httpx.post(server.url + "/v1/transcribe", content=clip.read_bytes(), headers={"content-type": "audio/wav"},
                     timeout=120)
    assert raw.status_code == 200 and raw.json()["text"] == expected[clip]
    forced = httpx.post(server.url + "/v1/transcribe?language=en", content=clip.read_bytes(),
                        headers={"content-type": "audio/wav"}, timeout=120)
    assert forced.json()["language"] == "English"


def test_concurrent_clients_are_all_answered_and_batched(server, clips, expected):
    before = len(server.service.batcher.batch_sizes)
    work = [clips[i % len(clips)] for i in range(16)]
    with ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(lambda c: _post_file(server.url, c), work))
    assert [r.status_code for r in responses] == [200] * 16
    assert [r.json()["text"] for r in responses] == [expected[c] for c in work]
    formed = server.service.batcher.batch_sizes[before:]
    assert sum(formed) == 16 and max(formed) > 1, formed  # requests really were decoded together


def _clock(text: str) -> float:
    hours, minutes, seconds = text.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def test_subtitles_and_segment_timestamps(server, clips, expected, engines):
    """srt and vtt parse with subtitle libraries and agree; the srt is the library's for the same segmentation;
    segment timestamps are honoured and word timestamps, without an aligner, refused with OpenAI's 400 error shape."""
    import io

    import srt
    import webvtt

    clip = clips[2]
    full = _post_file(server.url, clip, response_format="verbose_json", **{"timestamp_granularities[]": "segment"})
    assert full.status_code == 200, full.text
    segments = [s for s in full.json()["segments"] if s["text"]]
    assert segments and all(s["end"] > s["start"] >= 0 for s in segments)
    subtitles = _post_file(server.url, clip, response_format="srt").text
    cues = list(srt.parse(subtitles))
    vtt = _post_file(server.url, clip, response_format="vtt")
    assert vtt.headers["content-type"].startswith("text/vtt")
    captions = webvtt.from_buffer(io.StringIO(vtt.text)).captions
    assert [c.content for c in cues] == [c.text for c in captions]
    for cue, caption in zip(cues, captions):
        assert _clock(caption.start) == pytest.approx(cue.start.total_seconds(), abs=1e-3)
        assert _clock(caption.end) == pytest.approx(cue.end.total_seconds(), abs=1e-3)
    # subtitles without an aligner: a segment per run of speech (voice activity on, pauses split), as the CLI does
    from qasr.runtime.subtitles import to_srt

    library = Transcriber(engines["original"]).transcribe([clip], TranscribeOptions(vad="on", pauses="split"))[0]
    assert subtitles == to_srt(library)
    word = _post_file(server.url, clip, response_format="verbose_json", **{"timestamp_granularities[]": "word"})
    assert word.status_code == 400 and "word" in word.json()["error"]["message"]


def test_bad_requests_get_json_4xx_and_the_server_lives_on(server, tmp_path):
    cases = []
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF0000WAVEjunk")
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("just text")
    sf.write(tmp_path / "nan.wav", np.full(800, np.nan, np.float32), 16000, subtype="FLOAT")
    sf.write(tmp_path / "silent0.wav", np.zeros(0, np.float32), 16000)
    for name in ("corrupt.wav", "empty.wav", "notes.txt", "nan.wav", "silent0.wav"):
        cases.append((400, _post_file(server.url, tmp_path / name)))
    cases.append((400, httpx.post(server.url + "/v1/audio/transcriptions", data={"model": "x"})))
    cases.append((400, _post_file(server.url, tmp_path / "corrupt.wav", response_format="srt")))
    cases.append((400, httpx.post(server.url + "/v1/transcribe", json={"audio_base64": "%%%"})))
    cases.append((400, httpx.post(server.url + "/v1/transcribe", json={"audio": "nope"})))
    cases.append((400, httpx.post(server.url + "/v1/transcribe", content=b"{bad", headers={"content-type": "application/json"})))
    cases.append((415, httpx.post(server.url + "/v1/transcribe", content=b"x", headers={"content-type": "text/plain"})))
    clip = _wav(tmp_path / "ok.wav", 1.0, 3)
    cases.append((400, _post_file(server.url, clip, language="Klingon")))
    cases.append((404, httpx.get(server.url + "/nowhere")))
    for status, response in cases:
        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert error["code"] == status and error["message"]
    assert httpx.get(server.url + "/health").status_code == 200


def test_limits_on_upload_size_and_duration(exports, tmp_path):
    long_clip = _wav(tmp_path / "long.wav", 6.0, 1)
    settings = ServiceSettings(engine_dir=exports["original"], max_upload_bytes=150_000, max_audio_seconds=3.0)
    with LiveServer(settings) as live:
        too_long = _post_file(live.url, long_clip)       # 192 kB: over the upload limit
        assert too_long.status_code == 413 and too_long.json()["error"]["type"] == "upload_too_large"
        huge = tmp_path / "huge.wav"                      # over the outer body limit: refused before parsing
        huge.write_bytes(b"\0" * 400_000)
        assert _post_file(live.url, huge).json()["error"]["type"] == "upload_too_large"

        def endless():  # no Content-Length: the body is cut off at the limit, not buffered
            for _ in range(1000):
                yield b"\0" * 65536

        streamed = httpx.post(live.url + "/v1/transcribe", content=endless(), headers={"content-type": "audio/wav"},
                              timeout=60)
        assert streamed.status_code == 413
        short = tmp_path / "short.flac"                   # small on disk, but 4 s of audio
        sf.write(short, synthetic_speech(4.0), 16000)
        over = _post_file(live.url, short)
        assert over.status_code == 413 and over.json()["error"]["type"] == "audio_too_long"


def test_api_key(exports, clips):
    with LiveServer(ServiceSettings(engine_dir=exports["original"], api_key="s3cret")) as live:
        assert httpx.get(live.url + "/health").status_code == 200
        assert httpx.get(live.url + "/metrics").status_code == 401
        assert _post_file(live.url, clips[0]).status_code == 401
        wrong = httpx.get(live.url + "/metrics", headers={"authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
        with open(clips[0], "rb") as handle:
            ok = httpx.post(live.url + "/v1/audio/transcriptions", files={"file": ("a.wav", handle)},
                            headers={"authorization": "Bearer s3cret"}, timeout=120)
        assert ok.status_code == 200


def test_full_queue_answers_503_with_retry_after(exports, tmp_path):
    clip = _wav(tmp_path / "slow.wav", 9.0, 5)
    settings = ServiceSettings(engine_dir=exports["original"], max_batch=1, max_wait_ms=0, max_queue=1)
    with LiveServer(settings) as live, ThreadPoolExecutor(12) as pool:
        responses = list(pool.map(lambda _: _post_file(live.url, clip), range(12)))
    statuses = sorted(r.status_code for r in responses)
    assert set(statuses) == {200, 503} and len(responses) == 12, statuses
    busy = [r for r in responses if r.status_code == 503]
    assert all(r.headers["retry-after"] == "1" and r.json()["error"]["type"] == "server_busy" for r in busy)


def test_timeout_gives_504(exports, clips):
    with LiveServer(ServiceSettings(engine_dir=exports["original"], request_timeout_s=0.001)) as live:
        response = _post_file(live.url, clips[3])
        assert response.status_code == 504 and response.json()["error"]["type"] == "timeout"
        assert httpx.get(live.url + "/health").status_code == 200


def test_metrics_count_what_happened(server, clips):
    _post_file(server.url, clips[0])
    text = httpx.get(server.url + "/metrics").text
    for name in ("qasr_requests_total", "qasr_request_errors_total", "qasr_queue_depth", "qasr_audio_seconds_total",
                 "qasr_request_latency_seconds_bucket", "qasr_batch_size_bucket", "qasr_ready 1.0"):
        assert name in text, name
    seconds = [line for line in text.splitlines() if line.startswith("qasr_audio_seconds_total")]
    assert float(seconds[0].split()[-1]) > 0


def test_graceful_shutdown_finishes_in_flight_requests(exports, tmp_path):
    clip = _wav(tmp_path / "inflight.wav", 9.0, 7)
    live = LiveServer(ServiceSettings(engine_dir=exports["original"], max_wait_ms=300))
    with live, ThreadPoolExecutor(2) as pool:
        pending = [pool.submit(_post_file, live.url, clip) for _ in range(2)]
        time.sleep(0.15)  # both are queued (the batch waits 300 ms), none answered yet
        live.server.should_exit = True
        assert [p.result().status_code for p in pending] == [200, 200]


def test_load_script_reports_what_the_server_did(server):
    """Distinct files under load, each answer checked against the file's one-request transcript."""
    from qasr.benchmarks.load import format_table, one_request_texts, run_level, synthetic_files

    files = synthetic_files(6)
    expected = one_request_texts(server.url, files, {})
    assert len(set(expected)) == 6
    row = run_level(server.url, files, expected, concurrency=4, requests=12, headers={})
    assert row["ok"] == 12 and row["lost"] == 0 and row["mismatches"] == 0 and row["batches"] >= 1
    assert row["mean_batch"] * row["batches"] == pytest.approx(12)
    assert row["audio_s_per_s"] > 0 and "mean batch" in format_table([row])
    wrong = run_level(server.url, files, list(reversed(expected)), concurrency=2, requests=6, headers={})
    assert wrong["mismatches"] == 6   # the check can fail


def test_the_openai_python_client_works_against_the_service(server, clips, expected):
    from openai import OpenAI

    client = OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    with open(clips[1], "rb") as handle:
        plain = client.audio.transcriptions.create(model="original", file=handle)
    with open(clips[1], "rb") as handle:
        full = client.audio.transcriptions.create(model="original", file=handle, response_format="verbose_json")
    assert plain.text == expected[clips[1]] and full.text == expected[clips[1]]
    assert full.duration == pytest.approx(1.9)


def test_models_are_listed_and_another_model_is_404(server, clips):
    """/v1/models lists the served model (named after the export's source); naming another one is OpenAI's 404."""
    from openai import NotFoundError, OpenAI

    listing = httpx.get(server.url + "/v1/models").json()
    assert listing["object"] == "list" and [m["id"] for m in listing["data"]] == ["original"]
    client = OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    assert [m.id for m in client.models.list()] == ["original"]
    with open(clips[0], "rb") as handle, pytest.raises(NotFoundError) as caught:
        client.audio.transcriptions.create(model="whisper-1", file=handle)
    error = caught.value.response.json()["error"]
    assert error["code"] == 404 and error["param"] == "model" and "whisper-1" in error["message"]
    assert httpx.get(server.url + "/v1/models/whisper-1").status_code == 404


def test_model_name_can_be_set(exports, clips):
    with LiveServer(ServiceSettings(engine_dir=exports["original"], model_name="qwen3-asr-test")) as live:
        assert httpx.get(live.url + "/v1/models").json()["data"][0]["id"] == "qwen3-asr-test"
        assert _post_file(live.url, clips[0], model="qwen3-asr-test").status_code == 200
        assert _post_file(live.url, clips[0], model="original").status_code == 404


def test_shutdown_answers_open_requests_with_json_503_and_exits_promptly(exports, tmp_path):
    """SIGTERM's path with 20 requests in flight and a 0.5 s graceful deadline: every client gets either its
    transcript or a JSON 503 (never a plain-text 500), queued work is dropped, the server stops quickly."""
    from qasr.runtime.stopping import DecodeOptions

    clip = _wav(tmp_path / "long.wav", 12.0, 9)
    # ~0.6 s a request on an AVX-512 CPU of 2026-11-25 (400 tokens were ~0.5 s on an older one and only ~0.12 s
    # there, which let 12 of the 20 finish): long enough that most are still queued at the deadline anywhere
    slow = DecodeOptions(max_new_tokens=2000, min_new_tokens=2000, repetition_max_period=0)
    live = LiveServer(ServiceSettings(engine_dir=exports["original"], max_batch=1, max_wait_ms=1,
                                      graceful_timeout_s=0.5, decode=slow))
    with live, ThreadPoolExecutor(20) as pool:
        pending = [pool.submit(_post_file, live.url, clip) for _ in range(20)]
        batcher, arrival = live.service.batcher, time.monotonic() + 30
        while sum(batcher.batch_sizes) + batcher.queue.qsize() < 20 and time.monotonic() < arrival:
            time.sleep(0.02)   # until all are in: a couple decoding, the rest queued
        assert sum(batcher.batch_sizes) + batcher.queue.qsize() == 20
        started = time.monotonic()
        live.stop_async()
        responses = [p.result() for p in pending]
        answered = time.monotonic() - started
        live.thread.join(timeout=60)
        stopped = time.monotonic() - started
    codes = [r.status_code for r in responses]
    assert set(codes) <= {200, 503} and codes.count(503) >= 10, codes
    for response in responses:
        if response.status_code == 503:
            assert response.json()["error"]["type"] == "shutting_down" and response.headers["retry-after"]
    assert answered < 10 and stopped < 20 and not live.thread.is_alive()
    batches = live.service.batcher.batch_sizes
    assert sum(batches) < 20   # the queued requests of answered clients were never decoded


def test_streamed_transcription_with_the_openai_client(server, clips, expected):
    """stream=true: server-sent `transcript.text.delta` events as the text decodes, then `transcript.text.done`;
    the deltas add up to the final text, which is the one-request transcript; the streaming request
    shares its batch with a plain request sent at the same time."""
    from openai import OpenAI

    client = OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    clip = clips[3]
    before = len(server.service.batcher.batch_sizes)

    def streamed():
        with open(clip, "rb") as handle:
            return list(client.audio.transcriptions.create(model="original", file=handle, stream=True))

    with ThreadPoolExecutor(2) as pool:
        events_future = pool.submit(streamed)
        plain = pool.submit(_post_file, server.url, clips[2])
        events = events_future.result()
        assert plain.result().status_code == 200
    types = [e.type for e in events]
    assert types[-1] == "transcript.text.done" and set(types[:-1]) == {"transcript.text.delta"}
    deltas = [e.delta for e in events[:-1]]
    assert len(deltas) >= 2 and "".join(deltas) == events[-1].text == expected[clip]
    assert max(server.service.batcher.batch_sizes[before:]) == 2


def test_stream_refuses_subtitle_formats(server, clips):
    response = _post_file(server.url, clips[0], stream="true", response_format="srt")
    assert response.status_code == 400 and "stream" in response.json()["error"]["message"]
