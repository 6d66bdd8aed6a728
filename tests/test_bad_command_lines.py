"""The table of bad command lines: each case is run as a user runs it and must end in one `error:` line (or click's
one usage line) with exit 2, before any work, naming what is wrong. New cases go here as the tools grow."""

from __future__ import annotations

import json

import pytest

from test_cli import run

CALL = "examples/call.flac"


def _cases(export: str, tmp) -> list[tuple[tuple[str, ...], str]]:
    existing = tmp / "existing.json"
    existing.write_text("{}")
    a_file = tmp / "a-file"
    a_file.write_text("x")
    return [
        (("asr-transcribe", "--engine", export, "--output-dir", "/proc/qasr-no", CALL),
         "cannot write to --output-dir /proc/qasr-no"),
        (("asr-transcribe", "--engine", export, "--output-dir", str(a_file), CALL), "is a file"),
        (("asr-transcribe", "--engine", export, "--json", "--format", "srt", CALL), "conflicts with --format srt"),
        (("asr-transcribe", "--engine", export, "--threads", "100000", CALL), "--threads"),
        (("asr-transcribe", "--engine", export, "--word-timestamps", "--json", CALL), "--aligner"),
        (("asr-transcribe", "--engine", export, "--aligner", export, "--format", "srt", CALL), "not an aligner"),
        (("asr-transcribe", "--engine", export, "--live", "--aligner", export, CALL), "word timestamps"),
        (("asr-export", "--model", "testmodel/test-model", "--out", "/proc/qasr-no/x"),
         "cannot write to the folder of --out /proc/qasr-no"),
        (("asr-export", "--model", "testmodel/test-model", "--out", str(a_file / "x")), "the folder of --out"),
        (("asr-wer", "--manifest", "testmodel/speech/eval.jsonl", "--engine", export, "--json-out", str(existing)),
         "exists; pass --force"),
        (("asr-wer", "--manifest", "testmodel/speech/eval.jsonl", "--engine", export, "--plot",
          "/proc/qasr-no/wer.svg"), "cannot write to the folder of --plot"),
        (("asr-serve", "--engine", export, "--threads", "100000"), "--threads"),
        (("asr-serve", "--engine", export, "--aligner", export), "not a forced aligner"),
    ]


def test_each_bad_command_line_is_one_line(shipped_export, tmp_path):
    for args, expected in _cases(str(shipped_export), tmp_path):
        result = run(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert "Traceback" not in result.stderr, (args, result.stderr)
        lines = [line for line in result.stderr.splitlines() if line.startswith(("error:", "Error:"))]
        assert len(lines) == 1 and expected in result.stderr, (args, result.stderr)


def test_a_full_standard_output_is_one_line(shipped_export):
    import subprocess

    with open("/dev/full", "w") as full:
        result = subprocess.run([run.__globals__["os"].path.join(run.__globals__["BIN"], "asr-transcribe"),
                                 "--engine", str(shipped_export), CALL], stdout=full, stderr=subprocess.PIPE,
                                text=True, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == "error: cannot write to standard output: No space left on device"


def test_a_one_hertz_file_is_refused(shipped_export, tmp_path):
    import soundfile as sf

    path = tmp_path / "slow.wav"
    sf.write(path, [0.1] * 100, 1)
    result = run("asr-transcribe", "--engine", str(shipped_export), "--format", "json", str(path))
    assert result.returncode == 2
    assert "a sample rate of 1 Hz is not audio" in json.loads(result.stdout)["results"][0]["error"]


def test_a_server_that_cannot_load_its_engine_exits_with_the_reason(shipped_export):
    """asr-serve whose engine fails to load (here: the CPU export's fp32 fused decoder asked to run on CUDA) says
    why in one line and exits non-zero, instead of answering /health as if alive."""
    import time

    start = time.monotonic()
    result = run("asr-serve", "--engine", str(shipped_export), "--device", "cuda", "--port", "0")
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "the engine could not be loaded" in errors[0], result.stderr
    assert time.monotonic() - start < 120
