"""Deliberately wrong exports must fail the parity checks (so passing them means something).

Each variant re-exports one graph with a known mistake made by public ports: interleaved instead
of rotate-half RoPE, attention per 100-frame chunk instead of per window, a wrong rope_theta.
"""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
import torch

from qasr.export import decoder_graph
from qasr.export.api import build_graphs
from qasr.export.checkpoint import load_checkpoint
from qasr.export.onnx_export import onnx_from_torch
from qasr.reference.parity import graph_parity, token_parity, within_tolerance
from qasr.exportformat import names, read_manifest, write_manifest
from qasr.runtime.engine import Engine


def rotate_interleaved(x: torch.Tensor) -> torch.Tensor:
    pairs = x.reshape(*x.shape[:-1], -1, 2)
    return torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).reshape(x.shape)


def _variant_engine(tmp_path, export_dir, checkpoint, graph: str) -> Engine:
    copy = tmp_path / "variant"
    shutil.copytree(export_dir, copy)
    module, spec = build_graphs(checkpoint, torch.float32)[graph]
    for stale in copy.glob(f"{graph}.onnx*"):
        stale.unlink()
    onnx_from_torch(module, spec, copy / f"{graph}.onnx")
    write_manifest(copy, read_manifest(copy))  # a consistent directory: only the graph's numbers are wrong
    return Engine(copy)


def _checks_fail(reference, engine, waves) -> bool:
    errors = graph_parity(reference, engine, list(waves.values()))
    tokens = token_parity(reference, engine, list(waves.values()), 24)
    return not all(within_tolerance(e, "fp32") for e in errors) or not all(t.equal for t in tokens)


@pytest.mark.parametrize("variant", ["interleaved-rope", "per-chunk-attention", "wrong-rope-theta"])
def test_wrong_variant_fails_parity(variant, tmp_path, monkeypatch, checkpoints, exports, references, waves):
    checkpoint = load_checkpoint(str(checkpoints["original"]))
    spec = checkpoint.spec
    if variant == "interleaved-rope":
        monkeypatch.setattr(decoder_graph, "rotate_half", rotate_interleaved)
        graph = names.DECODER
    elif variant == "per-chunk-attention":
        checkpoint.spec = dataclasses.replace(spec, audio=dataclasses.replace(spec.audio, n_window_infer=spec.audio.chunk_frames))
        graph = names.ENCODER
    else:
        checkpoint.spec = dataclasses.replace(spec, text=dataclasses.replace(spec.text, rope_theta=10000.0))
        graph = names.DECODER
    engine = _variant_engine(tmp_path, exports["original"], checkpoint, graph)
    assert _checks_fail(references["original"], engine, waves), f"{variant} passed the parity checks"
