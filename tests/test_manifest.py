"""Export directories: self-describing, refused when from another version or changed, never overwritten."""

from __future__ import annotations

import json
import shutil

import pytest

from qasr.export.api import ExportSettings, export
from qasr.exportformat import names
from qasr.runtime.engine import Engine
from qasr.errors import ExportDirError, QasrError
from qasr.exportformat import Manifest, load_manifest, read_manifest, write_manifest
from qasr.exportformat import files as export_files


def _copy(exports, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(exports["original"], dst)
    return dst


def test_manifest_describes_everything_the_runtime_needs(exports):
    manifest = load_manifest(exports["original"])
    assert set(manifest.graphs) == {"encoder", "projector", "decoder"}
    decoder_inputs = [t.name for t in manifest.graphs["decoder"].inputs]
    assert decoder_inputs[:5] == ["input_ids", "audio_embeds", "position_ids", "past_mask", "new_mask"]
    assert decoder_inputs[5:7] == ["past_key_values.0.key", "past_key_values.0.value"]
    assert manifest.created_by["transformers"] and manifest.source.layout == "original"
    assert all(len(meta.sha256) == 64 for meta in manifest.files.values())
    assert "encoder.onnx" in manifest.files and names.TOKENIZER in manifest.files
    raw = json.loads((exports["original"] / names.MANIFEST).read_text())
    assert Manifest.from_json(raw).to_json() == raw      # one format: what is read is what was written
    # the official limits are the runtime's defaults: a real model's export carries no segmentation section,
    # and nothing is written that no one reads
    assert "segmentation" not in raw and "decoding" not in raw and manifest.limits.max_seconds == 1200.0


@pytest.mark.parametrize("edit,message", [
    (lambda d: d["export"].pop("precision"), r"manifest.json.export.precision is missing"),
    (lambda d: d["model"]["text"].update(layers="two"), r"model.text.layers must be int, not str \('two'\)"),
    (lambda d: d["graphs"]["decoder"].pop("inputs"), r"graphs.decoder.inputs is missing"),
    (lambda d: d["files"].update({"encoder.onnx": {"bytes": 1}}), r"files.encoder.onnx.sha256 is missing"),
    (lambda d: d.update(tokens=[]), r"tokens must be an object, not list"),
])
def test_a_broken_manifest_is_one_line_naming_the_field(exports, tmp_path, edit, message):
    path = _copy(exports, tmp_path)
    data = json.loads((path / names.MANIFEST).read_text())
    edit(data)
    (path / names.MANIFEST).write_text(json.dumps(data))
    with pytest.raises(ExportDirError, match=message):
        Engine(path)


def test_checksums_are_cached_per_file_version(exports, tmp_path, monkeypatch):
    """sha256 runs once per file version (path, size, inode, mtime): a restart reads no weights again, and a changed
    file is hashed again and refused."""
    monkeypatch.setenv("QASR_CACHE", str(tmp_path / "cache"))
    path = _copy(exports, tmp_path)
    hashed = []
    real = export_files.sha256_file
    monkeypatch.setattr(export_files, "sha256_file", lambda p, *a: hashed.append(p.name) or real(p, *a))
    load_manifest(path)
    assert sorted(hashed) == sorted(read_manifest(path).files)
    hashed.clear()
    load_manifest(path)
    assert hashed == []                                   # the second start hashes nothing
    data = bytearray((path / "encoder.onnx.data").read_bytes())
    data[10] ^= 0xFF
    (path / "encoder.onnx.data").write_bytes(bytes(data))  # same size, new mtime
    with pytest.raises(ExportDirError, match="encoder.onnx.data has changed since export \\(sha256"):
        load_manifest(path)
    assert hashed == ["encoder.onnx.data"]
    load_manifest(path, checksums="size")                  # asked for sizes only: loads
    hashed.clear()
    with pytest.raises(ExportDirError, match="sha256"):
        load_manifest(path, checksums="full")
    assert len(hashed) >= 1


def test_write_manifest_records_the_directory_as_it_is(exports, tmp_path):
    path = _copy(exports, tmp_path)
    manifest = read_manifest(path)
    (path / "notes.txt").write_text("added after export")
    write_manifest(path, manifest)
    assert read_manifest(path).files["notes.txt"].bytes == len("added after export")


def test_other_format_version_is_refused(exports, tmp_path):
    path = _copy(exports, tmp_path)
    data = json.loads((path / names.MANIFEST).read_text())
    data["format_version"] = 99
    (path / names.MANIFEST).write_text(json.dumps(data))
    with pytest.raises(ExportDirError, match="format version 99"):
        Engine(path)


def test_version_1_directories_are_still_read(exports, tmp_path):
    """Version 2 added export.attention; a version 1 directory is a standard-attention export."""
    path = _copy(exports, tmp_path)
    data = json.loads((path / names.MANIFEST).read_text())
    data["format_version"] = 1
    del data["export"]["attention"]
    (path / names.MANIFEST).write_text(json.dumps(data))
    engine = Engine(path)
    assert engine.attention == names.ATTENTION_STANDARD and engine.manifest.format_version == 1


def test_exports_without_a_pause_rule_merge(exports, tmp_path):
    """segmentation.pauses came within format 3; a directory written before it merges speech regions, as it did."""
    path = _copy(exports, tmp_path)
    data = json.loads((path / names.MANIFEST).read_text())
    data["segmentation"] = {"max_seconds": 30.0}
    (path / names.MANIFEST).write_text(json.dumps(data))
    assert Engine(path).manifest.limits.pauses == "merge"
    data["segmentation"]["pauses"] = "join"
    (path / names.MANIFEST).write_text(json.dumps(data))
    with pytest.raises(ExportDirError, match="segmentation.pauses must be one of merge, split, not 'join'"):
        Engine(path)


def test_changed_or_missing_files_are_refused(exports, tmp_path):
    path = _copy(exports, tmp_path)
    data = bytearray((path / "decoder.onnx.data").read_bytes())
    data[100] ^= 0xFF
    (path / "decoder.onnx.data").write_bytes(bytes(data))
    with pytest.raises(ExportDirError, match="sha256"):
        Engine(path)
    shutil.copy(exports["original"] / "decoder.onnx.data", path / "decoder.onnx.data")
    Engine(path)  # restored: loads again
    (path / "projector.onnx").unlink()
    with pytest.raises(ExportDirError, match="projector.onnx is missing"):
        Engine(path)


def test_not_an_export_directory(tmp_path):
    with pytest.raises(ExportDirError, match="not an export directory"):
        Engine(tmp_path)
    with pytest.raises(ExportDirError, match="not found"):
        Engine(tmp_path / "absent")


def test_existing_directory_is_not_overwritten_without_force(checkpoints, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    settings = ExportSettings(model=str(checkpoints["hf"]), out=out)
    with pytest.raises(QasrError, match="--force"):
        export(settings)
    assert (out / "precious.txt").read_text() == "keep me"
    export(ExportSettings(model=str(checkpoints["hf"]), out=out, force=True))
    assert not (out / "precious.txt").exists() and (out / names.MANIFEST).is_file()


@pytest.mark.parametrize("precision,backend,message", [("fp16", "tensorrt", "not available yet"),
                                                       ("int8", "tensorrt", "not available yet"),
                                                       ("fp32", "tensorrt", "not available yet"),
                                                       ("fp64", "onnxruntime", "unknown precision")])
def test_unsupported_settings_fail_before_any_work(precision, backend, message, tmp_path):
    with pytest.raises(QasrError, match=message):
        ExportSettings(model="does-not-matter", out=tmp_path / "x", precision=precision, backend=backend,
                       device="cuda").check()
