"""Which segment limit suits a model: WER one utterance at a time and joined into one recording.

    python -m qasr.benchmarks.segment_limit --engine DIR [--manifest M] [--count 25] [--pause 0.6]
        [--limit 4 --limit 5 ...]

The first `count` utterances of the manifest (default: the shipped held-out split) are transcribed one
by one, and joined with `pause` seconds of silence into one recording that is cut into segments of at
most each `--limit` seconds (the runtime's own segmentation, as asr-transcribe does). A model that has
only learnt short utterances writes the first of two utterances that share a segment and drops the
other: the joined WER shows how long its segments may be (the `qasr_max_audio_seconds` of its config).
"""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from qasr.runtime.cli_support import Progress, handle_errors

RATE = 16000
LIMITS = (4.0, 5.0, 6.0, 8.0, 16.0, 30.0)


def measure(engine_dir: str, manifest: Path, count: int, pause: float, limits: tuple[float, ...],
            progress=print) -> list[dict]:
    import jiwer

    from qasr.reference.wer import normalise
    from qasr.runtime.audio import load_audio
    from qasr.runtime.engine import Engine
    from qasr.runtime.speech_manifest import read_manifest
    from qasr.runtime.transcribe import TranscribeOptions, Transcriber

    utterances, problems = read_manifest(manifest, count)
    for problem in problems:
        progress(f"skipped: {problem}")
    paths = [u.audio for u in utterances]
    silence = np.zeros(int(pause * RATE), np.float32)
    joined = np.concatenate([part for path in paths for part in (load_audio(path, RATE), silence)])
    reference = normalise(" ".join(u.text for u in utterances))
    transcriber = Transcriber(Engine(engine_dir))
    out = []
    for limit in limits:
        options = TranscribeOptions(max_segment_seconds=limit)
        one = transcriber.transcribe(paths, options)
        together = transcriber.transcribe([(joined, RATE)], options)[0]
        out.append({"limit_s": limit,
                    "one_by_one_wer": jiwer.wer(reference, normalise(" ".join(t.text for t in one))),
                    "joined_wer": jiwer.wer(reference, normalise(together.text)),
                    "joined_segments": len(together.segments)})
        progress(f"limit {limit:g} s: done")
    return out


@click.command()
@click.option("--engine", "engine_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--manifest", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Default: the shipped held-out split (qasr.assets.EVAL_MANIFEST).")
@click.option("--count", type=click.IntRange(2), default=25, show_default=True)
@click.option("--pause", type=click.FloatRange(0.0), default=0.6, show_default=True, help="Seconds between utterances.")
@click.option("--limit", "limits", type=click.FloatRange(0.5), multiple=True, help=f"Seconds; default {LIMITS}.")
@handle_errors
def main(engine_dir, manifest, count, pause, limits):
    """Print WER one by one and joined, per segment limit."""
    from qasr.assets import EVAL_MANIFEST

    rows = measure(engine_dir, manifest or EVAL_MANIFEST, count, pause, tuple(limits) or LIMITS, Progress())
    click.echo(f"{count} utterances, joined with {pause:g} s pauses")
    click.echo("| limit s | one by one WER % | joined WER % | joined segments |\n|---|---|---|---|")
    for r in rows:
        click.echo(f"| {r['limit_s']:g} | {100 * r['one_by_one_wer']:.1f} | {100 * r['joined_wer']:.1f} | "
                   f"{r['joined_segments']} |")


if __name__ == "__main__":
    main()
