"""Compressed media people send (phones' m4a/AAC, browsers' webm/Opus), made here with PyAV and read through FFmpeg
by the CLI, the Python API and the service."""

from __future__ import annotations

import numpy as np
import pytest

from test_cli import run

CALL, EXPECTED = "examples/call.flac", "please call me at seven thirty tomorrow morning"
CONTAINERS = {"m4a": ("aac", "mp4"), "webm": ("libopus", "webm"), "ogg": ("libopus", "ogg")}


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, object]:
    import av

    from qasr.runtime.audio import load_audio

    samples = load_audio(CALL, 48000)
    root = tmp_path_factory.mktemp("media")
    out = {}
    for suffix, (codec, container) in CONTAINERS.items():
        path = root / f"call.{suffix}"
        with av.open(str(path), "w", format=container) as handle:
            stream = handle.add_stream(codec, rate=48000)
            stream.layout = "mono"
            frame = av.AudioFrame.from_ndarray(samples[None, :], format="fltp", layout="mono")
            frame.sample_rate = 48000
            for packet in [*stream.encode(frame), *stream.encode(None)]:
                handle.mux(packet)
        out[suffix] = path
    return out


def test_the_cli_reads_them(shipped_export, media):
    result = run("asr-transcribe", "--engine", str(shipped_export), *(str(p) for p in media.values()))
    assert result.returncode == 0, result.stderr
    assert [line.split("\t")[1] for line in result.stdout.splitlines()] == [EXPECTED] * len(media)


def test_the_api_reads_paths_and_bytes(shipped_export, media):
    from qasr import Model

    model = Model(shipped_export)
    for path in media.values():
        for audio in (str(path), path.read_bytes()):
            segments, info = model.transcribe(audio, language="English")
            assert " ".join(s.text for s in segments) == EXPECTED and abs(info.duration - 3.07) < 0.1


def test_the_service_reads_uploads(shipped_export, media):
    from openai import OpenAI

    from qasr.runtime.service.live import LiveServer
    from qasr.runtime.service.settings import ServiceSettings

    with LiveServer(ServiceSettings(engine_dir=shipped_export, max_wait_ms=10)) as live:
        client = OpenAI(base_url=live.url + "/v1", api_key="unused")
        for path in media.values():
            with open(path, "rb") as handle:
                assert client.audio.transcriptions.create(model="", file=handle).text == EXPECTED


def test_what_no_decoder_reads_is_one_line(shipped_export, tmp_path):
    bogus = tmp_path / "clip.m4a"
    bogus.write_bytes(b"\x00\x00\x00\x18ftypM4A " + np.random.default_rng(0).bytes(2000))
    result = run("asr-transcribe", "--engine", str(shipped_export), str(bogus))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.count("error:") == 1 and "cannot decode audio" in result.stderr
