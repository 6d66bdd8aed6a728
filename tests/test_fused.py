"""The fused decoder (--attention gqa): same tokens as the reference and the standard decoder, batched rows
at their own offsets, a cache written in place by the graph, EOS suppression on the graph's logit bias."""

from __future__ import annotations

import numpy as np
import pytest

from qasr.reference.parity import format_report, graph_parity, token_parity, within_tolerance
from qasr.exportformat import names
from qasr.errors import QasrError
from qasr.runtime.device_step import batch_buckets
from qasr.runtime.generate import Prompt
from qasr.runtime.stopping import DecodeOptions

NEW_TOKENS = 24


def _prompts(engine, waves, budget):
    embeds = engine.encode([engine.features(w) for w in waves])
    return [Prompt(engine.prompts.build(len(e)), e, budget) for e in embeds]


def test_manifest_names_the_fused_decoder(fused_engine):
    manifest = fused_engine.manifest
    assert manifest.format_version == 3 and manifest.export.attention == "gqa"
    inputs = [t.name for t in manifest.graphs["decoder"].inputs]
    assert inputs[:6] == [names.INPUT_IDS, names.DECODER_AUDIO_EMBEDS, names.SEQLENS_K, names.TOTAL_SEQUENCE_LENGTH,
                          names.LAST_TOKEN_INDEX, names.LOGIT_BIAS]
    outputs = [t.name for t in manifest.graphs["decoder"].outputs]
    assert outputs[:3] == [names.LOGITS, names.NEXT_TOKEN, names.present_key(0)]
    import onnx

    graph = onnx.load(str(fused_engine.manifest.graph_path(names.DECODER)), load_external_data=False).graph
    ops = [n.op_type for n in graph.node]
    assert ops.count("GroupQueryAttention") == manifest.model.text.layers
    assert "Softmax" not in ops   # no attention left in standard ops


def test_each_graph_matches_reference(references, fused_engine, waves):
    errors = graph_parity(references["original"], fused_engine, list(waves.values()))
    print(format_report(errors, []))
    for error in errors:
        assert within_tolerance(error, "fp32"), error


@pytest.mark.parametrize("batched", [False, True], ids=["unbatched", "batched"])
def test_greedy_tokens_equal_generate(batched, references, fused_engine, waves):
    checks = token_parity(references["original"], fused_engine, list(waves.values()), NEW_TOKENS, batched=batched)
    print(format_report([], checks))
    for check in checks:
        assert check.ours == check.reference, check.label
        assert check.distinct >= 5 and check.min_margin > 1e-2


def test_same_generations_as_standard_decoder_with_own_stops(engines, fused_engine, waves):
    """Free decoding (EOS and repetition live): every row's tokens and stop reason equal the standard
    decoder's, batched with rows of very different lengths, and equal to each row decoded alone."""
    options = DecodeOptions(max_new_tokens=60)
    standard = engines["original"].generate(_prompts(engines["original"], list(waves.values()), 60), options)
    prompts = _prompts(fused_engine, list(waves.values()), 60)
    fused = fused_engine.generate(prompts, options)
    assert [(g.tokens, g.stop_reason) for g in fused] == [(g.tokens, g.stop_reason) for g in standard]
    alone = [fused_engine.generate([p], options)[0] for p in prompts]
    assert [g.tokens for g in alone] == [g.tokens for g in fused]
    assert len({len(g.tokens) for g in fused}) > 1   # rows really stopped at different steps


def test_cache_is_written_in_place_by_the_graph(engines, fused_engine, waves):
    """After one row's decode the device cache holds the same keys/values as the standard runtime's cache,
    at the same slots; the buffers are allocated once and reused by later calls."""
    options = DecodeOptions(max_new_tokens=12, min_new_tokens=12, repetition_max_period=0)
    standard = engines["original"]
    prompt_std = _prompts(standard, [waves[7.3]], 12)
    prompt_fused = _prompts(fused_engine, [waves[7.3]], 12)
    standard.generate(prompt_std, options)
    fused_engine.generate(prompt_fused, options)
    used = len(prompt_fused[0].ids) + 11     # the last chosen token is never fed back
    capacity = fused_engine.generator.last_run["capacity"]
    for index, view in enumerate(standard.cache.views(1, capacity)):
        ours = fused_engine.cache.read(index, 1, capacity)
        # two graphs compute these keys / values (fused weights vs the traced decoder): fp32 rounding may differ
        # by a few ulps of values up to ~6 (seen: 1.06e-5 on 1.68 on one CPU), hence the relative term
        np.testing.assert_allclose(ours[:, :, :used], view[:, :, :used], rtol=1e-5, atol=1e-5)
    allocations = fused_engine.cache.allocations
    fused_engine.generate(prompt_fused, options)
    assert fused_engine.cache.allocations == allocations


def test_min_new_tokens_on_the_logit_bias_equals_host_filter(fused_engine, waves):
    """EOS suppression through the graph's logit_bias (device choice) and through host-side filters
    (float32 logits read back each step) give the same tokens, and exactly the forced count."""
    prompts = _prompts(fused_engine, [waves[0.3], waves[8.0]], 30)
    options = DecodeOptions(max_new_tokens=30, min_new_tokens=30, repetition_max_period=0)
    device = fused_engine.generate(prompts, options)
    assert fused_engine.generator.last_run["host_filters"] is False
    seen = []
    host = fused_engine.generator.generate(prompts, options, [lambda logits, step: seen.append(step)])
    assert fused_engine.generator.last_run["host_filters"] is True and seen == list(range(30))
    assert [g.tokens for g in host] == [g.tokens for g in device]
    assert [len(g.tokens) for g in device] == [30, 30]


def test_cuda_graph_is_reported_off_on_cpu(fused_export, exports):
    from qasr.runtime.engine import Engine

    engine = Engine(fused_export, providers=["CPUExecutionProvider"], cuda_graph=True)
    assert engine.cuda_graph is False and "CPUExecutionProvider" in engine.cuda_graph_note
    standard = Engine(exports["original"], providers=["CPUExecutionProvider"], cuda_graph=False)
    assert standard.cuda_graph_note == "off (asked)"
    assert batch_buckets(8) == [1, 2, 4, 8] and batch_buckets(12) == [1, 2, 4, 8, 12] and batch_buckets(1) == [1]


def test_prompt_beyond_max_positions_is_refused(checkpoints, tmp_path, waves):
    from qasr.export.api import ExportSettings, export
    from qasr.runtime.engine import Engine

    path = export(ExportSettings(model=str(checkpoints["original"]), out=tmp_path / "short", attention="gqa",
                                 max_positions=64))
    engine = Engine(path)
    short = _prompts(engine, [waves[0.3]], 100)          # 18 prompt tokens: the budget is cut to fit 64
    result = engine.generate(short, DecodeOptions(max_new_tokens=100, min_new_tokens=100, repetition_max_period=0))
    assert len(result[0].tokens) == 64 - len(short[0].ids)
    with pytest.raises(QasrError, match="64 positions"):
        engine.generate(_prompts(engine, [waves[7.3]], 10), DecodeOptions())


def test_transcribe_cli_with_the_fused_export(exports, fused_export, tmp_path, waves):
    """asr-transcribe on a gqa export: the same transcripts as the standard export, and it says what ran."""
    import json
    import os
    import subprocess
    import sys

    import soundfile as sf

    files = []
    for seconds in (0.3, 7.3):
        files.append(tmp_path / f"{seconds}.wav")
        sf.write(files[-1], waves[seconds], 16000)
    out = {}
    for name, path in (("standard", exports["original"]), ("gqa", fused_export)):
        result = subprocess.run([os.path.join(os.path.dirname(sys.executable), "asr-transcribe"), "--engine", str(path),
                                 "--json", "--max-new-tokens", "20", *map(str, files)],
                                capture_output=True, text=True, timeout=300, env=dict(os.environ, HF_HUB_OFFLINE="1"))
        assert result.returncode == 0, result.stderr
        out[name] = json.loads(result.stdout)
    assert out["gqa"]["attention"] == "gqa" and out["gqa"]["cuda_graph"].startswith("off (decoder runs on")
    assert [r["text"] for r in out["gqa"]["results"]] == [r["text"] for r in out["standard"]["results"]]
    assert all(r["text"] for r in out["gqa"]["results"])


def test_the_shipped_copy_graphs_are_the_ones_the_script_makes():
    """runtime/data/copy_*.onnx (the fused decoder's row moves on the device) are what scripts/make_copy_graphs.py
    writes, byte for byte."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("make_copy_graphs", Path("scripts/make_copy_graphs.py"))
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    for dtype in script.TYPES:
        assert (script.DATA / f"copy_{dtype}.onnx").read_bytes() == script.copy_graph(dtype)
