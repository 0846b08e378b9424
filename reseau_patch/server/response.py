"""One WSGI response: ``start_response``, ``write`` and the HTTP/1.1 framing.

Contract: a :class:`Response` belongs to one request and runs in the connection's greenlet.
The framing is decided when the header block goes out: the app's ``Content-Length``, else
the length of a one-item body, else chunked (HTTP/1.1) or close-delimited (HTTP/1.0).
:attr:`Response.keep` says afterwards whether the connection may serve another request.
A failed socket write raises :class:`ClientGone`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from email.utils import formatdate
from typing import Any

from .http import Request

__all__ = ["ClientGone", "Response", "http_date"]

log = logging.getLogger("reseau_patch.server")

#: Responses up to this size go out in one write together with the header block.
_COALESCE = 256 * 1024
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate",
                         "proxy-authorization", "te", "trailers", "transfer-encoding",
                         "upgrade"})


class ClientGone(Exception):
    """The client closed or broke the connection, or a read timed out: stop serving it."""


_date_cache = [0, b""]


def http_date() -> bytes:
    """The ``Date`` header value (RFC 9110 IMF-fixdate), formatted once a second."""
    now = int(time.time())
    if now != _date_cache[0]:
        _date_cache[0] = now
        _date_cache[1] = formatdate(now, usegmt=True).encode("ascii")
    return _date_cache[1]


class Response:
    """``start_response``/``write`` and the framing of one response."""

    __slots__ = ("conn", "req", "status", "headers", "sent_headers", "chunked", "length",
                 "content_length", "keep", "head_only", "no_body")

    def __init__(self, conn: Any, req: Request) -> None:
        self.conn = conn
        self.req = req
        self.status: str | None = None
        self.headers: list[tuple[str, str]] = []
        self.sent_headers = False
        self.chunked = False
        self.length = 0
        self.content_length: int | None = None
        self.keep = True
        self.head_only = req.method == "HEAD"
        self.no_body = False

    def start_response(self, status: str, headers: list[tuple[str, str]],
                       exc_info: Any = None) -> Callable[[bytes], None]:
        if exc_info:
            try:
                if self.sent_headers:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None  # no cycle through the frame
        elif self.status is not None:
            raise AssertionError("start_response called a second time without exc_info")
        if type(status) is not str:
            raise TypeError(f"status must be a str, got {status!r}")
        if len(status) < 4 or not status[:3].isdigit() or status[3] != " ":
            raise ValueError(f"status must be like '200 OK', got {status!r}")
        if type(headers) is not list:
            raise TypeError(f"headers must be a list, got {type(headers).__name__}")
        content_length = None
        for item in headers:
            if type(item) is not tuple or len(item) != 2:
                raise TypeError(f"header must be a (name, value) tuple, got {item!r}")
            name, value = item
            if type(name) is not str or type(value) is not str:
                raise TypeError(f"header name and value must be str, got {item!r}")
            if "\n" in value or "\r" in value or "\n" in name or "\r" in name:
                raise ValueError(f"header {name!r} contains a line break: {value!r}")
            lname = name.lower()
            if lname == "content-length":
                content_length = int(value)
            elif lname in _HOP_BY_HOP:
                raise AssertionError(f"hop-by-hop header {name!r} is the server's "
                                     "(PEP 3333)")
        self.status = status
        self.headers = headers
        self.content_length = content_length
        code = status[:3]
        self.no_body = code in ("204", "304") or code[0] == "1"
        return self.write

    def _head(self, body_len: int | None) -> bytes:
        """The header block; decides the framing when the app gave no Content-Length."""
        req = self.req
        if self.status is None:
            raise AssertionError("the application wrote before calling start_response")
        conn = self.conn
        server = conn.server
        http11 = req.version == "1.1"
        keep = (self.keep and req.keep_alive and server.keepalive and conn.keep
                and not server.closed)
        parts = ["HTTP/1.1 ", self.status, "\r\n"]
        for name, value in self.headers:
            parts += (name, ": ", value, "\r\n")
        if self.content_length is None and not self.no_body:
            if body_len is not None:
                self.content_length = body_len
                parts += ("Content-Length: ", str(body_len), "\r\n")
            elif http11:
                self.chunked = not self.head_only
                if self.chunked:
                    parts.append("Transfer-Encoding: chunked\r\n")
            else:
                keep = False  # HTTP/1.0 without a length: the close ends the body
        if not keep:
            parts.append("Connection: close\r\n")
        elif not http11:
            parts.append("Connection: keep-alive\r\n")
        self.keep = keep
        self.sent_headers = True
        return "".join(parts).encode("latin-1") + b"Date: " + http_date() + b"\r\n\r\n"

    def _send(self, data: bytes) -> None:
        try:
            self.conn.sock.write(data)
        except OSError as exc:
            raise ClientGone from exc

    def send_whole(self, body: bytes) -> None:
        """The one-item-list fast path: length known, header and body in one write."""
        if not isinstance(body, (bytes, bytearray, memoryview)):
            raise TypeError(f"the application must yield bytes, got {type(body).__name__}")
        n = len(body)
        cl = self.content_length
        if cl is not None and cl != n:
            self.keep = False  # the declared framing is wrong: close after this response
            if n > cl:
                log.warning("application sent more than its Content-Length; truncated")
                body, n = body[:cl], cl
        head = self._head(n)
        if self.head_only or self.no_body:
            self._send(head)
            return
        self.length = n
        if n <= _COALESCE:
            self._send(head + body)
        else:
            self._send(head)
            self._send(body)

    def write(self, data: bytes) -> None:
        """PEP 3333's ``write()`` and the path for each item of a streamed response."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"the application must write bytes, got {type(data).__name__}")
        if not self.sent_headers:
            head = self._head(None)
            if not data:
                self._send(head)
                return
        else:
            head = b""
            if not data:
                return
        if self.head_only or self.no_body:
            if head:
                self._send(head)
            return
        n = len(data)
        if self.content_length is not None:
            room = self.content_length - self.length
            if n > room:
                self.keep = False
                data, n = data[:room], room
                log.warning("application sent more than its Content-Length; truncated")
        self.length += n
        if self.chunked:
            self._send(head + b"%x\r\n" % n + bytes(data) + b"\r\n")
        else:
            self._send(head + bytes(data) if head else data)

    def finish(self) -> None:
        if not self.sent_headers:
            self._send(self._head(0 if self.status is not None else None))
            return
        if self.chunked:
            self._send(b"0\r\n\r\n")
        elif self.content_length is not None and self.length < self.content_length:
            if not (self.head_only or self.no_body):
                self.keep = False  # the client waits for bytes that never come: close
