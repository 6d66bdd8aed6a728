"""Build, check and time in one command: what the GPU machine runs (few device calls), and CI runs small.

    python -m qasr.benchmarks.suite OUT [--model 0.6b] [--model 1.7b] [--model test-model] [--device cuda]
        [--export fp16 --export fp16-gqa ...] [--batch 1 --batch 8 --batch 32 --batch 128]
        [--work DIR] [--new-tokens 40] [--step-tokens 100] [--repeats 3]

Per model (`0.6b`, `1.7b`: the real checkpoints' shapes with random weights from qasr.export.tiny;
`test-model`: the shipped trained model; `tiny`: the tests' random model):
1. the checkpoint and its exports are written under --work and reused when already there (a warm
   machine keeps them between calls, so one model's work can be split over calls);
2. every export is checked against the PyTorch reference (fp32, CPU): per-graph errors and greedy
   token agreement over 20 tokens, reported (random weights give tiny logit margins: fp16 and int8
   tokens may legitimately part; the WER drift benchmark judges those on the trained model);
3. the latency benchmark: the reference (bf16 sdpa on CUDA, fp32 on CPU) and every export on the same
   inputs in one run, with what ran (providers, attention, CUDA graph use, rows, memory).
Writes OUT/<model>-latency.json, OUT/<model>.md (checks and table) and prints the same.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from qasr.runtime.cli_support import Progress, handle_errors
from qasr.runtime.session import DEVICE_PROVIDERS

# export name -> ExportSettings fields (int8 weight-only: 4-bit MatMulNBits, the GPU's weight-only form)
EXPORTS = {
    "fp32": {"precision": "fp32"},
    "fp32-gqa": {"precision": "fp32", "attention": "gqa"},
    "fp16": {"precision": "fp16", "device": "cuda"},
    "fp16-gqa": {"precision": "fp16", "attention": "gqa", "device": "cuda"},
    "int8-gqa": {"precision": "int8", "attention": "gqa"},   # static, the shipped calibration split
    "int8w4-gqa": {"precision": "int4", "attention": "gqa", "device": "cuda"},   # the GPU's weight-only form
    "int8w8-gqa": {"precision": "int8", "attention": "gqa", "int8": {"mode": "weight-only", "weight_bits": 8},
                   "device": "cuda"},
    # the CPU forms (asr-export --device cpu): fp32 activations, accuracy level 4, quantized lm_head + embedding
    "int4-cpu": {"precision": "int4", "attention": "gqa"},
    "int8w8-cpu": {"precision": "int8", "attention": "gqa", "int8": {"mode": "weight-only", "weight_bits": 8}},
}
DEFAULT_EXPORTS = {"cuda": ("fp16", "fp16-gqa", "int8w4-gqa"), "cpu": ("fp32", "fp32-gqa", "int4-cpu")}
RANDOM_SIZES = ("tiny", "0.6b", "1.7b")


def checkpoint_for(model: str, work: Path, progress) -> Path:
    if model == "test-model":
        from qasr.assets import TEST_MODEL

        return Path(TEST_MODEL)
    path = work / f"checkpoint-{model}"
    if not (path / "config.json").is_file():
        from qasr.export.tiny import write_tiny_checkpoint

        progress(f"writing a random {model} checkpoint to {path}")
        write_tiny_checkpoint(path, size=model)
    return path


def export_for(checkpoint: Path, model: str, name: str, work: Path, progress, table: dict | None = None) -> Path:
    """The export `name` of `table` (default EXPORTS) under `work`, made once and reused."""
    from qasr.export.api import ExportSettings, export
    from qasr.quantize.api import Int8Settings
    from qasr.exportformat import names

    out = work / f"{model}-{name}"
    if (out / names.MANIFEST).is_file():
        progress(f"reusing {out}")
        return out
    fields = dict((table or EXPORTS)[name])
    if "int8" in fields:
        fields["int8"] = Int8Settings(**fields["int8"])
    progress(f"exporting {model} as {name}")
    return export(ExportSettings(model=str(checkpoint), out=out, force=True, **fields), progress)


def check_exports(checkpoint: Path, exports: dict[str, Path], providers, progress) -> str:
    """Graph errors and token agreement of every export against the fp32 reference on the CPU."""
    from qasr.export.checkpoint import load_checkpoint
    from qasr.reference.model import build_reference
    from qasr.reference.parity import format_report, parity
    from qasr.runtime.engine import Engine

    reference = build_reference(load_checkpoint(str(checkpoint)))
    parts = []
    for name, path in exports.items():
        progress(f"checking {name} against the reference")
        engine = Engine(path, providers=providers)
        report = format_report(*parity(reference, engine, (1.7, 9.3), 20))
        parts.append(f"### {name} ({', '.join(engine.providers)})\n\n```\n{report}\n```")
        del engine
    return "\n\n".join(parts)


@click.command()
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--model", "models", multiple=True, type=click.Choice(["test-model", *RANDOM_SIZES]),
              default=("0.6b",), show_default=True,
              help="0.6b, 1.7b (random weights, real shapes), test-model (shipped), tiny (repeatable).")
@click.option("--device", type=click.Choice(["cuda", "cpu"]), default="cuda", show_default=True,
              help="Where the exports and the reference are timed.")
@click.option("--export", "export_names", multiple=True, type=click.Choice(list(EXPORTS)),
              help="Exports to build and time [default: fp16, fp16-gqa, int8w4-gqa on cuda; fp32, fp32-gqa on cpu].")
@click.option("--batch", "batches", type=click.IntRange(1), multiple=True, default=(1, 8, 32, 128), show_default=True)
@click.option("--work", type=click.Path(file_okay=False, path_type=Path), default=Path("/tmp/qasr-suite"),
              show_default=True, help="Checkpoints and exports (kept and reused).")
@click.option("--audio-seconds", type=float, default=10.0, show_default=True)
@click.option("--new-tokens", type=click.IntRange(2), default=40, show_default=True)
@click.option("--step-tokens", type=click.IntRange(2), default=100, show_default=True)
@click.option("--repeats", type=click.IntRange(1), default=3, show_default=True)
@click.option("--check/--no-check", "run_checks", default=True, show_default=True, help="Check exports against the reference.")
@handle_errors
def main(out, models, device, export_names, batches, work, audio_seconds, new_tokens, step_tokens, repeats, run_checks):
    """Build, check and time exports of each model against the PyTorch reference, in one run."""
    from .latency import Row, describe_run, describe_systems, format_table, run

    progress = Progress()
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    providers = DEVICE_PROVIDERS[device]
    if device == "cuda":
        import onnxruntime

        if hasattr(onnxruntime, "preload_dlls"):
            onnxruntime.preload_dlls()   # CUDA/cuDNN from torch's wheels
    for model in models:
        started = time.time()
        checkpoint = checkpoint_for(model, work, progress)
        exports = {name: export_for(checkpoint, model, name, work, progress)
                   for name in (export_names or DEFAULT_EXPORTS[device])}
        checks = check_exports(checkpoint, exports, providers, progress) if run_checks else "(not checked)"
        result = run([str(p) for p in exports.values()], str(checkpoint), audio_seconds, new_tokens, list(batches),
                     repeats, 1, 0, device, None, progress, providers, None, step_tokens)
        table = format_table([Row(**r) for r in result["rows"]])
        header = f"## {model}: {describe_run(result)}\n\n" + "\n".join(f"- {line}" for line in describe_systems(result))
        text = f"{header}\n\n{table}\n\n### checks against the reference\n\n{checks}\n"
        result["suite_seconds"] = round(time.time() - started, 1)
        (out / f"{model}-latency.json").write_text(json.dumps(result, indent=1))
        (out / f"{model}.md").write_text(text)
        click.echo(text)


if __name__ == "__main__":
    main()
