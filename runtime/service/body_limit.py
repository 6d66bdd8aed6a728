"""An ASGI guard that stops reading a request body past a size limit (413), before it is buffered.

The endpoints check the exact audio size; this outer limit keeps a huge or endless upload from being
spooled at all. It allows for base64 (4/3) and multipart overhead.
"""

from __future__ import annotations

import json


class BodyTooLarge(Exception):
    pass


def body_limit_for(max_upload_bytes: int) -> int:
    return max_upload_bytes * 4 // 3 + (64 << 10)


class BodyLimitMiddleware:
    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def _reject(self, send) -> None:
        body = json.dumps({"error": {"message": f"the request body exceeds {self.limit} bytes",
                                     "type": "upload_too_large", "code": 413}}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers", [])).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            return await self._reject(send)
        received, started = 0, False

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge
            return message

        async def tracking_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._reject(send)
