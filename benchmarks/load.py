"""Load the transcription service at several concurrencies and report what it sustained.

    python -m qasr.benchmarks.load --engine EXPORT_DIR [--audio FILE] [--concurrency 1,4,16] [--requests 32]
    python -m qasr.benchmarks.load --url http://HOST:PORT --audio FILE ...      (a running asr-serve)

Per concurrency: requests/s, audio-seconds/s, latency p50/p90/p99, and the batch sizes the server
actually formed (read from its /metrics before and after). Only loopback or the project's own hosts
are to be targeted.
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


def batch_histogram(url: str, headers: dict) -> dict[str, float]:
    import httpx

    values = {}
    for line in httpx.get(url + "/metrics", headers=headers, timeout=30).text.splitlines():
        if line.startswith("qasr_batch_size_"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def run_level(url: str, audio: bytes, name: str, concurrency: int, requests: int, headers: dict) -> dict:
    import httpx

    def one(_):
        start = time.perf_counter()
        response = httpx.post(url + "/v1/audio/transcriptions", files={"file": (name, audio)},
                              data={"response_format": "verbose_json"}, headers=headers, timeout=600)
        return response.status_code, time.perf_counter() - start, response.json().get("duration", 0.0)

    before = batch_histogram(url, headers)
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(one, range(requests)))
    wall = time.perf_counter() - start
    after = batch_histogram(url, headers)
    ok = [r for r in results if r[0] == 200]
    latencies = np.array([r[1] for r in ok]) if ok else np.array([np.nan])
    batches = after.get("qasr_batch_size_count", 0) - before.get("qasr_batch_size_count", 0)
    summed = after.get("qasr_batch_size_sum", 0) - before.get("qasr_batch_size_sum", 0)
    buckets = {k.split('le="')[1].rstrip('"}'): after[k] - before.get(k, 0) for k in after if "_bucket" in k}
    largest = min((float(le) for le, n in buckets.items() if n >= batches and batches), default=float("nan"))
    return {"concurrency": concurrency, "requests": requests, "ok": len(ok), "errors": requests - len(ok),
            "requests_per_s": len(ok) / wall, "audio_s_per_s": sum(r[2] for r in ok) / wall,
            "p50_ms": 1000 * float(np.percentile(latencies, 50)), "p90_ms": 1000 * float(np.percentile(latencies, 90)),
            "p99_ms": 1000 * float(np.percentile(latencies, 99)), "batches": int(batches),
            "mean_batch": summed / batches if batches else 0.0, "max_batch_at_most": largest}


def format_table(rows: list[dict]) -> str:
    head = f"{'conc':>5} {'ok':>5} {'err':>4} {'req/s':>7} {'audio s/s':>10} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} " \
           f"{'batches':>8} {'mean batch':>10} {'max batch <=':>12}"
    lines = [head]
    for r in rows:
        lines.append(f"{r['concurrency']:>5} {r['ok']:>5} {r['errors']:>4} {r['requests_per_s']:>7.2f} "
                     f"{r['audio_s_per_s']:>10.1f} {r['p50_ms']:>8.0f} {r['p90_ms']:>8.0f} {r['p99_ms']:>8.0f} "
                     f"{r['batches']:>8} {r['mean_batch']:>10.2f} {r['max_batch_at_most']:>12g}")
    return "\n".join(lines)


@click.command()
@click.option("--engine", "engine_dir", default=None, help="Start an in-process server on this export directory.")
@click.option("--url", default=None, help="Or load a running server (loopback or your own test hosts only).")
@click.option("--audio", type=click.Path(exists=True, dir_okay=False), default="examples/hello.flac", show_default=True)
@click.option("--concurrency", default="1,4,16", show_default=True)
@click.option("--requests", "count", type=click.IntRange(1, 10000), default=32, show_default=True)
@click.option("--max-batch", type=click.IntRange(1), default=8, show_default=True)
@click.option("--max-wait-ms", type=click.FloatRange(0), default=10.0, show_default=True)
@click.option("--api-key", default=None)
@click.option("--json-out", type=click.Path(dir_okay=False), default=None)
@handle_errors
def main(engine_dir, url, audio, concurrency, count, max_batch, max_wait_ms, api_key, json_out):
    from qasr.runtime.errors import QasrError

    if bool(engine_dir) == bool(url):
        raise QasrError("give exactly one of --engine (start a server here) or --url (a running one)")
    levels = [int(c) for c in concurrency.split(",") if c.strip()]
    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    data = Path(audio).read_bytes()
    context = nullcontext()
    if engine_dir:
        from qasr.runtime.service.live import LiveServer
        from qasr.runtime.service.settings import ServiceSettings

        context = LiveServer(ServiceSettings(engine_dir=Path(engine_dir), max_batch=max_batch, max_wait_ms=max_wait_ms,
                                             max_queue=max(levels) * 2, api_key=api_key))
    with context as live:
        target = live.url if engine_dir else url.rstrip("/")
        rows = []
        for level in levels:
            click.echo(f"concurrency {level}: {count} requests ...", err=True)
            rows.append(run_level(target, data, Path(audio).name, level, count, headers))
    click.echo(format_table(rows))
    if json_out:
        Path(json_out).write_text(json.dumps({"audio": audio, "max_batch": max_batch, "max_wait_ms": max_wait_ms,
                                              "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
