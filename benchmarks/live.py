"""python -m qasr.benchmarks.live: live transcription against offline transcription of the same audio, in one run.

Tables (markdown on stdout; --json for the numbers):
1. WER: each held-out utterance streamed on its own, and a long recording of held-out utterances joined with
   pauses, per confirmation policy, against offline transcription of the same audio (same engine, same run).
2. Latency (simulated clock: audio is fed as fast as the session takes it, and each event is stamped with the
   audio time fed when its step began plus that step's compute time, which is when a real-time feed would have
   seen it): from a word's end to its first appearance in confirmed text, and from the end of a turn's silence
   detection to its completed text. No word timings exist for the held-out sets, so a word's end is estimated
   as its recognition point: the shortest audio prefix whose offline transcript already begins with the words up
   to it (PREFIX_STEP resolution). Words the model never gets right in a prefix are left out.
3. Compute per audio second for streams of 10, 60 and 300 s (held-out utterances joined), test model and, with
   --shape-engine, an export of the 0.6B shape with random weights at a fixed token count per step.
4. Concurrency (--streams N,N,...): N WebSocket clients stream at real-time pace into one asr-serve process
   (its batcher shares their steps); per N the word and turn-end latency, the real-time factor kept, and the
   service's memory per stream.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import click
import numpy as np

from qasr.reference.wer import normalise, utterance_edits

from .live_measures import PAUSE_SECONDS, joined, percentile, recognition_points



@dataclass
class Stamped:
    kind: str
    turn: int
    text: str
    at: float          # when a real-time feed would have seen it (s of audio)
    event_at: float    # the audio fed when it was made


@dataclass
class LiveRun:
    events: list[Stamped] = field(default_factory=list)
    compute: float = 0.0
    audio: float = 0.0
    stats: dict = field(default_factory=dict)

    def turn_texts(self) -> list[str]:
        return [e.text for e in self.events if e.kind == "completed"]

    def text(self) -> str:
        return " ".join(t for t in self.turn_texts() if t)


def stream_audio(engine, samples: np.ndarray, policy: str, step: float, decode=None, chunk: float = 0.1,
                 reuse: bool = True, vad: bool = True) -> LiveRun:
    """Feed `samples` (16 kHz) in `chunk` pieces as fast as the session takes them; stamp each event."""
    from qasr.runtime.live.session import LiveSession
    from qasr.runtime.live.stream import LiveOptions
    from qasr.runtime.stopping import DecodeOptions

    options = LiveOptions(policy=policy, step_seconds=step, decode=decode or DecodeOptions(), reuse_prefix=reuse)
    session = LiveSession(engine, options if vad else replace(options, turn_detection=None))
    run = LiveRun(audio=len(samples) / 16000)
    size = int(16000 * chunk)
    pieces = [samples[i:i + size] for i in range(0, len(samples), size)]
    for index in range(len(pieces) + 1):
        fed = min(len(samples), index * size + (len(pieces[index]) if index < len(pieces) else 0)) / 16000
        before = session.compute_seconds
        events = session.feed(pieces[index]) if index < len(pieces) else session.finish()
        spent = session.compute_seconds - before
        run.events.extend(Stamped(e.kind, e.turn, e.text, fed + spent, e.at) for e in events)
    run.compute = session.compute_seconds
    run.stats = dict(session.stream.stats)
    return run


def word_latencies(run: LiveRun, points: list[float | None], offset: float = 0.0) -> list[float]:
    """Per word of the first turn's confirmed text: first shown (s) less its recognition point."""
    shown, out = "", []
    first_seen: list[float] = []
    for e in run.events:
        if e.kind == "delta" and e.turn == 0:
            shown += e.text
            while len(first_seen) < len(normalise(shown).split()):
                first_seen.append(e.at)
    for i, seen in enumerate(first_seen):
        if i < len(points) and points[i] is not None:
            out.append(seen - (points[i] + offset))
    return out


def turn_end_latencies(run: LiveRun) -> list[float]:
    """Per turn: its completed event less the moment its end was detected (its committed event)."""
    committed = {e.turn: e.event_at for e in run.events if e.kind == "committed"}
    return [e.at - committed[e.turn] for e in run.events if e.kind == "completed" and e.turn in committed]


def wer(truth: list[str], hyps: list[str]) -> float:
    words = sum(len(normalise(t).split()) or 1 for t in truth)
    return 100.0 * sum(utterance_edits([normalise(t) or "<empty>" for t in truth], [normalise(h) for h in hyps])) / words


def machine_line() -> str:
    import os
    import platform

    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average "
            f"{os.getloadavg()[0]:.2f} at the start")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--engine", "engine_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="Export of the shipped test model (asr-export --model testmodel/test-model).")
@click.option("--manifest", default=None, help="Held-out set [default: the shipped eval split].")
@click.option("--limit", type=click.IntRange(1), default=None, help="Utterances of the set (default: all).")
@click.option("--long-count", type=click.IntRange(2), default=25, show_default=True,
              help="Utterances joined into the long recording.")
@click.option("--step", type=click.FloatRange(0.05, 10), default=0.5, show_default=True, help="Seconds per step.")
@click.option("--policies", default="agreement,rollback", show_default=True)
@click.option("--lengths", default="10,60,300", show_default=True, help="Stream lengths (s) for compute per second.")
@click.option("--shape-engine", type=click.Path(exists=True, file_okay=False), default=None,
              help="An export of the 0.6B shape with random weights: compute per second at fixed tokens per step.")
@click.option("--shape-lengths", default="10,60", show_default=True)
@click.option("--shape-tokens", type=click.IntRange(1), default=8, show_default=True)
@click.option("--shape-step", type=click.FloatRange(0.1, 10), default=2.0, show_default=True,
              help="Seconds per step for the 0.6B shape (fewer steps: a 2-core CPU runs it far slower than real time).")
@click.option("--compare-reuse", is_flag=True,
              help="Also run the compute-per-second streams with every step prefilling the whole prompt.")
@click.option("--flat-pause", type=click.FloatRange(0), default=0.2, show_default=True,
              help="Pause between the utterances of the compute-per-second streams: shorter than the turn detector's "
                   "silence, so turns run to their limit (continuous speech).")
@click.option("--streams", default="", help="Concurrent WebSocket streams to try, e.g. 4,8,16,24.")
@click.option("--stream-seconds", type=click.FloatRange(5), default=30.0, show_default=True)
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--force", is_flag=True, help="Replace --json if it exists.")
def main(engine_dir, manifest, limit, long_count, step, policies, lengths, shape_engine, shape_lengths, shape_tokens,
         shape_step, compare_reuse, flat_pause, streams, stream_seconds, json_out, force):
    from qasr.assets import EVAL_MANIFEST, shipped
    from qasr.errors import QasrError
    from qasr.runtime.audio import load_audio
    from qasr.runtime.engine import Engine
    from qasr.runtime.live.policy import POLICIES
    from qasr.runtime.speech_manifest import read_manifest
    from qasr.runtime.stopping import DecodeOptions
    from qasr.runtime.transcribe import TranscribeOptions, Transcriber

    policies = [p.strip() for p in policies.split(",") if p.strip()]
    if bad := [p for p in policies if p not in POLICIES]:
        raise click.UsageError(f"unknown policy {bad[0]!r}; choose from {', '.join(POLICIES)}")
    try:
        lengths = [float(x) for x in lengths.split(",") if x.strip()]
        shape_lengths = [float(x) for x in shape_lengths.split(",") if x.strip()]
        counts = [int(x) for x in streams.split(",") if x.strip()]
    except ValueError:
        raise click.UsageError("--lengths, --shape-lengths and --streams are comma-separated numbers") from None
    if json_out and json_out.exists() and not force:
        raise click.UsageError(f"{json_out} exists; pass --force to replace it")
    try:
        manifest = manifest or shipped(EVAL_MANIFEST, "the held-out set", "--manifest")
        utterances, problems = read_manifest(Path(manifest), limit)
    except QasrError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(f"# Live transcription against offline ({time.strftime('%Y-%m-%d')})\n\nMachine: {machine_line()}. "
               f"Engine: {engine_dir}. Set: {manifest}, {len(utterances)} utterances. Step {step} s.\n")
    engine = Engine(engine_dir)
    transcriber = Transcriber(engine)
    report: dict = {"engine": str(engine_dir), "utterances": len(utterances), "step": step}

    # 1-2: per utterance
    audios = [load_audio(u.audio, 16000) for u in utterances]
    truth = [u.text for u in utterances]
    start = time.perf_counter()
    offline = [t.text for t in transcriber.transcribe(audios, TranscribeOptions())]
    offline_time = time.perf_counter() - start
    points = []
    for i, (audio, text) in enumerate(zip(audios, offline)):
        points.append(recognition_points(transcriber, audio, normalise(text).split()))
        click.echo(f"  word ends estimated {i + 1}/{len(audios)}", err=True) if (i + 1) % 20 == 0 else None
    rows = [("offline", wer(truth, offline), None, None, None, None, offline_time / sum(len(a) for a in audios) * 16000)]
    for policy, vad in [(p, v) for v in (True, False) for p in policies]:
        runs = []
        for i, audio in enumerate(audios):
            runs.append(stream_audio(engine, audio, policy, step, vad=vad))
            if (i + 1) % 20 == 0:
                click.echo(f"  {policy}: {i + 1}/{len(audios)} streamed", err=True)
        live = [r.text() for r in runs]
        words = [x for r, p in zip(runs, points) for x in word_latencies(r, p)]
        ends = [x for r in runs for x in turn_end_latencies(r)]
        compute = sum(r.compute for r in runs) / sum(r.audio for r in runs)
        name = f"{policy}, {'server_vad turns' if vad else 'one commit at the end'}"
        rows.append((name, wer(truth, live), percentile(words, 50), percentile(words, 95), percentile(ends, 50),
                     percentile(ends, 95), compute))
        report[f"utterances_{policy}_{'vad' if vad else 'commit'}"] = {
            "wer": rows[-1][1], "word_latency": words, "turn_end_latency": ends, "compute_per_audio_s": compute,
            "turns": sum(len(r.turn_texts()) for r in runs)}
    click.echo("## Each held-out utterance streamed alone\n")
    click.echo("| system | WER % | vs offline (pp) | word latency median / p95 (s) | turn end to text median / p95 (s) "
               "| compute s per audio s |\n|---|---|---|---|---|---|")
    for name, w, m, p, em, ep, c in rows:
        lat = "" if m is None else f"{m:.2f} / {p:.2f}"
        end = "" if em is None else f"{em:.2f} / {ep:.2f}"
        click.echo(f"| {name} | {w:.2f} | {w - rows[0][1]:+.2f} | {lat} | {end} | {c:.3f} |")

    # 1b: the long recording
    samples, texts = joined(utterances, count=min(long_count, len(utterances)))
    start = time.perf_counter()
    offline_long = transcriber.transcribe([samples], TranscribeOptions())[0].text
    offline_long_time = time.perf_counter() - start
    truth_long = " ".join(texts)
    click.echo(f"\n## {len(texts)} held-out utterances joined with {PAUSE_SECONDS:g} s pauses "
               f"({len(samples) / 16000:.1f} s)\n")
    click.echo("| system | WER % | vs offline (pp) | turns | turn end to text median / p95 (s) | compute s per audio s |"
               "\n|---|---|---|---|---|---|")
    base = wer([truth_long], [offline_long])
    click.echo(f"| offline | {base:.2f} | +0.00 | | | {offline_long_time / (len(samples) / 16000):.3f} |")
    report["long"] = {"seconds": len(samples) / 16000, "offline_wer": base}
    for policy in policies:
        run = stream_audio(engine, samples, policy, step)
        w = wer([truth_long], [run.text()])
        ends = turn_end_latencies(run)
        click.echo(f"| {policy} | {w:.2f} | {w - base:+.2f} | {len(run.turn_texts())} | "
                   f"{percentile(ends, 50):.2f} / {percentile(ends, 95):.2f} | {run.compute / run.audio:.3f} |")
        report["long"][policy] = {"wer": w, "turns": len(run.turn_texts()), "compute_per_audio_s": run.compute / run.audio}

    # 3: compute per audio second against stream length
    click.echo(f"\n## Compute per audio second against the stream's length (utterances joined with {flat_pause:g} s "
               "pauses: continuous speech, turns run to their limit)\n")
    click.echo("| engine | decoder cache kept | stream (s) | step (s) | steps | frames encoded per audio s | tokens prefilled per step | compute s per audio s "
               "| vs the shortest |\n|---|---|---|---|---|---|---|---|---|")
    report["flat"] = []
    shapes = [(engine_dir, engine, lengths, None, step)]
    if shape_engine:
        shapes.append((shape_engine, Engine(shape_engine), shape_lengths,
                       DecodeOptions(max_new_tokens=shape_tokens, min_new_tokens=shape_tokens), shape_step))
    for name, eng, lens, decode, every in shapes:
        for reuse in ((True, False) if compare_reuse else (True,)):
            first = None
            for seconds in lens:
                samples, _ = joined(utterances, seconds=seconds, pause=flat_pause)
                run = stream_audio(eng, samples, policies[0], every, decode, reuse=reuse)
                per = run.compute / run.audio
                first = first or per
                s = run.stats
                click.echo(f"| {name} | {'yes' if reuse else 'no'} | {seconds:g} | {every:g} | {s['steps']} | "
                           f"{s['encoded_frames'] / run.audio:.0f} | {s['prompt_tokens'] / max(1, s['steps']):.0f} | "
                           f"{per:.3f} | {per / first:.2f}x |")
                report["flat"].append({"engine": str(name), "reuse": reuse, "seconds": seconds, **s,
                                       "compute_per_audio_s": per})
                click.echo(f"  {name}: {seconds:g} s streamed", err=True)

    # 4: concurrency through the service
    if counts:
        from .live_load import concurrency_table

        report["concurrency"] = concurrency_table(engine_dir, utterances, counts, stream_seconds, transcriber)
    if json_out:
        json_out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
