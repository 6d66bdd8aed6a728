"""Scale-out on Ray Serve: the same routes, N engine replicas, Ray's request batching inside each.

    asr-serve --engine DIR --ray --replicas 2 [--port 8000]        (a local Ray instance)
    RAY_ADDRESS=ray://head:10001 asr-serve --engine DIR --ray --replicas 8 --replica-gpus 1   (a cluster)

Each replica builds the service's own FastAPI app (server.create_app: routes, limits, errors, metrics)
and loads its own engine; Ray's HTTP proxy spreads requests over the replicas, and our front (ray_front.py) on
host:port relays to that proxy so that a replica that fails answers as the service does (JSON 503, Retry-After). Inside a replica,
concurrent requests are batched by Ray Serve's `@serve.batch` (ray_batcher.RayBatcher, the
DynamicBatcher's interface), so requests of different clients still share one engine call. On a cluster of GPU
machines, `--replica-gpus 1` gives each replica one GPU and Ray places replicas where GPUs are free;
every machine needs the export directory at the same path (or a shared file system).
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import replace
from urllib.parse import urlparse

from .live import ServerThread
from .settings import ServiceSettings


def deployment(settings: ServiceSettings, replicas: int, replica_cpus: float = 1.0, replica_gpus: float = 0.0):
    """The bound Ray Serve application: `replicas` copies of the service's app, each with its own engine."""
    from ray import serve

    from .server import create_app

    ray_settings = replace(settings, batching="ray")

    def build():   # runs in each replica: its own Service, engine and batcher
        return create_app(ray_settings)

    @serve.deployment(name="qasr", num_replicas=replicas,
                      ray_actor_options={"num_cpus": replica_cpus, "num_gpus": replica_gpus},
                      max_ongoing_requests=max(2 * settings.max_batch, settings.max_queue))
    @serve.ingress(build)
    class QasrService:
        pass

    return QasrService.bind()


def start(settings: ServiceSettings, replicas: int, replica_cpus: float = 1.0, replica_gpus: float = 0.0,
          num_cpus: int | None = None) -> str:
    """Start Ray (a local instance, or the cluster RAY_ADDRESS names) and the deployment behind Ray's HTTP proxy on
    a free port; return the proxy's URL (the front, ray_front.RayFront, is what clients reach)."""
    import ray
    from ray import serve

    address = os.environ.get("RAY_ADDRESS")
    if not ray.is_initialized():
        ray.init(address=address, num_cpus=None if address else num_cpus, include_dashboard=False, log_to_driver=False)
    # a ray:// client drives a cluster from outside it: the proxy listens on the head's interfaces, else on loopback
    proxy_host = urlparse(address).hostname if address and address.startswith("ray://") else "127.0.0.1"
    port = free_port()
    serve.start(http_options={"host": "0.0.0.0" if proxy_host != "127.0.0.1" else proxy_host, "port": port})
    serve.run(deployment(settings, replicas, replica_cpus, replica_gpus), name="qasr", route_prefix="/")
    return f"http://{proxy_host}:{port}"


def front_server(proxy_url: str, settings: ServiceSettings, **config):
    """The uvicorn server of the front: relays to Ray's proxy, answers a replica's failure in our JSON shape, and
    drains at shutdown as the single-process service does."""
    from .ray_front import RayFront
    from .server import DrainingServer

    return DrainingServer.of(RayFront(proxy_url, settings.retry_after_s), settings.graceful_timeout_s, **config)


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS has free on `host` now (Ray's HTTP proxy takes a port number, not a socket)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_ready(url: str, replicas: int, timeout: float = 300.0) -> None:
    """Until every replica has answered /ready with 200 (each loads its engine when it starts); the proxy
    spreads requests, and each answer names its process in `x-qasr-worker`."""
    import httpx

    from qasr.errors import QasrError

    ready: set[str] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            for _ in range(4 * replicas):
                response = httpx.get(url + "/ready", timeout=30)
                if response.status_code == 200:
                    ready.add(response.headers["x-qasr-worker"])
        except httpx.TransportError:
            pass   # the proxy is not listening yet
        if len(ready) >= replicas:
            return
        time.sleep(0.5)
    raise QasrError(f"{url}: {len(ready)} of {replicas} Ray Serve replicas became ready within {timeout:g} s")


def stop() -> None:
    import ray
    from ray import serve

    serve.shutdown()
    ray.shutdown()


def serve_forever(settings: ServiceSettings, replicas: int, host: str, port: int, replica_cpus: float,
                  replica_gpus: float) -> None:
    """asr-serve --ray: the front on host:port until SIGTERM or Ctrl-C (uvicorn's handlers: open requests drain
    first), then Serve and Ray shut down."""
    proxy = start(settings, replicas, replica_cpus, replica_gpus)
    try:
        front_server(proxy, settings, host=host, port=port, log_level="info").run()
    finally:
        stop()


class FrontThread(ServerThread):
    """The front on a loopback port the OS picks, in a background thread (tests, embedding)."""

    def __init__(self, proxy_url: str, settings: ServiceSettings, host: str = "127.0.0.1"):
        super().__init__(lambda: front_server(proxy_url, settings, log_level="warning"), host)

    def __enter__(self) -> "FrontThread":
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started and self.thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        return self
