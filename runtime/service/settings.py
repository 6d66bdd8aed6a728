"""The service's settings, one frozen object built by the CLI (or by code embedding the app)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..stopping import DecodeOptions


@dataclass(frozen=True)
class ServiceSettings:
    engine_dir: Path
    max_batch: int = 8                 # requests decoded together
    max_wait_ms: float = 10.0          # how long the first request of a batch waits for company
    max_queue: int = 64                # waiting requests beyond this get 503 + Retry-After
    max_upload_bytes: int = 25 << 20   # the OpenAI API's limit
    max_audio_seconds: float = 600.0
    request_timeout_s: float = 120.0
    api_key: str | None = None         # when set, every endpoint but /health and /ready needs `Bearer <key>`
    providers: list[str] | None = None
    threads: int = 0
    checksums: str = "cached"          # how the engine checks its files on load (qasr.exportformat.files)
    retry_after_s: int = 1
    decode: DecodeOptions = field(default_factory=DecodeOptions)
    model_name: str | None = None      # the name /v1/models lists and requests may name; None: from the manifest
    graceful_timeout_s: float = 30.0   # on shutdown, requests still open after this get a JSON 503
    max_streams: int = 32              # live streams (/v1/realtime) at once; one more gets an error event and a close
    stream_idle_s: float = 60.0        # a live stream that sends nothing for this long is closed
    live_step_s: float = 0.5           # a live decode step per this much new speech
    batching: str = "qasr"             # qasr: our DynamicBatcher; ray: Ray Serve's @serve.batch (inside a replica)
    aligner_dir: Path | None = None    # a forced aligner export: word timestamps and word-timed subtitles
