"""Which layers can INT8 take? Quantize one group at a time (everything else float) and measure drift.

    python -m qasr.benchmarks.sensitivity --engine FP32_EXPORT [--mode static|weight-only]
           [--manifest HELD_OUT.jsonl] [--limit 60] [--method minmax] [--markdown-out docs/x.md]

Every row is a real INT8 export derived from the fp32 export (qasr.quantize) and run on the held-out
speech; drift is measured against the fp32 export itself (identical transcripts, WER change), plus
the two whole-model rows: every group quantized, and the defaults (qasr.quantize.defaults).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import click
import onnx

from qasr.runtime import names
from qasr.runtime.cli_support import Progress, handle_errors



def all_groups(fp32_dir: Path) -> list[str]:
    from qasr.quantize.groups import node_groups

    groups = []
    for graph in names.GRAPHS:
        groups += sorted(node_groups(graph, onnx.load(str(fp32_dir / f"{graph}.onnx"), load_external_data=False)))
    return groups


def sweep(fp32_dir: Path, manifest: Path, limit: int, mode: str, method: str, progress) -> list[dict]:
    from qasr.reference.wer import run_engine, score
    from qasr.calibration.data import calibration_set
    from qasr.quantize.api import Int8Settings, derive_int8_export
    from qasr.quantize.defaults import DEFAULT_EXCLUDE
    from qasr.runtime.speech_manifest import read_manifest
    from qasr.runtime.transcribe import TranscribeOptions

    utterances, _ = read_manifest(manifest, limit)
    options = TranscribeOptions(language="English")
    quiet = lambda _: None  # noqa: E731
    base = run_engine(str(fp32_dir), utterances, options, quiet)
    data = calibration_set() if mode == "static" else None
    groups = all_groups(fp32_dir)
    variants = [(g, tuple(x for x in groups if x != g)) for g in groups]
    variants += [("(all groups)", ()), ("(defaults)", None)]
    rows = []
    with tempfile.TemporaryDirectory(prefix="qasr-sweep-") as tmp:
        for i, (label, exclude) in enumerate(variants, 1):
            out = Path(tmp) / f"v{i}"
            derive_int8_export(fp32_dir, out, Int8Settings(mode=mode, method=method, exclude=exclude), data, quiet)
            result = run_engine(str(out), utterances, options, quiet)
            summary, _ = score([base, result], utterances)
            row = {"group": label, "wer": summary[1]["wer"], "wer_change_pp": summary[1]["wer_change_pp"],
                   "identical": summary[1]["identical_to_first"], "fp32_wer": summary[0]["wer"],
                   "excluded": list(DEFAULT_EXCLUDE[mode]) if exclude is None else None}
            rows.append(row)
            progress(f"[{i}/{len(variants)}] {label}: WER {row['wer']:.2f} ({row['wer_change_pp']:+.2f} pp), "
                     f"{row['identical']:.0f}% identical to fp32")
    return rows


def format_markdown(rows: list[dict], mode: str, method: str, count: int) -> str:
    lines = [f"Sensitivity sweep, INT8 {mode}" + (f" ({method} calibration)" if mode == "static" else "") +
             f", {count} held-out utterances; fp32 WER {rows[0]['fp32_wer']:.2f} %", "",
             "| quantized group (all else float) | WER % | change vs fp32 (pp) | transcripts identical to fp32 |",
             "|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["group"].startswith("("), -r["wer_change_pp"], r["identical"])):
        lines.append(f"| {r['group']} | {r['wer']:.2f} | {r['wer_change_pp']:+.2f} | {r['identical']:.0f} % |")
    return "\n".join(lines) + "\n"


@click.command()
@click.option("--engine", "fp32_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="An fp32 export directory.")
@click.option("--manifest", type=click.Path(path_type=Path), default=None,
              help="Held-out speech (JSONL) [default: the shipped held-out split].")
@click.option("--limit", type=click.IntRange(1), default=60, show_default=True)
@click.option("--mode", type=click.Choice(["static", "weight-only"]), default="static", show_default=True)
@click.option("--method", type=click.Choice(["minmax", "percentile", "entropy"]), default="minmax", show_default=True)
@click.option("--markdown-out", type=click.Path(path_type=Path), default=None)
@handle_errors
def main(fp32_dir, manifest, limit, mode, method, markdown_out):
    """Quantize one group of layers at a time and print the drift table."""
    from qasr.assets import EVAL_MANIFEST

    rows = sweep(fp32_dir, manifest or EVAL_MANIFEST, limit, mode, method, Progress())
    text = format_markdown(rows, mode, method, limit)
    click.echo(text)
    if markdown_out:
        markdown_out.write_text(text)


if __name__ == "__main__":
    main()
