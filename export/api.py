"""export(settings): checkpoint -> export directory (three ONNX graphs, tokenizer, manifest), checked.

The CLI builds an ExportSettings and calls this; nothing here reads argv or click state.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import torch

from qasr.exportformat import ExportInfo, Source, names, write_manifest
from qasr.errors import CheckpointError, QasrError
from qasr.quantize.api import Int8Settings, derive_int8_export
from qasr.quantize.groups import possible_groups

from .aligner_graph import AlignerGraph, aligner_graph_spec
from .checkpoint import Checkpoint, load_checkpoint
from .decoder_graph import DecoderGraph, decoder_graph_spec
from .fused_decoder_graph import (DEFAULT_MAX_POSITIONS, MIN_ONNXRUNTIME, build_fused_decoder, fused_decoder_graph_spec,
                                  gqa_support_problem, save_fused_decoder)
from .encoder_graph import AudioEncoderGraph, encoder_graph_spec
from .graph_spec import TORCH_DTYPES, GraphSpec, load_module_weights
from .manifest_writer import build_manifest
from .onnx_export import OPSET, onnx_from_torch
from .projector_graph import ProjectorGraph, projector_graph_spec
from .spec import read_features

PRECISIONS = ("fp32", "fp16", "int8", "int4")   # int4: 4-bit weight-only (MatMulNBits), the plain name
# What the export is made for (asr-export --device): the graphs differ (docs/decisions/, "Export target").
DEVICES = ("cpu", "cuda")
ATTENTION_AUTO = "auto"     # the fused decoder where the checkpoint and ONNX Runtime allow it, else standard
# Decoder attention: portable standard ops (any ONNX backend) or ONNX Runtime's fused GroupQueryAttention
# with an in-place cache and the next token chosen in the graph (the GPU runtime's fast path).
ATTENTIONS = (names.ATTENTION_STANDARD, names.ATTENTION_GQA)
BACKENDS = ("onnxruntime",)     # tensorrt arrives later
# The float type the graphs are traced in; int8 is quantized afterwards from fp32 graphs (qasr.quantize).
# A kind that is not faster than fp32 on ONNX Runtime's CPU provider (measured: benchmarks/RESULTS.md, "CPU engine
# against the peers"), refused for --device cpu instead of exported as a trap.
CPU_FP16_REFUSAL = ("--precision fp16 is slower than fp32 on ONNX Runtime's CPU provider (measured at the 0.6B shape: "
                    "75 against 67 ms per token); for the CPU use --precision fp32, int8 or int4, or export for the GPU "
                    "with --device cuda")
PRECISION_DTYPES = {"fp32": "float32", "fp16": "float16", "int8": "float32", "int4": "float32"}

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ExportSettings:
    model: str
    out: Path
    precision: str = "fp32"
    backend: str = "onnxruntime"
    force: bool = False
    int8: Int8Settings | None = None   # --precision int8 only (None there: the defaults)
    attention: str = names.ATTENTION_STANDARD
    max_positions: int = DEFAULT_MAX_POSITIONS   # gqa: RoPE table length (prompt + new tokens per segment)
    device: str = "cpu"     # DEVICES: what the graphs are made for

    def quantization(self) -> Int8Settings | None:
        """The quantization settings of an int8 / int4 export (None for float ones), with the target device."""
        if self.precision not in ("int8", "int4"):
            return None
        settings = self.int8 or Int8Settings()
        if self.precision == "int4":
            settings = replace(settings, mode="weight-only", weight_bits=4)
        return replace(settings, target=self.device)

    def check(self):
        """Validate everything before long work starts; returns the resolved calibration set (or None)."""
        if self.precision not in PRECISIONS:
            raise QasrError(f"unknown precision {self.precision!r}; choose from {', '.join(PRECISIONS)}")
        if self.backend not in BACKENDS:
            raise QasrError(f"--backend {self.backend} is not available yet; this version exports for onnxruntime")
        if self.device not in DEVICES:
            raise QasrError(f"unknown --device {self.device!r}; choose from {', '.join(DEVICES)}")
        if self.attention not in (*ATTENTIONS, ATTENTION_AUTO):
            raise QasrError(f"unknown attention {self.attention!r}; choose from {', '.join(ATTENTIONS)}")
        if self.attention == names.ATTENTION_GQA:
            from qasr.runtime.cuda_support import onnxruntime_problem

            if problem := onnxruntime_problem(MIN_ONNXRUNTIME):
                raise QasrError(f"--attention gqa: {problem}")
        elif self.attention == names.ATTENTION_STANDARD and self.max_positions != DEFAULT_MAX_POSITIONS:
            raise QasrError("--max-positions applies to --attention gqa only (the standard decoder has no RoPE table)")
        out = Path(self.out)
        if out.exists() and not out.is_dir():
            raise QasrError(f"{out} exists and is not a directory")
        if out.is_dir() and any(out.iterdir()) and not self.force:
            raise QasrError(f"{out} already exists and is not empty; pass --force to replace it")
        from qasr.runtime.cli_support import writable_dir

        writable_dir(out.parent if str(out.parent) else Path("."), "the folder of --out")
        if self.precision == "int4" and self.int8 is not None and \
                (self.int8.mode != "weight-only" or self.int8.weight_bits not in (4, Int8Settings.weight_bits)):
            raise QasrError("--precision int4 is 4-bit weight-only; drop --int8-mode / --weight-bits")
        if self.precision not in ("int8", "int4"):
            if self.int8 is not None:
                raise QasrError("INT8 options (--int8-mode, --calibration, ...) apply to --precision int8 and int4 only")
            if self.device == "cpu" and self.precision == "fp16":
                raise QasrError(CPU_FP16_REFUSAL)
            return None
        return self.quantization().check()

    def float_precision(self) -> str:
        """The float type the graphs are written in before any quantization. Weight-only INT8/INT4 with the
        fused decoder keeps fp16 activations: GroupQueryAttention has CUDA kernels for fp16/bf16 only, and the
        fused decoder is the GPU form (fp32 activations put every attention node on the CPU)."""
        quantization = self.quantization()
        if quantization is not None and self.attention == names.ATTENTION_GQA and quantization.mode == "weight-only" \
                and self.device == "cuda":
            return "fp16"
        return "fp32" if quantization is not None else self.precision

    def resolve_attention(self, checkpoint: Checkpoint) -> tuple[str, str | None]:
        """The attention to export and, for `auto`, why the standard decoder was chosen (None otherwise)."""
        if self.attention != ATTENTION_AUTO:
            return self.attention, None
        from qasr.runtime.cuda_support import onnxruntime_problem

        problem = gqa_support_problem(checkpoint.spec.text) or onnxruntime_problem(MIN_ONNXRUNTIME)
        return (names.ATTENTION_STANDARD, problem) if problem else (names.ATTENTION_GQA, None)


def build_graphs(checkpoint: Checkpoint, dtype: torch.dtype, decoder: bool = True
                 ) -> dict[str, tuple[torch.nn.Module, GraphSpec]]:
    """The traced graphs: encoder, projector and (`decoder`) the standard decoder (the fused one is built from the
    weights instead: _write_graphs; not making its traced twin saves an fp32 copy of the text model)."""
    spec = checkpoint.spec
    encoder = AudioEncoderGraph(spec.audio)
    load_module_weights(encoder, checkpoint.weights, "model.audio_tower.", dtype)
    projector = ProjectorGraph(spec.audio)
    load_module_weights(projector, checkpoint.weights, "model.multi_modal_projector.", dtype)
    graphs = {names.ENCODER: (encoder.eval(), encoder_graph_spec(spec.audio, dtype)),
              names.PROJECTOR: (projector.eval(), projector_graph_spec(spec.audio, dtype))}
    if spec.alignment is not None:   # a forced aligner: the text model without a cache and the bins' head
        aligner = AlignerGraph(spec.text, spec.audio_token_id, spec.alignment.classes)
        load_module_weights(aligner, _text_weights(checkpoint, "score.weight"), "", dtype)
        graphs[names.ALIGNER] = (aligner.eval(), aligner_graph_spec(spec.text, spec.alignment.classes, dtype))
        return graphs
    if not decoder:
        return graphs
    decoder = DecoderGraph(spec.text, spec.audio_token_id)
    load_module_weights(decoder, _text_weights(checkpoint, "lm_head.weight"), "", dtype)
    if spec.text.tie_word_embeddings:  # one initializer in the graph, as in the checkpoint
        decoder.lm_head.weight = decoder.embed_tokens.weight
    graphs[names.DECODER] = (decoder.eval(), decoder_graph_spec(spec.text, dtype))
    return graphs


def _text_weights(checkpoint: Checkpoint, head: str) -> dict[str, torch.Tensor]:
    """The text model's weights under its module's names, and its head (`lm_head.weight`, or an aligner's
    `score.weight`)."""
    prefix = "model.language_model."
    weights = {k[len(prefix):]: v for k, v in checkpoint.weights.items() if k.startswith(prefix)}
    weights[head] = checkpoint.weights[head]
    return weights


def _token_table(checkpoint: Checkpoint, out: Path) -> dict:
    """Save tokenizer.json (the reference's own tokenizer) and resolve every token the prompt uses."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(checkpoint.path))
    except Exception as exc:
        raise CheckpointError(f"{checkpoint.path}: cannot load its tokenizer ({exc})") from None
    tokenizer.backend_tokenizer.save(str(out / names.TOKENIZER))
    spec = checkpoint.spec
    audio_token = tokenizer.convert_ids_to_tokens(spec.audio_token_id)
    needed = ["<|im_start|>", "<|im_end|>", "<|audio_start|>", "<|audio_end|>", "<asr_text>"]
    if spec.alignment is not None:   # the aligner's input has no chat template: audio delimiters and its slots
        needed = ["<|audio_start|>", "<|audio_end|>"]
        slot = tokenizer.convert_ids_to_tokens(spec.alignment.timestamp_token_id)
        if slot != spec.alignment.timestamp_token:
            raise CheckpointError(f"{checkpoint.path}: token {spec.alignment.timestamp_token_id} is {slot!r}, not "
                                  f"{spec.alignment.timestamp_token} (config.json's timestamp_token_id)")
    vocab = tokenizer.get_vocab()
    missing = [t for t in needed if t not in vocab]
    if missing or audio_token is None:
        raise CheckpointError(f"{checkpoint.path}: tokenizer lacks prompt tokens {missing or [spec.audio_token_id]}")
    eos = list(spec.eos_token_ids) or [vocab[t] for t in ("<|im_end|>", "<|endoftext|>") if t in vocab]
    pad = spec.pad_id if spec.pad_id is not None else (eos[0] if eos else vocab["<|audio_end|>"])
    return {"audio_token": audio_token, "audio_token_id": spec.audio_token_id, "eos_token_ids": eos,
            "pad_token_id": pad, **{t: vocab[t] for t in needed}}


def _write_graphs(checkpoint: Checkpoint, dtype: torch.dtype, directory: Path, progress: Progress,
                  settings: ExportSettings) -> dict:
    written = {}
    # the fused decoder is built from the weights, not traced (fused_decoder_graph.py); an aligner has no decoder
    fused = settings.attention == names.ATTENTION_GQA and checkpoint.spec.alignment is None
    graphs = build_graphs(checkpoint, dtype, decoder=not fused)
    total = len(graphs) + fused
    for i, (name, (module, spec)) in enumerate(graphs.items(), 1):
        progress(f"[{i}/{total}] exporting {name} graph to ONNX")
        onnx_from_torch(module, spec, directory / f"{name}.onnx")
        written[name] = (spec, f"{name}.onnx")
    del graphs, module     # the traced modules' fp32 weights go before the fused decoder is built
    if fused:
        progress(f"[{total}/{total}] building the fused {names.DECODER} graph (GroupQueryAttention)")
        text = checkpoint.spec.text
        path = directory / f"{names.DECODER}.onnx"
        model = build_fused_decoder(text, checkpoint.spec.audio_token_id, checkpoint.weights, dtype,
                                    settings.max_positions, data_path=directory / f"{path.name}.data")
        save_fused_decoder(model, path)
        written[names.DECODER] = (fused_decoder_graph_spec(text, dtype), path.name)
    return written


@dataclass(frozen=True)
class Exported:
    """What export_checkpoint made: the directory, its settings resolved (attention), and the checkpoint it was
    made from, still loaded, so that verification does not read it again."""
    path: Path
    settings: ExportSettings
    checkpoint: Checkpoint

    @property
    def label(self) -> str:
        quantization = self.settings.quantization()
        return quantization.label() if quantization else self.settings.precision


def export(settings: ExportSettings, progress: Progress = lambda _: None) -> Path:
    """Write the export directory and return its path (verification is the caller's: reference/verify.py)."""
    return export_checkpoint(settings, progress).path


def export_checkpoint(settings: ExportSettings, progress: Progress = lambda _: None) -> Exported:
    """The pipeline, each step once: check the settings (calibration files opened here), load the checkpoint,
    resolve attention and exclusions against it, write the float graphs, quantize them into a new manifest
    value, move the finished directory into place."""
    calibration = settings.check()
    progress(f"loading checkpoint {settings.model}")
    checkpoint = load_checkpoint(settings.model)
    settings = _resolve(settings, checkpoint, progress)
    out = Path(settings.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        tokens = _token_table(checkpoint, staging)
        quantization = settings.quantization()
        base = settings.float_precision()
        graphs_dir = Path(tempfile.mkdtemp(prefix=f".{out.name}.{base}.", dir=out.parent)) if quantization else staging
        try:
            if quantization:   # a complete float export first: the runtime calibrates on it
                shutil.move(staging / names.TOKENIZER, graphs_dir / names.TOKENIZER)
            written = _write_graphs(checkpoint, TORCH_DTYPES[PRECISION_DTYPES[base]], graphs_dir, progress, settings)
            manifest = build_manifest(checkpoint.spec, written, tokens, read_features(checkpoint.path, checkpoint.spec),
                                      _export_info(settings, base), _source(settings, checkpoint))
            progress("writing manifest (checksums)")
            write_manifest(graphs_dir, manifest)
            if quantization:
                derive_int8_export(graphs_dir, staging, quantization, calibration, progress)
        finally:
            if graphs_dir != staging:
                shutil.rmtree(graphs_dir, ignore_errors=True)
        staging.chmod(0o755)  # mkdtemp made it private; quantizers write their data files 0600
        for path in staging.iterdir():
            path.chmod(0o644)
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return Exported(out, settings, checkpoint)


def _resolve(settings: ExportSettings, checkpoint: Checkpoint, progress: Progress) -> ExportSettings:
    """What the checkpoint decides: the attention (auto, or gqa refused for it) and the exclusion groups it has.
    An aligner has no decoder cache to fuse: its one pass is the standard graph (auto means that)."""
    _check_exclusions(settings, checkpoint)
    if checkpoint.spec.alignment is not None:
        if settings.attention == names.ATTENTION_GQA:
            raise QasrError(f"{settings.model} is a forced aligner (one pass, no KV cache): --attention gqa applies "
                            "to speech recognition decoders; use --attention standard or auto")
        quantization = settings.quantization()
        if quantization is not None and quantization.mode == "static":
            raise QasrError(f"{settings.model} is a forced aligner: its INT8 form is weight-only (--int8-mode "
                            "weight-only or --precision int4); static INT8 calibrates the speech recognition decoder")
        progress("forced aligner: encoder, projector and the aligner graph (no decoder cache)")
        return replace(settings, attention=names.ATTENTION_STANDARD)
    if settings.attention == names.ATTENTION_GQA and (problem := gqa_support_problem(checkpoint.spec.text)):
        raise QasrError(problem)
    attention, why_standard = settings.resolve_attention(checkpoint)
    progress(f"decoder attention: {attention}" + (f" ({why_standard})" if why_standard else ""))
    return replace(settings, attention=attention)


def _check_exclusions(settings: ExportSettings, checkpoint: Checkpoint) -> None:
    if settings.quantization() is not None and settings.int8 is not None and settings.int8.exclude:
        known = possible_groups(checkpoint.spec.audio.layers, checkpoint.spec.text.layers,
                                names.ALIGNER if checkpoint.spec.alignment else names.DECODER)
        if unknown := sorted(set(settings.int8.exclude) - known):
            raise QasrError(f"unknown --int8-exclude groups {unknown}; this model has {sorted(known)}")


def _export_info(settings: ExportSettings, precision: str) -> ExportInfo:
    """The float export's record (quantization derives the final one from it)."""
    fused = settings.attention == names.ATTENTION_GQA
    return ExportInfo(precision=precision, backend=settings.backend, opset=OPSET, attention=settings.attention,
                      device=settings.device, max_positions=settings.max_positions if fused else None,
                      requires={"onnxruntime": MIN_ONNXRUNTIME} if fused else None)


def _source(settings: ExportSettings, checkpoint: Checkpoint) -> Source:
    return Source(settings.model, str(checkpoint.path), checkpoint.spec.layout, checkpoint.weights_checksum())
