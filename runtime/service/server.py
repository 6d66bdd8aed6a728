"""The FastAPI app: OpenAI-compatible transcriptions, a JSON endpoint, health, readiness, metrics; the
middleware that guards them and the error handlers.

Every bad request gets a 4xx with a JSON error body {"error": {"message", "type", "code"}}; nothing a
client sends can take the server down. Uploaded bytes are read into memory up to the size limit
(Starlette spools large multipart parts to anonymous temporary files, closed after each request);
no client-supplied path is ever opened.

Kept apart from app.py (the Service and the error shapes) so that routes.py can import those without
a cycle: app <- routes <- server.
"""

from __future__ import annotations

import asyncio
import os
import time
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from .app import KNOWN_PATHS, ApiError, Service, _caused_by, error_response
from .body_limit import BodyLimitMiddleware, BodyTooLarge, body_limit_for
from .realtime import install_realtime
from .routes import install_routes
from .settings import ServiceSettings

WORKER = str(os.getpid())


def create_app(settings: ServiceSettings) -> FastAPI:
    service = Service(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        loading = asyncio.create_task(service.load())
        loading.add_done_callback(lambda _: service.load_error and _load_failed(app))
        yield
        await loading
        if service.batcher is not None:
            await service.batcher.stop()  # graceful: what is queued is finished first

    app = FastAPI(title="qasr transcription service", lifespan=lifespan)
    app.state.service = service
    install_routes(app, service)
    install_realtime(app, service)

    @app.middleware("http")
    async def guard(request: Request, call_next):
        start = time.perf_counter()
        endpoint = request.url.path if request.url.path in KNOWN_PATHS else "other"  # bounded label values
        if not service.authorized(request):
            response = error_response(401, "missing or wrong API key (Authorization: Bearer <key>)",
                                      "authentication_error", {"WWW-Authenticate": "Bearer"})
        else:
            try:
                response = await call_next(request)
            except Exception as exc:  # a bug of ours answers 500 and the server carries on
                if _caused_by(exc, BodyTooLarge):
                    raise BodyTooLarge from None  # the outer body-limit guard answers 413
                response = error_response(500, "internal error", "server_error")
        response.headers["x-qasr-worker"] = WORKER   # which process answered (replicas behind a proxy)
        service.metrics.requests.labels(endpoint, str(response.status_code)).inc()
        if response.status_code >= 400:
            service.metrics.errors.labels(endpoint, str(response.status_code)).inc()
        service.metrics.latency.labels(endpoint).observe(time.perf_counter() - start)
        return response

    app.add_middleware(BodyLimitMiddleware, limit=body_limit_for(settings.max_upload_bytes))

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError):
        return error_response(exc.status, exc.message, exc.kind, exc.headers, exc.param)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError):
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:]) or 'body'}: {e['msg']}" for e in exc.errors())
        return error_response(400, f"invalid request: {problems}", "invalid_request_error")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException):
        return error_response(exc.status_code, str(exc.detail), "invalid_request_error")

    return app



def _load_failed(app: FastAPI) -> None:
    """The engine cannot be loaded: say why in one line and stop the server (the command exits non-zero), so that a
    supervisor sees a failed start instead of a process that answers /health."""
    import sys

    print(f"error: the engine could not be loaded: {app.state.service.load_error}", file=sys.stderr, flush=True)
    stop = getattr(app.state, "stop_server", None)
    if stop is not None:
        stop()


# How long, once shutdown begins, a connection already accepted may take to send its request (it is then answered,
# 503 for new work); connections still silent after this are closed as uvicorn closes idle ones.
DRAIN_S = 0.5
# How long the port stays open once no new connection is let in: handshakes already under way complete.
HANDSHAKE_S = 0.1
# A classic BPF program for a listening TCP socket (Linux's SO_ATTACH_FILTER; it sees the TCP header): a segment with
# SYN and without ACK, a new connection, is dropped; every other passes, so handshakes under way complete.
NO_NEW_CONNECTIONS = ((0x30, 0, 0, 13),            # load the flags byte
                      (0x54, 0, 0, 0x12),          # keep SYN and ACK
                      (0x15, 0, 1, 0x02),          # SYN alone?
                      (0x06, 0, 0, 0),             # yes: drop
                      (0x06, 0, 0, 0xFFFFFFFF))    # no: pass
SO_ATTACH_FILTER = 26


def refuse_new_connections(listener) -> bool:
    """Linux: the kernel completes no new connection on `listener` (a client's SYN is dropped; it retries and is
    refused once the port has closed), while those queued or under way go on. False where this cannot be done."""
    import ctypes
    import socket
    import struct
    import sys

    if not sys.platform.startswith("linux"):
        return False
    program = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *op) for op in NO_NEW_CONNECTIONS))
    try:   # struct sock_fprog {unsigned short len; struct sock_filter *filter;}; the kernel copies the program
        listener.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER,
                            struct.pack("HL", len(NO_NEW_CONNECTIONS), ctypes.addressof(program)))
    except OSError:
        return False
    return True


def graceful_server(app: FastAPI, graceful_timeout: float, **config):
    """A uvicorn server for `app` whose shutdown tells the Service first: requests still open when
    `graceful_timeout` has passed get a JSON 503 (never uvicorn's plain-text 500 of a cancelled task),
    queued work of clients already answered is dropped, and the process exits promptly (only the batch
    already inside the engine is finished). uvicorn's own deadline comes a second later, as a backstop.
    Connections accepted at the instant of shutdown are answered (DrainingServer)."""
    from .realtime import MAX_FRAME_BYTES

    server = DrainingServer.of(app, graceful_timeout, app.state.service.begin_shutdown, ws_max_size=MAX_FRAME_BYTES,
                               **config)

    def stop() -> None:
        server.should_exit = True

    app.state.stop_server = stop
    return server


class DrainingServer(uvicorn.Server):
    """A uvicorn server that answers every connection the kernel accepted before the port closed. At shutdown the
    kernel is told to let no new connection in (Linux: refuse_new_connections), handshakes under way get
    HANDSHAKE_S to complete, what is still in the listening queues is taken in (uvicorn's close would reset it)
    and every connection gets up to DRAIN_S to send its request: a client that connected at the instant of
    SIGTERM gets an HTTP answer (new work: 503 with Retry-After), one that connects later is refused (nothing was
    sent: safe to retry elsewhere). `begin_shutdown` (if any) is called first."""
    begin_shutdown = None

    @classmethod
    def of(cls, app, graceful_timeout: float, begin_shutdown=None, **config) -> "DrainingServer":
        server = cls(uvicorn.Config(app, timeout_graceful_shutdown=graceful_timeout + 1.0, **config))
        server.begin_shutdown = begin_shutdown
        return server

    async def shutdown(self, sockets=None) -> None:
        if self.begin_shutdown is not None:
            self.begin_shutdown()
        for server in self.servers:
            for listener in server.sockets:
                refuse_new_connections(listener)
        await asyncio.sleep(HANDSHAKE_S)
        await self._take_in_accepted()
        await self._wait_for_requests(DRAIN_S)
        await super().shutdown(sockets)

    async def _take_in_accepted(self) -> None:
        """Accept what is waiting in each listening socket's queue, then close the listener at once (no await in
        between; where new connections could not be refused, only one completed in those microseconds can still be
        reset), and serve the taken connections like any other."""
        taken = []
        for server in self.servers:
            for listener in server.sockets:
                with listener.dup() as sock:   # a socket.socket on the same listening socket
                    sock.setblocking(False)
                    while True:
                        try:
                            taken.append(sock.accept()[0])
                        except OSError:   # BlockingIOError: the queue is empty
                            break
            server.close()
        loop = asyncio.get_running_loop()
        protocol = self.config.http_protocol_class
        for connection in taken:
            connection.setblocking(False)
            await loop.connect_accepted_socket(
                lambda: protocol(config=self.config, server_state=self.server_state, app_state=self.lifespan.state),
                connection)

    async def _wait_for_requests(self, limit: float) -> None:
        """Until every open connection has sent a request (or `limit` s): uvicorn's shutdown closes a connection
        that has not, without an answer."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline and any(getattr(c, "cycle", True) is None
                                                  for c in self.server_state.connections):
            await asyncio.sleep(0.01)
