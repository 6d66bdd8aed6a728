"""The manifest of a new export: everything the runtime needs, nothing from the checkpoint (a typed value;
qasr.exportformat.write_manifest writes it with the directory's file table)."""

from __future__ import annotations

import platform

from qasr.exportformat import (CacheLayout, ExportInfo, FeatureSettings, Graph, Manifest, ModelInfo, PromptFormat,
                               Segmentation, Source, Tensor, Tokens, names)
from qasr.exportformat.schema import EXPORT_FORMAT_VERSION
from qasr.runtime.prompt import DEFAULT_TEMPLATE, LANGUAGE_PREFIX
from qasr.runtime.version import __version__

from .graph_spec import GraphSpec
from .spec import ModelSpec


def tool_versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import torch
    import transformers

    return {"qasr": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__, "python": platform.python_version()}


def graph_entry(spec: GraphSpec, file: str) -> Graph:
    def tensors(specs):
        return tuple(Tensor(t.name, t.dtype, tuple(t.axes)) for t in specs)

    return Graph(file, tensors(spec.inputs), tensors(spec.outputs))


def build_manifest(spec: ModelSpec, graphs: dict[str, tuple[GraphSpec, str]], tokens: dict,
                   features: FeatureSettings, export: ExportInfo, source: Source) -> Manifest:
    text = spec.text
    aligner = spec.alignment is not None
    dtype = graphs[names.ALIGNER if aligner else names.DECODER][0].inputs[1].dtype
    fused = export.attention == names.ATTENTION_GQA
    limits = Segmentation(spec.max_audio_seconds, spec.segment_pauses)
    known = {"audio_token", "audio_token_id", "eos_token_ids", "pad_token_id"}
    return Manifest(
        format_version=EXPORT_FORMAT_VERSION,
        created_by=tool_versions(),
        source=source,
        export=export,
        model=ModelInfo(spec.audio, text, spec.audio.tokens_per_chunk, tuple(spec.support_languages)),
        tokens=Tokens(tokens["audio_token"], tokens["audio_token_id"], tuple(tokens["eos_token_ids"]),
                      tokens["pad_token_id"], {k: v for k, v in tokens.items() if k not in known}),
        features=features,
        prompt=None if aligner else PromptFormat(DEFAULT_TEMPLATE, LANGUAGE_PREFIX),
        # only a checkpoint that declares other limits than the official ones (the test model) writes the section
        segmentation=None if limits == Segmentation() or aligner else limits,
        cache=None if aligner else CacheLayout(text.layers, text.kv_heads, text.head_dim, dtype, written_by=(
            "graph, in place (past and present bound to one buffer), at each row's seqlens_k offset" if fused
            else "runtime, at an offset; graphs return only the new positions")),
        alignment=spec.alignment,
        graphs={name: graph_entry(graph, file) for name, (graph, file) in graphs.items()},
        files={},
    )
