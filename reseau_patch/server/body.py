"""``wsgi.input``: a request body read on demand from its connection.

Contract: a :class:`RequestBody` belongs to one request of one connection and is read from
that connection's greenlet (the app's). It holds nothing itself: bytes live in the
:class:`~.http.Request` the parser fills, and more are pulled by the connection's
``read_body_more(request)`` (which answers ``Expect: 100-continue`` first). Reads past the
body return ``b""``; a body over the size limit raises :class:`RequestTooLarge`, a broken one
:class:`BadRequestBody`.
"""

from __future__ import annotations

from typing import Protocol

from .http import Request

__all__ = ["BadRequestBody", "BodySource", "RequestBody", "RequestTooLarge"]


class RequestTooLarge(Exception):
    """Raised by ``wsgi.input`` reads when the body passes ``max_body_size`` (answers 413)."""


class BadRequestBody(ValueError):
    """Raised by ``wsgi.input`` reads when the body's framing is broken (answers 400)."""


class BodySource(Protocol):
    """What a body reads from: the connection that parses its request."""

    max_body_size: int | None

    def read_body_more(self, req: Request) -> None: ...


class RequestBody:
    """``wsgi.input``: the request body, read on demand from the connection."""

    __slots__ = ("_conn", "_req")

    def __init__(self, conn: BodySource, req: Request) -> None:
        self._conn = conn
        self._req = req

    def _check(self) -> None:
        error = self._req.error
        if error == 413:
            raise RequestTooLarge(f"request body larger than "
                                  f"{self._conn.max_body_size} bytes")
        if error:
            raise BadRequestBody("malformed request body (chunk framing)")

    def _fill(self) -> bool:
        """Get more body bytes; False at the end of the body."""
        req = self._req
        if req.error:
            self._check()
        if req.complete:
            return False
        self._conn.read_body_more(req)
        if req.error:
            self._check()
        return True

    def _take(self, n: int) -> bytes:
        req = self._req
        pos = req.body_pos
        out = bytes(req.body[pos:pos + n])
        pos += len(out)
        if pos >= len(req.body):
            req.body.clear()
            pos = 0
        req.body_pos = pos
        return out

    def read(self, size: int | None = -1) -> bytes:
        req = self._req
        if size is None or size < 0:
            while self._fill():
                pass
            return self._take(len(req.body) - req.body_pos)
        while len(req.body) - req.body_pos < size and self._fill():
            pass
        return self._take(size)

    def readline(self, size: int | None = -1) -> bytes:
        req = self._req
        if size is None:
            size = -1
        scanned = 0
        while True:
            idx = req.body.find(b"\n", req.body_pos + scanned)
            avail = len(req.body) - req.body_pos
            if idx >= 0:
                n = idx - req.body_pos + 1
                return self._take(n if size < 0 else min(n, size))
            if 0 <= size <= avail:
                return self._take(size)
            scanned = avail
            if not self._fill():
                return self._take(avail if size < 0 else min(avail, size))

    def readlines(self, hint: int = -1) -> list[bytes]:
        lines, total = [], 0
        for line in self:
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                break
        return lines

    def __iter__(self) -> RequestBody:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line
