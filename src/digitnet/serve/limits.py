"""What one request may cost the server, and the ASGI middleware that enforces the body size.

The body limit is checked twice: against Content-Length before anything is read, and while the
body streams in (chunked uploads declare no length), so no request can make the
server buffer more than `max_body_bytes`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from digitnet.data.images import MAX_PIXELS


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 8 * 1024 * 1024  # a phone photo fits; a 280×280 canvas PNG is ~10 KB
    max_batch: int = 256
    max_image_pixels: int = min(MAX_PIXELS, 4096 * 4096)

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


class ClientError(HTTPException):
    """A request the client must fix: a 4xx status, a short machine-readable code, a message."""

    def __init__(self, status_code: int, code: str, detail: str):
        super().__init__(status_code, detail)
        self.code = code


def too_large(limit: int) -> ClientError:
    return ClientError(413, "body_too_large", f"request body exceeds the limit of {limit} bytes")


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await send_error(send, too_large(self.max_bytes))
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # Raised inside the endpoint's read; the app's handler turns it into a 413.
                    raise too_large(self.max_bytes)
            return message

        await self.app(scope, limited_receive, send)


async def send_error(send: Send, error: ClientError) -> None:
    """Answer before the app runs; the connection closes since the body was never read."""
    body = json.dumps({"error": error.code, "detail": error.detail}).encode()
    await send({"type": "http.response.start", "status": error.status_code,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
