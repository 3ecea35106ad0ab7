"""The Host allow-list: a service bound to localhost answers only requests addressed to it.

A web page on another site can make the user's browser send requests to 127.0.0.1 under its
own domain name (DNS rebinding); the Host header then names that domain. Checking the header
against the names the service is reachable by closes that door. `*` allows any host (for a
service behind a proxy that checks it).
"""

from __future__ import annotations

import ipaddress
import json

from starlette.types import ASGIApp, Receive, Scope, Send

LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")


def default_hosts(bind: str) -> tuple[str, ...]:
    """The allow-list for a service bound to `bind`: the local names when it is a loopback
    address, else any host (a public bind has no single name to check against)."""
    if bind == "localhost":
        return LOCAL_HOSTS
    try:
        loopback = ipaddress.ip_address(bind).is_loopback
    except ValueError:
        return (bind.lower(),)
    return LOCAL_HOSTS + (bind,) if loopback else ("*",)


def parse_hosts(text: str) -> tuple[str, ...]:
    """`--allowed-hosts a.example,b.example` → ("a.example", "b.example")."""
    hosts = tuple(h.strip().lower() for h in text.split(",") if h.strip())
    if not hosts:
        raise ValueError("--allowed-hosts needs at least one host name (or *)")
    return hosts


def host_name(header: bytes) -> str | None:
    """The name part of a Host header (no port, IPv6 brackets removed), or None if malformed."""
    try:
        text = header.decode("ascii").strip().lower()
    except UnicodeDecodeError:
        return None
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or (text[end + 1 :] and not text[end + 1 :].startswith(":")):
            return None
        return text[1:end]
    name, _, port = text.partition(":")
    if port and not port.isdigit():
        return None
    return name.rstrip(".")


class HostGuard:
    """Refuse (400, JSON) an HTTP request whose Host is not in `allowed`."""

    def __init__(self, app: ASGIApp, allowed: tuple[str, ...]):
        self.app, self.allowed = app, tuple(h.lower() for h in allowed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or "*" in self.allowed:
            await self.app(scope, receive, send)
            return
        values = [v for k, v in scope["headers"] if k == b"host"]
        name = host_name(values[0]) if len(values) == 1 else None
        if name is not None and name in self.allowed:
            await self.app(scope, receive, send)
            return
        shown = values[0].decode("latin-1")[:100] if values else "(none)"
        body = json.dumps({"error": "host_not_allowed",
                           "detail": f"Host {shown!r} is not served here; allowed: "
                                     f"{', '.join(self.allowed)} (see --allowed-hosts)"}).encode()
        await send({"type": "http.response.start", "status": 400,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
