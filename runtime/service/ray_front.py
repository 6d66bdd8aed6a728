"""The front of `asr-serve --ray`: our own port in front of Ray Serve's HTTP proxy.

Ray's proxy answers a request whose replica died (killed, out of memory, a crashed node) with a plain-text
"Internal Server Error" 500, and its own overload with plain-text 503s; it has no hook to change that. The front
relays every request and response as they are (bodies streamed both ways, server-sent events included, WebSockets
relayed frame by frame) and answers what the replicas never said in our shape: a 5xx that is not our JSON, or a
proxy that cannot be reached, becomes the service's JSON error, 503 `replica_unavailable` with Retry-After (the
proxy's own Retry-After kept). A client that hangs up is hung up on the proxy, which cancels the replica's work.

    client -> front (host:port, this process) -> Ray's proxy (127.0.0.1, a free port) -> replicas
"""

from __future__ import annotations

import asyncio

from .app import client_gone, error_response
from .realtime import CLOSE_TRY_LATER

# Headers that belong to one connection, not to the request or the response (RFC 9110 7.6.1), and Host.
HOP_HEADERS = {b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te", b"trailer",
               b"transfer-encoding", b"upgrade", b"host"}
# WebSocket handshake headers the client library makes itself.
WS_HEADERS = HOP_HEADERS | {b"sec-websocket-key", b"sec-websocket-version", b"sec-websocket-extensions",
                            b"sec-websocket-protocol", b"sec-websocket-accept"}


class RayFront:
    """An ASGI app relaying to the Ray proxy at `backend` (http://host:port)."""

    def __init__(self, backend: str, retry_after_s: int = 1):
        self.backend, self.retry_after_s = backend.rstrip("/"), retry_after_s
        self.client = None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive, send) -> None:
        import httpx

        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.client = httpx.AsyncClient(base_url=self.backend, timeout=None,
                                                limits=httpx.Limits(max_connections=None, max_keepalive_connections=64))
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.client.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _unavailable(self, retry_after: str | None = None):
        return error_response(503, "the replica serving this request failed or none is available; try again",
                              "replica_unavailable", {"Retry-After": retry_after or str(self.retry_after_s)})

    async def _http(self, scope, receive, send) -> None:
        import httpx

        body_done = asyncio.Event()

        async def body():
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise asyncio.CancelledError   # the client left during its upload
                yield message.get("body", b"")
                if not message.get("more_body"):
                    body_done.set()
                    return

        target = scope["raw_path"].decode("latin-1") if scope.get("raw_path") else scope["path"]
        if scope.get("query_string"):
            target += "?" + scope["query_string"].decode("latin-1")
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in HOP_HEADERS]
        request = self.client.build_request(scope["method"], target, headers=headers, content=body())
        relay = asyncio.ensure_future(self.client.send(request, stream=True))

        async def client_left() -> None:
            await body_done.wait()
            await client_gone(receive)

        gone = asyncio.ensure_future(client_left())
        try:
            await asyncio.wait({relay, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            # the client hung up (or we were cancelled): so does the relay, and Ray's proxy cancels the replica's work
            left = not relay.done()
            if left:
                relay.cancel()
                gone.cancel()
        if left:
            return
        try:
            response = relay.result()
        except (httpx.TransportError, asyncio.CancelledError):
            gone.cancel()
            await self._unavailable()(scope, receive, send)
            return
        try:
            kind = response.headers.get("content-type", "")
            if response.status_code >= 500 and not kind.startswith("application/json"):
                await response.aread()   # Ray's own text: not ours to pass on
                await self._unavailable(response.headers.get("retry-after"))(scope, receive, send)
                return
            await send({"type": "http.response.start", "status": response.status_code,
                        "headers": [(k, v) for k, v in response.headers.raw if k.lower() not in HOP_HEADERS]})
            async for chunk in response.aiter_raw():
                if gone.done():
                    return
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        except httpx.TransportError:
            return   # the proxy broke off a response already started: the client sees it end early
        finally:
            gone.cancel()
            await response.aclose()

    async def _websocket(self, scope, receive, send) -> None:
        import websockets

        if (await receive())["type"] != "websocket.connect":
            return
        target = "ws" + self.backend.removeprefix("http") + scope["path"]
        if scope.get("query_string"):
            target += "?" + scope["query_string"].decode("latin-1")
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"] if k.lower() not in WS_HEADERS]
        try:
            upstream = await websockets.connect(target, additional_headers=headers, max_size=None,
                                                subprotocols=scope.get("subprotocols") or None)
        except Exception:   # the proxy or every replica is down: close with "try again later"
            await send({"type": "websocket.close", "code": CLOSE_TRY_LATER})
            return
        await send({"type": "websocket.accept", "subprotocol": upstream.subprotocol})

        async def from_client() -> None:
            while True:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    await upstream.close()
                    return
                await upstream.send(message["text"] if message.get("text") is not None else message["bytes"])

        async def to_client() -> None:
            try:
                async for frame in upstream:
                    await send({"type": "websocket.send", **({"text": frame} if isinstance(frame, str) else {"bytes": frame})})
            except websockets.ConnectionClosed:
                pass
            code = upstream.close_code or 1000
            await send({"type": "websocket.close", "code": 1011 if code in (1005, 1006) else code,
                        "reason": upstream.close_reason or ""})

        tasks = [asyncio.ensure_future(from_client()), asyncio.ensure_future(to_client())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await upstream.close()
