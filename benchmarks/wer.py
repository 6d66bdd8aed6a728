"""WER drift of exports against the PyTorch reference on any speech test set.

    python -m qasr.benchmarks.wer --manifest test.jsonl --model CHECKPOINT --engine EXPORT [--engine EXPORT2 ...]
           [--language English] [--limit N] [--json-out results.json] [--plot wer.svg] [--by FIELD ...]

The manifest is JSONL with at least `audio` (a path, relative to the manifest's folder) and `text`.
Lines whose audio is missing or unreadable are reported and skipped for every system, never
counted as correct. Text is normalised the same way on both sides (NORMALISATION below), and
WER/CER are computed with jiwer over the whole set.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict
from pathlib import Path

import click

from qasr.reference.wer import (NORMALISATION, breakdown, check_breakdown_fields, format_breakdown, format_table,
                                run_engine, run_reference, score)
from qasr.benchmarks.machine import cpu_description
from qasr.runtime.cli_support import Progress, handle_errors, require, writable_file
from qasr.errors import QasrError
from qasr.runtime.speech_manifest import read_manifest


def svg_bars(summary: list[dict]) -> str:
    """A small dependency-free bar chart of WER per system; a whisker shows the 95% interval of each
    system's WER change against the first, drawn around the first system's WER."""
    width, bar, gap, left = 640, 28, 14, 260
    height = 40 + len(summary) * (bar + gap)
    base = summary[0]["wer"]
    # interval ends in WER terms, clipped at 0 (max() also turns an empty set's NaN ends into 0: no whisker)
    whiskers = [[max(0.0, base + x) for x in r["wer_change_interval_pp"]] for r in summary]
    top = max([r["wer"] for r in summary if r["wer"] == r["wer"]] + [w[1] for w in whiskers] + [1.0])
    scale = (width - left - 70) / top
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
             f'font-size="12"><text x="10" y="20" font-size="14">WER % by system (whisker: 95% interval of the '
             f'change)</text>']
    for i, (r, (lo, hi)) in enumerate(zip(summary, whiskers)):
        y = 34 + i * (bar + gap)
        w = 0 if r["wer"] != r["wer"] else scale * r["wer"]
        parts.append(f'<text x="10" y="{y + bar * 0.65}">{r["system"][-34:]} ({r["precision"]})</text>')
        parts.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar}" fill="#4a78b5"/>')
        if hi > lo:
            mid = y + bar / 2
            parts.append(f'<path d="M{left + scale * lo:.1f} {mid}H{left + scale * hi:.1f}M{left + scale * lo:.1f} '
                         f'{mid - 6}v12M{left + scale * hi:.1f} {mid - 6}v12" stroke="#222" stroke-width="1.5"/>')
        parts.append(f'<text x="{left + max(w, scale * hi) + 6:.1f}" y="{y + bar * 0.65}">'
                     f'{r["wer"]:.2f}</text>')
    return "\n".join(parts + ["</svg>"]) + "\n"


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--manifest", required=True, type=click.Path(path_type=Path))
@click.option("--model", default=None, help="Checkpoint for the PyTorch reference (the first system).")
@click.option("--engine", "engines", multiple=True, help="Export directory; repeat for several.")
@click.option("--language", default=None)
@click.option("--limit", type=click.IntRange(1), default=None)
@click.option("--batch-size", type=click.IntRange(1), default=8, show_default=True)
@click.option("--repetition-guard/--no-repetition-guard", default=True, show_default=True)
@click.option("--json-out", type=click.Path(path_type=Path), default=None)
@click.option("--plot", type=click.Path(path_type=Path), default=None, help="Write an SVG bar chart of WER.")
@click.option("--force", is_flag=True, help="Replace --json-out / --plot files that already exist.")
@click.option("--by", "by_fields", multiple=True, metavar="FIELD",
              help="Also print WER per group of this manifest field (e.g. variant, voice, noise), or `words` "
                   "(sentence length); repeatable.")
@handle_errors
def main(manifest, model, engines, language, limit, batch_size, repetition_guard, json_out, plot, force, by_fields):
    """Transcribe MANIFEST with the reference and each engine; print WER, CER, drift and speed."""
    from qasr.runtime.stopping import DecodeOptions
    from qasr.runtime.transcribe import TranscribeOptions

    if not model and not engines:
        raise QasrError("give --model (the reference) and/or --engine (exports) to compare")
    require(("jiwer",), "bench", "asr-wer")
    if model:
        require(("torch", "transformers", "safetensors"), "export", "asr-wer --model (the PyTorch reference)")
    for path, flag in ((json_out, "--json-out"), (plot, "--plot")):
        if path is not None:
            writable_file(path, force, flag)
    progress = Progress()
    utterances, problems = read_manifest(manifest, limit)
    for problem in problems:
        click.echo(f"skipped: {problem}", err=True)
    check_breakdown_fields(by_fields, utterances, manifest)
    decode = DecodeOptions(repetition_max_period=DecodeOptions.repetition_max_period if repetition_guard else 0)
    options = TranscribeOptions(language=language, batch_size=batch_size, decode=decode)
    results = [run_reference(model, utterances, options, progress)] if model else []
    results += [run_engine(e, utterances, options, progress) for e in engines]
    summary, per_utt = score(results, utterances)
    for r in results:
        for key, error in r.errors.items():
            click.echo(f"skipped for {r.name}: {error}", err=True)
    click.echo(format_table(summary))
    breakdowns = {}
    for field in by_fields:
        breakdowns[field] = breakdown(results, utterances, field)
        click.echo(format_breakdown(breakdowns[field], field, [r.name for r in results]))
    if json_out:
        import transformers

        json_out.write_text(json.dumps({
            "manifest": str(manifest), "normalisation": NORMALISATION, "date": time.strftime("%Y-%m-%d"),
            "reference_class": "transformers.Qwen3ASRForConditionalGeneration" if model else None,
            "versions": {"transformers": transformers.__version__, "python": platform.python_version()},
            "cpu": cpu_description(),
            "decoding": asdict(decode), "skipped_lines": problems, "systems": summary, "breakdowns": breakdowns,
            "utterances": per_utt,
        }, indent=2, ensure_ascii=False))
    if plot:
        plot.write_text(svg_bars(summary))


if __name__ == "__main__":
    main()
