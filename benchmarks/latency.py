"""Latency and throughput of exports, and of the PyTorch reference, on the same inputs in one run.

    python -m qasr.benchmarks.latency --engine DIR [--engine DIR ...] [--reference CHECKPOINT]
        [--audio-seconds 10] [--new-tokens 40] [--batch 1] [--batch 8] [--repeats 5] [--warmup 1]
        [--threads 0] [--json-out F] [--markdown-out F]

Every system gets the same synthetic speech and decodes exactly --new-tokens tokens (EOS suppressed,
the repetition guard off), so lengths are equal whatever the weights say; the token counts that
actually came out are checked and printed. Per system and batch size (median of --repeats after
--warmup runs):
- encoder: log-mel features to audio embeddings (encoder + projector);
- first token: audio to the first new token (features, encoder, prefill);
- per token: decoder step, (T(N tokens) - T(1 token)) / (N - 1) over the decode loop alone;
- end to end: audio to N tokens; audio s/s: batch x audio seconds / end to end;
- size: the export's graph files on disk.
Ratios are against the first system (the reference when --reference is given). The reference runs
transformers' generate() with the prompt our first engine builds (same tokenizer files), in fp32 on
CPU or bf16 on CUDA (--reference-dtype to choose).
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import click
import numpy as np

from qasr.runtime.cli_support import Progress, handle_errors
from qasr.runtime.errors import QasrError


@dataclass
class Row:
    system: str
    batch: int
    encoder_ms: float
    first_token_ms: float
    per_token_ms: float
    end_to_end_ms: float
    audio_seconds_per_second: float
    size_mb: float | None
    new_tokens: list[int] = field(default_factory=list)


def median_ms(fn: Callable[[], object], repeats: int, warmup: int, sync: Callable[[], None] = lambda: None) -> float:
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


class EngineSystem:
    """One export directory on ONNX Runtime, through the runtime's own Engine (what asr-transcribe runs)."""

    def __init__(self, path: str, threads: int, providers: list[str] | None = None):
        from qasr.runtime.engine import Engine

        self.path = Path(path)
        self.engine = Engine(path, providers=providers, threads=threads)
        export = self.engine.manifest.data["export"]
        mode = (export.get("quantization") or {}).get("mode")
        self.name = f"onnxruntime {export['precision']}" + (f" {mode}" if mode else "")
        self.size_mb = sum(f.stat().st_size for f in self.path.iterdir() if ".onnx" in f.name) / 1e6
        self.info = {"path": str(self.path), "providers": self.engine.providers, "threads": threads}

    def features(self, waves: list[np.ndarray]) -> list[np.ndarray]:
        return [self.engine.features(w) for w in waves]

    def encode(self, feats: list[np.ndarray]):
        return self.engine.encode(feats)

    def decode(self, embeds, new_tokens: int) -> list[int]:
        from qasr.runtime.generate import Prompt
        from qasr.runtime.stopping import DecodeOptions

        prompts = [Prompt(self.engine.prompts.build(len(e)), e, new_tokens) for e in embeds]
        options = DecodeOptions(max_new_tokens=new_tokens, min_new_tokens=new_tokens, repetition_max_period=0)
        return [len(g.tokens) for g in self.engine.generate(prompts, options)]

    def sync(self) -> None:
        pass


class ReferenceSystem:
    """transformers' Qwen3ASRForConditionalGeneration: generate() with the same prompt and forced length."""

    def __init__(self, model: str, prompt_engine, device: str, dtype: str):
        import torch

        from qasr.export.checkpoint import load_checkpoint
        from qasr.export.reference import build_reference

        self.torch = torch
        self.device = device
        self.dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
        self.model = build_reference(load_checkpoint(model), self.dtype).to(device)
        self.prompt_engine = prompt_engine
        self.name = f"transformers {dtype}"
        self.size_mb = None
        self.info = {"class": type(self.model).__module__ + "." + type(self.model).__name__, "device": device,
                     "dtype": dtype, "attention": getattr(self.model.config, "_attn_implementation", None),
                     "threads": torch.get_num_threads()}

    def features(self, waves: list[np.ndarray]) -> list[np.ndarray]:
        return self.prompt_engine.features(waves)

    def _batch(self, feats):
        from qasr.export.reference import batch_features

        batch, mask = batch_features(feats, self.prompt_engine.engine.chunk_frames)
        return batch.to(self.device, self.dtype), mask.to(self.device)

    def encode(self, feats):
        with self.torch.no_grad():
            batch, mask = self._batch(feats)
            hidden = self.model.model.audio_tower(batch, mask).last_hidden_state
            return feats, self.model.model.multi_modal_projector(hidden)

    def decode(self, encoded, new_tokens: int) -> list[int]:
        from qasr.export.reference import left_pad

        feats = encoded[0]
        engine = self.prompt_engine.engine
        prompts = [engine.prompts.build(engine.audio_tokens(f.shape[1])) for f in feats]
        ids, mask = left_pad(prompts, engine.generator.pad_id)
        batch, fmask = self._batch(feats)
        with self.torch.no_grad():
            out = self.model.generate(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                                      input_features=batch, input_features_mask=fmask, max_new_tokens=new_tokens,
                                      min_new_tokens=new_tokens, do_sample=False, num_beams=1,
                                      eos_token_id=list(engine.eos_ids), pad_token_id=engine.generator.pad_id)
        return [out.shape[1] - ids.shape[1]] * len(feats)

    def sync(self) -> None:
        if self.device.startswith("cuda"):
            self.torch.cuda.synchronize()


def measure(system, waves: list[np.ndarray], new_tokens: int, repeats: int, warmup: int) -> Row:
    """The timings of one system on one batch of waves. The reference's decode includes its own encoder
    pass (generate() takes features), so its per-token time is a difference of two generate() calls."""
    feats = system.features(waves)
    encoded = system.encode(feats)
    encoder = median_ms(lambda: system.encode(feats), repeats, warmup, system.sync)
    counts = system.decode(encoded, new_tokens)
    if any(c != new_tokens for c in counts):
        raise QasrError(f"{system.name} decoded {counts} tokens, not the forced {new_tokens}")
    one = median_ms(lambda: system.decode(encoded, 1), repeats, warmup, system.sync)
    many = median_ms(lambda: system.decode(encoded, new_tokens), repeats, warmup, system.sync)

    def end_to_end(tokens: int):
        return lambda: system.decode(system.encode(system.features(waves)), tokens)

    first = median_ms(end_to_end(1), repeats, 0, system.sync)
    total = median_ms(end_to_end(new_tokens), repeats, 0, system.sync)
    seconds = sum(len(w) for w in waves) / 16000
    return Row(system.name, len(waves), encoder, first, (many - one) / max(new_tokens - 1, 1), total,
               seconds / (total / 1000), system.size_mb, counts)


def format_table(rows: list[Row]) -> str:
    base = {r.batch: r for r in rows[::-1]}  # the first system of each batch size
    head = ("| system | batch | encoder ms | first token ms | per token ms | vs first | end to end ms | vs first "
            "| audio s/s | size MB |")
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        b = base[r.batch]
        lines.append(f"| {r.system} | {r.batch} | {r.encoder_ms:.1f} | {r.first_token_ms:.1f} | {r.per_token_ms:.2f} "
                     f"| {b.per_token_ms / r.per_token_ms:.2f}x | {r.end_to_end_ms:.1f} "
                     f"| {b.end_to_end_ms / r.end_to_end_ms:.2f}x | {r.audio_seconds_per_second:.1f} "
                     f"| {'-' if r.size_mb is None else f'{r.size_mb:.0f}'} |")
    return "\n".join(lines)


def run(engines: list[str], reference: str | None, audio_seconds: float, new_tokens: int, batches: list[int],
        repeats: int, warmup: int, threads: int, device: str, reference_dtype: str | None,
        progress=print) -> dict:
    from qasr.export.verify import synthetic_speech

    systems = []
    for path in engines:
        progress(f"loading {path}")
        systems.append(EngineSystem(path, threads))
    if reference:
        progress(f"loading the reference {reference}")
        dtype = reference_dtype or ("bf16" if device.startswith("cuda") else "fp32")
        systems.insert(0, ReferenceSystem(reference, systems[0], device, dtype))
    rows = []
    for batch in batches:
        waves = [synthetic_speech(audio_seconds, seed=i) for i in range(batch)]
        for system in systems:
            progress(f"batch {batch}: {system.name}")
            rows.append(measure(system, waves, new_tokens, repeats, warmup))
    return {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": platform.machine(),
            "processor": platform.processor(), "audio_seconds": audio_seconds, "new_tokens": new_tokens,
            "repeats": repeats, "warmup": warmup, "systems": [{"name": s.name, **s.info} for s in systems],
            "rows": [asdict(r) for r in rows], "versions": _versions()}


def _versions() -> dict[str, str]:
    import onnxruntime

    out = {"onnxruntime": onnxruntime.__version__, "numpy": np.__version__}
    try:
        import torch
        import transformers

        out.update(torch=torch.__version__, transformers=transformers.__version__)
    except ImportError:
        pass
    return out


@click.command()
@click.option("--engine", "engines", multiple=True, required=True, help="Export directory (repeatable).")
@click.option("--reference", help="Checkpoint for the transformers reference, timed on the same inputs.")
@click.option("--audio-seconds", type=click.FloatRange(0.5, 300), default=10.0, show_default=True)
@click.option("--new-tokens", type=click.IntRange(2), default=40, show_default=True)
@click.option("--batch", "batches", type=click.IntRange(1), multiple=True, default=(1,), show_default=True)
@click.option("--repeats", type=click.IntRange(1), default=5, show_default=True)
@click.option("--warmup", type=click.IntRange(0), default=1, show_default=True)
@click.option("--threads", type=click.IntRange(0), default=0, show_default=True, help="ONNX Runtime intra-op threads (0: all cores).")
@click.option("--device", default="cpu", show_default=True, help="Device of the reference (cpu, cuda).")
@click.option("--reference-dtype", type=click.Choice(["fp32", "bf16", "fp16"]), help="Default: fp32 on CPU, bf16 on CUDA.")
@click.option("--json-out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--markdown-out", type=click.Path(dir_okay=False, path_type=Path))
@handle_errors
def main(engines, reference, audio_seconds, new_tokens, batches, repeats, warmup, threads, device, reference_dtype,
         json_out, markdown_out):
    """Time exports (and the reference) on the same synthetic speech; print a table with ratios."""
    result = run(list(engines), reference, audio_seconds, new_tokens, list(batches), repeats, warmup, threads,
                 device, reference_dtype, Progress())
    table = format_table([Row(**r) for r in result["rows"]])
    header = (f"latency, {result['date']}, {result['processor'] or result['machine']}, {audio_seconds:g} s audio, "
              f"{new_tokens} new tokens, median of {repeats}; " +
              "; ".join(f"{s['name']}: {s.get('providers') or s.get('device')}" for s in result["systems"]))
    click.echo(header)
    click.echo(table)
    if json_out:
        json_out.write_text(json.dumps(result, indent=1))
    if markdown_out:
        markdown_out.write_text(header + "\n\n" + table + "\n")


if __name__ == "__main__":
    main()
