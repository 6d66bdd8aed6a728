"""The one-command suite the GPU machine runs, run small on the CPU: it builds, checks and times, and
reuses what a previous call on the same machine left in its work directory."""

from __future__ import annotations

import json

from click.testing import CliRunner

from qasr.benchmarks.suite import main


def test_suite_builds_checks_and_times_then_reuses(tmp_path):
    args = [str(tmp_path / "out"), "--model", "tiny", "--device", "cpu", "--export", "fp32-gqa", "--batch", "1",
            "--batch", "3", "--audio-seconds", "1", "--new-tokens", "3", "--step-tokens", "5", "--repeats", "1",
            "--work", str(tmp_path / "work")]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    report = (tmp_path / "out" / "tiny.md").read_text()
    assert "greedy token agreement: 40/40 (100.0%)" in report and "attention gqa" in report
    data = json.loads((tmp_path / "out" / "tiny-latency.json").read_text())
    assert [(r["system"], r["batch"]) for r in data["rows"]] == [
        ("transformers fp32", 1), ("onnxruntime fp32 gqa", 1), ("transformers fp32", 3), ("onnxruntime fp32 gqa", 3)]
    assert data["step_tokens"] == 5 and all(r["new_tokens"] == [3] * r["batch"] for r in data["rows"])
    again = CliRunner().invoke(main, [*args, "--no-check"])
    assert again.exit_code == 0, again.output
    assert "reusing" in again.output and "exporting tiny" not in again.output
