"""`asr-serve` in its own process on a free loopback port, for benchmarks that measure the service from outside."""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path


class ServerProcess:
    """asr-serve --engine ENGINE --port (free) *args; entered when /ready answers 200. Its log goes to a temporary
    file (a pipe nobody reads would stall a server that logs every request); its tail explains a failed start."""

    def __init__(self, engine_dir, *args: str, ready_timeout: float = 300.0):
        from qasr.runtime.service.ray_serve import free_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ready_timeout = ready_timeout
        self.log = tempfile.TemporaryFile()
        command = [str(Path(sys.executable).parent / "asr-serve"), "--engine", str(engine_dir),
                   "--port", str(self.port), *args]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=self.log)

    @property
    def pid(self) -> int:
        return self.process.pid

    def __enter__(self) -> "ServerProcess":
        import httpx

        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"asr-serve exited: {self._log_tail()}")
            try:
                if httpx.get(self.url + "/ready", timeout=5).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.__exit__()
        raise RuntimeError(f"asr-serve at {self.url} did not become ready")

    def __exit__(self, *exc) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()

    def terminate(self) -> float:
        """SIGTERM; seconds until the process has exited."""
        start = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=300)
        return time.monotonic() - start

    def _log_tail(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-500:]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")
