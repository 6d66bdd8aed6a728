"""asr-transcribe: transcribe audio files with an export directory."""

from __future__ import annotations

import json
import sys

import click

from .cli_support import EXIT_USER_ERROR, handle_errors
from .engine import Engine
from .session import DEVICE_PROVIDERS
from .stopping import DecodeOptions
from .transcribe import VAD_MODES, TranscribeOptions, Transcriber



@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--engine", "engine_dir", required=True, type=click.Path(), help="Export directory made by asr-export.")
@click.argument("audio", nargs=-1, required=True)
@click.option("--language", default=None, help="Force the language (English, en, ...); default: the model says.")
@click.option("--context", default="", help="Context text for the system prompt (names, terms).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: text, language, segments, why each stopped.")
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
@click.option("--vad", type=click.Choice(VAD_MODES), default="auto", show_default=True,
              help="Voice-activity segmentation: auto (audio longer than the segment limit), on, off (energy cuts).")
@click.option("--device", type=click.Choice(list(DEVICE_PROVIDERS)), default="auto", show_default=True)
@click.option("--threads", type=click.IntRange(0), default=0, help="ONNX Runtime intra-op threads (0: its default).")
@handle_errors
def main(engine_dir, audio, language, context, as_json, batch_size, max_new_tokens, tokens_per_second, budget_base,
         repetition_guard, max_segment_seconds, vad, device, threads):
    """Transcribe AUDIO files (any format soundfile reads, any sample rate, mono or stereo)."""
    # CUDA graphs (gqa exports on CUDA) are captured per batch bucket up to the batch size used here
    engine = Engine(engine_dir, providers=DEVICE_PROVIDERS[device], threads=threads, max_batch=batch_size)
    decode = DecodeOptions(tokens_per_second=tokens_per_second, budget_base=budget_base, max_new_tokens=max_new_tokens,
                           repetition_max_period=DecodeOptions.repetition_max_period if repetition_guard else 0)
    options = TranscribeOptions(language=language, context=context, batch_size=batch_size,
                                max_segment_seconds=max_segment_seconds, vad=vad, decode=decode)
    transcripts = Transcriber(engine).transcribe(list(audio), options)
    failed = [t for t in transcripts if t.error]
    for t in failed:
        click.echo(f"error: {t.error}", err=True)
    if as_json:
        payload = {"engine": str(engine_dir), "providers": engine.providers, "attention": engine.attention,
                   "cuda_graph": engine.cuda_graph_note,
                   "decoding": {"budget": "fixed" if max_new_tokens else "audio length",
                                "tokens_per_second": tokens_per_second, "budget_base": budget_base,
                                "max_new_tokens": max_new_tokens, "repetition_guard": repetition_guard},
                   "results": [t.to_json() for t in transcripts]}
        click.echo(json.dumps(payload, indent=2, ensure_ascii=False))
    else:
        good = [t for t in transcripts if not t.error]
        for t in good:
            click.echo(t.text if len(transcripts) == 1 else f"{t.source}\t{t.text}")
    if failed:
        sys.exit(EXIT_USER_ERROR)
