"""Concurrent live streams against one asr-serve process (qasr.benchmarks.live --streams): how many real-time
streams the machine holds with the latency goals met, and the service's memory per stream.

The server runs as its own process (asr-serve, default settings but --max-streams and --max-batch), the clients
are threads of this one: each streams held-out utterances joined with pauses over /v1/realtime at real-time
pace (100 ms pcm16 chunks at 24 kHz, as OpenAI clients send) and stamps the events it receives on the audio
clock (wall time since its first chunk). A word's latency is its first confirmed appearance less its end,
estimated as in live.py (recognition points of each utterance, offset by where the utterance sits in the
stream; turns that voice activity split inside an utterance are left out of word latency). A turn's end latency
is its completed event less its committed event (the moment its end was detected), both as the client saw them.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time

import click
import numpy as np
from qasr.runtime.audio import resample

from qasr.reference.wer import normalise

from .live_measures import PAUSE_SECONDS, percentile, recognition_points
from .server_process import ServerProcess, rss_mb

GOAL_WORD_MEDIAN, GOAL_END_MEDIAN = 1.5, 0.3


def _client(url: str, pcm: bytes, result: dict, start_barrier: threading.Barrier) -> None:
    from websockets.sync.client import connect

    events: list[tuple[float, dict]] = []
    with connect(url.replace("http://", "ws://") + "/v1/realtime?intent=transcription", open_timeout=60,
                 max_size=None) as ws:
        json.loads(ws.recv())
        stop = threading.Event()
        t0 = [0.0]

        def receive():
            while not stop.is_set():
                try:
                    message = ws.recv(timeout=0.5)
                except TimeoutError:
                    continue
                except Exception:
                    return
                events.append((time.perf_counter() - t0[0], json.loads(message)))

        start_barrier.wait()
        t0[0] = time.perf_counter()
        receiver = threading.Thread(target=receive, daemon=True)
        receiver.start()
        size = 2400 * 2
        for i, lo in enumerate(range(0, len(pcm), size)):
            wait = t0[0] + (i + 1) * 0.1 - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            ws.send(json.dumps({"type": "input_audio_buffer.append",
                                "audio": base64.b64encode(pcm[lo: lo + size]).decode()}))
        deadline = time.perf_counter() + 30
        while time.perf_counter() < deadline:   # until every committed item is completed
            committed = {e["item_id"] for _, e in events if e["type"] == "input_audio_buffer.committed"}
            completed = {e["item_id"] for _, e in events
                         if e["type"] == "conversation.item.input_audio_transcription.completed"}
            if committed and committed <= completed and time.perf_counter() - t0[0] > len(pcm) / 48000 + 1.0:
                break
            time.sleep(0.05)
        stop.set()
        receiver.join(timeout=2)
    result["events"] = events


def _latencies(events, spans, points) -> tuple[list[float], list[float]]:
    """Word latencies and turn-end latencies of one client's events."""
    starts = {e["item_id"]: e["audio_start_ms"] / 1000 for _, e in events
              if e["type"] == "input_audio_buffer.speech_started"}
    committed_at = {e["item_id"]: t for t, e in events if e["type"] == "input_audio_buffer.committed"}
    ends = [t - committed_at[e["item_id"]] for t, e in events
            if e["type"] == "conversation.item.input_audio_transcription.completed" and e["item_id"] in committed_at]
    owner: dict[str, int] = {}
    for item, start in starts.items():
        owner[item] = next((k for k, (lo, hi) in enumerate(spans) if lo - 0.5 <= start < hi), -1)
    split = {k for k in owner.values() if list(owner.values()).count(k) > 1}
    words: list[float] = []
    shown: dict[str, str] = {}
    counted: dict[str, int] = {}
    for t, e in events:
        if e["type"] != "conversation.item.input_audio_transcription.delta":
            continue
        item = e["item_id"]
        k = owner.get(item, -1)
        if k < 0 or k in split:
            continue
        shown[item] = shown.get(item, "") + e["delta"]
        n = len(normalise(shown[item]).split())
        for i in range(counted.get(item, 0), n):
            if i < len(points[k]) and points[k][i] is not None:
                words.append(t - (spans[k][0] + points[k][i]))
        counted[item] = n
    return words, ends


def concurrency_table(engine_dir, utterances, counts: list[int], seconds: float, transcriber) -> list[dict]:
    from qasr.runtime.audio import load_audio

    click.echo(f"\n## Concurrent real-time streams (one asr-serve process, {seconds:g} s of held-out speech each)\n")
    click.echo("| streams | word latency median / p95 (s) | turn end to text median / p95 (s) | goals met | "
               "server RSS after a warm-up stream -> peak (MB) | MB per stream | load average |\n|---|---|---|---|---|---|---|")
    # each client starts at another utterance of the set
    audios = [load_audio(u.audio, 16000) for u in utterances]
    offline = [t.text for t in transcriber.transcribe(audios, __import__("qasr.runtime.transcribe",
                                                                          fromlist=["x"]).TranscribeOptions())]
    point_cache: dict[int, list] = {}
    rows = []
    for count in counts:
        clients = []
        for c in range(count):
            parts, spans, points, at, k = [], [], [], 0.0, (c * 7) % len(audios)
            while at < seconds:
                audio = audios[k]
                if k not in point_cache:
                    point_cache[k] = recognition_points(transcriber, audio, normalise(offline[k]).split())
                spans.append((at, at + len(audio) / 16000))
                points.append(point_cache[k])
                parts += [audio, np.zeros(int(PAUSE_SECONDS * 16000), np.float32)]
                at += len(audio) / 16000 + PAUSE_SECONDS
                k = (k + 1) % len(audios)
            x = np.concatenate(parts)
            pcm = (np.clip(resample(x, 16000, 24000), -1, 1) * 32767).astype("<i2").tobytes()
            clients.append((pcm, spans, points))
        with ServerProcess(engine_dir, "--max-streams", str(count), "--max-batch", str(max(8, count)),
                           "--max-queue", str(max(64, 4 * count)), ready_timeout=120) as server:
            warm_up = [{}]   # one short stream first: sessions, arenas and the VAD are loaded before measuring
            _client(server.url, clients[0][0][: 5 * 48000], warm_up[0], threading.Barrier(1))
            idle = rss_mb(server.pid)
            load = os.getloadavg()[0]
            barrier = threading.Barrier(count)
            results = [{} for _ in range(count)]
            threads = [threading.Thread(target=_client, args=(server.url, pcm, results[i], barrier))
                       for i, (pcm, _, _) in enumerate(clients)]
            peak = [idle]

            def watch():
                while any(t.is_alive() for t in threads):
                    peak[0] = max(peak[0], rss_mb(server.pid))
                    time.sleep(0.5)

            for t in threads:
                t.start()
            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
            for t in threads:
                t.join()
            watcher.join(timeout=2)
        words, ends = [], []
        for result, (_, spans, points) in zip(results, clients):
            w, e = _latencies(result.get("events", []), spans, points)
            words += w
            ends += e
        wm, em = percentile(words, 50), percentile(ends, 50)
        met = wm <= GOAL_WORD_MEDIAN and em <= GOAL_END_MEDIAN
        row = {"streams": count, "word_median": wm, "word_p95": percentile(words, 95), "end_median": em,
               "end_p95": percentile(ends, 95), "goals_met": met, "rss_idle_mb": idle, "rss_peak_mb": peak[0],
               "mb_per_stream": (peak[0] - idle) / count, "load_average": load, "words": len(words), "turns": len(ends)}
        rows.append(row)
        click.echo(f"| {count} | {wm:.2f} / {row['word_p95']:.2f} | {em:.2f} / {row['end_p95']:.2f} | "
                   f"{'yes' if met else 'no'} | {idle:.0f} -> {peak[0]:.0f} | {row['mb_per_stream']:.1f} | {load:.2f} |")
    return rows
