"""Which segment limit and pause rule suit a model: WER one utterance at a time and joined into one recording.

    python -m qasr.benchmarks.segment_limit --engine DIR [--manifest M] [--skip 0] [--count 25]
        [--pause 0.6 [--pause-max 1.2 --seed 0]] [--limit 4 --limit 5 ...] [--pauses merge --pauses split]

`count` utterances of the manifest (default: the shipped held-out split), after the first `skip`, are
transcribed one by one, and joined with `pause` seconds of silence (or pauses drawn from `pause` to
`pause-max`) into one recording that is cut into segments of at most each `--limit` seconds by the
runtime's own voice-activity segmentation, as asr-transcribe does, with each `--pauses` rule (merge:
speech regions join up to the limit; split: a segment per region). A model that has only learnt short
utterances writes the first of two utterances that share a segment and drops the other: the joined WER
shows how long its segments may be (`qasr_max_audio_seconds` of its config) and whether it needs a
segment per utterance (`qasr_segment_pauses: "split"`).
"""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from qasr.runtime.cli_support import Progress, handle_errors
from qasr.exportformat.schema import PAUSE_MODES

RATE = 16000
LIMITS = (4.0, 5.0, 6.0, 8.0, 16.0, 30.0)


def joined_recording(paths: list[Path], pause: float, pause_max: float | None = None, seed: int = 0
                     ) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """The utterances one after another, each followed by `pause` seconds of digital silence (or a pause
    drawn uniformly from [pause, pause_max]); and each utterance's (start, end) in samples."""
    from qasr.runtime.audio import load_audio

    rng = np.random.default_rng(seed)
    parts, bounds, at = [], [], 0
    for path in paths:
        seconds = pause if pause_max is None else rng.uniform(pause, pause_max)
        audio, silence = load_audio(path, RATE), np.zeros(int(seconds * RATE), np.float32)
        bounds.append((at, at + len(audio)))
        parts += [audio, silence]
        at += len(audio) + len(silence)
    return np.concatenate(parts), bounds


def measure(engine_dir: str, manifest: Path, count: int, pause: float, limits: tuple[float, ...],
            progress=print, skip: int = 0, pause_max: float | None = None, seed: int = 0,
            pauses: tuple[str, ...] = PAUSE_MODES) -> list[dict]:
    import jiwer

    from qasr.reference.wer import normalise
    from qasr.runtime.engine import Engine
    from qasr.runtime.speech_manifest import read_manifest
    from qasr.runtime.transcribe import TranscribeOptions, Transcriber

    utterances, problems = read_manifest(manifest, skip + count)
    for problem in problems:
        progress(f"skipped: {problem}")
    utterances = utterances[skip:]
    paths = [u.audio for u in utterances]
    joined, _ = joined_recording(paths, pause, pause_max, seed)
    reference = normalise(" ".join(u.text for u in utterances))
    transcriber = Transcriber(Engine(engine_dir))
    out = []
    for limit in limits:
        one = transcriber.transcribe(paths, TranscribeOptions(max_segment_seconds=limit))
        row = {"limit_s": limit, "utterances": len(paths),
               "one_by_one_wer": jiwer.wer(reference, normalise(" ".join(t.text for t in one)))}
        for rule in pauses:
            together = transcriber.transcribe([(joined, RATE)], TranscribeOptions(max_segment_seconds=limit,
                                                                                  pauses=rule))[0]
            row[rule] = {"joined_wer": jiwer.wer(reference, normalise(together.text)),
                         "joined_segments": len(together.segments)}
        out.append(row)
        progress(f"limit {limit:g} s: done")
    return out


@click.command()
@click.option("--engine", "engine_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--manifest", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Default: the shipped held-out split (qasr.assets.EVAL_MANIFEST).")
@click.option("--skip", type=click.IntRange(0), default=0, show_default=True, help="Utterances passed over first.")
@click.option("--count", type=click.IntRange(2), default=25, show_default=True)
@click.option("--pause", type=click.FloatRange(0.0), default=0.6, show_default=True, help="Seconds between utterances.")
@click.option("--pause-max", type=click.FloatRange(0.0), default=None,
              help="Draw each pause from --pause to this many seconds (seeded by --seed).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--limit", "limits", type=click.FloatRange(0.5), multiple=True, help=f"Seconds; default {LIMITS}.")
@click.option("--pauses", "rules", type=click.Choice(PAUSE_MODES), multiple=True,
              help="Pause rules to measure; default both.")
@handle_errors
def main(engine_dir, manifest, skip, count, pause, pause_max, seed, limits, rules):
    """Print WER one by one and joined, per segment limit and pause rule."""
    from qasr.assets import EVAL_MANIFEST
    from qasr.runtime.cli_support import fail

    if pause_max is not None and pause_max < pause:
        fail(f"--pause-max {pause_max:g} is less than --pause {pause:g}")
    rules = tuple(rules) or PAUSE_MODES
    rows = measure(engine_dir, manifest or EVAL_MANIFEST, count, pause, tuple(limits) or LIMITS, Progress(),
                   skip, pause_max, seed, rules)
    gaps = f"{pause:g} s" if pause_max is None else f"{pause:g}-{pause_max:g} s (seed {seed})"
    click.echo(f"{rows[0]['utterances']} utterances (after the first {skip}), joined with pauses of {gaps}")
    click.echo("| limit s | one by one WER % | " + " | ".join(f"joined, {r}: WER % | segments" for r in rules)
               + " |\n|---|---|" + "---|---|" * len(rules))
    for r in rows:
        click.echo(f"| {r['limit_s']:g} | {100 * r['one_by_one_wer']:.1f} | "
                   + " | ".join(f"{100 * r[rule]['joined_wer']:.1f} | {r[rule]['joined_segments']}" for rule in rules)
                   + " |")


if __name__ == "__main__":
    main()
