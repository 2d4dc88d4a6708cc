"""The service's front door, before FastAPI reads anything: the API key first, then the size
of the body. Plain ASGI, so a refused request costs neither a body read nor a JSON parse: a
caller without a key cannot make a worker read 90 MB, and no body over the limit is ever read
whole."""

from __future__ import annotations

import json
from collections.abc import Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.dependencies import API_KEY_HEADER, MISSING_KEY, WRONG_KEY, key_refusal

OPEN_PATHS = frozenset({"/health"})
DOC_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
_KEY_HEADER = API_KEY_HEADER.lower().encode()


class Guard:
    """Refuse, before the body is read, a request without an accepted key (401 or 403;
    every path but `open_paths`) or with a body over `max_body_bytes` (413: at once when
    Content-Length says so, else as soon as the streamed bytes pass the limit). A refused
    request with a body closes its connection, since the body is left unread."""

    def __init__(
        self,
        app: ASGIApp,
        api_keys: Sequence[bytes],
        max_body_bytes: int,
        open_paths: frozenset[str] = OPEN_PATHS,
    ) -> None:
        self.app, self.api_keys, self.limit = app, list(api_keys), max_body_bytes
        self.open_paths = open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        key = length = None
        chunked = False
        for name, value in scope["headers"]:
            if name == _KEY_HEADER and key is None:
                key = value
            elif name == b"content-length":
                length = value
            elif name == b"transfer-encoding":
                chunked = True
        has_body = chunked or length not in (None, b"0")
        if scope["path"] not in self.open_paths:
            refusal = key_refusal(key, self.api_keys)
            if refusal is not None:
                detail = MISSING_KEY if refusal == 401 else WRONG_KEY
                await refuse(send, refusal, detail, close=has_body)
                return
        if not has_body:
            await self.app(scope, receive, send)
            return
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            await refuse(send, 413, self._too_large(), close=True)
            return
        body = await self._read(receive)
        if body is None:
            await refuse(send, 413, self._too_large(), close=True)
            return
        if not isinstance(body, bytes):  # the client went away while sending
            return
        whole: bytes = body
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": whole, "more_body": False}

        await self.app(scope, replay, send)

    async def _read(self, receive: Receive) -> bytes | Message | None:
        """The whole body, None past the limit, or the disconnect message."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return message
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _too_large(self) -> str:
        return f"request body too large: the limit is {self.limit:,} bytes"


async def refuse(send: Send, status: int, detail: str, close: bool) -> None:
    """Answer `status` with a JSON `detail`; `close` ends the connection afterwards (a body
    was left unread)."""
    content = json.dumps({"detail": detail}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(content)).encode()),
    ]
    if status == 401:
        headers.append((b"www-authenticate", b"APIKey"))
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": content})
