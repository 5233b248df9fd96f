"""How the web process meets the network: uvicorn's limits and the headers of every response.

uvicorn closes a kept-alive connection that stays idle (``timeout_keep_alive``) and answers
``503`` past ``limit_concurrency`` connections, but it waits forever for the headers of a
request that trickle in byte by byte, so a few hundred such connections would hold the process's
sockets. :func:`protocol` adds a header timeout to uvicorn's h11 protocol: a connection that
has not sent a whole request head within ``header_timeout`` seconds of opening (or of its
previous response) is closed. A head over :data:`MAX_HEAD_BYTES`, or one that h11 cannot
parse, is answered by the protocol itself (the app never sees it), as problem JSON like every
other refusal: ``431`` for the size, ``400`` otherwise.

:class:`SecurityHeaders` puts a Content-Security-Policy (scripts, styles and connections only
from this origin, no frames, no plugins, no ``<base>``), ``frame-ancestors 'none'`` (and
``X-Frame-Options: DENY`` for older browsers), ``X-Content-Type-Options: nosniff`` and
``Referrer-Policy: same-origin`` on every response, the dashboard's pages and the API's alike.
"""

from __future__ import annotations

import asyncio
import json
from http import HTTPStatus
from typing import Any

import h11
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
# h11's own default, stated: a request head (request line and headers) larger than this is
# refused before it reaches the app, so a connection holds at most this much of an unfinished head.
MAX_HEAD_BYTES = 16 * 1024
SECURITY_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
]


class SecurityHeaders:
    """ASGI middleware adding :data:`SECURITY_HEADERS` to every HTTP response."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in SECURITY_HEADERS if k not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class HeaderTimeoutProtocol(H11Protocol):
    """uvicorn's h11 protocol, closing connections whose request head is late."""

    header_timeout: float = 10.0
    _head_timer: asyncio.TimerHandle | None = None

    def _arm_head_timer(self) -> None:
        self._disarm_head_timer()
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE and self._head_too_large(data):
            self._disarm_head_timer()
            self._refuse_large_head()
            return
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._disarm_head_timer()  # the head is in

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self._arm_head_timer()  # the next request's head gets the same time

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a head h11 refused, as problem JSON (uvicorn sends plain text)."""
        unread, _ = self.conn.trailing_data
        if len(unread) > MAX_HEAD_BYTES:
            self._refuse_large_head()
        else:
            self._refuse(
                HTTPStatus.BAD_REQUEST, "the request line or headers are not valid HTTP/1.1"
            )

    def _head_too_large(self, data: bytes) -> bool:
        # h11 measures only a head it is still waiting for: one that arrives whole in a read,
        # however large, would be parsed. So the head is measured here, before h11 reads it.
        unread, _ = self.conn.trailing_data
        pending = unread + data
        end = pending.find(b"\r\n\r\n")
        return (len(pending) if end < 0 else end) > MAX_HEAD_BYTES

    def _refuse_large_head(self) -> None:
        self._refuse(
            HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
            f"the request line and headers are over {MAX_HEAD_BYTES:,} bytes",
        )

    def _refuse(self, status: HTTPStatus, detail: str) -> None:
        """Answer problem JSON and close, with no request for the app."""
        body = json.dumps(
            {
                "type": "about:blank",
                "title": status.phrase,
                "status": status.value,
                "detail": detail,
            }
        ).encode()
        head = [
            f"HTTP/1.1 {status.value} {status.phrase}".encode(),
            b"content-type: application/problem+json",
            b"content-length: " + str(len(body)).encode(),
            b"connection: close",
            *(name + b": " + value for name, value in SECURITY_HEADERS),
        ]
        self.transport.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        self.transport.close()


def protocol(header_timeout: float) -> type[HeaderTimeoutProtocol]:
    """The protocol class for uvicorn's ``http`` setting, with this header timeout."""
    return type("HeaderTimeout", (HeaderTimeoutProtocol,), {"header_timeout": header_timeout})


def uvicorn_options(
    *, header_timeout: float, keep_alive_seconds: int, max_connections: int
) -> dict[str, Any]:
    """uvicorn's settings for the web process's limits."""
    return {
        "http": protocol(header_timeout),
        "h11_max_incomplete_event_size": MAX_HEAD_BYTES,
        "timeout_keep_alive": keep_alive_seconds,
        "limit_concurrency": max_connections,
        "proxy_headers": False,
    }
