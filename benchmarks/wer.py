"""WER drift of exports against the PyTorch reference on any speech test set.

    python -m qasr.benchmarks.wer --manifest test.jsonl --model CHECKPOINT --engine EXPORT [--engine EXPORT2 ...]
           [--language English] [--limit N] [--json-out results.json] [--plot wer.svg]

The manifest is JSONL with at least `audio` (a path, relative to the manifest's folder) and `text`.
Lines whose audio is missing or unreadable are reported and skipped for every system, never
counted as correct. Text is normalised the same way on both sides (NORMALISATION below), and
WER/CER are computed with jiwer over the whole set.
"""

from __future__ import annotations

import json
import platform
import re
import time
import unicodedata
from dataclasses import asdict, dataclass, field
from pathlib import Path

import click

from qasr.runtime.cli_support import Progress, handle_errors
from qasr.runtime.errors import QasrError
from qasr.runtime.speech_manifest import Utterance, read_manifest

NORMALISATION = ("lowercase; dashes become spaces; other Unicode punctuation removed; whitespace collapsed "
                 "(both hypothesis and reference); WER and CER by jiwer over the whole set")


def normalise(text: str) -> str:
    out = []
    for ch in text.lower():
        category = unicodedata.category(ch)
        if category == "Pd":
            out.append(" ")
        elif not category.startswith("P"):
            out.append(ch)
    return re.sub(r"\s+", " ", "".join(out)).strip()


@dataclass
class SystemResult:
    name: str
    backend: str
    precision: str
    providers: list[str]
    hypotheses: dict[str, str] = field(default_factory=dict)   # audio path -> text
    errors: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0                                        # processing time
    audio_seconds: float = 0.0


def run_reference(model: str, utterances, options, progress) -> SystemResult:
    import torch

    from qasr.export.reference_transcriber import ReferenceTranscriber

    progress(f"reference: loading {model}")
    reference = ReferenceTranscriber(model)
    result = SystemResult("reference", f"pytorch {torch.__version__}", "fp32", ["torch-cpu"])
    start = time.perf_counter()
    for i, utt in enumerate(utterances, 1):
        t = reference.transcribe(utt.audio, options)
        _record(result, utt, t)
        if i % 20 == 0 or i == len(utterances):
            progress(f"reference: {i}/{len(utterances)}")
    result.seconds = time.perf_counter() - start
    return result


def run_engine(directory: str, utterances, options, progress) -> SystemResult:
    from qasr.runtime.engine import Engine
    from qasr.runtime.transcribe import Transcriber

    progress(f"{directory}: loading")
    engine = Engine(directory)
    result = SystemResult(directory, engine.manifest.data["export"]["backend"], engine.manifest.precision,
                          engine.providers)
    transcriber = Transcriber(engine)
    start = time.perf_counter()
    step = max(1, options.batch_size * 4)
    for first in range(0, len(utterances), step):
        chunk = utterances[first:first + step]
        for utt, t in zip(chunk, transcriber.transcribe([u.audio for u in chunk], options)):
            _record(result, utt, t)
        progress(f"{directory}: {min(first + step, len(utterances))}/{len(utterances)}")
    result.seconds = time.perf_counter() - start
    return result


def _record(result: SystemResult, utt: Utterance, transcript) -> None:
    key = str(utt.audio)
    if transcript.error:
        result.errors[key] = transcript.error
    else:
        result.hypotheses[key] = transcript.text
        result.audio_seconds += transcript.duration


def score(results: list[SystemResult], utterances: list[Utterance]) -> tuple[list[dict], list[dict]]:
    """(per-system summary rows, per-utterance rows) over the utterances every system transcribed."""
    import jiwer

    keys = [str(u.audio) for u in utterances if all(str(u.audio) in r.hypotheses for r in results)]
    refs = {str(u.audio): normalise(u.text) for u in utterances}
    base = results[0]
    summary = []
    for r in results:
        truth = [refs[k] or "<empty>" for k in keys]
        hyp = [normalise(r.hypotheses[k]) for k in keys]
        wer = 100 * jiwer.wer(truth, hyp) if keys else float("nan")
        cer = 100 * jiwer.cer(truth, hyp) if keys else float("nan")
        identical = sum(r.hypotheses[k] == base.hypotheses[k] for k in keys)
        summary.append({"system": r.name, "backend": r.backend, "precision": r.precision, "providers": r.providers,
                        "utterances": len(keys), "errors": len(r.errors), "wer": wer, "cer": cer,
                        "identical_to_first": 100.0 * identical / max(len(keys), 1),
                        "rtf": r.seconds / r.audio_seconds if r.audio_seconds else float("nan")})
    for row in summary:
        row["wer_change_pp"] = row["wer"] - summary[0]["wer"]
    per_utt = []
    for u in utterances:
        k = str(u.audio)
        per_utt.append({"audio": k, "text": u.text, **u.fields,
                        **{r.name: r.hypotheses.get(k, None) for r in results},
                        "errors": {r.name: r.errors[k] for r in results if k in r.errors}})
    return summary, per_utt


def format_table(summary: list[dict]) -> str:
    lines = [f"{'system':<40} {'backend':<18} {'prec':<5} {'utts':>5} {'WER %':>7} {'CER %':>7} {'dWER pp':>8} "
             f"{'same %':>7} {'RTF':>7}"]
    for r in summary:
        lines.append(f"{r['system'][-40:]:<40} {r['backend'][:18]:<18} {r['precision']:<5} {r['utterances']:>5} "
                     f"{r['wer']:>7.2f} {r['cer']:>7.2f} {r['wer_change_pp']:>+8.2f} {r['identical_to_first']:>7.1f} "
                     f"{r['rtf']:>7.3f}")
    lines.append(f"normalisation: {NORMALISATION}; 'same %': transcripts identical to the first system's; "
                 f"dWER: against the first system")
    return "\n".join(lines)


def svg_bars(summary: list[dict]) -> str:
    """A small dependency-free bar chart of WER per system."""
    width, bar, gap, left = 640, 28, 14, 260
    height = 40 + len(summary) * (bar + gap)
    top = max([r["wer"] for r in summary if r["wer"] == r["wer"]] + [1.0])
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
             f'font-size="12"><text x="10" y="20" font-size="14">WER % by system</text>']
    for i, r in enumerate(summary):
        y = 34 + i * (bar + gap)
        w = 0 if r["wer"] != r["wer"] else (width - left - 70) * r["wer"] / top
        parts.append(f'<text x="10" y="{y + bar * 0.65}">{r["system"][-34:]} ({r["precision"]})</text>')
        parts.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar}" fill="#4a78b5"/>')
        parts.append(f'<text x="{left + w + 6:.1f}" y="{y + bar * 0.65}">{r["wer"]:.2f}</text>')
    return "\n".join(parts + ["</svg>"]) + "\n"


@click.command()
@click.option("--manifest", required=True, type=click.Path(path_type=Path))
@click.option("--model", default=None, help="Checkpoint for the PyTorch reference (the first system).")
@click.option("--engine", "engines", multiple=True, help="Export directory; repeat for several.")
@click.option("--language", default=None)
@click.option("--limit", type=click.IntRange(1), default=None)
@click.option("--batch-size", type=click.IntRange(1), default=8, show_default=True)
@click.option("--repetition-guard/--no-repetition-guard", default=True, show_default=True)
@click.option("--json-out", type=click.Path(path_type=Path), default=None)
@click.option("--plot", type=click.Path(path_type=Path), default=None, help="Write an SVG bar chart of WER.")
@handle_errors
def main(manifest, model, engines, language, limit, batch_size, repetition_guard, json_out, plot):
    """Transcribe MANIFEST with the reference and each engine; print WER, CER, drift and speed."""
    from qasr.runtime.stopping import DecodeOptions
    from qasr.runtime.transcribe import TranscribeOptions

    if not model and not engines:
        raise QasrError("give --model (the reference) and/or --engine (exports) to compare")
    progress = Progress()
    utterances, problems = read_manifest(manifest, limit)
    for problem in problems:
        click.echo(f"skipped: {problem}", err=True)
    decode = DecodeOptions(repetition_max_period=DecodeOptions.repetition_max_period if repetition_guard else 0)
    options = TranscribeOptions(language=language, batch_size=batch_size, decode=decode)
    results = [run_reference(model, utterances, options, progress)] if model else []
    results += [run_engine(e, utterances, options, progress) for e in engines]
    summary, per_utt = score(results, utterances)
    for r in results:
        for key, error in r.errors.items():
            click.echo(f"skipped for {r.name}: {error}", err=True)
    click.echo(format_table(summary))
    if json_out:
        import transformers

        json_out.write_text(json.dumps({
            "manifest": str(manifest), "normalisation": NORMALISATION, "date": time.strftime("%Y-%m-%d"),
            "reference_class": "transformers.Qwen3ASRForConditionalGeneration" if model else None,
            "versions": {"transformers": transformers.__version__, "python": platform.python_version()},
            "decoding": asdict(decode), "skipped_lines": problems, "systems": summary, "utterances": per_utt,
        }, indent=2, ensure_ascii=False))
    if plot:
        plot.write_text(svg_bars(summary))


if __name__ == "__main__":
    main()
