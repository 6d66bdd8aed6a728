"""Latency and throughput of exports, and of the PyTorch reference, on the same inputs in one run.

    python -m qasr.benchmarks.latency --engine DIR [--engine DIR ...] [--reference CHECKPOINT]
        [--audio-seconds 10] [--new-tokens 40] [--step-tokens 100] [--batch 1] [--batch 8] [--repeats 5] [--warmup 1]
        [--threads 0] [--engine-device auto|cpu|cuda] [--cuda-graph auto|on|off] [--json-out F] [--markdown-out F]

Every system gets the same synthetic speech and decodes exactly --new-tokens tokens (EOS suppressed,
the repetition guard off), so lengths are equal whatever the weights say; the token counts that
actually came out are checked and printed. Per system and batch size (median of --repeats after
--warmup runs):
- encoder: log-mel features to audio embeddings (encoder + projector);
- first token: audio to the first new token (features, encoder, prefill);
- per token: decoder step, (T(N tokens) - T(1 token)) / (N - 1) over the decode loop alone, N =
  --step-tokens (default --new-tokens);
- end to end: audio to N tokens; audio s/s: batch x audio seconds / end to end;
- size: the export's graph files on disk;
- memory: on CUDA, the reference's torch peak allocation, and for an engine the growth of this process's
  GPU memory (nvidia-smi) from just before it was loaded (engines are loaded one at a time, after the
  reference, and released before the next); not measured on CPU.
What ran is printed and kept in the JSON: providers, the decoder attention, whether the decode step
replayed a CUDA graph (per row: `cuda_graph`, and the rows actually run, bucket padding included),
threads, device name. `--cuda-graph on` fails unless every decode really replayed a graph.
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

from qasr.exportformat import names
from qasr.runtime.cli_support import Progress, handle_errors
from qasr.errors import QasrError
from qasr.runtime.session import CUDA, DEVICE_PROVIDERS


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
    rows: int | None = None            # rows the decode step ran (a CUDA-graph bucket pads the batch)
    cuda_graph: bool | None = None     # the decode steps replayed a captured CUDA graph
    memory_mb: float | None = None


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


def gpu_process_mb() -> float | None:
    """This process's GPU memory in MB as nvidia-smi reports it (None without a GPU)."""
    import os
    import subprocess

    try:
        out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    used = [float(line.split(",")[1]) for line in out.splitlines() if line.split(",")[0].strip() == str(os.getpid())]
    return sum(used) if used else 0.0


class EngineSystem:
    """One export directory on ONNX Runtime, through the runtime's own Engine (what asr-transcribe runs)."""

    def __init__(self, path: str, threads: int, providers: list[str] | None = None, cuda_graph: bool | None = None,
                 max_batch: int = 0, max_len: int = 0):
        from qasr.runtime.engine import Engine

        self.path = Path(path)
        self.memory_before = gpu_process_mb()
        self.engine = Engine(path, providers=providers, threads=threads, cuda_graph=cuda_graph,
                             max_batch=max_batch, max_len=max_len)
        if cuda_graph and not self.engine.cuda_graph:
            raise QasrError(f"{path}: CUDA graphs were asked for but are {self.engine.cuda_graph_note}")
        export = self.engine.manifest.export
        mode = export.quantization.mode if export.quantization else None
        self.name = (f"onnxruntime {export.precision}" + (f" {mode}" if mode else "") +
                     (" gqa" if self.engine.attention == names.ATTENTION_GQA else "") + (" +cuda-graph" if self.engine.cuda_graph else ""))
        self.size_mb = sum(f.stat().st_size for f in self.path.iterdir() if ".onnx" in f.name) / 1e6
        self.info = {"path": str(self.path), "providers": self.engine.providers, "threads": threads,
                     "attention": self.engine.attention, "cuda_graph": self.engine.cuda_graph_note}
        self.require_graph = bool(cuda_graph)
        self.last_run: dict = {}

    def features(self, waves: list[np.ndarray]) -> list[np.ndarray]:
        return [self.engine.features(w) for w in waves]

    def encode(self, feats: list[np.ndarray]):
        return self.engine.encode(feats)

    def decode(self, embeds, new_tokens: int) -> list[int]:
        from qasr.runtime.generate import Prompt
        from qasr.runtime.stopping import DecodeOptions

        prompts = [Prompt(self.engine.prompts.build(len(e)), e, new_tokens) for e in embeds]
        options = DecodeOptions(max_new_tokens=new_tokens, min_new_tokens=new_tokens, repetition_max_period=0)
        counts = [len(g.tokens) for g in self.engine.generate(prompts, options)]
        self.last_run = dict(getattr(self.engine.generator, "last_run", {}) or {"rows": len(embeds), "cuda_graph": False})
        if self.require_graph and new_tokens > 1 and not self.last_run.get("cuda_graph"):
            raise QasrError(f"{self.name}: the decode step did not replay a CUDA graph ({self.last_run})")
        return counts

    def reset_memory(self) -> None:
        pass

    def memory_mb(self) -> float | None:
        now = gpu_process_mb()
        return None if now is None or self.memory_before is None or self.engine.decoder.device[0] != "cuda" \
            else now - self.memory_before

    def sync(self) -> None:
        pass

    def close(self) -> None:
        del self.engine
        import gc

        gc.collect()


class ReferenceSystem:
    """transformers' Qwen3ASRForConditionalGeneration: generate() with the same prompt and forced length."""

    def __init__(self, model: str, prompt_engine, device: str, dtype: str):
        import torch

        from qasr.export.checkpoint import load_checkpoint
        from qasr.reference.model import build_reference

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
        from qasr.reference.model import batch_features

        batch, mask = batch_features(feats, self.prompt_engine.engine.chunk_frames)
        return batch.to(self.device, self.dtype), mask.to(self.device)

    def encode(self, feats):
        with self.torch.no_grad():
            batch, mask = self._batch(feats)
            hidden = self.model.model.audio_tower(batch, mask).last_hidden_state
            return feats, self.model.model.multi_modal_projector(hidden)

    def decode(self, encoded, new_tokens: int) -> list[int]:
        from qasr.reference.model import left_pad

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

    def reset_memory(self) -> None:
        if self.device.startswith("cuda"):
            self.torch.cuda.reset_peak_memory_stats()

    def memory_mb(self) -> float | None:
        return self.torch.cuda.max_memory_allocated() / 2**20 if self.device.startswith("cuda") else None

    def close(self) -> None:
        del self.model
        if self.device.startswith("cuda"):
            self.torch.cuda.empty_cache()


def measure(system, waves: list[np.ndarray], new_tokens: int, repeats: int, warmup: int,
            step_tokens: int | None = None) -> Row:
    """The timings of one system on one batch of waves. The reference's decode includes its own encoder
    pass (generate() takes features), so its per-token time is a difference of two generate() calls,
    over `step_tokens` tokens (default: new_tokens; the end-to-end time always decodes new_tokens)."""
    step_tokens = step_tokens or new_tokens
    system.reset_memory()
    feats = system.features(waves)
    encoded = system.encode(feats)
    encoder = median_ms(lambda: system.encode(feats), repeats, warmup, system.sync)
    counts = system.decode(encoded, new_tokens)
    if any(c != new_tokens for c in counts):
        raise QasrError(f"{system.name} decoded {counts} tokens, not the forced {new_tokens}")
    one = median_ms(lambda: system.decode(encoded, 1), repeats, warmup, system.sync)
    many = median_ms(lambda: system.decode(encoded, step_tokens), repeats, warmup, system.sync)

    def end_to_end(tokens: int):
        return lambda: system.decode(system.encode(system.features(waves)), tokens)

    first = median_ms(end_to_end(1), repeats, 0, system.sync)
    total = median_ms(end_to_end(new_tokens), repeats, 0, system.sync)
    seconds = sum(len(w) for w in waves) / 16000
    ran = getattr(system, "last_run", {}) or {}
    return Row(system.name, len(waves), encoder, first, (many - one) / max(step_tokens - 1, 1), total,
               seconds / (total / 1000), system.size_mb, counts, ran.get("rows", len(waves)), ran.get("cuda_graph"),
               system.memory_mb())


def describe_run(result: dict) -> str:
    return (f"{result['date']}, {result['device_name']}, {result['audio_seconds']:g} s audio, {result['new_tokens']} new "
            f"tokens end to end, per token over {result['step_tokens']}, median of {result['repeats']}")


def describe_systems(result: dict) -> list[str]:
    """What each system ran on: providers (or the reference's device), attention and CUDA-graph state."""
    return [f"{s['name']}: {s.get('providers') or s.get('device')}"
            + (f", attention {s['attention']}, CUDA graph {s['cuda_graph']}" if "cuda_graph" in s else "")
            for s in result["systems"]]


def _ratio(base: float, value: float) -> str:
    return f"{base / value:.2f}x" if value > 0 and base > 0 else "-"


def format_table(rows: list[Row]) -> str:
    base = {r.batch: r for r in rows[::-1]}  # the first system of each batch size
    head = ("| system | batch (rows run) | encoder ms | first token ms | per token ms | vs first | end to end ms "
            "| vs first | audio s/s | CUDA graph | memory MB | size MB |")
    lines = [head, "|" + "---|" * 12]
    for r in rows:
        b = base[r.batch]
        rows_run = f"{r.batch}" if r.rows in (None, r.batch) else f"{r.batch} ({r.rows})"
        graph = "-" if r.cuda_graph is None else ("yes" if r.cuda_graph else "no")
        lines.append(f"| {r.system} | {rows_run} | {r.encoder_ms:.1f} | {r.first_token_ms:.1f} | {r.per_token_ms:.2f} "
                     f"| {_ratio(b.per_token_ms, r.per_token_ms)} | {r.end_to_end_ms:.1f} "
                     f"| {_ratio(b.end_to_end_ms, r.end_to_end_ms)} | {r.audio_seconds_per_second:.1f} | {graph} "
                     f"| {'-' if r.memory_mb is None else f'{r.memory_mb:.0f}'} "
                     f"| {'-' if r.size_mb is None else f'{r.size_mb:.0f}'} |")
    return "\n".join(lines)


def run(engines: list[str], reference: str | None, audio_seconds: float, new_tokens: int, batches: list[int],
        repeats: int, warmup: int, threads: int, device: str, reference_dtype: str | None,
        progress=print, engine_providers: list[str] | None = None, cuda_graph: bool | None = None,
        step_tokens: int | None = None) -> dict:
    """Systems one at a time (reference first), each over every batch size, released before the next."""
    from qasr.runtime.synthetic_audio import synthetic_speech

    waves = {batch: [synthetic_speech(audio_seconds, seed=i) for i in range(batch)] for batch in batches}
    # CUDA-graph buffers and the cache are reserved for the largest batch and prompt + forced tokens
    max_len = int(audio_seconds * 13) + 64 + max(new_tokens, step_tokens or 0)
    loaders = [(path, lambda path=path: EngineSystem(path, threads, engine_providers, cuda_graph, max(batches),
                                                     max_len)) for path in engines]
    if reference:
        def load_reference():
            # the prompts (tokenizer, features) come from the first export, loaded on the CPU only for that
            prompts = EngineSystem(engines[0], threads, ["CPUExecutionProvider"])
            dtype = reference_dtype or ("bf16" if device.startswith("cuda") else "fp32")
            return ReferenceSystem(reference, prompts, device, dtype)
        loaders.insert(0, (f"the reference {reference}", load_reference))
    rows, infos = [], []
    for order, (label, load) in enumerate(loaders):
        progress(f"loading {label}")
        system = load()
        infos.append({"name": system.name, **system.info})
        for batch in batches:
            progress(f"batch {batch}: {system.name}")
            rows.append((batch, order, measure(system, waves[batch], new_tokens, repeats, warmup, step_tokens)))
        system.close()
    _name_apart(infos, rows)
    return {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": platform.machine(),
            "processor": platform.processor(), "device_name": _device_name(engine_providers),
            "audio_seconds": audio_seconds, "new_tokens": new_tokens, "step_tokens": step_tokens or new_tokens,
            "repeats": repeats, "warmup": warmup,
            "systems": infos, "rows": [asdict(r) for _, _, r in sorted(rows, key=lambda x: x[:2])],
            "versions": _versions()}


def _name_apart(infos: list[dict], rows: list[tuple[int, int, Row]]) -> None:
    """Two exports of the same kind get their directory's name after their system name."""
    taken = [info["name"] for info in infos]
    for order, info in enumerate(infos):
        if taken.count(info["name"]) > 1 and "path" in info:
            info["name"] = f"{info['name']} ({Path(info['path']).name})"
            for _, row_order, row in rows:
                if row_order == order:
                    row.system = info["name"]


def _device_name(providers: list[str] | None) -> str:
    try:
        import torch

        if torch.cuda.is_available() and (providers is None or CUDA in providers):
            return torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return platform.processor() or platform.machine()


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
@click.option("--step-tokens", type=click.IntRange(2), default=None,
              help="Tokens the per-token time is measured over [default: --new-tokens].")
@click.option("--batch", "batches", type=click.IntRange(1), multiple=True, default=(1,), show_default=True)
@click.option("--repeats", type=click.IntRange(1), default=5, show_default=True)
@click.option("--warmup", type=click.IntRange(0), default=1, show_default=True)
@click.option("--threads", type=click.IntRange(0), default=0, show_default=True, help="ONNX Runtime intra-op threads (0: all cores).")
@click.option("--device", default="cpu", show_default=True, help="Device of the reference (cpu, cuda).")
@click.option("--reference-dtype", type=click.Choice(["fp32", "bf16", "fp16"]), help="Default: fp32 on CPU, bf16 on CUDA.")
@click.option("--engine-device", type=click.Choice(list(DEVICE_PROVIDERS)), default="auto", show_default=True,
              help="Where the exports run (auto: CUDA when onnxruntime-gpu has it).")
@click.option("--cuda-graph", type=click.Choice(["auto", "on", "off"]), default="auto", show_default=True,
              help="Replay the decode step as CUDA graphs (gqa exports on CUDA); 'on' fails unless it really happens.")
@click.option("--json-out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--markdown-out", type=click.Path(dir_okay=False, path_type=Path))
@handle_errors
def main(engines, reference, audio_seconds, new_tokens, step_tokens, batches, repeats, warmup, threads, device, reference_dtype,
         engine_device, cuda_graph, json_out, markdown_out):
    """Time exports (and the reference) on the same synthetic speech; print a table with ratios."""
    graph = {"auto": None, "on": True, "off": False}[cuda_graph]
    result = run(list(engines), reference, audio_seconds, new_tokens, list(batches), repeats, warmup, threads,
                 device, reference_dtype, Progress(), DEVICE_PROVIDERS[engine_device], graph, step_tokens)
    table = format_table([Row(**r) for r in result["rows"]])
    header = f"latency, {describe_run(result)}; " + "; ".join(describe_systems(result))
    click.echo(header)
    click.echo(table)
    if json_out:
        json_out.write_text(json.dumps(result, indent=1))
    if markdown_out:
        markdown_out.write_text(header + "\n\n" + table + "\n")


if __name__ == "__main__":
    main()
