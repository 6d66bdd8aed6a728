"""asr-transcribe: transcribe audio files with an export directory."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from .cli_support import EXIT_USER_ERROR, MAX_THREADS, Progress, echo_out, fail, handle_errors, writable_dir
from .model import Model
from .session import DEVICE_PROVIDERS
from .stopping import DecodeOptions
from .subtitles import FORMATS, to_srt, to_vtt
from .live.policy import POLICIES
from .transcribe import VAD_MODES
from qasr.exportformat.schema import PAUSE_MODES


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--engine", "engine_dir", required=True, type=click.Path(), help="Export directory made by asr-export.")
@click.argument("audio", nargs=-1, required=True)
@click.option("--language", default=None, help="Force the language (English, en, ...); default: the model says.")
@click.option("--context", default="", help="Context text for the system prompt (names, terms).")
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="txt", show_default=True,
              help="txt: the text; json: text, language, segments with start/end and why each stopped (and words "
                   "with --word-timestamps); srt / vtt: subtitles (cues of at most 2 lines of 42 characters and 7 s, "
                   "cut at pauses, and at word boundaries with an aligner).")
@click.option("--aligner", "aligner_dir", type=click.Path(), default=None,
              help="A forced aligner export (asr-export --model Qwen/Qwen3-ForcedAligner-0.6B): word timestamps for "
                   "--word-timestamps and word-timed subtitle cues.")
@click.option("--word-timestamps", is_flag=True, help="JSON: each segment's words with start and end (needs --aligner).")
@click.option("--output-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write one file per input (<name>.<format>) here instead of printing.")
@click.option("--force", is_flag=True, help="Replace files that already exist in --output-dir.")
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(1, 1024))
@click.option("--max-new-tokens", type=click.IntRange(1), default=None,
              help="Fixed token budget per segment (default: follows the audio length).")
@click.option("--tokens-per-second", type=click.FloatRange(0.1), default=DecodeOptions.tokens_per_second,
              show_default=True, help="Token budget per second of audio (plus --budget-base).")
@click.option("--budget-base", type=click.IntRange(1), default=DecodeOptions.budget_base, show_default=True)
@click.option("--repetition-guard/--no-repetition-guard", default=True, show_default=True,
              help="Stop a segment whose output keeps repeating the same tokens.")
@click.option("--max-segment-seconds", type=click.FloatRange(1.0), default=None,
              help="Longest segment decoded at once [default: the model's: 1200 s for Qwen3-ASR].")
@click.option("--vad", type=click.Choice(VAD_MODES), default=None,
              help="Voice-activity segmentation: auto (audio longer than the segment limit), on, off (energy cuts) "
                   "[default: auto; on for subtitles without an aligner].")
@click.option("--pauses", type=click.Choice(PAUSE_MODES), default=None,
              help="With voice activity: merge speech regions up to the segment limit, or split at every pause "
                   "(a segment per region) [default: the model's, merge for Qwen3-ASR; split for subtitles without "
                   "an aligner].")
@click.option("--device", type=click.Choice(list(DEVICE_PROVIDERS)), default="auto", show_default=True)
@click.option("--threads", type=click.IntRange(0, MAX_THREADS), default=0,
              help="ONNX Runtime intra-op threads (0: its default).")
@click.option("--live", is_flag=True,
              help="Replay one file as if it were being spoken and print text as it is confirmed (txt: the text of "
                   "each turn on its line; json: one event per line).")
@click.option("--speed", type=click.FloatRange(0.1, 1000.0), default=None,
              help="--live: replay this many times faster than real time [default: 1, real time].")
@click.option("--policy", type=click.Choice(POLICIES), default="agreement", show_default=True,
              help="--live: what is confirmed: agreement (two steps agree) or rollback (all but the last tokens).")
@click.option("--quiet", is_flag=True, help="No progress lines (they go to stderr, and only to a terminal).")
@handle_errors
def main(engine_dir, audio, language, context, as_json, fmt, aligner_dir, word_timestamps, output_dir, force, batch_size,
         max_new_tokens, tokens_per_second, budget_base, repetition_guard, max_segment_seconds, vad, pauses, device,
         threads, live, speed, policy, quiet):
    """Transcribe AUDIO files (any format soundfile reads, any sample rate, mono or stereo)."""
    if as_json and fmt not in ("txt", "json"):
        fail(f"--json is --format json; it conflicts with --format {fmt}")
    fmt = "json" if as_json else fmt
    words = _check_words(fmt, aligner_dir, word_timestamps, live)
    if fmt in ("srt", "vtt") and not words and vad is None and pauses is None:
        vad, pauses = "on", "split"   # a cue per run of speech: cues never span a pause
    vad = vad or "auto"
    if live or speed is not None:
        _check_live(live, audio, fmt, output_dir, speed)
        model = Model(engine_dir, device=device, threads=threads, batch_size=batch_size)
        _live(model, audio[0], language, context, fmt, speed or 1.0, policy)
        return
    if fmt in ("srt", "vtt") and len(audio) > 1 and output_dir is None:
        fail(f"--format {fmt} with several files needs --output-dir (one subtitle file per input)")
    targets = _targets(audio, fmt, output_dir, force)
    # CUDA graphs (gqa exports on CUDA) are captured per batch bucket up to the batch size used here
    model = Model(engine_dir, device=device, threads=threads, batch_size=batch_size, aligner=aligner_dir)
    engine = model.engine
    transcripts = model.transcribe_batch(list(audio), language, context=context, max_segment_seconds=max_segment_seconds,
                                         vad=vad, pauses=pauses, max_new_tokens=max_new_tokens,
                                         tokens_per_second=tokens_per_second, budget_base=budget_base,
                                         repetition_guard=repetition_guard, word_timestamps=words,
                                         progress=None if quiet or not sys.stderr.isatty() else Progress())
    failed = [t for t in transcripts if t.error]
    for t in failed:
        click.echo(f"error: {t.error}", err=True)
    header = {"engine": str(engine_dir), "providers": engine.providers, "attention": engine.attention,
              "cuda_graph": engine.cuda_graph_note,
              "decoding": {"budget": "fixed" if max_new_tokens else "audio length",
                           "tokens_per_second": tokens_per_second, "budget_base": budget_base,
                           "max_new_tokens": max_new_tokens, "repetition_guard": repetition_guard},
              **({"aligner": str(aligner_dir)} if aligner_dir else {})}
    if output_dir is not None:
        output_dir.mkdir(parents=True, exist_ok=True)
        for t, target in zip(transcripts, targets):
            if not t.error:
                target.write_text(_render(fmt, [t], header), encoding="utf-8")
    else:
        shown = transcripts if fmt == "json" else [t for t in transcripts if not t.error]
        if shown:
            echo_out(_render(fmt, shown, header, several=len(transcripts) > 1))
    if failed:
        sys.exit(EXIT_USER_ERROR)


def _check_words(fmt: str, aligner_dir, word_timestamps: bool, live: bool) -> bool:
    """Whether words are aligned: --word-timestamps (JSON) needs --aligner; an aligner times subtitle cues too."""
    from .transcribe import NO_ALIGNER

    if word_timestamps and aligner_dir is None:
        fail(NO_ALIGNER)
    if aligner_dir is None:
        return False
    if live:
        fail("--live confirms text as it is heard; word timestamps are for whole files (drop --aligner)")
    if fmt == "txt":
        fail("--format txt has no times; word timestamps need --format json, srt or vtt")
    if fmt == "json" and not word_timestamps:
        fail("--aligner with --format json: add --word-timestamps for the words")
    return True


def _check_live(live: bool, audio: tuple[str, ...], fmt: str, output_dir, speed) -> None:
    if not live:
        fail("--speed needs --live")
    if len(audio) != 1:
        fail(f"--live replays one file, not {len(audio)}")
    if fmt not in ("txt", "json"):
        fail(f"--live prints text (txt) or events (json), not {fmt}")
    if output_dir is not None:
        fail("--live prints as it goes; --output-dir is for whole transcripts")


def _live(model: Model, path: str, language, context: str, fmt: str, speed: float, policy: str) -> None:
    """Replay `path` into a live session, printing confirmed text as it comes (a line per turn)."""
    from .audio import read_file
    from .live.replay import replay

    data, rate = read_file(path)
    session = model.live(language, sample_rate=rate, context=context, policy=policy)

    def show(event, wall: float) -> None:
        if fmt == "json":
            click.echo(json.dumps({"type": event.kind, "turn": event.turn, "text": event.text, "start": event.start,
                                   "end": event.end, "audio_s": round(event.at, 3), "wall_s": round(wall, 3),
                                   **({"language": event.language} if event.kind == "completed" else {})},
                                  ensure_ascii=False))
        elif event.kind == "delta":
            click.echo(event.text, nl=False)
        elif event.kind == "completed":
            click.echo("")

    replay(session, data, rate, speed, show)


def _targets(audio: tuple[str, ...], fmt: str, output_dir: Path | None, force: bool) -> list[Path]:
    """<output_dir>/<stem>.<fmt> per input; refused before any work if one exists (without --force) or two
    inputs would write the same file."""
    if output_dir is None:
        return []
    writable_dir(output_dir, "--output-dir")
    targets = [output_dir / f"{Path(a).stem}.{fmt}" for a in audio]
    if len(set(targets)) < len(targets):
        fail("two inputs have the same name: their --output-dir files would collide")
    existing = [str(t) for t in targets if t.exists()]
    if existing and not force:
        fail(f"{existing[0]} exists; pass --force to replace it")
    return targets


def _render(fmt: str, transcripts: list, header: dict, several: bool = False) -> str:
    if fmt == "json":
        return json.dumps({**header, "results": [t.to_json() for t in transcripts]}, indent=2, ensure_ascii=False) + "\n"
    if fmt == "srt":
        return "\n".join(to_srt(t) for t in transcripts)
    if fmt == "vtt":
        return "\n".join(to_vtt(t) for t in transcripts)
    return "".join((f"{t.source}\t{t.text}" if several else t.text) + "\n" for t in transcripts)
