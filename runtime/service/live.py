"""Run the service in a background thread on a loopback port the OS picks (tests, load runs, embedding)."""

from __future__ import annotations

import socket
import threading
import time

import uvicorn

from .server import create_app
from .settings import ServiceSettings


class LiveServer:
    def __init__(self, settings: ServiceSettings, host: str = "127.0.0.1", graceful_timeout: float = 30.0):
        self.app = create_app(settings)
        self.sock = socket.socket()
        self.sock.bind((host, 0))
        self.url = f"http://{host}:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(self.app, log_level="warning", timeout_graceful_shutdown=graceful_timeout)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> "LiveServer":
        import httpx

        self.thread.start()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/ready", timeout=5).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if not self.thread.is_alive():
                break
            time.sleep(0.05)
        self.__exit__()
        raise RuntimeError(f"the service at {self.url} did not become ready")

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=120)

    @property
    def service(self):
        return self.app.state.service
