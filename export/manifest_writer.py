"""Write an export directory's manifest.json: everything the runtime needs, nothing from the checkpoint."""

from __future__ import annotations

import json
import platform
from dataclasses import asdict
from pathlib import Path

from qasr.runtime import names
from qasr.runtime.features import FeatureSettings
from qasr.runtime.manifest import file_table
from qasr.runtime.prompt import DEFAULT_TEMPLATE, LANGUAGE_PREFIX
from qasr.runtime.stopping import DecodeOptions
from qasr.runtime.version import EXPORT_FORMAT, EXPORT_FORMAT_VERSION, __version__

from .graph_spec import GraphSpec
from .spec import ModelSpec


def tool_versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import torch
    import transformers

    return {"qasr": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__, "python": platform.python_version()}


def write_manifest(directory: Path, spec: ModelSpec, graphs: dict[str, tuple[GraphSpec, str]], tokens: dict,
                   features: FeatureSettings, export_settings: dict, source: dict) -> Path:
    text = spec.text
    dtype = graphs[names.DECODER][0].inputs[-1].dtype
    fused = export_settings.get("attention") == names.ATTENTION_GQA
    manifest = {
        "format": EXPORT_FORMAT,
        "format_version": EXPORT_FORMAT_VERSION,
        "created_by": tool_versions(),
        "source": source,
        "export": export_settings,
        "model": {
            "audio": asdict(spec.audio),
            "text": asdict(text),
            "tokens_per_chunk": spec.audio.tokens_per_chunk,
            "support_languages": list(spec.support_languages),
        },
        "tokens": tokens,
        "features": asdict(features),
        "prompt": {"template": DEFAULT_TEMPLATE, "language_prefix": LANGUAGE_PREFIX},
        "decoding": asdict(DecodeOptions()),
        "segmentation": {"max_seconds": spec.max_audio_seconds, "pauses": spec.segment_pauses},
        "cache": {
            "layers": text.layers, "kv_heads": text.kv_heads, "head_dim": text.head_dim, "dtype": dtype,
            "layout": ["batch", "kv_heads", "capacity", "head_dim"],
            "past": ["past_key_values.{i}.key", "past_key_values.{i}.value"],
            "present": ["present.{i}.key", "present.{i}.value"],
            "written_by": ("graph, in place (past and present bound to one buffer), at each row's seqlens_k offset"
                           if fused else "runtime, at an offset; graphs return only the new positions"),
        },
        "graphs": {name: graph.to_json(file) for name, (graph, file) in graphs.items()},
        "tokenizer": {"file": names.TOKENIZER},
        "files": file_table(directory),
    }
    path = directory / names.MANIFEST
    path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return path
