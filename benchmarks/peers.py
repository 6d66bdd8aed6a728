"""Our CPU engine against the peers people use, on the same weights, in one run.

    python -m qasr.benchmarks.peers --checkpoint DIR --engine EXPORT [--engine EXPORT ...] [--work DIR]
        [--audio-seconds 10] [--new-tokens 40] [--threads 2] [--rounds 2] [--repeats 3] [--json-out F] [--markdown-out F]

Peers:
- onnxruntime-genai (the `peers` extra): its own model builder makes an int4 CPU decoder from the same
  checkpoint's text model (written as a Qwen3ForCausalLM directory under --work; built once, reused); it has
  no audio encoder, so it is timed on a prompt of exactly as many tokens as ours (the audio placeholders
  included), prefill and forced new tokens;
- CrispASR and sherpa-onnx: skipped, with the reason printed (their pip packages bring no converter from a
  Qwen3-ASR checkpoint to their formats, so "the same weights" cannot be made here).

Each system runs in its own process (peak RSS is that process's), the systems alternate over --rounds, and each
figure is the median over rounds of medians over --repeats (the range over rounds beside it). The floor: bytes
of weights a decode step reads (initializers feeding MatMul / MatMulNBits / Gemm, read off each decoder graph;
embedding rows and the KV cache are left out) over this machine's read bandwidth with --threads threads
(numpy sums of a 1 GiB array, best of 5): the fastest a bandwidth-bound step could be.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import click
import numpy as np

from qasr.runtime.cli_support import Progress, handle_errors
from qasr.errors import QasrError

WEIGHT_OPS = {"MatMul", "MatMulNBits", "Gemm", "MatMulInteger", "DynamicQuantizeMatMul"}
SKIPPED_PEERS = {
    "CrispASR": "its pip package (crispasr) runs GGUF files made by CrispASR's own converter, which the package "
                "does not ship; no same-weights model can be made here",
    "sherpa-onnx": "its pip package ships no exporter for Qwen3-ASR checkpoints (its models are converted by "
                   "scripts outside the package); no same-weights model can be made here",
}
GOAL_E2E_MS = 1600.0
GOAL_RSS_MB = 1000.0


def read_bandwidth_gbs(threads: int, gib: float = 1.0, tries: int = 5) -> float:
    """GB/s this machine reads with `threads` threads (numpy sums release the GIL), best of `tries`."""
    data = np.ones(int(gib * 2**30) // 4, dtype=np.float32)
    parts = np.array_split(data, max(1, threads))
    best = 0.0
    for _ in range(tries):
        workers = [threading.Thread(target=np.sum, args=(p,)) for p in parts]
        start = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        best = max(best, data.nbytes / (time.perf_counter() - start) / 1e9)
    return best


def weight_bytes_per_step(decoder_onnx: Path) -> int:
    """Bytes of the initializers a decode step's weight products read (each counted once)."""
    import onnx

    model = onnx.load(str(decoder_onnx), load_external_data=False)
    sizes = {}
    for init in model.graph.initializer:
        dims = int(np.prod(init.dims)) if init.dims else 1
        itemsize = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(init.data_type)).itemsize
        sizes[init.name] = dims * itemsize
    read = {i for n in model.graph.node if n.op_type in WEIGHT_OPS for i in n.input[1:] if i in sizes}
    return sum(sizes[name] for name in read)


# -- onnxruntime-genai -----------------------------------------------------------------------------------

def qwen3_text_checkpoint(checkpoint: Path, out: Path) -> Path:
    """The checkpoint's text decoder as a transformers Qwen3ForCausalLM directory (same weights, same tokenizer),
    what onnxruntime-genai's builder reads."""
    import torch
    from safetensors.torch import save_file

    from qasr.export.checkpoint import load_checkpoint

    if (out / "model.safetensors").is_file():
        return out
    ck = load_checkpoint(str(checkpoint))
    text = ck.spec.text
    prefix = "model.language_model."
    tensors = {"model." + k[len(prefix):]: v.contiguous() for k, v in ck.weights.items() if k.startswith(prefix)}
    if not text.tie_word_embeddings:
        tensors["lm_head.weight"] = ck.weights["lm_head.weight"].contiguous()
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.to(torch.bfloat16) for k, v in tensors.items()}, str(out / "model.safetensors"))
    config = {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "vocab_size": text.vocab_size,
              "hidden_size": text.hidden_size, "intermediate_size": text.ffn_dim, "num_hidden_layers": text.layers,
              "num_attention_heads": text.heads, "num_key_value_heads": text.kv_heads, "head_dim": text.head_dim,
              "rms_norm_eps": text.rms_norm_eps, "rope_theta": text.rope_theta, "hidden_act": "silu",
              "tie_word_embeddings": text.tie_word_embeddings, "max_position_embeddings": 32768,
              "attention_bias": False, "torch_dtype": "bfloat16", "bos_token_id": None,
              "eos_token_id": list(ck.spec.eos_token_ids) or None}
    (out / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    for name in ("vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json"):
        if (ck.path / name).is_file():
            shutil.copy(ck.path / name, out / name)
    return out


def build_genai(checkpoint: Path, work: Path, threads: int, progress) -> Path:
    """onnxruntime-genai's int4 CPU model of the checkpoint's text decoder, built by its own builder (once)."""
    try:
        import onnxruntime_genai  # noqa: F401
    except ImportError:
        raise QasrError('the onnxruntime-genai peer needs its package: pip install "qasr[peers]"') from None
    out = work / f"genai-int4-{checkpoint.name}"
    if not (out / "genai_config.json").is_file():
        hf = qwen3_text_checkpoint(checkpoint, work / f"qwen3-text-{checkpoint.name}")
        progress(f"building onnxruntime-genai's int4 CPU model with its own builder -> {out}")
        result = subprocess.run([sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(hf), "-o", str(out),
                                 "-p", "int4", "-e", "cpu", "-c", str(work / "genai-cache")],
                                capture_output=True, text=True)
        if result.returncode or not (out / "genai_config.json").is_file():
            tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
            raise QasrError(f"onnxruntime-genai's builder failed: {tail[0]}")
    config_path = out / "genai_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    options = config["model"]["decoder"].setdefault("session_options", {})
    options["intra_op_num_threads"] = threads
    options["inter_op_num_threads"] = 1
    config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")
    return out


def _genai_worker(path: Path, prompt_tokens: int, new_tokens: int, repeats: int) -> dict:
    import onnxruntime_genai as og

    model = og.Model(str(path))
    vocab = json.loads((path / "genai_config.json").read_text())["model"]["vocab_size"]
    ids = np.random.default_rng(0).integers(0, min(vocab, 150000), prompt_tokens).astype(np.int32)

    def one() -> tuple[float, float, int]:
        params = og.GeneratorParams(model)
        params.set_search_options(max_length=prompt_tokens + new_tokens, min_length=prompt_tokens + new_tokens,
                                  do_sample=False)
        generator = og.Generator(model, params)
        start = time.perf_counter()
        generator.append_tokens(ids)
        generator.generate_next_token()
        first = time.perf_counter()
        while not generator.is_done():
            generator.generate_next_token()
        end = time.perf_counter()
        made = len(generator.get_sequence(0)) - prompt_tokens
        return (first - start) * 1000, (end - first) * 1000 / max(made - 1, 1), made

    one()   # warm-up
    runs = [one() for _ in range(repeats)]
    if any(r[2] != new_tokens for r in runs):
        raise QasrError(f"onnxruntime-genai made {[r[2] for r in runs]} tokens, not {new_tokens}")
    prefill = statistics.median(r[0] for r in runs)
    step = statistics.median(r[1] for r in runs)
    return {"prefill_ms": prefill, "first_token_ms": prefill, "per_token_ms": step, "encoder_ms": None,
            "end_to_end_ms": prefill + step * (new_tokens - 1), "decoder": str(path / "model.onnx")}


def _qasr_worker(path: Path, audio_seconds: float, new_tokens: int, repeats: int, threads: int) -> dict:
    from qasr.benchmarks.latency import EngineSystem, measure, median_ms
    from qasr.runtime.synthetic_audio import synthetic_speech

    system = EngineSystem(str(path), threads)
    waves = [synthetic_speech(audio_seconds, seed=0)]
    row = measure(system, waves, new_tokens, repeats, 1)
    feats = system.features(waves)
    encoded = system.encode(feats)
    prefill = median_ms(lambda: system.decode(encoded, 1), repeats, 1)
    features = median_ms(lambda: system.features(waves), repeats, 1)
    return {"prefill_ms": prefill, "first_token_ms": row.first_token_ms, "per_token_ms": row.per_token_ms,
            "encoder_ms": row.encoder_ms, "features_ms": features, "end_to_end_ms": row.end_to_end_ms,
            "prompt_tokens": len(system.engine.prompts.build(len(encoded[0]))), "name": system.name,
            "decoder": str(system.engine.manifest.graph_path("decoder"))}


def _worker(kind: str, path: str, audio_seconds: float, prompt_tokens: int, new_tokens: int, repeats: int,
            threads: int) -> None:
    if kind == "genai":
        result = _genai_worker(Path(path), prompt_tokens, new_tokens, repeats)
    else:
        result = _qasr_worker(Path(path), audio_seconds, new_tokens, repeats, threads)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(result))


def _spawn(kind: str, path: Path, audio_seconds: float, prompt_tokens: int, new_tokens: int, repeats: int,
           threads: int) -> dict:
    code = ("import sys; from qasr.benchmarks.peers import _worker; "
            f"_worker({kind!r}, {str(path)!r}, {audio_seconds}, {prompt_tokens}, {new_tokens}, {repeats}, {threads})")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    if result.returncode or not lines:
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise QasrError(f"{kind} {path}: the benchmark process failed: {tail[0]}")
    return json.loads(lines[-1][len("RESULT "):])


def run(checkpoint: Path, engines: list[Path], work: Path, audio_seconds: float, new_tokens: int, threads: int,
        rounds: int, repeats: int, progress) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    systems: list[tuple[str, str, Path]] = [("qasr", f"qasr {e.name}", e) for e in engines]
    genai_error = None
    try:
        systems.append(("genai", "onnxruntime-genai int4 (its builder; text decoder only)",
                        build_genai(checkpoint, work, threads, progress)))
    except QasrError as exc:
        genai_error = str(exc)
        progress(f"onnxruntime-genai skipped: {exc}")
    progress(f"measuring read bandwidth ({threads} threads)")
    bandwidth = read_bandwidth_gbs(threads)
    prompt_tokens = None
    results: dict[str, list[dict]] = {label: [] for _, label, _ in systems}
    for r in range(rounds):
        for kind, label, path in systems:   # ours first: the peers' prompt length is our first engine's prompt
            progress(f"round {r + 1}/{rounds}: {label}")
            result = _spawn(kind, path, audio_seconds, prompt_tokens or 0, new_tokens, repeats, threads)
            prompt_tokens = prompt_tokens or result.get("prompt_tokens")
            results[label].append(result)
    rows = []
    for kind, label, path in systems:
        runs = results[label]
        decoder = Path(runs[0]["decoder"])
        step_bytes = weight_bytes_per_step(decoder)
        row = {"system": label, "kind": kind, "path": str(path), "rounds": runs, "weight_bytes_per_step": step_bytes}
        for key in ("per_token_ms", "first_token_ms", "prefill_ms", "encoder_ms", "end_to_end_ms", "peak_rss_mb"):
            values = [x[key] for x in runs if x.get(key) is not None]
            row[key] = statistics.median(values) if values else None
            row[key + "_range"] = (min(values), max(values)) if values else None
        row["floor_ms"] = step_bytes / bandwidth / 1e6
        rows.append(row)
    return {"date": time.strftime("%Y-%m-%d %H:%M"), "checkpoint": str(checkpoint), "audio_seconds": audio_seconds,
            "new_tokens": new_tokens, "prompt_tokens": prompt_tokens, "threads": threads, "rounds": rounds,
            "repeats": repeats, "read_bandwidth_gbs": bandwidth, "load_average": os.getloadavg(), "rows": rows,
            "skipped": {**SKIPPED_PEERS, **({"onnxruntime-genai": genai_error} if genai_error else {})}}


def _fmt(value, digits=1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _span(row: dict, key: str, digits=1) -> str:
    low_high = row.get(key + "_range")
    if not low_high or low_high[0] == low_high[1]:
        return _fmt(row.get(key), digits)
    return f"{_fmt(row[key], digits)} ({_fmt(low_high[0], digits)}-{_fmt(low_high[1], digits)})"


def format_report(result: dict) -> str:
    from qasr.benchmarks.machine import cpu_description

    rows = result["rows"]
    genai = next((r for r in rows if r["kind"] == "genai"), None)
    lines = [f"peers, {result['date']}, {cpu_description()}, {result['threads']} threads, load average "
             f"{', '.join(f'{x:.2f}' for x in result['load_average'])} at the end; {result['audio_seconds']:g} s of "
             f"synthetic speech, a {result['prompt_tokens']}-token prompt, {result['new_tokens']} forced new tokens; "
             f"median over {result['rounds']} rounds of medians of {result['repeats']} (range over rounds); read "
             f"bandwidth {result['read_bandwidth_gbs']:.1f} GB/s",
             "",
             "| system | ms per token | vs genai | first token ms | prefill ms | encoder ms | end to end ms | peak RSS MB "
             "| weights read per step MB | floor ms | floor / per token |",
             "|" + "---|" * 11]
    for r in rows:
        vs = f"{genai['per_token_ms'] / r['per_token_ms']:.2f}x" if genai else "-"
        lines.append(f"| {r['system']} | {_span(r, 'per_token_ms', 2)} | {vs} | {_span(r, 'first_token_ms')} "
                     f"| {_span(r, 'prefill_ms')} | {_span(r, 'encoder_ms')} | {_span(r, 'end_to_end_ms')} "
                     f"| {_fmt(r['peak_rss_mb'], 0)} | {r['weight_bytes_per_step'] / 1e6:.0f} | {r['floor_ms']:.1f} "
                     f"| {r['floor_ms'] / r['per_token_ms']:.0%} |")
    lines.append("")
    for r in rows:
        if r["kind"] != "qasr":
            continue
        checks = [f"end to end {r['end_to_end_ms']:.0f} ms (goal <= {GOAL_E2E_MS:.0f}: "
                  f"{'met' if r['end_to_end_ms'] <= GOAL_E2E_MS else 'missed by %.0f ms' % (r['end_to_end_ms'] - GOAL_E2E_MS)})",
                  f"peak RSS {r['peak_rss_mb']:.0f} MB (goal <= {GOAL_RSS_MB:.0f} for int4: "
                  f"{'met' if r['peak_rss_mb'] <= GOAL_RSS_MB else 'over by %.0f MB' % (r['peak_rss_mb'] - GOAL_RSS_MB)})"]
        if genai:
            checks.insert(0, f"per token {r['per_token_ms']:.2f} ms vs genai {genai['per_token_ms']:.2f} "
                             f"({'no slower' if r['per_token_ms'] <= genai['per_token_ms'] else 'slower'})")
            budget = genai["prefill_ms"] + r["encoder_ms"] + r["rounds"][0].get("features_ms", 0)
            checks.insert(1, f"first token {r['first_token_ms']:.0f} ms vs genai prefill + our features and encoder "
                             f"{budget:.0f} ms ({'no slower' if r['first_token_ms'] <= budget else 'slower'})")
        lines.append(f"- {r['system']}: " + "; ".join(checks))
    for name, why in result["skipped"].items():
        lines.append(f"- {name}: skipped ({why})")
    return "\n".join(lines)


@click.command()
@click.option("--checkpoint", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="The checkpoint the engines were exported from (the peers are built from it).")
@click.option("--engine", "engines", multiple=True, required=True, type=click.Path(exists=True, file_okay=False,
              path_type=Path), help="Our export directory (repeatable).")
@click.option("--work", type=click.Path(file_okay=False, path_type=Path), default=Path("peers-work"), show_default=True,
              help="Where the peers' models are built and kept.")
@click.option("--audio-seconds", type=click.FloatRange(1, 120), default=10.0, show_default=True)
@click.option("--new-tokens", type=click.IntRange(2, 1000), default=40, show_default=True)
@click.option("--threads", type=click.IntRange(1, os.cpu_count() or 1), default=min(2, os.cpu_count() or 1),
              show_default=True)
@click.option("--rounds", type=click.IntRange(1, 10), default=2, show_default=True)
@click.option("--repeats", type=click.IntRange(1, 20), default=3, show_default=True)
@click.option("--json-out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--markdown-out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Replace existing --json-out / --markdown-out files.")
@handle_errors
def main(checkpoint, engines, work, audio_seconds, new_tokens, threads, rounds, repeats, json_out, markdown_out, force):
    """Time our exports against onnxruntime-genai on the same weights, with the machine's bandwidth floor."""
    for out in (json_out, markdown_out):
        if out is not None and out.exists() and not force:
            raise QasrError(f"{out} exists; pass --force to replace it")
        if out is not None and not out.parent.is_dir():
            raise QasrError(f"{out.parent} is not a directory")
    result = run(checkpoint, list(engines), work, audio_seconds, new_tokens, threads, rounds, repeats, Progress(False))
    report = format_report(result)
    click.echo(report)
    if json_out:
        json_out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    if markdown_out:
        markdown_out.write_text(report + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
