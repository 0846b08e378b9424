"""A PEP 3333 WSGI server on :class:`~.stream.StreamServer`: HTTP/1.1 over Reseau channels.

Per connection one greenlet runs :class:`_Connection` through these states::

    IDLE ──first byte──▶ HEADERS ──headers complete──▶ APP ──response done──▶ IDLE
      │                    │                            │
      └ idle_timeout/EOF   └ header_timeout / 400/414/431/413 ──▶ CLOSED ◀── not keep-alive

* ``IDLE`` waits up to ``idle_timeout`` (gunicorn's ``--keep-alive``) for a request's first
  byte; ``stop()`` kills connections in this state at once.
* ``HEADERS`` must complete within ``header_timeout`` of that first byte, whatever the pace
  (a client sending one byte a second is closed when it runs out).
* ``APP`` runs the application; each body read and response write waits at most
  ``body_timeout`` (a client that stops reading is dropped after that). A body the
  app did not read is drained (up to :data:`MAX_DRAIN`) to keep the connection, else the
  connection closes. ``Expect: 100-continue`` is answered at the first ``wsgi.input`` read.

Responses: ``Content-Length`` when the app gives it or returns a one-item list; else chunked
(HTTP/1.1) or close-delimited (HTTP/1.0). An app exception before the response started
answers 500 and closes that connection; the server keeps serving.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterable
from email.utils import formatdate
from typing import Any
from urllib.parse import unquote_to_bytes

import gevent

from ..sockets import TCPSocket
from ..sockets.parking import current_io_loop
from .http import Limits, Request, RequestParser
from .stream import StreamServer

__all__ = ["BadRequestBody", "RequestTooLarge", "WSGIServer"]

log = logging.getLogger("reseau_patch.server")

#: Unread request body the server reads and discards to keep a connection alive.
MAX_DRAIN = 1 << 20
#: Responses up to this size go out in one write together with the header block.
_COALESCE = 256 * 1024
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_REASONS = {400: "Bad Request", 408: "Request Timeout", 413: "Content Too Large",
            414: "URI Too Long", 431: "Request Header Fields Too Large",
            500: "Internal Server Error"}
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate",
                         "proxy-authorization", "te", "trailers", "transfer-encoding",
                         "upgrade"})


class RequestTooLarge(Exception):
    """Raised by ``wsgi.input`` reads when the body passes ``max_body_size`` (answers 413)."""


class BadRequestBody(ValueError):
    """Raised by ``wsgi.input`` reads when the body's framing is broken (answers 400)."""


class _ClientGone(Exception):
    """The client closed or broke the connection, or a read timed out: stop serving it."""


_date_cache = [0, b""]


def _date() -> bytes:
    now = int(time.time())
    if now != _date_cache[0]:
        _date_cache[0] = now
        _date_cache[1] = formatdate(now, usegmt=True).encode("ascii")
    return _date_cache[1]


_env_names: dict[bytes, str | None] = {b"content-type": "CONTENT_TYPE",
                                        b"content-length": "CONTENT_LENGTH"}


def _env_name(name: bytes) -> str | None:
    """``HTTP_X_FOO`` for ``X-Foo``; None for names with ``_`` (they could spoof a dash)."""
    key = _env_names.get(name)
    if key is None and name not in _env_names:
        text = name.decode("latin-1")
        key = None if "_" in text else "HTTP_" + text.upper().replace("-", "_")
        if len(_env_names) < 1024:
            _env_names[name] = key
    return key


class WSGIServer(StreamServer):
    """``WSGIServer(listener, application, ...)``: gevent.pywsgi's shape, our transport.

    Keywords: ``environ`` (base keys merged into each environ), ``keepalive`` (False closes
    after each response), ``idle_timeout`` (s, between requests), ``header_timeout`` (s,
    first byte to end of headers), ``body_timeout`` (s, per body read),
    ``max_header_size``/``max_headers``/``max_url_size`` (431/414), ``max_body_size``
    (413; None: unlimited), ``on_request`` (called after each response, e.g. gunicorn's
    ``--max-requests`` count), ``access_log`` (``fn(environ, status, response_headers,
    body_length, seconds)`` after each response). The rest
    goes to :class:`StreamServer` (``spawn``, ``backlog``, TLS).
    """

    def __init__(self, listener: Any, application: Callable[..., Iterable[bytes]],
                 backlog: int | None = None, spawn: Any = "default", *,
                 environ: dict[str, Any] | None = None, keepalive: bool = True,
                 idle_timeout: float = 75.0, header_timeout: float = 10.0,
                 body_timeout: float = 30.0, max_header_size: int = 65536,
                 max_headers: int = 100, max_url_size: int = 16384,
                 max_body_size: int | None = None,
                 on_request: Callable[[], Any] | None = None,
                 access_log: Callable[[dict, str, list, int, float], Any] | None = None,
                 **kw: Any) -> None:
        super().__init__(listener, backlog=backlog, spawn=spawn, **kw)
        if not callable(application):
            raise TypeError(f"application must be callable, got {application!r}")
        for name, v in (("idle_timeout", idle_timeout), ("header_timeout", header_timeout),
                        ("body_timeout", body_timeout)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
                raise ValueError(f"{name} must be a positive number of seconds, got {v!r}")
        self.application = application
        self.keepalive = keepalive
        self.idle_timeout = float(idle_timeout)
        self.header_timeout = float(header_timeout)
        self.body_timeout = float(body_timeout)
        self.limits = Limits(max_header_size, max_headers, max_body_size, max_url_size)
        self.on_request = on_request
        self.access_log = access_log
        self.base_environ: dict[str, Any] = {
            "SCRIPT_NAME": "",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "https" if self.ssl_enabled else "http",
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": False,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
            "wsgi.input_terminated": True,
            "SERVER_SOFTWARE": "reseau_patch",
        }
        if environ:
            self.base_environ.update(environ)
        self._idle: set[gevent.Greenlet] = set()

    def init_socket(self) -> None:
        super().init_socket()
        addr = self.address
        if isinstance(addr, tuple):
            self.base_environ.setdefault("SERVER_NAME", addr[0])
            self.base_environ.setdefault("SERVER_PORT", str(addr[1]))
        else:
            self.base_environ.setdefault("SERVER_NAME", str(addr))
            self.base_environ.setdefault("SERVER_PORT", "")

    def connection_stopping(self, greenlet: gevent.Greenlet) -> bool:
        return greenlet in self._idle

    def handle(self, sock: TCPSocket, address: Any) -> None:
        _Connection(self, sock, address).serve()


class _Input:
    """``wsgi.input``: the request body, read on demand from the connection."""

    __slots__ = ("_conn", "_req")

    def __init__(self, conn: _Connection, req: Request) -> None:
        self._conn = conn
        self._req = req

    def _check(self) -> None:
        error = self._req.error
        if error == 413:
            raise RequestTooLarge(f"request body larger than "
                                  f"{self._conn.server.limits.max_body_size} bytes")
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

    def __iter__(self) -> _Input:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line


class _Connection:
    """One client connection: the state machine in the module docstring."""

    __slots__ = ("server", "sock", "parser", "remote", "greenlet", "keep")

    def __init__(self, server: WSGIServer, sock: TCPSocket, address: Any) -> None:
        self.server = server
        self.sock = sock
        self.parser: RequestParser | None = None  # only while a request is in progress
        # Per-connection environ keys only (an idle connection holds no environ copy).
        if isinstance(address, tuple):
            self.remote = (address[0], str(address[1]))
        else:
            self.remote = (address or "", "")
        self.greenlet = gevent.getcurrent()
        self.keep = True

    # ---------------------------------------------------------------- reading
    def _read(self, timeout: float) -> bytes:
        sock = self.sock
        sock.settimeout(timeout)
        try:
            data = sock.readavailable()
        except (TimeoutError, OSError) as exc:
            raise _ClientGone from exc
        if not data:
            raise _ClientGone
        return data

    def read_body_more(self, req: Request) -> None:
        """More of ``req``'s body from the socket (``wsgi.input``; app greenlet)."""
        if req.expect_continue:
            req.expect_continue = False
            self.sock.write(_CONTINUE)
        if self.parser.stopped:
            req.complete = True  # nothing more will be parsed; the body is cut short
            self.keep = False
            return
        try:
            self.parser.feed(self._read(self.server.body_timeout))
        except _ClientGone:
            req.complete = True
            self.keep = False
            raise OSError("client closed or timed out while sending the request body") from None

    def _next_request(self) -> Request | None:
        """The next request whose headers are complete, or None to close."""
        server = self.server
        parser = self.parser
        deadline = None
        if parser is None:
            # IDLE: wait for a first byte holding no parser (memory per idle connection).
            if server.closed:
                return None
            g = self.greenlet
            idle = server._idle
            idle.add(g)
            try:
                data = self._read(server.idle_timeout)
            finally:
                idle.discard(g)
            deadline = time.monotonic() + server.header_timeout
            parser = self.parser = RequestParser(server.limits)
            parser.feed(data)
        requests = parser.requests
        while not requests or not requests[0].headers_done:
            if parser.stopped or server.closed:
                if requests and requests[0].headers_done:
                    break
                if parser.error:
                    self._simple_response(parser.error)
                return None
            if deadline is None:
                deadline = time.monotonic() + server.header_timeout
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                log.info("closing %s: headers not complete within %.3g s",
                         self.remote[0], server.header_timeout)
                return None
            parser.feed(self._read(remaining))
        return requests[0]

    # ---------------------------------------------------------------- serving
    def serve(self) -> None:
        stats = current_io_loop().stats
        ticks = stats.ticks
        try:
            while True:
                req = self._next_request()
                if req is None:
                    return
                if req.error:
                    self._simple_response(req.error)
                    return
                if not self._run(req):
                    return
                parser = self.parser
                parser.requests.popleft()
                if not parser.requests and not parser.partial and not parser.stopped:
                    self.parser = None  # between messages: the next request gets a new one
                if self.server.on_request is not None:
                    self.server.on_request()
                if self.server.closed:
                    return
                # Fairness: a client that answers fast would otherwise keep this greenlet
                # reading and serving without ever parking, starving every other
                # connection (p99 in the tens of ms under wrk). If the loop did not run
                # since our last response, give it a turn.
                if stats.ticks == ticks:
                    gevent.sleep(0)
                ticks = stats.ticks
        except _ClientGone:
            return

    def _environ(self, req: Request) -> dict[str, Any]:
        env = self.server.base_environ.copy()
        env["REMOTE_ADDR"], env["REMOTE_PORT"] = self.remote
        url = req.url
        if url[:1] != b"/" and b"://" in url:
            rest = url.split(b"://", 1)[1]
            slash = rest.find(b"/")
            url = rest[slash:] if slash >= 0 else b"/"
        path, q, query = url.partition(b"?")
        if b"#" in query:
            query = query.split(b"#", 1)[0]
        if b"%" in path:
            path = unquote_to_bytes(path)
        env["REQUEST_METHOD"] = req.method
        env["PATH_INFO"] = path.decode("latin-1")
        env["QUERY_STRING"] = query.decode("latin-1")
        env["SERVER_PROTOCOL"] = "HTTP/" + req.version
        env["RAW_URI"] = req.url.decode("latin-1")
        for name, value in req.headers:
            key = _env_name(name.lower())
            if key is None:
                continue
            v = value.decode("latin-1")
            if key in env and key.startswith("HTTP_"):
                env[key] += "," + v
            else:
                env[key] = v
        env["wsgi.input"] = _Input(self, req)
        return env

    def _run(self, req: Request) -> bool:
        """Run the app for ``req`` and send its response; whether to keep the connection."""
        server = self.server
        started = time.monotonic() if server.access_log is not None else 0.0
        # Body reads and response writes: each blocking call gets body_timeout (not what
        # the header phase left over, which may be almost nothing).
        self.sock.settimeout(server.body_timeout)
        env = self._environ(req)
        resp = _Response(self, req)
        result = None
        try:
            result = server.application(env, resp.start_response)
            if (type(result) is list and len(result) == 1 and resp.status is not None
                    and not resp.sent_headers):
                resp.send_whole(result[0])
            else:
                for chunk in result:
                    if chunk:
                        resp.write(chunk)
                resp.finish()
        except _ClientGone:
            raise
        except (RequestTooLarge, BadRequestBody) as exc:
            if not resp.sent_headers:
                self._simple_response(413 if isinstance(exc, RequestTooLarge) else 400)
            return False
        except OSError as exc:
            if resp.sent_headers:
                log.debug("connection lost while responding: %s", exc)
                return False
            log.exception("WSGI application failed")
            self._simple_response(500)
            return False
        except Exception:
            log.exception("WSGI application failed")
            if not resp.sent_headers:
                self._simple_response(500)
            return False
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    log.exception("WSGI result close() failed")
        if server.access_log is not None:
            server.access_log(env, resp.status, resp.headers, resp.length,
                              time.monotonic() - started)
        if not (resp.keep and self.keep and req.keep_alive and server.keepalive):
            return False
        return self._finish_body(req)

    def _finish_body(self, req: Request) -> bool:
        """Discard the unread rest of ``req``'s body; False if the connection must close."""
        if req.complete:
            return True
        if req.expect_continue or self.parser.stopped:
            return False  # the client waits for a 100 we never sent: it sends no body
        drained = 0
        while not req.complete:
            drained += len(req.body) - req.body_pos
            req.body.clear()
            req.body_pos = 0
            if drained > MAX_DRAIN or req.error:
                return False
            try:
                self.parser.feed(self._read(self.server.body_timeout))
            except _ClientGone:
                return False
            if self.parser.stopped and not req.complete:
                return False
        return True

    def _simple_response(self, code: int) -> None:
        body = f"{code} {_REASONS[code]}\n".encode()
        head = (f"HTTP/1.1 {code} {_REASONS[code]}\r\nContent-Type: text/plain\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n").encode()
        try:
            self.sock.settimeout(self.server.body_timeout)
            self.sock.write(head + b"Date: " + _date() + b"\r\n\r\n" + body)
        except OSError:
            pass


class _Response:
    """``start_response``/``write`` and the framing of one response."""

    __slots__ = ("conn", "req", "status", "headers", "sent_headers", "chunked", "length",
                 "content_length", "keep", "head_only", "no_body")

    def __init__(self, conn: _Connection, req: Request) -> None:
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
        return "".join(parts).encode("latin-1") + b"Date: " + _date() + b"\r\n\r\n"

    def _send(self, data: bytes) -> None:
        try:
            self.conn.sock.write(data)
        except OSError as exc:
            raise _ClientGone from exc

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
