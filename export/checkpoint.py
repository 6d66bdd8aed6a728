"""Find a checkpoint (local directory or hub id), read its spec and load its weights by name table.

Loading checks the key count and every shape and lists what is missing, extra or mis-shaped.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from qasr.errors import CheckpointError
from qasr.exportformat import sha256_file

from .layouts import IGNORED_SUFFIXES, canonical_name, expected_shapes, optional_weights
from .spec import ModelSpec, read_spec

HUB_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.jinja", "*.model"]


@dataclass
class Checkpoint:
    path: Path
    source: str
    spec: ModelSpec
    weights: dict[str, torch.Tensor]   # canonical name -> tensor, as stored (bf16 in the real checkpoints)
    weight_files: tuple[Path, ...]

    def weights_checksum(self) -> str:
        """sha256 over the weight files' own sha256 values, in name order: identifies the weights."""
        import hashlib

        digest = hashlib.sha256()
        for file in sorted(self.weight_files):
            digest.update(file.name.encode())
            digest.update(sha256_file(file).encode())
        return digest.hexdigest()


def resolve(model: str) -> Path:
    """A local checkpoint directory, or a hub id fetched with huggingface_hub (honours HF_HUB_OFFLINE)."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise CheckpointError(f"{model} is a file, not a checkpoint directory")
    if model.count("/") != 1 or model.startswith((".", "/")):
        raise CheckpointError(f"no checkpoint directory at {model} (and it is not a hub id like Qwen/Qwen3-ASR-0.6B)")
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise CheckpointError(f"{model} is not a local directory and huggingface_hub is not installed") from None
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}
    try:
        return Path(snapshot_download(repo_id=model, allow_patterns=HUB_PATTERNS, local_files_only=offline))
    except Exception as exc:  # the hub client raises many types; all mean the same to the user
        raise CheckpointError(f"cannot get {model} from the hub ({_hub_reason(exc, offline)}); "
                              "pass a local checkpoint directory") from None


def _hub_reason(exc: Exception, offline: bool) -> str:
    name = type(exc).__name__
    if offline:
        return "HF_HUB_OFFLINE is set and it is not in the local cache"
    if name == "LocalEntryNotFoundError":
        return "the hub could not be reached and it is not in the local cache"
    if name in ("RepositoryNotFoundError", "RevisionNotFoundError"):
        return "no such model on the hub"
    if name == "GatedRepoError":
        return "the model is gated: log in with `hf auth login` after accepting its terms"
    return f"{name}: {str(exc).splitlines()[0] if str(exc) else ''}"


def _weight_files(path: Path) -> tuple[Path, ...]:
    index = path / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (OSError, ValueError, KeyError) as exc:
            raise CheckpointError(f"cannot read {index}: {exc}") from None
        files = tuple(path / shard for shard in shards)
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise CheckpointError(f"{path} is missing weight shards: {', '.join(missing)}")
        return files
    single = path / "model.safetensors"
    if single.is_file():
        return (single,)
    raise CheckpointError(f"{path} holds no weights (no model.safetensors or model.safetensors.index.json)")


def _read_tensors(files: tuple[Path, ...]) -> dict[str, torch.Tensor]:
    from safetensors import safe_open

    tensors: dict[str, torch.Tensor] = {}
    for file in files:
        try:
            with safe_open(str(file), framework="pt") as handle:
                for key in handle.keys():
                    tensors[key] = handle.get_tensor(key)
        except Exception as exc:  # safetensors raises its own error types for corrupt files
            raise CheckpointError(f"cannot read weights from {file}: {exc}") from None
    return tensors


def _short_list(items: list[str], limit: int = 8) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" (+{len(items) - limit} more)" if len(items) > limit else "")


def map_weights(spec: ModelSpec, raw: dict[str, torch.Tensor], where: str) -> dict[str, torch.Tensor]:
    """Rename through the layout's table and check against the spec; raise listing every problem."""
    mapped: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for name, tensor in raw.items():
        target = canonical_name(spec.layout, name, aligner=spec.alignment is not None)
        if target is None:
            if not name.endswith(IGNORED_SUFFIXES):
                unknown.append(name)
            continue
        if target.endswith(IGNORED_SUFFIXES):
            continue
        mapped[target] = tensor
    shapes = expected_shapes(spec)
    optional = optional_weights(spec)
    missing = sorted(k for k in shapes if k not in mapped and k not in optional)
    extra = sorted(unknown + [k for k in mapped if k not in shapes])
    wrong = sorted(
        f"{k} {tuple(mapped[k].shape)} (expected {shapes[k]})"
        for k in shapes
        if k in mapped and tuple(mapped[k].shape) != shapes[k]
    )
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing: {_short_list(missing)}")
    if extra:
        problems.append(f"{len(extra)} unexpected: {_short_list(extra)}")
    if wrong:
        problems.append(f"{len(wrong)} mis-shaped: {_short_list(wrong)}")
    if problems:
        raise CheckpointError(f"{where} does not match its config.json: " + "; ".join(problems))
    if "lm_head.weight" not in mapped and spec.alignment is None:
        mapped["lm_head.weight"] = mapped["model.language_model.embed_tokens.weight"]
    return mapped


def load_checkpoint(model: str) -> Checkpoint:
    path = resolve(model)
    spec = read_spec(path)
    files = _weight_files(path)
    weights = map_weights(spec, _read_tensors(files), str(path))
    return Checkpoint(path=path, source=model, spec=spec, weights=weights, weight_files=files)
