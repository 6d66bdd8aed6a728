"""Scale-out on Ray Serve: a local Ray instance (loopback only) with 2 engine replicas behind Ray's HTTP
proxy serves the same routes and gives every request the transcript one process gives."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import soundfile as sf

pytest.importorskip("ray.serve", reason="Ray Serve is the `ray` extra; scripts/install.sh installs it")


@pytest.fixture(scope="module")
def ray_url(exports):
    from qasr.runtime.service import ray_serve
    from qasr.runtime.service.settings import ServiceSettings

    port = ray_serve.free_port()
    settings = ServiceSettings(engine_dir=exports["original"], max_batch=4, max_wait_ms=30, threads=1)
    ray_serve.start(settings, replicas=2, host="127.0.0.1", port=port, replica_cpus=0.5, num_cpus=2)
    url = f"http://127.0.0.1:{port}"
    try:
        ray_serve.wait_ready(url, replicas=2, timeout=120)
        yield url
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
