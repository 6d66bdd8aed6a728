"""Loading checkpoints: both layouts, values read from their files, and clear errors for bad ones."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from qasr.export.checkpoint import load_checkpoint, resolve
from qasr.export.layouts import expected_shapes
from qasr.errors import CheckpointError

pytestmark = pytest.mark.fast   # no export: the fast tier (pytest -m fast)


def _copy(src, tmp_path, name="ckpt"):
    dst = tmp_path / name
    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize("layout", ["original", "hf"])
def test_both_layouts_load_the_same_weights(layout, checkpoints):
    ck = load_checkpoint(str(checkpoints[layout]))
    assert ck.spec.layout == layout
    assert set(ck.weights) == set(expected_shapes(ck.spec))
    assert ck.weights["model.language_model.embed_tokens.weight"].dtype == torch.bfloat16  # stored as the real ones
    other = load_checkpoint(str(checkpoints["hf" if layout == "original" else "original"]))
    for name, tensor in ck.weights.items():
        assert torch.equal(tensor, other.weights[name]), name


def test_spec_values_come_from_the_files(checkpoints, tmp_path):
    path = _copy(checkpoints["original"], tmp_path)
    config = json.loads((path / "config.json").read_text())
    config["thinker_config"]["text_config"]["rope_theta"] = 12345.0
    config["thinker_config"]["audio_config"]["n_window_infer"] = 400
    (path / "config.json").write_text(json.dumps(config))
    spec = load_checkpoint(str(path)).spec
    assert spec.text.rope_theta == 12345.0
    assert spec.audio.n_window_infer == 400 and spec.audio.chunks_per_window == 4
    generation = json.loads((path / "generation_config.json").read_text())
    assert list(spec.eos_token_ids) == generation["eos_token_id"]


def test_pause_rule_comes_from_the_config_and_a_wrong_one_is_refused(checkpoints, tmp_path):
    """qasr_segment_pauses: absent means merge (real checkpoints); split is kept; anything else is an error."""
    path = _copy(checkpoints["original"], tmp_path)
    assert load_checkpoint(str(path)).spec.segment_pauses == "merge"
    config = json.loads((path / "config.json").read_text())
    for value in ("split", "sometimes"):
        (path / "config.json").write_text(json.dumps({**config, "qasr_segment_pauses": value}))
        if value == "split":
            assert load_checkpoint(str(path)).spec.segment_pauses == "split"
        else:
            with pytest.raises(CheckpointError, match="qasr_segment_pauses must be one of merge, split, not 'sometimes'"):
                load_checkpoint(str(path))


def test_missing_rope_theta_is_refused_not_guessed(checkpoints, tmp_path):
    path = _copy(checkpoints["hf"], tmp_path)
    config = json.loads((path / "config.json").read_text())
    del config["text_config"]["rope_theta"]
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="rope_theta"):
        load_checkpoint(str(path))


def _edit_weights(path, edit):
    weights = load_file(str(path / "model.safetensors"))
    edit(weights)
    save_file(weights, str(path / "model.safetensors"))


def test_missing_extra_and_misshaped_weights_are_all_listed(checkpoints, tmp_path):
    path = _copy(checkpoints["original"], tmp_path)

    def edit(w):
        del w["thinker.audio_tower.layers.1.fc2.weight"]
        del w["thinker.model.layers.0.self_attn.q_norm.weight"]
        w["thinker.audio_tower.proj3.weight"] = torch.zeros(2, 2)
        w["thinker.model.norm.weight"] = torch.zeros(7)

    _edit_weights(path, edit)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(str(path))
    message = str(info.value)
    assert "2 missing" in message and "layers.1.fc2.weight" in message and "q_norm" in message
    assert "1 unexpected" in message and "proj3" in message
    assert "1 mis-shaped" in message and "model.language_model.norm.weight (7,)" in message
    assert "\n" not in message


def test_tied_lm_head_may_be_absent_but_an_untied_one_may_not(checkpoints, tmp_path):
    path = _copy(checkpoints["hf"], tmp_path)
    config = json.loads((path / "config.json").read_text())
    config["text_config"]["tie_word_embeddings"] = False
    config["tie_word_embeddings"] = False
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="lm_head.weight"):
        load_checkpoint(str(path))


@pytest.mark.parametrize("problem", ["no-config", "other-model", "no-weights", "corrupt-weights", "bad-json"])
def test_not_a_checkpoint(problem, checkpoints, tmp_path):
    path = _copy(checkpoints["original"], tmp_path)
    if problem == "no-config":
        (path / "config.json").unlink()
    elif problem == "other-model":
        (path / "config.json").write_text(json.dumps({"model_type": "whisper"}))
    elif problem == "no-weights":
        (path / "model.safetensors").unlink()
    elif problem == "corrupt-weights":
        (path / "model.safetensors").write_bytes(b"\x00" * 64)
    else:
        (path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(str(path))
    assert str(path) in str(info.value)


def test_unknown_hub_id_offline_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(CheckpointError, match="HF_HUB_OFFLINE"):
        resolve("Qwen/Qwen3-ASR-0.6B")
    with pytest.raises(CheckpointError, match="no checkpoint directory"):
        resolve(str(tmp_path / "nowhere" / "deeper"))
