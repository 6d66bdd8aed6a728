"""The peer benchmark on the CPU with real parts: onnxruntime-genai's own builder makes its int4 decoder from the
tiny checkpoint's text model, every system runs in its own process, and the report carries what the issue asks
(per token, first token, RSS, bytes read per step, the floor). No timing is asserted."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from qasr.benchmarks.peers import main, qwen3_text_checkpoint, weight_bytes_per_step


def test_text_checkpoint_holds_the_same_weights(checkpoints, tmp_path):
    """The Qwen3ForCausalLM directory genai builds from carries the ASR checkpoint's text weights unchanged."""
    import torch
    from safetensors.torch import load_file

    from qasr.export.checkpoint import load_checkpoint

    out = qwen3_text_checkpoint(checkpoints["original"], tmp_path / "text")
    ours = load_checkpoint(str(checkpoints["original"]))
    theirs = load_file(str(out / "model.safetensors"))
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["Qwen3ForCausalLM"] and config["num_hidden_layers"] == ours.spec.text.layers
    name = "model.layers.0.self_attn.q_proj.weight"
    assert torch.equal(theirs[name].float(), ours.weights["model.language_model." + name[len("model."):]].to(
        torch.bfloat16).float())


def test_peers_report(checkpoints, tmp_path):
    pytest.importorskip("onnxruntime_genai", reason="the peers extra (onnxruntime-genai) is not installed")
    from qasr.export.api import ExportSettings, export

    engine = export(ExportSettings(model=str(checkpoints["original"]), out=tmp_path / "int4", precision="int4",
                                   attention="gqa"))
    result = CliRunner().invoke(main, ["--checkpoint", str(checkpoints["original"]), "--engine", str(engine),
                                       "--work", str(tmp_path / "work"), "--audio-seconds", "2", "--new-tokens", "4",
                                       "--rounds", "1", "--repeats", "1", "--threads", "1",
                                       "--json-out", str(tmp_path / "p.json")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "p.json").read_text())
    rows = {r["kind"]: r for r in report["rows"]}
    assert set(rows) == {"qasr", "genai"}
    assert report["prompt_tokens"] > 4 and report["read_bandwidth_gbs"] > 0
    for row in rows.values():
        assert row["per_token_ms"] > 0 and row["peak_rss_mb"] > 0 and row["weight_bytes_per_step"] > 0
    assert rows["qasr"]["weight_bytes_per_step"] == weight_bytes_per_step(engine / "decoder.onnx")
    assert "| onnxruntime-genai int4" in result.output and "floor / per token" in result.output
    assert "CrispASR: skipped" in result.output
    again = CliRunner().invoke(main, ["--checkpoint", str(checkpoints["original"]), "--engine", str(engine),
                                      "--work", str(tmp_path / "work"), "--json-out", str(tmp_path / "p.json")])
    assert again.exit_code != 0 and "pass --force" in again.output
