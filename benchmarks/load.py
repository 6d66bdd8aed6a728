"""Load the transcription service at several concurrencies and report what it sustained, and whether
every answer was right.

    python -m qasr.benchmarks.load --engine EXPORT_DIR [--audio FILE ...] [--files 16] [--concurrency 1,4,16]
        [--requests 32]
    python -m qasr.benchmarks.load --url http://HOST:PORT ...      (a running asr-serve)

Requests cycle over many distinct files (`--audio`, given repeatedly, or `--files` synthetic speech clips
of different lengths), so a batch mixes different inputs. Each file's one-request transcript is taken
first, alone; under load every answer is checked against it. Per concurrency: requests/s,
audio-seconds/s, latency p50/p90/p99, the batch sizes the server formed (from its /metrics before and
after), mismatches (a 200 whose text differs from the file's one-request text) and lost requests (no
200: error status or no answer). Only loopback or the project's own hosts are to be targeted.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path

import click
import numpy as np

from qasr.runtime.cli_support import handle_errors
from qasr.errors import QasrError


def batch_histogram(url: str, headers: dict) -> dict[str, float]:
    import httpx

    values = {}
    for line in httpx.get(url + "/metrics", headers=headers, timeout=30).text.splitlines():
        if line.startswith("qasr_batch_size_"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def _post(url: str, name: str, audio: bytes, headers: dict):
    import httpx

    return httpx.post(url + "/v1/audio/transcriptions", files={"file": (name, audio)},
                      data={"response_format": "verbose_json"}, headers=headers, timeout=600)


def one_request_texts(url: str, files: list[tuple[str, bytes]], headers: dict) -> list[str]:
    """Each file's transcript from a request of its own (nothing else in flight): what load must reproduce."""
    texts = []
    for name, audio in files:
        response = _post(url, name, audio, headers)
        if response.status_code != 200:
            raise RuntimeError(f"{name}: the one-request transcript failed ({response.status_code}: {response.text[:200]})")
        texts.append(response.json()["text"])
    return texts


def run_level(url: str, files: list[tuple[str, bytes]], expected: list[str], concurrency: int, requests: int,
              headers: dict) -> dict:
    import httpx

    def one(i):
        name, audio = files[i % len(files)]
        start = time.perf_counter()
        try:
            response = _post(url, name, audio, headers)
        except httpx.HTTPError:
            return None, time.perf_counter() - start, 0.0, False
        ok = response.status_code == 200
        body = response.json() if ok else {}
        return response.status_code, time.perf_counter() - start, body.get("duration", 0.0), \
            ok and body.get("text") == expected[i % len(files)]

    before = batch_histogram(url, headers)
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(one, range(requests)))
    wall = time.perf_counter() - start
    after = batch_histogram(url, headers)
    ok = [r for r in results if r[0] == 200]
    mismatches = sum(1 for r in ok if not r[3])
    latencies = np.array([r[1] for r in ok]) if ok else np.array([np.nan])
    batches = after.get("qasr_batch_size_count", 0) - before.get("qasr_batch_size_count", 0)
    summed = after.get("qasr_batch_size_sum", 0) - before.get("qasr_batch_size_sum", 0)
    buckets = {k.split('le="')[1].rstrip('"}'): after[k] - before.get(k, 0) for k in after if "_bucket" in k}
    largest = min((float(le) for le, n in buckets.items() if n >= batches and batches), default=float("nan"))
    return {"concurrency": concurrency, "requests": requests, "ok": len(ok), "errors": requests - len(ok),
            "lost": requests - len(ok), "mismatches": mismatches, "files": len(files),
            "requests_per_s": len(ok) / wall, "audio_s_per_s": sum(r[2] for r in ok) / wall,
            "p50_ms": 1000 * float(np.percentile(latencies, 50)), "p90_ms": 1000 * float(np.percentile(latencies, 90)),
            "p99_ms": 1000 * float(np.percentile(latencies, 99)), "batches": int(batches),
            "mean_batch": summed / batches if batches else 0.0, "max_batch_at_most": largest}


def format_table(rows: list[dict]) -> str:
    head = f"{'conc':>5} {'ok':>5} {'lost':>5} {'wrong':>6} {'req/s':>7} {'audio s/s':>10} {'p50 ms':>8} {'p90 ms':>8} " \
           f"{'p99 ms':>8} {'batches':>8} {'mean batch':>10} {'max batch <=':>12}"
    lines = [head]
    for r in rows:
        lines.append(f"{r['concurrency']:>5} {r['ok']:>5} {r['lost']:>5} {r['mismatches']:>6} {r['requests_per_s']:>7.2f} "
                     f"{r['audio_s_per_s']:>10.1f} {r['p50_ms']:>8.0f} {r['p90_ms']:>8.0f} {r['p99_ms']:>8.0f} "
                     f"{r['batches']:>8} {r['mean_batch']:>10.2f} {r['max_batch_at_most']:>12g}")
    return "\n".join(lines)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--engine", "engine_dir", default=None, help="Start an in-process server on this export directory.")
@click.option("--url", default=None, help="Or load a running server (loopback or your own test hosts only).")
@click.option("--audio", "audio_files", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Audio files to send (repeatable) [default: --files synthetic speech clips].")
@click.option("--files", "file_count", type=click.IntRange(1, 1000), default=16, show_default=True,
              help="Distinct synthetic clips (0.8-9 s) when no --audio is given.")
@click.option("--concurrency", default="1,4,16", show_default=True)
@click.option("--requests", "count", type=click.IntRange(1, 10000), default=32, show_default=True)
@click.option("--max-batch", type=click.IntRange(1), default=8, show_default=True)
@click.option("--max-wait-ms", type=click.FloatRange(0), default=10.0, show_default=True)
@click.option("--ray-replicas", default=None,
              help="With --engine: serve on a local Ray Serve instance with these replica counts in turn, e.g. 1,2.")
@click.option("--api-key", default=None)
@click.option("--json-out", type=click.Path(dir_okay=False), default=None)
@handle_errors
def main(engine_dir, url, audio_files, file_count, concurrency, count, max_batch, max_wait_ms, ray_replicas, api_key,
         json_out):
    if bool(engine_dir) == bool(url):
        raise QasrError("give exactly one of --engine (start a server here) or --url (a running one)")
    levels = [int(c) for c in concurrency.split(",") if c.strip()]
    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    files = [(Path(a).name, Path(a).read_bytes()) for a in audio_files] or synthetic_files(file_count)
    if ray_replicas:
        if not engine_dir:
            raise QasrError("--ray-replicas needs --engine")
        rows = []
        for replicas in [int(r) for r in ray_replicas.split(",") if r.strip()]:
            click.echo(f"Ray Serve, {replicas} replica(s) ...", err=True)
            for row in _ray_levels(Path(engine_dir), replicas, files, levels, count, max_batch, max_wait_ms, headers):
                rows.append({"replicas": replicas, **row})
        click.echo("\n".join(f"replicas {r['replicas']}: " + format_table([r]).splitlines()[1] for r in rows))
        click.echo("(columns: " + format_table(rows[:1]).splitlines()[0].strip() + ")")
        if json_out:
            Path(json_out).write_text(json.dumps({"files": [n for n, _ in files], "max_batch": max_batch,
                                                  "max_wait_ms": max_wait_ms, "rows": rows}, indent=2))
        return
    context = nullcontext()
    if engine_dir:
        from qasr.runtime.service.live import LiveServer
        from qasr.runtime.service.settings import ServiceSettings

        context = LiveServer(ServiceSettings(engine_dir=Path(engine_dir), max_batch=max_batch, max_wait_ms=max_wait_ms,
                                             max_queue=max(levels) * 2, api_key=api_key))
    with context as live:
        target = live.url if engine_dir else url.rstrip("/")
        click.echo(f"one-request transcripts of {len(files)} files ...", err=True)
        expected = one_request_texts(target, files, headers)
        rows = []
        for level in levels:
            click.echo(f"concurrency {level}: {count} requests ...", err=True)
            rows.append(run_level(target, files, expected, level, count, headers))
    click.echo(format_table(rows))
    if json_out:
        Path(json_out).write_text(json.dumps({"files": [n for n, _ in files], "max_batch": max_batch,
                                              "max_wait_ms": max_wait_ms, "rows": rows}, indent=2))
    if any(r["mismatches"] or r["lost"] for r in rows):
        raise QasrError("some answers were wrong or lost (see the table)")


def _ray_levels(engine_dir: Path, replicas: int, files, levels, count, max_batch, max_wait_ms, headers) -> list[dict]:
    """The load levels against a local Ray Serve deployment of `replicas` replicas (loopback only)."""
    from qasr.runtime.service import ray_serve
    from qasr.runtime.service.settings import ServiceSettings

    settings = ServiceSettings(engine_dir=engine_dir, max_batch=max_batch, max_wait_ms=max_wait_ms,
                               max_queue=max(levels) * 2)
    proxy = ray_serve.start(settings, replicas, replica_cpus=0.5)
    try:
        with ray_serve.FrontThread(proxy, settings) as front:   # what asr-serve --ray runs
            url = front.url
            ray_serve.wait_ready(url, replicas)
            expected = one_request_texts(url, files, headers)
            return [_no_batch_columns(run_level(url, files, expected, level, count, headers)) for level in levels]
    finally:
        ray_serve.stop()


def _no_batch_columns(row: dict) -> dict:
    """Behind Ray's proxy /metrics reaches one replica at a time: its batch counts are not the whole picture."""
    return {**row, "batches": 0, "mean_batch": 0.0, "max_batch_at_most": float("nan")}


def synthetic_files(count: int) -> list[tuple[str, bytes]]:
    """`count` distinct WAV files of synthetic speech, 0.8 to 9 s long."""
    import io

    import soundfile as sf

    from qasr.runtime.synthetic_audio import synthetic_speech

    files = []
    for i in range(count):
        seconds = 0.8 + (8.2 * i / max(count - 1, 1))
        buffer = io.BytesIO()
        sf.write(buffer, synthetic_speech(seconds, seed=100 + i), 16000, format="WAV")
        files.append((f"clip{i:03d}.wav", buffer.getvalue()))
    return files


if __name__ == "__main__":
    main()
