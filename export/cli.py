"""asr-export: a Qwen3-ASR checkpoint to a verified export directory."""

from __future__ import annotations

import re
from pathlib import Path

import click

from qasr.runtime.cli_support import EXIT_FAILED_CHECK, Progress, fail, handle_errors, require_at_start

require_at_start(("torch", "transformers", "onnx", "onnxscript", "safetensors"), "export", "asr-export")

# after the check: these need the export extra
from qasr.calibration.stats import METHODS  # noqa: E402
from qasr.quantize.api import BLOCK_SIZES, MODES, WEIGHT_ALGORITHMS, WEIGHT_GRANULARITIES, Int8Settings  # noqa: E402

from .api import (ATTENTION_AUTO, ATTENTIONS, BACKENDS, DEVICES, PRECISIONS, ExportSettings,  # noqa: E402
                  export_checkpoint)
from .fused_decoder_graph import DEFAULT_MAX_POSITIONS  # noqa: E402


def default_out(model: str, precision: str, attention: str = "standard", int8: Int8Settings | None = None) -> Path:
    """<model>-<kind>[-gqa]-onnx; kind: fp32, fp16, int8 (static), int8-sq (static, SmoothQuant), int8-wo /
    int4-wo[-hqq|-gptq|-awq] (weight-only), so that
    exports of one model in different forms never share a default directory."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(model.rstrip("/")).name or model)
    kind = precision
    if precision == "int4":
        kind = "int4-wo" + ("" if int8 is None or int8.weight_algorithm == "rtn" else f"-{int8.weight_algorithm}")
    elif precision == "int8" and int8 is not None and int8.mode == "weight-only":
        kind = f"{int8.label()}-wo" + ("" if int8.weight_algorithm == "rtn" else f"-{int8.weight_algorithm}")
    elif precision == "int8" and int8 is not None and int8.smooth_alpha is not None:
        kind = "int8-sq"
    return Path(f"{name}-{kind}{'-gqa' if attention == 'gqa' else ''}-onnx")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--model", required=True, help="Checkpoint directory or hub id (e.g. Qwen/Qwen3-ASR-0.6B).")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Export directory to create [default: <model>-<precision>-onnx].")
@click.option("--precision", type=click.Choice(PRECISIONS), default="fp32", show_default=True,
              help="fp32; fp16 (GPU); int8 (static Q/DQ, or --int8-mode weight-only); int4 (4-bit weight-only).")
@click.option("--device", type=click.Choice(DEVICES), default="cpu", show_default=True,
              help="What the export is made for: cpu (fp32 activations, int8 compute in 4-bit MatMuls, a 4-bit "
                   "lm_head and embedding) or cuda (fp16 activations).")
@click.option("--backend", type=click.Choice(BACKENDS), default="onnxruntime", show_default=True,
              help="What the graphs are made for (TensorRT engines are not built by this version).")
@click.option("--attention", type=click.Choice((ATTENTION_AUTO, *ATTENTIONS)), default=ATTENTION_AUTO, show_default=True,
              help="Decoder attention: gqa, ONNX Runtime's fused GroupQueryAttention with an in-place KV cache and "
                   "on-graph token choice (the fast path on CPU and GPU), or standard ONNX ops (portable to any ONNX "
                   "backend); auto: gqa where the checkpoint and ONNX Runtime allow it.")
@click.option("--max-positions", type=click.IntRange(64), default=DEFAULT_MAX_POSITIONS, show_default=True,
              help="gqa: prompt + new tokens one segment may reach (the RoPE table's length).")
@click.option("--force", is_flag=True, help="Replace --out if it exists.")
@click.option("--verify/--no-verify", default=True, show_default=True,
              help="Check the export against the PyTorch reference when done.")
@click.option("--verify-tokens", type=click.IntRange(1), default=20, show_default=True,
              help="Greedy tokens compared per verification input.")
@click.option("--int8-mode", type=click.Choice(MODES), default=None,
              help="INT8: static (Q/DQ, calibrated activations; the default) or weight-only (MatMulNBits).")
@click.option("--calibration", default=None,
              help="INT8 static: directory of audio files or JSONL manifest [default: the shipped calibration split].")
@click.option("--calibration-limit", type=click.IntRange(1), default=None,
              help="INT8 static: use only the first N readable calibration utterances.")
@click.option("--calibration-method", type=click.Choice(METHODS), default=None,
              help=f"INT8 static: how activation ranges are chosen [default: {Int8Settings.method}].")
@click.option("--int8-weights", type=click.Choice(WEIGHT_GRANULARITIES), default=None,
              help="INT8 static: MatMul weight scales per tensor (default; ONNX Runtime's CPU integer kernels) or "
                   "per output channel (finer; for TensorRT).")
@click.option("--weight-bits", type=click.Choice(["8", "4"]), default=None,
              help="INT8 weight-only: 8 (default) or 4-bit weights (--precision int4 is the same as 4).")
@click.option("--weight-block-size", type=click.Choice([str(b) for b in BLOCK_SIZES]), default=None,
              help=f"INT8 weight-only: weights sharing one scale, along the input dimension [default: "
                   f"{Int8Settings.block_size}]; smaller is closer to float and larger on disk.")
@click.option("--smoothquant", "smooth_alpha", type=click.FloatRange(0.0, 1.0), default=None, metavar="ALPHA",
              help="INT8 static: SmoothQuant before calibration, migrating this much of the activations' range "
                   "into the weights (0.5 is the paper's default).")
@click.option("--weight-algorithm", type=click.Choice(WEIGHT_ALGORITHMS), default=None,
              help="INT8 weight-only: how the int weights are chosen: rtn (round to nearest; default), hqq, gptq "
                   "or awq (4-bit; gptq and awq use the calibration audio).")
@click.option("--int8-exclude", multiple=True,
              help="INT8: keep this group in float (repeatable; e.g. decoder.lm_head, encoder.conv). "
                   "Giving any replaces the default exclusions.")
@click.option("--quiet", is_flag=True, help="No progress lines.")
@handle_errors
def main(model, out, precision, device, backend, attention, max_positions, force, verify, verify_tokens, int8_mode, calibration, calibration_limit, calibration_method,
         int8_weights, weight_bits, weight_block_size, int8_exclude, smooth_alpha, weight_algorithm, quiet):
    """Export a Qwen3-ASR checkpoint to ONNX (audio encoder, projector, decoder with KV cache), or a
    Qwen3-ForcedAligner checkpoint (audio encoder, projector, aligner graph) for word timestamps."""
    progress = Progress(quiet)
    given = {k: v for k, v in {"mode": int8_mode, "calibration": calibration, "calibration_limit": calibration_limit,
                               "method": calibration_method, "weights": int8_weights,
                               "weight_bits": int(weight_bits) if weight_bits else None,
                               "block_size": int(weight_block_size) if weight_block_size else None,
                               "exclude": tuple(int8_exclude) or None, "smooth_alpha": smooth_alpha,
                               "weight_algorithm": weight_algorithm}.items() if v is not None}
    if precision == "int4":
        if given.get("mode", "weight-only") != "weight-only" or given.get("weight_bits", 4) != 4:
            fail("--precision int4 is 4-bit weight-only; drop --int8-mode / --weight-bits")
        given.update(mode="weight-only", weight_bits=4)
    int8 = Int8Settings(**given) if given or precision == "int8" else None
    settings = ExportSettings(model=model, out=out or default_out(model, precision, attention, int8), precision=precision,
                              backend=backend, force=force, int8=int8, attention=attention,
                              max_positions=max_positions, device=device)
    exported = export_checkpoint(settings, progress)
    path = exported.path
    click.echo(f"exported {model} ({exported.label}, {backend}, for {device}) to {path}")
    if verify:
        from qasr.reference.verify import verify_export

        progress("checking the export against the PyTorch reference")
        report, ok = verify_export(path, exported.checkpoint, verify_tokens)
        click.echo(report)
        if not ok:
            fail(f"{path} does not match the PyTorch reference within tolerance (see the report above)",
                 EXIT_FAILED_CHECK)
