"""Run the service in a background thread on a loopback port the OS picks (tests, load runs, embedding)."""

from __future__ import annotations

import socket
import threading
import time

from .server import create_app, graceful_server
from .settings import ServiceSettings


class ServerThread:
    """A uvicorn server (what `make_server` returns) on a loopback port the OS picks, run in a background thread;
    leaving stops it as SIGTERM does."""

    def __init__(self, make_server, host: str = "127.0.0.1"):
        self.sock = socket.socket()
        self.sock.bind((host, 0))
        self.url = f"http://{host}:{self.sock.getsockname()[1]}"
        self.server = make_server()
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True   # what SIGTERM does
        self.thread.join(timeout=120)


class LiveServer(ServerThread):
    def __init__(self, settings: ServiceSettings, host: str = "127.0.0.1"):
        self.app = create_app(settings)
        super().__init__(lambda: graceful_server(self.app, settings.graceful_timeout_s, log_level="warning"), host)

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

    def stop_async(self) -> None:
        """Begin shutdown (as SIGTERM does) without waiting for it."""
        self.server.should_exit = True

    @property
    def service(self):
        return self.app.state.service
