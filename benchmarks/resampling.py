"""The runtime's resampler (libsoxr) against the one it replaced (scipy's resample_poly): transcripts of inputs at
other rates.

    python -m qasr.benchmarks.resampling --engine out/test-model-fp32-onnx [--manifest eval.jsonl] [--rates 8000,22050,48000]

Each held-out utterance (16 kHz) is taken to each rate with libsoxr's very-high-quality filter (neutral to both),
then back to 16 kHz by each resampler, and transcribed; WER per rate and resampler, and the 44.1 kHz example's
transcript. Needs scipy (the `bench` extra).
"""

from __future__ import annotations

import os
import time
from math import gcd
from pathlib import Path

import click
import numpy as np

from qasr.runtime.cli_support import Progress, handle_errors, require

from .machine import cpu_description

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "call.flac"


def scipy_resample(x: np.ndarray, source: int, target: int) -> np.ndarray:
    from scipy.signal import resample_poly

    common = gcd(source, target)
    return resample_poly(x, target // common, source // common).astype(np.float32)


OLD = "scipy resample_poly (old)"


def resamplers(runtime):
    import soxr

    from qasr.runtime.audio import RESAMPLE_QUALITY

    other = "VHQ" if RESAMPLE_QUALITY == "HQ" else "HQ"
    return ((OLD, scipy_resample), (f"libsoxr {RESAMPLE_QUALITY} (runtime)", runtime),
            (f"libsoxr {other}", lambda x, a, b: soxr.resample(x, a, b, quality=other).astype(np.float32)))


@click.command()
@click.option("--engine", "engine_dir", required=True)
@click.option("--manifest", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Held-out speech (default: the test model's eval split).")
@click.option("--rates", default="8000,22050,48000", show_default=True)
@click.option("--limit", type=click.IntRange(1), default=None)
@handle_errors
def main(engine_dir, manifest, rates, limit):
    require(("scipy", "jiwer"), "bench", "the resampler comparison")
    import soxr

    from qasr.assets import EVAL_MANIFEST
    from qasr.reference.wer import normalise, utterance_edits
    from qasr.runtime.audio import load_audio, read_file, resample
    from qasr.runtime.model import Model
    from qasr.runtime.speech_manifest import read_manifest

    progress = Progress()
    model = Model(engine_dir, device="cpu")
    utterances, _ = read_manifest(manifest or EVAL_MANIFEST, limit)
    speech = [load_audio(str(u.audio), 16000) for u in utterances]
    truth = [normalise(u.text).split() for u in utterances]
    words = sum(len(t) for t in truth)
    click.echo(f"resamplers on {len(utterances)} held-out utterances ({words} words), {engine_dir} "
               f"({time.strftime('%Y-%m-%d')}; {cpu_description()}; load average {os.getloadavg()[0]:.2f})")
    click.echo(f"{'rate Hz':>8} {'resampler':<26} {'WER %':>6} {'changed transcripts':>20}")
    for rate in [int(r) for r in rates.split(",")]:
        at_rate = [soxr.resample(x, 16000, rate, quality="VHQ").astype(np.float32) for x in speech]
        texts = {}
        for name, back in resamplers(resample):
            progress(f"{rate} Hz: {name}")
            inputs = [back(x, rate, 16000) for x in at_rate]
            texts[name] = [normalise(t.text).split() for t in model.transcribe_batch(inputs, "English")]
        old = texts[OLD]
        for name, hyp in texts.items():
            errors = sum(utterance_edits([" ".join(t) for t in truth], [" ".join(h) for h in hyp]))
            changed = sum(a != b for a, b in zip(old, hyp)) if name != OLD else ""
            click.echo(f"{rate:>8} {name:<26} {100 * errors / words:>6.2f} {changed:>20}")
    data, rate = read_file(EXAMPLE)
    mono = data.mean(axis=1)
    for name, back in resamplers(resample):
        text = model.transcribe_batch([back(mono, rate, 16000)], "English")[0].text
        click.echo(f"{rate:>8} {name:<26} example: {text}")


if __name__ == "__main__":
    main()
