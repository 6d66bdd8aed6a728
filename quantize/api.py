"""INT8 from an fp32 export: calibrate (static mode), quantize each graph, describe what was done.

`quantize_export(fp32_dir, out_dir, settings)` writes the quantized graphs into `out_dir` (the caller
writes the manifest) and returns the `quantization` record the manifest keeps.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import onnx

from qasr.exportformat import Quantization, names
from qasr.exportformat.schema import parse
from qasr.errors import QasrError

from .defaults import DEFAULT_EXCLUDE
from .groups import node_groups
from .static import quantize_static_graph
from .weight_only import quantize_weight_only_graph

WEIGHT_RECORDS = {"rtn": "int{bits} blocks of {block}, symmetric, round to nearest",
                  "hqq": "int{bits} blocks of {block}, asymmetric, HQQ (half-quadratic scale/zero-point search)",
                  "gptq": "int{bits} blocks of {block}, asymmetric, GPTQ on the calibration audio",
                  "awq": "int{bits} blocks of {block}, symmetric, round to nearest after AWQ-style activation-aware "
                         "channel scales (calibration audio)"}
MODES = ("static", "weight-only")
WEIGHT_GRANULARITIES = ("per-tensor", "per-channel")
# How weight-only quantization chooses the int weights: round to nearest (per block, symmetric), HQQ
# (half-quadratic optimisation of scale and zero point, no data), GPTQ (error-compensating rounding
# on the calibration audio's activations; these two are onnxruntime.quantization's) or AWQ-style
# (activation-aware channel scales searched on the calibration audio, then round to nearest: awq.py);
# all but rtn are 4-bit only.
WEIGHT_ALGORITHMS = ("rtn", "hqq", "gptq", "awq")
CALIBRATED_ALGORITHMS = ("gptq", "awq")   # weight-only algorithms that read the calibration audio
BLOCK_SIZES = (16, 32, 64, 128, 256)      # weight-only: weights per scale; MatMulNBits takes powers of two >= 16
# What a weight-only export is made for (asr-export --device). The CPU form: MatMulNBits at accuracy level 4
# (activations quantized to int8 inside the kernel: ONNX Runtime's fastest CPU path for 4- and 8-bit weights)
# and the fused decoder's tied embedding / lm_head quantized once (tied_head.py); the encoder and projector
# (many tokens per run, compute-bound) as dynamic INT8 (dynamic.py; rtn only). The CUDA form: MatMulNBits
# with ONNX Runtime's default accuracy level and a float lm_head (unchanged; not yet measured on a GPU).
TARGETS = ("cpu", "cuda")
CPU_ACCURACY_LEVEL = 4


@dataclass(frozen=True)
class Int8Settings:
    mode: str = "static"
    method: str = "minmax"             # calibration method (static mode)
    calibration: str | None = None     # directory or JSONL manifest; None: the shipped calibration split
    calibration_limit: int | None = None  # use only the first N readable utterances
    weights: str = "per-tensor"        # static mode: MatMul/Gemm weight scales (Conv is always per channel)
    weight_bits: int = 8               # weight-only mode: 8 or 4
    block_size: int = 32               # weight-only mode: weights per quantization block
    exclude: tuple[str, ...] | None = None  # groups kept in float; None: DEFAULT_EXCLUDE[mode]
    smooth_alpha: float | None = None  # static mode: SmoothQuant migration strength (None: no smoothing)
    weight_algorithm: str = "rtn"      # weight-only mode: WEIGHT_ALGORITHMS
    target: str = "cuda"               # weight-only mode: TARGETS (asr-export passes its --device)

    def accuracy_level(self) -> int | None:
        """MatMulNBits' accuracy_level: int8 compute on the CPU, ONNX Runtime's default elsewhere."""
        return CPU_ACCURACY_LEVEL if self.mode == "weight-only" and self.target == "cpu" else None

    def check(self):
        """Validate, and resolve the calibration data (static mode) before any long work starts."""
        from qasr.calibration.data import calibration_set
        from qasr.calibration.stats import METHODS

        if self.mode not in MODES:
            raise QasrError(f"unknown --int8-mode {self.mode!r}; choose from {', '.join(MODES)}")
        if self.mode == "static":
            if self.method not in METHODS:
                raise QasrError(f"unknown --calibration-method {self.method!r}; choose from {', '.join(METHODS)}")
            if self.weights not in WEIGHT_GRANULARITIES:
                raise QasrError(f"unknown --int8-weights {self.weights!r}; choose from {', '.join(WEIGHT_GRANULARITIES)}")
            if self.weight_bits != 8:
                raise QasrError("--weight-bits applies to --int8-mode weight-only; static INT8 uses 8-bit weights")
            if self.weight_algorithm != "rtn":
                raise QasrError("--weight-algorithm applies to --int8-mode weight-only")
            if self.block_size != Int8Settings.block_size:
                raise QasrError("--weight-block-size applies to --int8-mode weight-only; static INT8 scales whole "
                                "tensors or channels")
            if self.smooth_alpha is not None and not 0.0 <= self.smooth_alpha <= 1.0:
                raise QasrError(f"--smoothquant takes an alpha within 0..1, not {self.smooth_alpha}")
            return calibration_set(self.calibration, self.calibration_limit)
        if self.target not in TARGETS:
            raise QasrError(f"unknown target device {self.target!r}; choose from {', '.join(TARGETS)}")
        if self.smooth_alpha is not None:
            raise QasrError("--smoothquant applies to --int8-mode static (weight-only keeps activations in float)")
        if self.block_size not in BLOCK_SIZES:
            raise QasrError(f"--weight-block-size must be one of {', '.join(map(str, BLOCK_SIZES))}, not {self.block_size}")
        if self.weight_algorithm not in WEIGHT_ALGORITHMS:
            raise QasrError(f"unknown --weight-algorithm {self.weight_algorithm!r}; choose from {', '.join(WEIGHT_ALGORITHMS)}")
        if self.weight_algorithm != "rtn" and self.weight_bits != 4:
            raise QasrError(f"--weight-algorithm {self.weight_algorithm} is for 4-bit weights; add --weight-bits 4")
        if self.weight_algorithm in CALIBRATED_ALGORITHMS:
            return calibration_set(self.calibration, self.calibration_limit)
        if self.calibration is not None or self.calibration_limit is not None:
            raise QasrError("--int8-mode weight-only needs no calibration data (only --weight-algorithm gptq or awq "
                            "does); "
                            "drop --calibration/--calibration-limit")
        if self.weights != "per-tensor":
            raise QasrError("--int8-weights applies to --int8-mode static; weight-only INT8 quantizes blocks of weights")
        if self.weight_bits not in (4, 8):
            raise QasrError(f"--weight-bits must be 8 or 4, not {self.weight_bits}")
        return None

    def label(self) -> str:
        """What the export is called (manifest export.precision, default directory names, tables): int8 for
        static and 8-bit weight-only INT8, int4 for 4-bit weights."""
        return "int4" if self.mode == "weight-only" and self.weight_bits == 4 else "int8"

    def excluded(self) -> tuple[str, ...]:
        return self.exclude if self.exclude is not None else DEFAULT_EXCLUDE[self.mode]


def derive_int8_export(fp32_dir: Path, out_dir: Path, settings: Int8Settings, data=None,
                       progress: Callable[[str], None] = lambda _: None) -> Path:
    """A complete INT8 export directory from a complete fp32 one: the same tokenizer, and a new manifest value
    (the float one with this precision and quantization record; qasr.exportformat writes it)."""
    import shutil
    from dataclasses import replace

    from qasr.exportformat import read_manifest, write_manifest

    base = read_manifest(fp32_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    record = quantize_export(fp32_dir, out_dir, settings, data, progress, base=base.precision)
    shutil.copy(fp32_dir / names.TOKENIZER, out_dir / names.TOKENIZER)
    write_manifest(out_dir, replace(base, export=replace(base.export, precision=settings.label(), quantization=record)))
    return out_dir


def quantize_export(fp32_dir: Path, out_dir: Path, settings: Int8Settings, data=None,
                    progress: Callable[[str], None] = lambda _: None, base: str = "fp32") -> Quantization:
    """Quantize the graphs of `fp32_dir` (written in `base` precision) into `out_dir`; the manifest's record."""
    with tempfile.TemporaryDirectory(prefix=".qasr-quantize-", dir=out_dir.parent) as scratch:
        record = _quantize(fp32_dir, out_dir, settings, data, progress, Path(scratch), base)
    return parse(Quantization, record, "export.quantization")


def _quantize(fp32_dir: Path, out_dir: Path, settings: Int8Settings, data, progress, scratch: Path, base: str) -> dict:
    logging.getLogger("onnxruntime.quantization").setLevel(logging.WARNING)
    logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.WARNING)
    excluded = settings.excluded()
    record: dict = {"mode": settings.mode, "excluded_groups": list(excluded)}
    ranges, feeds = {}, {}
    if settings.mode == "static":
        from qasr.calibration.stats import collect

        if settings.smooth_alpha is not None:
            from .smooth import smooth_export

            record["smoothquant"] = smooth_export(fp32_dir, scratch / "smoothed", data, settings.smooth_alpha,
                                                  progress)
            fp32_dir = scratch / "smoothed"
        ranges = collect(fp32_dir, data, settings.method, progress=progress)
        record.update({"activations": "int8 per-tensor symmetric", "weights": f"int8 symmetric: {settings.weights.replace('-', ' ')} (MatMul, Gemm), per output channel (Conv)",
                       "calibration": {"method": settings.method, "source": data.source,
                                       "utterances": len(data.files), "audio_sha256": data.checksum()}})
    else:
        record.update({"weights": WEIGHT_RECORDS[settings.weight_algorithm].format(bits=settings.weight_bits,
                                                                                   block=settings.block_size),
                       "activations": f"{'float16' if base == 'fp16' else 'float32'} (as the {base} graph)",
                       "target": settings.target, "accuracy_level": settings.accuracy_level()})
        if settings.weight_algorithm in CALIBRATED_ALGORITHMS:
            from qasr.calibration.record import recorded_feeds

            feeds = recorded_feeds(fp32_dir, data, progress=progress)
            record["calibration"] = {"source": data.source, "utterances": len(data.files),
                                     "audio_sha256": data.checksum()}
    from qasr.exportformat import read_manifest

    graphs = list(read_manifest(fp32_dir).graphs)   # an aligner export's graphs: encoder, projector, aligner
    for i, graph in enumerate(graphs, 1):
        src, dst = fp32_dir / f"{graph}.onnx", out_dir / f"{graph}.onnx"
        groups = node_groups(graph, onnx.load(str(src), load_external_data=False))
        skip = [n for g in excluded for n in groups.get(g, [])]
        progress(f"[{i}/{len(graphs)}] quantizing {graph} ({settings.mode}; {len(skip)} nodes kept in float)")
        if settings.mode == "static":
            quantize_static_graph(src, dst, ranges[graph], skip, matmul_per_channel=settings.weights == "per-channel")
        elif settings.weight_algorithm == "awq":
            from .awq import awq_graph

            scaled = scratch / f"{graph}.awq.onnx"
            record.setdefault("awq", {})[graph] = awq_graph(src, scaled, feeds[graph], settings.block_size, progress)
            progress(f"awq: {graph}: {sum(r['alpha'] > 0 for r in record['awq'][graph])} of "
                     f"{len(record['awq'][graph])} groups scaled")
            quantize_weight_only_graph(scaled, dst, settings.weight_bits, settings.block_size, skip, algorithm="rtn")
        elif settings.target == "cpu" and graph in (names.ENCODER, names.PROJECTOR) and settings.weight_algorithm == "rtn":
            from .dynamic import DYNAMIC_RECORD, quantize_dynamic_graph

            quantize_dynamic_graph(src, dst, skip)
            record.setdefault("dynamic", {})[graph] = DYNAMIC_RECORD
        else:
            quantize_weight_only_graph(src, dst, settings.weight_bits, settings.block_size, skip,
                                       accuracy_level=settings.accuracy_level(), algorithm=settings.weight_algorithm,
                                       feeds=feeds.get(graph))
        if settings.mode == "weight-only" and graph == names.DECODER and settings.target == "cpu" and \
                "decoder.lm_head" not in excluded:
            head = quantize_fused_head(dst, settings)
            if head is not None:
                progress(f"lm_head and embedding: one {settings.weight_bits}-bit table ({'tied' if head['tied'] else 'untied'})")
                record["lm_head"] = (f"int{settings.weight_bits} blocks of {settings.block_size}, symmetric, round to nearest; "
                                     f"MatMulNBits, the embedding read from the same table (GatherBlockQuantized)"
                                     if head["tied"] else f"int{settings.weight_bits} blocks of {settings.block_size}, "
                                     "symmetric; lm_head MatMulNBits, embedding GatherBlockQuantized")
    return record


def quantize_fused_head(path: Path, settings: Int8Settings) -> dict | None:
    """The CPU weight-only form of a fused decoder (path, written by the quantizer): its embedding and lm_head
    read one block-quantized table (tied_head.py). A standard (traced) decoder is left as it is: None."""
    from .tied_head import LM_HEAD_GEMM, quantize_tied_head

    model = onnx.load(str(path))
    if not any(n.name == LM_HEAD_GEMM for n in model.graph.node):
        return None
    float_type = next(i.type.tensor_type.elem_type for i in model.graph.input if i.name == names.DECODER_AUDIO_EMBEDS)
    result = quantize_tied_head(model, settings.weight_bits, settings.block_size, CPU_ACCURACY_LEVEL, float_type)
    data = path.with_name(path.name + ".data")
    if data.exists():
        data.unlink()
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location=data.name,
                    size_threshold=1024)
    return result
