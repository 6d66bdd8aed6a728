"""Scale-out on Ray Serve: a local Ray instance (loopback only) with 2 engine replicas behind Ray's HTTP
proxy and our front serves the same routes and gives every request the transcript one process gives; a replica
killed under load is answered in JSON."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import soundfile as sf

pytest.importorskip("ray.serve", reason="Ray Serve is the `ray` extra; scripts/install.sh installs it")


@pytest.fixture(scope="module")
def ray_url(exports):
    """Two replicas behind Ray's proxy, and our front before it (what asr-serve --ray runs)."""
    from qasr.runtime.service import ray_serve
    from qasr.runtime.service.settings import ServiceSettings

    settings = ServiceSettings(engine_dir=exports["original"], max_batch=4, max_wait_ms=30, threads=1)
    proxy = ray_serve.start(settings, replicas=2, replica_cpus=0.5, num_cpus=2)
    try:
        with ray_serve.FrontThread(proxy, settings) as front:
            ray_serve.wait_ready(front.url, replicas=2, timeout=120)
            yield front.url
    finally:
        ray_serve.stop()


def test_two_replicas_answer_like_one_process(ray_url, engines):
    from qasr.benchmarks.load import synthetic_files
    from qasr.runtime.transcribe import Transcriber

    files = synthetic_files(8)
    local = Transcriber(engines["original"])   # one process, one request at a time
    expected = [local.transcribe([sf.read(io.BytesIO(data), dtype="float32")])[0].text for _, data in files]

    def post(i):
        name, data = files[i % len(files)]
        response = httpx.post(ray_url + "/v1/audio/transcriptions", files={"file": (name, data)},
                              data={"model": "original"}, timeout=300)
        return i, response

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(post, range(24)))
    assert all(r.status_code == 200 for _, r in answers), [r.text for _, r in answers if r.status_code != 200]
    assert [r.json()["text"] for _, r in answers] == [expected[i % len(files)] for i, _ in answers]
    assert len({r.headers["x-qasr-worker"] for _, r in answers}) == 2   # both replicas answered
    models = httpx.get(ray_url + "/v1/models").json()
    assert [m["id"] for m in models["data"]] == ["original"]


def test_a_replica_killed_under_load_answers_json_503(ray_url):
    """A replica killed (SIGKILL) while it holds requests: each of its requests is answered by the front as the
    service answers every error (JSON 503 replica_unavailable, Retry-After), never Ray's plain-text 500; the other
    replica's requests succeed; Ray starts a new replica and the service answers again."""
    import os
    import signal
    import time

    from qasr.runtime.service import ray_serve
    from test_cancellation import _long_recording

    data = _long_recording(240)
    workers = {httpx.get(ray_url + "/ready", timeout=30).headers["x-qasr-worker"] for _ in range(8)}
    assert len(workers) == 2
    victim = int(sorted(workers)[0])

    def post(_):
        return httpx.post(ray_url + "/v1/audio/transcriptions", files={"file": ("long.wav", data, "audio/wav")},
                          timeout=300)

    with ThreadPoolExecutor(8) as pool:
        answers = pool.map(post, range(8))
        time.sleep(2.0)
        os.kill(victim, signal.SIGKILL)
        answers = list(answers)
    statuses = sorted(r.status_code for r in answers)
    failed = [r for r in answers if r.status_code != 200]
    assert failed, statuses    # the victim held some of the requests
    for answer in failed:
        assert answer.status_code == 503 and answer.headers["retry-after"] == "1", (answer.status_code, answer.text)
        assert answer.json()["error"]["type"] == "replica_unavailable"
    assert any(r.status_code == 200 for r in answers)
    ray_serve.wait_ready(ray_url, replicas=2, timeout=180)   # Ray replaced the replica
    assert httpx.post(ray_url + "/v1/audio/transcriptions", files={"file": ("long.wav", data, "audio/wav")},
                      timeout=300).status_code == 200
