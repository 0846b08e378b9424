"""HTTP/1.1 request parsing for the WSGI server: httptools (llhttp) behind one small class.

Contract: a :class:`RequestParser` belongs to one connection and is fed from that
connection's greenlet only. ``feed(data)`` parses eagerly — pipelined requests queue up in
:attr:`RequestParser.requests` as :class:`Request` objects (head first), each getting its
body bytes as they are parsed. Limits are checked as bytes arrive: a request that breaks
one is queued with :attr:`Request.error` set (414/431/413) and parsing stops; a malformed
stream sets :attr:`RequestParser.error` (400) and parsing stops.
"""

from __future__ import annotations

from collections import deque

try:
    import httptools
except ImportError as exc:  # an optional dependency: say which extra brings it
    raise ImportError("reseau_patch.server needs httptools: pip install "
                      "'reseau_patch[server]'") from exc

__all__ = ["Request", "RequestParser", "Limits"]


class Limits:
    """Header and body limits (bytes, count). ``max_body_size=None``: unlimited."""

    __slots__ = ("max_header_size", "max_headers", "max_body_size", "max_url_size")

    def __init__(self, max_header_size: int = 65536, max_headers: int = 100,
                 max_body_size: int | None = None, max_url_size: int = 16384) -> None:
        for name, v in (("max_header_size", max_header_size), ("max_headers", max_headers),
                        ("max_url_size", max_url_size)):
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if max_body_size is not None and (isinstance(max_body_size, bool)
                                          or not isinstance(max_body_size, int)
                                          or max_body_size < 0):
            raise ValueError(f"max_body_size must be a non-negative int or None, "
                             f"got {max_body_size!r}")
        self.max_header_size = max_header_size
        self.max_headers = max_headers
        self.max_body_size = max_body_size
        self.max_url_size = max_url_size


class _LimitExceeded(Exception):
    """Raised inside a parser callback to stop parsing (httptools wraps it)."""


class Request:
    """One parsed request: method, target, headers; its body fills in as it arrives."""

    __slots__ = ("url", "headers", "method", "version", "keep_alive", "headers_done",
                 "complete", "body", "body_pos", "body_len", "error", "expect_continue",
                 "upgrade", "chunked", "content_length")

    def __init__(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.method = ""
        self.version = "1.1"
        self.keep_alive = False
        self.headers_done = False
        self.complete = False
        self.body = bytearray()
        self.body_pos = 0
        self.body_len = 0  # body bytes received so far
        self.error = 0  # an HTTP status to answer instead of running the app
        self.expect_continue = False
        self.upgrade = False
        self.chunked = False
        self.content_length: int | None = None


class RequestParser:
    """httptools' callbacks turned into a queue of :class:`Request` objects."""

    __slots__ = ("_parser", "requests", "_cur", "_hdr_bytes", "limits", "error", "stopped")

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.requests: deque[Request] = deque()
        self._cur: Request | None = None
        self._hdr_bytes = 0
        self.error = 0  # 400 once the stream is malformed
        self.stopped = False  # no more parsing on this connection (error or upgrade)
        self._parser = httptools.HttpRequestParser(self)

    @property
    def partial(self) -> bool:
        """Whether a request has begun whose headers are not complete yet."""
        return self._cur is not None and not self._cur.headers_done

    def feed(self, data: bytes) -> None:
        if self.stopped:
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # WSGI has no upgrades: serve the request, then close (the rest is not HTTP).
            self.stopped = True
        except httptools.HttpParserCallbackError:
            self.stopped = True  # a limit: the request in question carries its error
        except httptools.HttpParserError:
            self.stopped = True
            cur = self._cur
            if cur is not None and cur.headers_done and not cur.complete:
                cur.error = cur.error or 400  # a broken body (bad chunk framing)
                self.error = 400
            else:
                self.error = 400

    # ---------------------------------------------------------------- callbacks
    def on_message_begin(self) -> None:
        self._cur = Request()
        self._hdr_bytes = 0
        self.requests.append(self._cur)

    def on_url(self, url: bytes) -> None:
        cur = self._cur
        cur.url += url
        if len(cur.url) > self.limits.max_url_size:
            cur.error = 414
            cur.headers_done = True
            raise _LimitExceeded

    def on_header(self, name: bytes, value: bytes) -> None:
        cur = self._cur
        self._hdr_bytes += len(name) + len(value) + 4
        cur.headers.append((name, value))
        limits = self.limits
        if self._hdr_bytes > limits.max_header_size or len(cur.headers) > limits.max_headers:
            cur.error = 431
            cur.headers_done = True
            raise _LimitExceeded

    def on_headers_complete(self) -> None:
        cur = self._cur
        p = self._parser
        cur.method = p.get_method().decode("ascii", "replace")
        cur.version = p.get_http_version()
        cur.keep_alive = p.should_keep_alive()
        cur.upgrade = p.should_upgrade()
        for name, value in cur.headers:
            n = name.lower()
            if n == b"content-length":
                try:
                    cur.content_length = int(value)
                except ValueError:
                    cur.content_length = None
            elif n == b"transfer-encoding":
                cur.chunked = b"chunked" in value.lower()
            elif n == b"expect":
                cur.expect_continue = value.lower() == b"100-continue"
        limit = self.limits.max_body_size
        if limit is not None and cur.content_length is not None and cur.content_length > limit:
            cur.error = 413
            cur.headers_done = True
            raise _LimitExceeded
        cur.headers_done = True

    def on_body(self, body: bytes) -> None:
        cur = self._cur
        cur.body += body
        cur.body_len += len(body)
        limit = self.limits.max_body_size
        if limit is not None and cur.body_len > limit:
            cur.error = 413
            raise _LimitExceeded

    def on_message_complete(self) -> None:
        self._cur.complete = True
