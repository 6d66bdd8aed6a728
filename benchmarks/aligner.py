"""Aligner exports against the PyTorch reference: parity, alignment accuracy against exact truth, and cost.

    python -m qasr.benchmarks.aligner --checkpoint CKPT --export fp32=DIR [--export int8=DIR ...]
        [--words testmodel/speech/words.jsonl] [--asr ASR_EXPORT] [--runs 3] [--json OUT]

Tables (printed; --json keeps the numbers):
1. parity per export: each graph's max/mean |err| against transformers' Qwen3ASRForTokenClassification (fed the
   reference's inputs), and the share of `<timestamp>` slots whose bin equals the reference's (end to end), on
   synthetic audio and, with --words, on the first PARITY_UTTERANCES of that set with their true text;
2. with --words (speech whose word boundaries are known exactly: testmodel/train/words.py): mean and median
   absolute boundary error, the share within 80 ms and 160 ms, for the reference and every export on the same
   audio and text (the official post-processing: the monotonic fix); goal: mean <= 60 ms, >= 90% within 160 ms;
3. with --words: cost, aligner seconds per audio second for each export, and with --asr the ASR export's
   transcription of the same audio beside it (median of --runs passes, load average before each).
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import time
from pathlib import Path

import click
import numpy as np

from qasr.runtime.cli_support import Progress, handle_errors

from .machine import cpu_description

PARITY_UTTERANCES = 8
SYNTHETIC = ((1.7, "the quick brown fox jumps over the lazy dog"),
             (9.3, "one two three, four five six seven eight nine ten! hello world this is a test"))
GOAL_MEAN_MS, GOAL_WITHIN_160 = 60.0, 0.90


def boundary_summary(errors: list[float]) -> dict:
    e = np.abs(np.array(errors))
    return {"boundaries": int(len(e)), "mean_ms": round(float(e.mean()) * 1000, 1),
            "median_ms": round(float(np.median(e)) * 1000, 1), "within_80ms": round(float((e <= 0.08).mean()), 4),
            "within_160ms": round(float((e <= 0.16).mean()), 4)}


def truth_errors(words_found: list[list[tuple[float, float]]], truth: list[list[dict]]) -> list[float]:
    out = []
    for found, true in zip(words_found, truth):
        for (start, end), t in zip(found, true):
            out += [start - t["start"], end - t["end"]]
    return out


def read_words(path: Path) -> tuple[list[np.ndarray], list[str], list[list[dict]]]:
    from qasr.runtime.audio import load_audio

    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return ([load_audio(str(path.parent / r["audio"]), 16000) for r in rows], [r["text"] for r in rows],
            [r["words"] for r in rows])


def reference_times(ref, aligner, tokenizer, waves, texts, batch: int = 8) -> list[list[tuple[float, float]]]:
    """The reference's bins through the runtime's post-processing (Aligner.words_at: the official one)."""
    from qasr.reference.alignment import reference_slots
    from qasr.runtime.words import split_words

    out = []
    for i in range(0, len(waves), batch):
        _, scores, slots = reference_slots(ref, aligner, tokenizer, waves[i:i + batch], texts[i:i + batch])
        for row, s in enumerate(slots):
            words = aligner.words_at(scores[row, :len(s)].argmax(-1).tolist(), split_words(texts[i + row]),
                                     len(waves[i + row]) / aligner.sample_rate)
            out.append([(w.start, w.end) for w in words])
    return out


def aligner_times(aligner, waves, texts, batch: int = 8) -> list[list[tuple[float, float]]]:
    out = []
    for i in range(0, len(waves), batch):
        found = aligner.align_batch([(w, t, None, 0.0) for w, t in zip(waves[i:i + batch], texts[i:i + batch])])
        out += [[(w.start, w.end) for w in words] for words in found]
    return out


def timed(run, runs: int) -> tuple[float, float]:
    """(median seconds of `runs` calls, load average before the first)."""
    load = os.getloadavg()[0]
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), load


@click.command()
@click.option("--checkpoint", required=True, help="The aligner checkpoint the exports were made from.")
@click.option("--export", "exports", multiple=True, required=True, metavar="LABEL=DIR",
              help="An aligner export and its label (repeatable).")
@click.option("--words", "words_manifest", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Speech with exact word boundaries (JSONL: audio, text, words).")
@click.option("--asr", "asr_dir", default=None, help="An ASR export whose transcription cost goes beside the aligner's.")
@click.option("--accuracy/--no-accuracy", default=True, show_default=True,
              help="The accuracy table (off for random weights, whose times mean nothing).")
@click.option("--runs", type=click.IntRange(1), default=3, show_default=True)
@click.option("--threads", type=click.IntRange(0), default=0)
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), default=None)
@handle_errors
def main(checkpoint, exports, words_manifest, asr_dir, accuracy, runs, threads, json_out):
    from transformers import AutoTokenizer

    from qasr.export.checkpoint import load_checkpoint
    from qasr.reference.alignment import aligner_parity
    from qasr.reference.model import build_reference
    from qasr.runtime.aligner import Aligner
    from qasr.runtime.synthetic_audio import synthetic_speech

    progress = Progress()
    labelled = []
    for item in exports:
        label, sep, directory = item.partition("=")
        if not sep or not directory:
            raise click.BadParameter(f"{item!r} is not LABEL=DIR", param_hint="--export")
        labelled.append((label, directory))
    ckpt = load_checkpoint(checkpoint)
    reference = build_reference(ckpt)
    tokenizer = AutoTokenizer.from_pretrained(str(ckpt.path))
    waves = [synthetic_speech(s, seed=i) for i, (s, _) in enumerate(SYNTHETIC)]
    texts = [t for _, t in SYNTHETIC]
    truth = None
    if words_manifest:
        word_waves, word_texts, truth = read_words(words_manifest)
    report = {"date": time.strftime("%Y-%m-%d"), "cpu": cpu_description(), "checkpoint": checkpoint,
              "exports": dict(labelled), "parity": {}, "accuracy": {}, "cost": {}}
    click.echo(f"aligner exports of {checkpoint} against transformers 5.17.0's Qwen3ASRForTokenClassification "
               f"({report['date']}; {report['cpu']})")
    click.echo(f"\n{'export':<10} {'encoder max':>11} {'projector max':>13} {'aligner max':>11} {'aligner mean':>12} "
               f"{'slots':>6} {'agree':>7} {'within 1 bin':>12}")
    # one export loaded at a time (four 0.6B-shape exports and the reference together exceed 24 GB)
    aligners = {label: (lambda d=directory: Aligner(d, threads=threads)) for label, directory in labelled}
    for label, directory in labelled:
        aligner = aligners[label]()
        progress(f"parity: {label}")
        p_waves, p_texts = list(waves), list(texts)
        if truth is not None:
            p_waves += word_waves[:PARITY_UTTERANCES]
            p_texts += word_texts[:PARITY_UTTERANCES]
        errors, checks = aligner_parity(reference, aligner, tokenizer, p_waves, p_texts)
        slots = sum(len(c.reference) for c in checks)
        agree = sum(c.agree for c in checks)
        near = sum(c.near()[0] for c in checks)
        e = {x.graph.split(" ")[0]: x for x in errors}
        report["parity"][label] = {"errors": {x.graph: {"max_abs": x.max_abs, "mean_abs": x.mean_abs,
                                                        "max_ref": x.scale} for x in errors},
                                   "slots": slots, "agree": agree, "within_one_bin": near}
        click.echo(f"{label:<10} {e['encoder'].max_abs:>11.2e} {e['projector'].max_abs:>13.2e} "
                   f"{e['aligner'].max_abs:>11.2e} {e['aligner'].mean_abs:>12.2e} {slots:>6} "
                   f"{agree / slots:>7.1%} {near / slots:>12.1%}")
        del aligner
        gc.collect()
    if truth is None:
        _write(json_out, report)
        return
    if accuracy:
        _accuracy(report, reference, tokenizer, aligners, labelled, word_waves, word_texts, truth, words_manifest,
                  progress)
    del reference
    gc.collect()
    _cost(report, aligners, word_waves, word_texts, asr_dir, runs, threads)
    _write(json_out, report)


def _accuracy(report, reference, tokenizer, aligners, labelled, word_waves, word_texts, truth, words_manifest,
              progress) -> None:
    click.echo(f"\nalignment accuracy on {len(word_waves)} held-out utterances with exact word boundaries "
               f"({words_manifest}); goal: mean <= {GOAL_MEAN_MS:g} ms, >= {GOAL_WITHIN_160:.0%} within 160 ms")
    click.echo(f"{'system':<22} {'boundaries':>10} {'mean ms':>8} {'median ms':>9} {'<= 80 ms':>9} {'<= 160 ms':>9} "
               f"{'goal':>5}")
    progress("accuracy: the PyTorch reference")
    systems = [("reference (PyTorch)", reference_times(reference, aligners[labelled[0][0]](), tokenizer, word_waves,
                                                       word_texts))]
    for label, load in aligners.items():
        progress(f"accuracy: {label}")
        systems.append((f"onnx {label}", aligner_times(load(), word_waves, word_texts)))
        gc.collect()
    for name, found in systems:
        s = boundary_summary(truth_errors(found, truth))
        s["goal_met"] = s["mean_ms"] <= GOAL_MEAN_MS and s["within_160ms"] >= GOAL_WITHIN_160
        report["accuracy"][name] = s
        click.echo(f"{name:<22} {s['boundaries']:>10} {s['mean_ms']:>8.1f} {s['median_ms']:>9.1f} "
                   f"{s['within_80ms']:>9.1%} {s['within_160ms']:>9.1%} {'met' if s['goal_met'] else 'MISS':>5}")


def _cost(report, aligners, word_waves, word_texts, asr_dir, runs, threads) -> None:
    audio_seconds = sum(len(w) for w in word_waves) / 16000
    click.echo(f"\ncost on the same {audio_seconds:.1f} s of audio (median of {runs} passes; seconds of compute per "
               f"second of audio)")
    click.echo(f"{'system':<22} {'s / audio s':>11} {'vs ASR':>7} {'load avg':>8}")
    rows = []
    if asr_dir:
        from qasr.runtime.model import Model

        model = Model(asr_dir, device="cpu", threads=threads)
        model.transcribe_batch(word_waves[:2], "English")   # warm
        seconds, load = timed(lambda: model.transcribe_batch(word_waves, "English"), runs)
        rows.append(("asr " + Path(asr_dir).name, seconds, load))
        del model
        gc.collect()
    for label, make in aligners.items():
        aligner = make()
        aligner_times(aligner, word_waves[:2], word_texts[:2])   # warm
        seconds, load = timed(lambda: aligner_times(aligner, word_waves, word_texts), runs)
        rows.append((f"aligner {label}", seconds, load))
        del aligner
        gc.collect()
    asr_rate = rows[0][1] / audio_seconds if asr_dir else None
    for name, seconds, load in rows:
        rate = seconds / audio_seconds
        ratio = f"{rate / asr_rate:.2f}x" if asr_rate else "-"
        report["cost"][name] = {"seconds": round(seconds, 4), "per_audio_second": round(rate, 5),
                                "vs_asr": round(rate / asr_rate, 3) if asr_rate else None, "load_average": load}
        click.echo(f"{name:<22} {rate:>11.4f} {ratio:>7} {load:>8.2f}")


def _write(path: Path | None, report: dict) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
