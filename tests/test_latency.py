"""The latency benchmark's harness on the CPU (tiny export and its reference, real sessions): every system
decodes exactly the forced number of tokens, the table and the JSON say what ran. No timing is asserted:
speed claims come from benchmark runs recorded in benchmarks/RESULTS.md."""

from __future__ import annotations

import json
import math

from click.testing import CliRunner

from qasr.benchmarks.latency import Row, format_table, main, run


def test_forced_lengths_and_what_ran(exports, checkpoints):
    result = run([str(exports["original"])], str(checkpoints["original"]), audio_seconds=2.0, new_tokens=6,
                 batches=[1, 2], repeats=1, warmup=0, threads=1, device="cpu", reference_dtype=None,
                 progress=lambda _: None)
    rows = [Row(**r) for r in result["rows"]]
    assert [(r.system, r.batch) for r in rows] == [("transformers fp32", 1), ("onnxruntime fp32", 1),
                                                   ("transformers fp32", 2), ("onnxruntime fp32", 2)]
    for r in rows:
        assert r.new_tokens == [6] * r.batch
        assert min(r.encoder_ms, r.first_token_ms, r.end_to_end_ms) > 0  # no order asserted: timings are noisy
        # a difference of two medians: on a loaded machine a 2-layer model's step can drown in noise
        assert math.isfinite(r.per_token_ms) and r.audio_seconds_per_second > 0
    engine = result["systems"][1]
    assert engine["providers"] == ["CPUExecutionProvider"] and engine["threads"] == 1
    assert result["systems"][0]["class"].endswith("Qwen3ASRForConditionalGeneration")
    assert rows[1].size_mb > 0 and rows[0].size_mb is None
    assert all(r.rows == r.batch and r.memory_mb is None for r in rows)   # no GPU: memory not measured
    assert rows[1].cuda_graph is False and rows[0].cuda_graph is None
    assert engine["attention"] == "standard" and engine["cuda_graph"].startswith("off")
    table = format_table(rows)
    assert table.count("\n") == 5 and "| 1.00x |" in table.splitlines()[2]


def test_fused_engine_and_cuda_graph_demand(fused_export, checkpoints):
    """The fused export is timed like any other and says what ran; asking for CUDA graphs where they
    cannot run (CPU) is an error, not a silent fallback."""
    result = run([str(fused_export)], str(checkpoints["original"]), audio_seconds=1.0, new_tokens=4, batches=[3],
                 repeats=1, warmup=0, threads=1, device="cpu", reference_dtype=None, progress=lambda _: None)
    rows = [Row(**r) for r in result["rows"]]
    assert rows[1].system == "onnxruntime fp32 gqa" and rows[1].new_tokens == [4, 4, 4] and rows[1].rows == 3
    assert result["systems"][1]["attention"] == "gqa"
    import pytest
    from qasr.errors import QasrError

    with pytest.raises(QasrError, match="CUDA graphs were asked for"):
        run([str(fused_export)], None, 1.0, 4, [1], 1, 0, 1, "cpu", None, lambda _: None,
            ["CPUExecutionProvider"], True)


def test_cli_writes_table_and_json(exports, tmp_path):
    out = tmp_path / "latency.json"
    md = tmp_path / "latency.md"
    result = CliRunner().invoke(main, ["--engine", str(exports["original"]), "--engine", str(exports["hf"]),
                                       "--audio-seconds", "1", "--new-tokens", "3", "--repeats", "1",
                                       "--json-out", str(out), "--markdown-out", str(md)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert len(data["rows"]) == 2 and data["new_tokens"] == 3 and "onnxruntime" in data["versions"]
    # two exports of the same kind are told apart by their directory names
    assert [r["system"] for r in data["rows"]] == ["onnxruntime fp32 (original)", "onnxruntime fp32 (hf)"]
    assert "per token ms" in md.read_text() and "onnxruntime fp32" in result.output


def test_bad_engine_is_one_line(tmp_path):
    result = CliRunner().invoke(main, ["--engine", str(tmp_path / "missing")])
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert errors == [f"error: export directory not found: {tmp_path / 'missing'}"]
