"""The export format without an export: a manifest value written, read back, migrated and refused field by field;
the file table and its checksum cache on plain files. Fast tier: no graphs, no torch."""

from __future__ import annotations

import dataclasses
import json

import pytest

from qasr.errors import ExportDirError
from qasr.exportformat import (AudioSpec, CacheLayout, ExportInfo, FeatureSettings, Graph, Manifest, ModelInfo,
                               PromptFormat, Quantization, Segmentation, Source, Tensor, TextSpec, Tokens,
                               load_manifest, names, read_manifest, write_manifest)
from qasr.exportformat import files as export_files

pytestmark = pytest.mark.fast


def _manifest(**changes) -> Manifest:
    audio = AudioSpec(128, 32, 2, 4, 64, 50, 800, 8, 64, "gelu")
    text = TextSpec(320, 64, 2, 4, 2, 16, 128, 1e-6, 1e6, True, "silu")
    graph = Graph("decoder.onnx", (Tensor("input_ids", "int64", ("batch", "steps")),),
                  (Tensor("logits", "float32", ("batch", 320)),))
    value = Manifest(format_version=3, created_by={"qasr": "0.1.0"}, source=Source("m", "/m", "original", "0" * 64),
                     export=ExportInfo("fp32"), model=ModelInfo(audio, text, 13, ("English",)),
                     tokens=Tokens("<|audio_pad|>", 305, (302, 300), 300, {"<|im_start|>": 301}),
                     features=FeatureSettings(), prompt=PromptFormat("{audio}", "language {language}<asr_text>"),
                     cache=CacheLayout(2, 2, 16, "float32", written_by="runtime"), graphs={"decoder": graph}, files={})
    return dataclasses.replace(value, **changes)


def _write(directory, manifest: Manifest) -> None:
    directory.mkdir(exist_ok=True)
    (directory / "decoder.onnx").write_bytes(b"graph bytes")
    (directory / names.TOKENIZER).write_text("{}")
    write_manifest(directory, manifest)


def test_a_manifest_round_trips_and_unset_sections_are_not_written(tmp_path):
    quantization = Quantization("weight-only", ("decoder.lm_head",), "int4 blocks of 32", "float32", "cpu", 4)
    manifest = _manifest(export=ExportInfo("int4", attention="gqa", device="cpu", max_positions=4096,
                                           requires={"onnxruntime": "1.31"}, quantization=quantization))
    _write(tmp_path / "e", manifest)
    raw = json.loads((tmp_path / "e" / names.MANIFEST).read_text())
    assert "segmentation" not in raw and "decoding" not in raw and raw["tokens"]["<|im_start|>"] == 301
    assert raw["export"]["quantization"]["excluded_groups"] == ["decoder.lm_head"]
    loaded = load_manifest(tmp_path / "e", checksums="full")
    assert dataclasses.replace(loaded, directory=None, files={}) == manifest
    assert loaded.files["decoder.onnx"].bytes == len(b"graph bytes") and names.MANIFEST not in loaded.files
    assert loaded.limits == Segmentation(1200.0, "merge") and loaded.graph_path("decoder") == tmp_path / "e" / "decoder.onnx"


def test_declared_limits_are_written_and_read(tmp_path):
    _write(tmp_path / "e", _manifest(segmentation=Segmentation(5.0, "split")))
    assert read_manifest(tmp_path / "e").limits == Segmentation(5.0, "split")


@pytest.mark.parametrize("edit,message", [
    (lambda d: d.pop("cache"), r"a speech recognition export needs its prompt and cache sections"),
    (lambda d: d["export"].update(opset="18"), r"export.opset must be int, not str"),
    (lambda d: d["model"]["audio"].update(layers=True), r"model.audio.layers must be int, not bool"),
    (lambda d: d["tokens"].update(eos_token_ids=302), r"tokens.eos_token_ids must be a list, not int"),
    (lambda d: d["export"].update(quantization={"weights": "x"}), r"export.quantization.mode is missing"),
    (lambda d: d.update(format="other"), r"is not a qasr export manifest"),
    (lambda d: d.update(format_version=99), r"format version 99 \(qasr 0.1.0\); this runtime reads versions 1 and 2 and 3"),
    (lambda d: d.update(segmentation={"pauses": "join"}), r"segmentation.pauses must be one of merge, split, not 'join'"),
    (lambda d: d["cache"].update(layout=["batch", "capacity", "kv_heads", "head_dim"]),
     r"cache layout \['batch', 'capacity', 'kv_heads', 'head_dim'\] .* is not the one this runtime binds"),
])
def test_each_broken_field_is_named(tmp_path, edit, message):
    _write(tmp_path / "e", _manifest())
    path = tmp_path / "e" / names.MANIFEST
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    with pytest.raises(ExportDirError, match=message):
        read_manifest(tmp_path / "e")


def test_version_1_is_read_as_the_standard_decoder_and_unread_sections_are_dropped(tmp_path):
    _write(tmp_path / "e", _manifest(export=ExportInfo("fp32", attention="gqa")))
    path = tmp_path / "e" / names.MANIFEST
    data = json.loads(path.read_text())
    data["format_version"] = 1
    del data["export"]["attention"]
    data["decoding"] = {"tokens_per_second": 12.0}
    path.write_text(json.dumps(data))
    manifest = read_manifest(tmp_path / "e")
    assert manifest.format_version == 1 and manifest.export.attention == names.ATTENTION_STANDARD


def test_files_are_checked_by_size_always_and_by_sha256_once_per_version(tmp_path, monkeypatch):
    monkeypatch.setenv("QASR_CACHE", str(tmp_path / "cache"))
    _write(tmp_path / "e", _manifest())
    hashed = []
    real = export_files.sha256_file
    monkeypatch.setattr(export_files, "sha256_file", lambda p, *a: hashed.append(p.name) or real(p, *a))
    load_manifest(tmp_path / "e")
    load_manifest(tmp_path / "e")
    assert sorted(hashed) == ["decoder.onnx", names.TOKENIZER]      # the second load hashed nothing
    (tmp_path / "e" / "decoder.onnx").write_bytes(b"graph BYTES")     # same size, new content
    with pytest.raises(ExportDirError, match="decoder.onnx has changed since export \\(sha256"):
        load_manifest(tmp_path / "e")
    load_manifest(tmp_path / "e", checksums="size")
    (tmp_path / "e" / "decoder.onnx").write_bytes(b"longer graph bytes")
    with pytest.raises(ExportDirError, match="size differs"):
        load_manifest(tmp_path / "e", checksums="size")
    (tmp_path / "e" / "decoder.onnx").write_bytes(b"graph bytes")
    (tmp_path / "e" / names.TOKENIZER).unlink()
    with pytest.raises(ExportDirError, match="tokenizer.json is missing"):
        load_manifest(tmp_path / "e", checksums="size")


def test_an_unwritable_cache_costs_only_the_next_full_check(tmp_path, monkeypatch):
    (tmp_path / "ro").write_text("a file where the cache directory should be")
    monkeypatch.setenv("QASR_CACHE", str(tmp_path / "ro" / "sub"))
    _write(tmp_path / "e", _manifest())
    load_manifest(tmp_path / "e")   # loads; the cache is not written
