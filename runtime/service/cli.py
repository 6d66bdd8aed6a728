"""asr-serve: serve an export directory over HTTP."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from ..cli_support import EXIT_USER_ERROR, MAX_THREADS, handle_errors
from qasr.errors import QasrError
from qasr.exportformat import load_manifest
from ..stopping import DecodeOptions
from ..session import DEVICE_PROVIDERS
from .settings import ServiceSettings



@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--engine", "engine_dir", required=True, type=click.Path(), help="Export directory made by asr-export.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--max-batch", default=8, show_default=True, type=click.IntRange(1, 1024))
@click.option("--max-wait-ms", default=10.0, show_default=True, type=click.FloatRange(0))
@click.option("--max-queue", default=64, show_default=True, type=click.IntRange(1))
@click.option("--max-upload-mb", default=25.0, show_default=True, type=click.FloatRange(0.001))
@click.option("--max-audio-seconds", default=600.0, show_default=True, type=click.FloatRange(0.1))
@click.option("--request-timeout", default=120.0, show_default=True, type=click.FloatRange(0.1))
@click.option("--api-key-env", default="QASR_API_KEY", show_default=True,
              help="Environment variable holding the bearer token; unset or empty: no auth.")
@click.option("--device", type=click.Choice(list(DEVICE_PROVIDERS)), default="auto", show_default=True)
@click.option("--threads", type=click.IntRange(0, MAX_THREADS), default=0, help="ONNX Runtime intra-op threads (0: its default).")
@click.option("--graceful-timeout", default=30.0, show_default=True, type=click.FloatRange(0),
              help="Seconds to finish in-flight requests on shutdown; those still open then get a JSON 503.")
@click.option("--ray", "use_ray", is_flag=True,
              help="Serve on Ray Serve: --replicas engine replicas behind Ray's HTTP proxy (RAY_ADDRESS: a cluster).")
@click.option("--replicas", type=click.IntRange(1), default=1, show_default=True, help="--ray: engine replicas.")
@click.option("--replica-cpus", type=click.FloatRange(0), default=1.0, show_default=True, help="--ray: CPUs per replica.")
@click.option("--replica-gpus", type=click.FloatRange(0), default=0.0, show_default=True, help="--ray: GPUs per replica.")
@click.option("--max-streams", default=32, show_default=True, type=click.IntRange(1),
              help="Live streams (/v1/realtime) at once; one more gets an error event and is closed.")
@click.option("--stream-idle-seconds", default=60.0, show_default=True, type=click.FloatRange(1),
              help="A live stream that sends nothing for this long is closed.")
@click.option("--live-step", default=0.5, show_default=True, type=click.FloatRange(0.1, 10),
              help="Seconds of new speech per live decode step (shorter: text sooner, more compute).")
@click.option("--aligner", "aligner_dir", type=click.Path(), default=None,
              help="A forced aligner export: word timestamps (timestamp_granularities=['word']) and word-timed "
                   "subtitles.")
@click.option("--model-name", default=None,
              help="The model name /v1/models lists and requests must name [default: the hub id the export was made "
                   "from, else its folder's name].")
@handle_errors
def main(engine_dir, host, port, max_batch, max_wait_ms, max_queue, max_upload_mb, max_audio_seconds, request_timeout,
         api_key_env, device, threads, graceful_timeout, use_ray, replicas, replica_cpus, replica_gpus, max_streams,
         stream_idle_seconds, live_step, aligner_dir, model_name):
    """Serve ENGINE over HTTP: /v1/audio/transcriptions (OpenAI), /v1/realtime (OpenAI's Realtime transcription
    over a WebSocket), /v1/transcribe, /health, /ready, /metrics."""
    from ..cli_support import require

    require(("fastapi", "uvicorn", "multipart", "prometheus_client", "websockets"), "serve", "asr-serve")
    from .server import create_app, graceful_server

    load_manifest(engine_dir)  # a bad directory fails here, in one line, before the server starts (sha256 cached)
    if aligner_dir is not None and not load_manifest(aligner_dir).is_aligner:
        raise QasrError(f"--aligner {aligner_dir} is a speech recognition export, not a forced aligner's")
    settings = ServiceSettings(
        engine_dir=engine_dir, max_batch=max_batch, max_wait_ms=max_wait_ms, max_queue=max_queue,
        max_upload_bytes=int(max_upload_mb * (1 << 20)), max_audio_seconds=max_audio_seconds,
        request_timeout_s=request_timeout, api_key=os.environ.get(api_key_env) or None,
        providers=DEVICE_PROVIDERS[device], threads=threads, checksums="size", decode=DecodeOptions(),
        model_name=model_name, graceful_timeout_s=graceful_timeout, max_streams=max_streams,
        stream_idle_s=stream_idle_seconds, live_step_s=live_step,
        aligner_dir=Path(aligner_dir) if aligner_dir else None)
    if use_ray:
        require(("ray", "httpx"), "ray", "asr-serve --ray")
        from .ray_serve import serve_forever

        serve_forever(settings, replicas, host, port, replica_cpus, replica_gpus)
        return
    if replicas != 1:
        raise QasrError("--replicas needs --ray")
    app = create_app(settings)
    graceful_server(app, graceful_timeout, host=host, port=port, log_level="info").run()
    if app.state.service.load_error:   # said in one line as it happened (server._load_failed)
        sys.exit(EXIT_USER_ERROR)
