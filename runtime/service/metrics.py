"""Prometheus metrics of one app instance (its own registry, so several apps can live in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("qasr_requests", "HTTP requests by endpoint and status", ["endpoint", "status"], registry=r)
        self.errors = Counter("qasr_request_errors", "Requests answered with an error, by endpoint and status",
                              ["endpoint", "status"], registry=r)
        self.latency = Histogram("qasr_request_latency_seconds", "Request latency", ["endpoint"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.queue_depth = Gauge("qasr_queue_depth", "Requests waiting for the engine", registry=r)
        self.audio_seconds = Counter("qasr_audio_seconds", "Seconds of audio transcribed", registry=r)
        self.batch_size = Histogram("qasr_batch_size", "Requests per engine batch", buckets=BATCH_BUCKETS, registry=r)
        self.inference = Histogram("qasr_inference_seconds", "Engine time per batch", buckets=LATENCY_BUCKETS,
                                   registry=r)
        self.live_streams = Gauge("qasr_live_streams", "Open /v1/realtime streams", registry=r)
        self.ready = Gauge("qasr_ready", "1 once the engine is loaded", registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
