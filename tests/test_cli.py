"""The two commands as users run them: output, exit codes, and one clear error line for bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import soundfile as sf

from qasr.runtime.synthetic_audio import synthetic_speech

BIN = os.path.dirname(sys.executable)


def run(*args, env=None):
    full_env = dict(os.environ, HF_HUB_OFFLINE="1", **(env or {}))
    return subprocess.run([os.path.join(BIN, args[0]), *args[1:]], capture_output=True, text=True, env=full_env,
                          timeout=600)


def _assert_one_line_error(result, code=2):
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors, result.stderr
    return errors


def test_transcribe_json_and_bad_files(exports, tmp_path):
    good = tmp_path / "good.wav"
    sf.write(good, synthetic_speech(2.0), 16000)
    sf.write(tmp_path / "nan.wav", np.full(800, np.nan, np.float32), 16000, subtype="FLOAT")
    result = run("asr-transcribe", "--engine", str(exports["original"]), "--json", "--max-new-tokens", "8",
                 str(good), str(tmp_path / "nan.wav"), str(tmp_path / "missing.flac"))
    errors = _assert_one_line_error(result)
    assert len(errors) == 2 and "NaN" in errors[0] and "no such file" in errors[1]
    payload = json.loads(result.stdout)
    rows = {r["source"]: r for r in payload["results"]}
    import qasr

    alone = qasr.Model(exports["original"], device="cpu").transcribe_batch([good], max_new_tokens=8)[0]
    assert rows[str(good)]["text"] == alone.text and alone.text
    assert [(s["stop_reason"], s["tokens"]) for s in rows[str(good)]["segments"]] == \
        [(s.stop_reason, s.tokens) for s in alone.segments]
    assert payload["decoding"]["max_new_tokens"] == 8 and payload["providers"] == ["CPUExecutionProvider"]


def test_transcribe_plain_text(exports, tmp_path):
    good = tmp_path / "good.flac"
    sf.write(good, synthetic_speech(1.0), 16000)
    result = run("asr-transcribe", "--engine", str(exports["hf"]), "--language", "en", str(good))
    assert result.returncode == 0 and result.stdout.strip(), result.stderr


def test_transcribe_and_serve_refuse_a_non_export_directory(tmp_path):
    sf.write(tmp_path / "a.wav", synthetic_speech(1.0), 16000)
    _assert_one_line_error(run("asr-transcribe", "--engine", str(tmp_path), str(tmp_path / "a.wav")))
    _assert_one_line_error(run("asr-serve", "--engine", str(tmp_path), "--port", "0"))


def test_export_bad_inputs(tmp_path, checkpoints):
    _assert_one_line_error(run("asr-export", "--model", "Qwen/Qwen3-ASR-0.6B", "--out", str(tmp_path / "a")))
    _assert_one_line_error(run("asr-export", "--model", str(tmp_path), "--out", str(tmp_path / "b")))
    bad_options = [["--precision", "int8", "--calibration", str(tmp_path / "missing")],
                   ["--precision", "int8", "--calibration", str(tmp_path)],             # no audio in it
                   ["--precision", "fp32", "--int8-mode", "static"],
                   ["--precision", "int8", "--int8-mode", "weight-only", "--calibration", str(tmp_path)],
                   ["--precision", "int8", "--weight-bits", "4"],
                   ["--precision", "int8", "--int8-exclude", "decoder.layer99"],
                   ["--attention", "standard", "--max-positions", "4096"]]
    for options in bad_options:  # refused before any export work
        result = run("asr-export", "--model", str(checkpoints["hf"]), "--out", str(tmp_path / "c"), *options)
        _assert_one_line_error(result)
        assert "exporting" not in result.stderr, options
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "keep.txt").write_text("mine")
    _assert_one_line_error(run("asr-export", "--model", str(checkpoints["hf"]), "--out", str(tmp_path / "d")))
    assert (tmp_path / "d" / "keep.txt").read_text() == "mine"


def test_export_end_to_end_with_its_accuracy_report(tmp_path, checkpoints):
    result = run("asr-export", "--model", str(checkpoints["hf"]), "--out", str(tmp_path / "e"), "--verify-tokens", "20")
    assert result.returncode == 0, result.stderr
    assert "PASS" in result.stdout and "greedy token agreement: 40/40 (100.0%)" in result.stdout
    assert "decoder attention: gqa" in result.stderr   # the default (--attention auto) is the fused decoder
    assert "building the fused decoder graph" in result.stderr  # progress is shown
