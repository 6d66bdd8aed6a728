"""Export directories: self-describing, refused when from another version or changed, never overwritten."""

from __future__ import annotations

import json
import shutil

import pytest

from qasr.export.api import ExportSettings, export
from qasr.runtime import names
from qasr.runtime.engine import Engine
from qasr.runtime.errors import ExportDirError, QasrError
from qasr.runtime.manifest import load_manifest


def _copy(exports, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(exports["original"], dst)
    return dst


def test_manifest_describes_everything_the_runtime_needs(exports):
    manifest = load_manifest(exports["original"])
    data = manifest.data
    assert set(data["graphs"]) == {"encoder", "projector", "decoder"}
    decoder_inputs = [t["name"] for t in data["graphs"]["decoder"]["inputs"]]
    assert decoder_inputs[:5] == ["input_ids", "audio_embeds", "position_ids", "past_mask", "new_mask"]
    assert decoder_inputs[5:7] == ["past_key_values.0.key", "past_key_values.0.value"]
    for key in ("created_by", "source", "export", "model", "tokens", "features", "prompt", "cache", "files"):
        assert key in data, key
    assert data["created_by"]["transformers"] and data["source"]["layout"] == "original"
    assert all(len(meta["sha256"]) == 64 for meta in data["files"].values())
    assert "encoder.onnx" in data["files"] and names.TOKENIZER in data["files"]


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
    assert engine.attention == names.ATTENTION_STANDARD and engine.manifest.data["format_version"] == 1


def test_exports_without_a_pause_rule_merge(exports, tmp_path):
    """segmentation.pauses came within format 3; a directory written before it merges speech regions, as it did."""
    assert load_manifest(exports["original"]).data["segmentation"] == {"max_seconds": 1200.0, "pauses": "merge"}
    path = _copy(exports, tmp_path)
    data = json.loads((path / names.MANIFEST).read_text())
    del data["segmentation"]["pauses"]
    (path / names.MANIFEST).write_text(json.dumps(data))
    assert Engine(path).manifest.segment_pauses == "merge"
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
