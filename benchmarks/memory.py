"""Peak memory of transcribing long recordings: does it stay linear in the audio length?

    python -m qasr.benchmarks.memory --engine DIR [--engine DIR ...] [--seconds 60 --seconds 240 ...]
        [--vad auto|on|off] [--max-segment-seconds S] [--json-out F] [--markdown-out F]

Each recording is built from the shipped held-out utterances (qasr.assets), one after another with
pauses of 1-12 s of low noise and, now and then, a louder noise burst without speech: speech regions
between long pauses and noise. Every (engine, length) runs in a fresh process that transcribes the file
as asr-transcribe does and reports its own peak resident memory (ru_maxrss), its wall time, the segments
decoded, the words written and their WER against the texts spoken. Prints a table; memory is never asserted by the tests.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click
import numpy as np

RATE = 16000


def long_recording(seconds: float, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """Held-out utterances between pauses of low noise and noise bursts, `seconds` long; and the texts spoken."""
    from qasr.assets import EVAL_MANIFEST, SPEECH
    from qasr.runtime.audio import load_audio

    rng = np.random.default_rng(seed)
    rows = [json.loads(line) for line in EVAL_MANIFEST.read_text().splitlines() if line.strip()]
    total = int(seconds * RATE)
    out = np.empty(total, dtype=np.float32)
    at, texts, index = 0, [], 0
    while at < total:
        pause = int(rng.uniform(1.0, 12.0) * RATE)
        noise = rng.standard_normal(pause).astype(np.float32) * 0.002
        if rng.random() < 0.2:   # a burst of louder noise, no speech
            burst = min(pause, int(rng.uniform(0.3, 1.5) * RATE))
            noise[:burst] *= 15
        out[at: at + pause] = noise[: total - at]
        at += pause
        if at >= total:
            break
        row = rows[index % len(rows)]
        index += 1
        speech = load_audio(SPEECH / row["audio"], RATE)
        if at + len(speech) > total:
            out[at:] = rng.standard_normal(total - at).astype(np.float32) * 0.002
            break
        out[at: at + len(speech)] = speech
        texts.append(row["text"])
        at += len(speech)
    return out, texts


def _child(engine: str, audio: str, vad: str, max_segment: float | None) -> None:
    """Runs in its own process: transcribe and print what it cost (and the WER against the texts spoken)."""
    import resource

    from qasr.reference.wer import normalise

    from qasr.runtime.engine import Engine
    from qasr.runtime.transcribe import TranscribeOptions, Transcriber

    started = time.perf_counter()
    transcript = Transcriber(Engine(engine)).transcribe([audio], TranscribeOptions(vad=vad,
                                                                                    max_segment_seconds=max_segment))[0]
    if transcript.error:
        raise SystemExit(transcript.error)
    print(json.dumps({"peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "seconds": time.perf_counter() - started, "segments": len(transcript.segments),
                      "decoded": sum(1 for s in transcript.segments if s.tokens),
                      "words": len(transcript.text.split()), "wer": _wer(Path(audio), transcript.text, normalise)}))


def _wer(audio: Path, text: str, normalise) -> float | None:
    spoken = audio.with_suffix(".json")
    if not spoken.is_file():
        return None
    import jiwer

    return jiwer.wer(normalise(" ".join(json.loads(spoken.read_text()))), normalise(text))


def measure(engine: str, audio: Path, vad: str, max_segment: float | None) -> dict:
    command = [sys.executable, "-m", "qasr.benchmarks.memory", "--child", engine, str(audio), "--vad", vad]
    if max_segment:
        command += ["--max-segment-seconds", str(max_segment)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stderr.strip().splitlines() or ["killed"])[-1]
        return {"error": f"exit {result.returncode}: {tail}"}
    return json.loads(result.stdout.strip().splitlines()[-1])


def describe(engine: str) -> str:
    from qasr.exportformat import read_manifest

    export = read_manifest(engine).export
    kind = export.precision
    quantization = export.quantization
    if quantization and quantization.mode == "weight-only":
        kind += " weight-only " + quantization.weights.split()[0]
    elif quantization:
        kind += " " + quantization.mode
    return f"{kind}, {export.attention}"


def format_table(rows: list[dict]) -> str:
    lines = ["| export | audio s | peak MB | MB per audio min | wall s | segments (decoded) | words | WER % |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['export']} | {r['audio_seconds']:g} | {r['error']} | | | | | |")
            continue
        lines.append(f"| {r['export']} | {r['audio_seconds']:g} | {r['peak_mb']:.0f} | "
                     f"{r['peak_mb'] / (r['audio_seconds'] / 60):.1f} | {r['seconds']:.1f} | "
                     f"{r['segments']} ({r['decoded']}) | {r['words']} | "
                     f"{'-' if r.get('wer') is None else format(100 * r['wer'], '.1f')} |")
    return "\n".join(lines)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--engine", "engines", multiple=True, type=click.Path(exists=True, file_okay=False))
@click.option("--seconds", "lengths", multiple=True, type=click.FloatRange(1), default=(60, 240, 480, 1800),
              show_default=True)
@click.option("--vad", type=click.Choice(["auto", "on", "off"]), default="auto", show_default=True)
@click.option("--max-segment-seconds", type=click.FloatRange(1.0), default=None)
@click.option("--json-out", type=click.Path(dir_okay=False), default=None)
@click.option("--markdown-out", type=click.Path(dir_okay=False), default=None)
@click.option("--child", nargs=2, type=str, default=None, hidden=True)
def main(engines, lengths, vad, max_segment_seconds, json_out, markdown_out, child):
    """Peak memory of transcribing long recordings with each export, one fresh process per run."""
    if child:
        _child(child[0], child[1], vad, max_segment_seconds)
        return
    if not engines:
        raise click.UsageError("give at least one --engine")
    import soundfile as sf

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seconds in lengths:
            audio, texts = long_recording(seconds)
            path = Path(tmp) / f"long-{seconds:g}s.flac"
            sf.write(path, audio, RATE)
            path.with_suffix(".json").write_text(json.dumps(texts))
            for engine in engines:
                click.echo(f"{describe(engine)}: {seconds:g} s ({len(texts)} utterances)", err=True)
                rows.append({"export": describe(engine), "engine": engine, "audio_seconds": seconds,
                             "utterances": len(texts), **measure(engine, path, vad, max_segment_seconds)})
    table = format_table(rows)
    header = (f"peak memory, {time.strftime('%Y-%m-%d %H:%M')}, {platform.machine()}, vad {vad}, "
              f"max segment {max_segment_seconds or 'the model'}")
    click.echo(header + "\n" + table)
    if json_out:
        Path(json_out).write_text(json.dumps({"header": header, "rows": rows}, indent=1))
    if markdown_out:
        Path(markdown_out).write_text(header + "\n\n" + table + "\n")


if __name__ == "__main__":
    main()
