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
from typing import Any
from urllib.parse import unquote_to_bytes

import gevent

from ..sockets import TCPSocket
from ..sockets.parking import current_io_loop
from .body import BadRequestBody, RequestBody, RequestTooLarge
from .http import Limits, Request, RequestParser
from .response import ClientGone, Response, http_date
from .stream import StreamServer

__all__ = ["BadRequestBody", "RequestTooLarge", "WSGIServer"]

log = logging.getLogger("reseau_patch.server")

#: Unread request body the server reads and discards to keep a connection alive.
MAX_DRAIN = 1 << 20
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_REASONS = {400: "Bad Request", 408: "Request Timeout", 413: "Content Too Large",
            414: "URI Too Long", 431: "Request Header Fields Too Large",
            500: "Internal Server Error"}


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

    @property
    def max_body_size(self) -> int | None:
        return self.server.limits.max_body_size

    # ---------------------------------------------------------------- reading
    def _read(self, timeout: float) -> bytes:
        sock = self.sock
        sock.settimeout(timeout)
        try:
            data = sock.readavailable()
        except (TimeoutError, OSError) as exc:
            raise ClientGone from exc
        if not data:
            raise ClientGone
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
        except ClientGone:
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
        except ClientGone:
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
        env["wsgi.input"] = RequestBody(self, req)
        return env

    def _run(self, req: Request) -> bool:
        """Run the app for ``req`` and send its response; whether to keep the connection."""
        server = self.server
        started = time.monotonic() if server.access_log is not None else 0.0
        # Body reads and response writes: each blocking call gets body_timeout (not what
        # the header phase left over, which may be almost nothing).
        self.sock.settimeout(server.body_timeout)
        env = self._environ(req)
        resp = Response(self, req)
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
        except ClientGone:
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
            except ClientGone:
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
            self.sock.write(head + b"Date: " + http_date() + b"\r\n\r\n" + body)
        except OSError:
            pass
