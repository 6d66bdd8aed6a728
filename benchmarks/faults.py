"""Faults the service meets, measured with real clients against a real `asr-serve` process (issue #40's cases).

    python -m qasr.benchmarks.faults --engine out/test-model-fp32-onnx [--ray] [--decoder-export DIR]

- abandoned: 6 clients upload a 590 s recording and hang up after 3 s; then a 2.9 s request: its latency, and
  the engine time the server spent (its /metrics) after the hang-ups.
- timeout: --request-timeout 2; a 590 s recording (504), then the 2.9 s request: its status and latency.
- shutdown, one open: --graceful-timeout 1 and a 30-minute recording open; SIGTERM: the client's answer and how
  long the process takes to exit. The same with 12 open streamed (SSE) requests of 590 s.
- shutdown under churn: 12 clients opening connections in a loop when SIGTERM comes: connections answered,
  reset (accepted, no answer) and refused (the port closed).
- rows leave the batch: 4 rows decoded 40 steps, then again with 3 cancelled before step 5: the mean step time
  after that point in each run, and the time of the cache move (`--decoder-export`: e.g. a 0.6B-shape export).
- --ray: 2 replicas; 8 requests of 240 s, one replica killed (SIGKILL) 2 s in: answers 200, JSON 503, other.

Loopback only. Prints a table; the "issue" column is what the issue measured on 2026-12-05 before the changes.
"""

from __future__ import annotations

import io
import os
import signal
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import click

from qasr.runtime.cli_support import handle_errors, require

from .server_process import ServerProcess

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "call.flac"   # 2.9 s, 44.1 kHz


def wav_bytes(seconds: float, seed: int = 0) -> bytes:
    import soundfile as sf

    from .memory import RATE, long_recording

    buffer = io.BytesIO()
    sf.write(buffer, long_recording(seconds, seed)[0], RATE, format="WAV")
    return buffer.getvalue()


class Server(ServerProcess):
    def engine_seconds(self) -> float:
        """Engine time the server has spent so far (its /metrics)."""
        import httpx

        for line in httpx.get(self.url + "/metrics", timeout=30).text.splitlines():
            if line.startswith("qasr_inference_seconds_sum"):
                return float(line.rsplit(" ", 1)[1])
        return 0.0


def post(url: str, data: bytes, **extra):
    import httpx

    return httpx.post(url + "/v1/audio/transcriptions", files={"file": ("audio.wav", data, "audio/wav")},
                      data=extra, timeout=600)


def upload_and_hang_up(url: str, data: bytes, after: float) -> None:
    host, port = url.removeprefix("http://").split(":")
    boundary = "qasrboundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\n".encode()
            + data + f"\r\n--{boundary}--\r\n".encode())
    head = (f"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: {host}\r\nContent-Type: multipart/form-data; "
            f"boundary={boundary}\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    with socket.create_connection((host, int(port))) as connection:
        connection.sendall(head + body)
        time.sleep(after)


LIMITS = ("--max-audio-seconds", "2000", "--max-upload-mb", "64", "--max-batch", "4")


def abandoned(engine: str, long: bytes, short: bytes) -> list[tuple]:
    with Server(engine, *LIMITS) as server:
        before = server.engine_seconds()
        clients = [threading.Thread(target=upload_and_hang_up, args=(server.url, long, 3.0)) for _ in range(6)]
        for client in clients:
            client.start()
        for client in clients:
            client.join()
        start = time.monotonic()
        answer = post(server.url, short)
        took = time.monotonic() - start
        spent = server.engine_seconds() - before
    return [("abandoned: 6 x 590 s uploads hung up at 3 s; the next 2.9 s request", "73 s",
             f"{took:.2f} s ({answer.status_code})", "answered promptly"),
            ("abandoned: engine time spent by the server in all", "-", f"{spent:.1f} s",
             "the abandoned work stops within one step")]


def timeout(engine: str, long: bytes, short: bytes) -> list[tuple]:
    with Server(engine, *LIMITS, "--request-timeout", "2") as server:
        first = post(server.url, long)
        start = time.monotonic()
        answer = post(server.url, short)
        took = time.monotonic() - start
    return [("timeout 2 s: 590 s file, then the 2.9 s request", "504, then 504",
             f"{first.status_code}, then {answer.status_code} in {took:.2f} s", "504, then 200")]


def shutdown(engine: str, long: bytes, longest: bytes) -> list[tuple]:
    rows = []
    with Server(engine, *LIMITS, "--graceful-timeout", "1") as server:
        answers = []
        client = threading.Thread(target=lambda: answers.append(post(server.url, longest)))
        client.start()
        time.sleep(3.0)
        took = server.terminate()
        client.join()
    rows.append(("SIGTERM, grace 1 s, a 30-minute request open: exit after", "35.6 s",
                 f"{took:.1f} s (client: {answers[0].status_code})", "a few seconds"))
    with Server(engine, *LIMITS, "--graceful-timeout", "1") as server:
        answers = []
        clients = [threading.Thread(target=lambda: answers.append(post(server.url, long, stream="true")))
                   for _ in range(12)]
        for client in clients:
            client.start()
        time.sleep(3.0)
        took = server.terminate()
        for client in clients:
            client.join()
    rows.append(("SIGTERM, grace 1 s, 12 open streams: exit after", "15.7 s", f"{took:.1f} s", "a few seconds"))
    return rows


def churn(engine: str) -> list[tuple]:
    counts = {"answered": 0, "reset": 0, "refused": 0}
    lock = threading.Lock()
    with Server(engine, *LIMITS, "--graceful-timeout", "1") as server:
        stop = threading.Event()
        request = f"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()

        def client() -> None:
            while True:
                try:
                    connection = socket.create_connection(("127.0.0.1", server.port), timeout=30)
                except OSError:
                    with lock:
                        counts["refused"] += 1
                    if stop.is_set():
                        return
                    continue
                reply = b""
                with connection:
                    try:
                        connection.sendall(request)
                        while chunk := connection.recv(65536):
                            reply += chunk
                    except OSError:
                        pass
                with lock:
                    counts["answered" if reply.startswith(b"HTTP/1.1 ") else "reset"] += 1

        clients = [threading.Thread(target=client) for _ in range(12)]
        for thread in clients:
            thread.start()
        time.sleep(2.0)
        stop.set()
        server.terminate()
        for thread in clients:
            thread.join()
    return [("SIGTERM under connection churn: accepted without an answer", "6",
             f"{counts['reset']} (answered {counts['answered']}, refused {counts['refused']})", "0")]


def ray_kill(engine: str) -> list[tuple]:
    import httpx

    data = wav_bytes(240, seed=3)
    with Server(engine, "--ray", "--replicas", "2", "--replica-cpus", "0.5", "--max-batch", "4") as server:
        from qasr.runtime.service.ray_serve import wait_ready

        wait_ready(server.url, replicas=2, timeout=300)
        workers = {httpx.get(server.url + "/ready", timeout=30).headers["x-qasr-worker"] for _ in range(8)}
        with ThreadPoolExecutor(8) as pool:
            answers = pool.map(lambda _: post(server.url, data), range(8))
            time.sleep(2.0)
            os.kill(int(sorted(workers)[0]), signal.SIGKILL)
            answers = list(answers)
        server.terminate()
    ok = sum(a.status_code == 200 for a in answers)
    json_503 = sum(a.status_code == 503 and a.headers.get("content-type", "").startswith("application/json")
                   and "retry-after" in a.headers for a in answers)
    return [("--ray, a replica killed under load (8 requests): 200 / JSON 503 / other", "plain-text 500s",
             f"{ok} / {json_503} / {len(answers) - ok - json_503}", "JSON 503 with Retry-After")]


def rows_leave(export: str, rows: int = 4, steps: int = 40, cancel_at: int = 5) -> list[tuple]:
    """Decode `rows` rows for `steps` steps; in a second run all but one are cancelled before step `cancel_at`.
    The mean step time after that point in each run (the first: what masked rows cost, as before), and the
    time of the move that takes the cancelled rows out."""
    import numpy as np

    from qasr.runtime.engine import Engine
    from qasr.runtime.generate import Prompt
    from qasr.runtime.stopping import DecodeOptions
    from qasr.runtime.synthetic_audio import synthetic_speech

    engine = Engine(export)
    embeds = engine.encode([engine.features(synthetic_speech(10.0, seed=i)) for i in range(rows)])
    prompts = [Prompt(engine.prompts.build(len(e)), e, steps) for e in embeds]
    options = DecodeOptions(max_new_tokens=steps, min_new_tokens=steps, repetition_max_period=0)
    moves = []
    original_begin = engine.generator.steps.begin

    def begin(*args, **kwargs):   # time the run's move of the rows still wanted
        run = original_begin(*args, **kwargs)
        keep = run.keep

        def timed(kept):
            start = time.perf_counter()
            keep(kept)
            moves.append(time.perf_counter() - start)
        run.keep = timed
        return run

    engine.generator.steps.begin = begin

    def after_cancel(cancelled) -> float:
        stamps = []
        engine.generate(prompts, options, on_step=lambda _: stamps.append(time.perf_counter()), cancelled=cancelled)
        return float(np.mean(np.diff(stamps[cancel_at + 1:])))

    engine.generate(prompts, options)   # warm-up
    kept_all = after_cancel(None)
    asked = []
    one_left = after_cancel(lambda: (asked.append(1), [len(asked) > cancel_at and r < rows - 1 for r in range(rows)])[1])
    shape = f"{engine.manifest.model.text.layers} layers, {engine.manifest.precision}"
    return [(f"rows leave the batch ({shape}): a step of {rows} rows (masked, as before) / of the 1 left",
             "-", f"{kept_all * 1000:.1f} ms / {one_left * 1000:.1f} ms", "only live rows computed"),
            (f"rows leave the batch: moving the row left to the front of the cache", "-",
             f"{moves[0] * 1000:.2f} ms", "small next to a step")]


@click.command()
@click.option("--engine", "engine_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--ray", "with_ray", is_flag=True, help="Also kill a Ray Serve replica under load (the `ray` extra).")
@click.option("--decoder-export", type=click.Path(exists=True, file_okay=False), default=None,
              help="The export whose decode steps are timed with rows leaving (default: --engine).")
@handle_errors
def main(engine_dir, with_ray, decoder_export):
    require(("httpx",), "test", "the faults benchmark")
    from .machine import cpu_description

    print(f"# faults of the service: {cpu_description()}, load average {os.getloadavg()[0]:.2f}", file=sys.stderr)
    short, long, longest = EXAMPLE.read_bytes(), wav_bytes(590, seed=2), wav_bytes(1800, seed=4)
    rows = []
    for name, run in (("abandoned", lambda: abandoned(engine_dir, long, short)),
                      ("timeout", lambda: timeout(engine_dir, long, short)),
                      ("shutdown", lambda: shutdown(engine_dir, long, longest)),
                      ("churn", lambda: churn(engine_dir)),
                      ("rows leave", lambda: rows_leave(decoder_export or engine_dir))) + ((("ray", lambda: ray_kill(engine_dir)),) if with_ray else ()):
        print(f"  {name} ...", file=sys.stderr, flush=True)
        rows += run()
    width = max(len(r[0]) for r in rows)
    print(f"| {'case':<{width}} | issue (before) | now | goal |")
    print(f"|{'-' * (width + 2)}|----------------|-----|------|")
    for case, before, now, goal in rows:
        print(f"| {case:<{width}} | {before} | {now} | {goal} |")
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
