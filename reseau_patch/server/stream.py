"""``StreamServer``: gevent's ``StreamServer`` API over ``sockets.listen``/``TCPSocket``.

Contract:

* **Who owns what.** The server owns its listener (a :class:`~reseau_patch.sockets.TCPServer`)
  and every accepted :class:`~reseau_patch.sockets.TCPSocket`: ``handle(sock, address)``
  runs in its own greenlet and the server closes ``sock`` when ``handle`` returns or
  raises. A listener passed in (a ``TCPServer`` or a bound ``socket.socket``) is used as
  given; a ``socket.socket`` stays the caller's (the server listens on a dup).
* **Thread.** Everything runs in greenlets of the thread that called ``start``.
* **States.** ``new → started → stopping → closed`` (one line: no way back). ``start`` listens
  and spawns the accept greenlet; ``close`` stops accepting (the listener closes, new
  connects are refused); ``stop(timeout)`` = ``close`` + let in-flight handlers finish for
  ``timeout`` seconds, then kill the rest (:meth:`connection_stopping` lets a protocol
  end idle keep-alive connections at once).
* **Accept errors** such as EMFILE are logged and retried after a back-off (as gevent's
  StreamServer and socketserver do): one exhausted moment does not stop the server.
"""

from __future__ import annotations

import _socket
import errno
import logging
import ssl
from collections.abc import Callable, Sequence
from typing import Any

import gevent
from gevent.event import Event
from gevent.greenlet import Greenlet
from gevent.pool import Group, Pool

from ..sockets import TCPServer, TCPSocket, listen

__all__ = ["StreamServer"]

log = logging.getLogger("reseau_patch.server")

#: gevent's ``StreamServer.stop_timeout`` default.
DEFAULT_STOP_TIMEOUT = 1.0
#: Accept back-off after a resource error (EMFILE, ENFILE, ENOBUFS, ENOMEM), doubling.
_ACCEPT_BACKOFF = (0.01, 1.0)
_RESOURCE_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


class StreamServer:
    """A green TCP/unix/TLS server: ``handle(sock, address)`` per connection.

    ``listener``: ``(host, port)``, a port, a unix path, a ``TCPServer`` or a bound
    ``socket.socket``. ``spawn``: ``"default"`` (a greenlet each), an int (a
    :class:`gevent.pool.Pool` of that size: accepting waits while it is full), a pool or
    group, or ``None`` (handle inline in the accept greenlet). TLS: ``ssl_context=`` (used
    unchanged), or ``certfile``/``keyfile``/``ca_certs`` (gevent's ``ssl_args`` names) with
    optional ``alpn_protocols``. ``backlog`` defaults to 511. ``wrap``: applied to each
    ``TCPSocket`` before ``handle`` sees it — ``wrap=SocketAdapter`` gives handlers written
    for gevent the stdlib socket methods (``recv``, ``sendall``, ``makefile``, ...).
    """

    backlog = 511
    stop_timeout = DEFAULT_STOP_TIMEOUT

    def __init__(self, listener: Any, handle: Callable[[TCPSocket, Any], Any] | None = None,
                 backlog: int | None = None, spawn: Any = "default", *,
                 ssl_context: ssl.SSLContext | None = None, certfile: str | None = None,
                 keyfile: str | None = None, ca_certs: str | None = None,
                 alpn_protocols: Sequence[str] | None = None,
                 read_buffer_capacity: int | None = None,
                 wrap: Callable[[TCPSocket], Any] | None = None) -> None:
        if handle is not None:
            self.handle = handle  # type: ignore[method-assign]
        if backlog is not None:
            if not isinstance(backlog, int) or backlog < 0:
                raise ValueError(f"backlog must be a non-negative int, got {backlog!r}")
            self.backlog = backlog
        self._listen_kw: dict[str, Any] = {}
        if read_buffer_capacity is not None:
            self._listen_kw["read_buffer_capacity"] = read_buffer_capacity
        if ssl_context is not None:
            if certfile or keyfile or ca_certs or alpn_protocols:
                raise ValueError("certfile/keyfile/ca_certs/alpn_protocols cannot be combined "
                                 "with ssl_context=; configure the ssl.SSLContext instead")
            self._listen_kw["ssl_context"] = ssl_context
        elif certfile or keyfile:
            if not certfile:
                raise ValueError(f"keyfile={keyfile!r} given without certfile")
            self._listen_kw.update(tls=True, ssl_cert=certfile, ssl_key=keyfile or certfile,
                                   ssl_cacert=ca_certs, alpn_list=alpn_protocols)
        elif ca_certs or alpn_protocols:
            raise ValueError("ca_certs/alpn_protocols given without certfile or ssl_context")
        self.ssl_enabled = bool(ssl_context is not None or certfile)
        self._server: TCPServer | None = listener if isinstance(listener, TCPServer) else None
        self._address = None if self._server is not None else listener
        if isinstance(listener, _socket.socket):
            self._address = None
            self._adopt: _socket.socket | None = listener
        else:
            self._adopt = None
        if self._server is None and self._adopt is None:
            _check_address(listener)
        if wrap is not None and not callable(wrap):
            raise TypeError(f"wrap must be callable, got {wrap!r}")
        self.wrap = wrap
        self.pool, self._spawn = _make_spawn(spawn)
        self._handlers: set[Greenlet] = set()
        self._acceptor: Greenlet | None = None
        self._stopped_event = Event()
        self.started = False
        self.closed = False

    # ------------------------------------------------------------------ overridables
    def handle(self, sock: TCPSocket, address: Any) -> None:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} needs handle=")

    def connection_stopping(self, greenlet: Greenlet) -> bool:
        """During ``stop``: may this handler be killed now (an idle keep-alive one)?"""
        return False

    # ------------------------------------------------------------------ properties
    @property
    def server(self) -> TCPServer | None:
        """The listening :class:`TCPServer` (None before ``start``)."""
        return self._server

    @property
    def address(self) -> Any:
        if self._server is not None and self._server.isopen:
            name = self._server.getsockname()
            return name if isinstance(name, str) else (str(name[0]), name[1])
        return self._address

    @property
    def server_host(self) -> str | None:
        addr = self.address
        return addr[0] if isinstance(addr, tuple) else None

    @property
    def server_port(self) -> int | None:
        addr = self.address
        return addr[1] if isinstance(addr, tuple) else None

    @property
    def active_connections(self) -> int:
        return len(self._handlers)

    # ------------------------------------------------------------------ lifecycle
    def init_socket(self) -> None:
        """Listen now (``start`` calls this; call it early to learn an ephemeral port)."""
        if self._server is not None:
            if not self._server.isopen:
                self._server.listen(self.backlog)
            return
        if self._adopt is not None:
            self._server = listen(self._adopt, backlog=self.backlog, **self._listen_kw)
        elif isinstance(self._address, tuple):
            self._server = listen(*self._address, backlog=self.backlog, **self._listen_kw)
        else:
            self._server = listen(self._address, backlog=self.backlog, **self._listen_kw)

    def start(self) -> None:
        """Listen and start accepting in a background greenlet."""
        if self.closed:
            raise OSError(errno.EBADF, f"{type(self).__name__} is closed")
        if self.started:
            return
        self.init_socket()
        self.started = True
        self._acceptor = gevent.spawn(self._accept_loop)

    def serve_forever(self, stop_timeout: float | None = None) -> None:
        """``start`` and block until ``stop``/``close``; gevent's semantics."""
        if not self.started:
            self.start()
        try:
            self._stopped_event.wait()
        finally:
            if not self.closed:
                gevent.spawn(self.stop, timeout=stop_timeout).join()

    def close(self) -> None:
        """Stop accepting: close the listener (new connects are refused). Handlers go on."""
        if self.closed:
            return
        self.closed = True
        if self._server is not None:
            self._server.close()
        acceptor, self._acceptor = self._acceptor, None
        if acceptor is not None and acceptor is not gevent.getcurrent():
            acceptor.kill(block=False)
        self._stopped_event.set()

    def stop(self, timeout: float | None = None) -> None:
        """``close``, then let in-flight handlers finish for ``timeout`` seconds (default
        :attr:`stop_timeout`); handlers still running after that are killed."""
        self.close()
        if timeout is None:
            timeout = self.stop_timeout
        for g in list(self._handlers):
            if self.connection_stopping(g):
                g.kill(block=False)
        if self._handlers:
            gevent.joinall(list(self._handlers), timeout=timeout)
        if self._handlers:
            gevent.killall(list(self._handlers), block=True, timeout=max(1.0, timeout))

    def __enter__(self) -> StreamServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ accepting
    def _accept_loop(self) -> None:
        server = self._server
        backoff = _ACCEPT_BACKOFF[0]
        pool = self.pool
        while not self.closed:
            if pool is not None and pool.full():
                pool.wait_available()
                continue
            try:
                sock = server.accept()
            except OSError as exc:
                if self.closed or not server.isopen:
                    return
                if exc.errno in _RESOURCE_ERRNOS:
                    log.warning("accept failed (%s); retrying in %.2f s", exc, backoff)
                    gevent.sleep(backoff)
                    backoff = min(backoff * 2, _ACCEPT_BACKOFF[1])
                    continue
                raise
            backoff = _ACCEPT_BACKOFF[0]
            if self._spawn is None:
                self._run_handler(sock)
            else:
                self._spawn(self._run_handler, sock)

    def _run_handler(self, sock: TCPSocket) -> None:
        g = gevent.getcurrent()
        self._handlers.add(g)
        try:
            try:
                address = sock.getpeername()
                if isinstance(address, tuple):
                    address = (str(address[0]), address[1])
            except OSError:
                address = None
            self.handle(sock if self.wrap is None else self.wrap(sock), address)
        except gevent.GreenletExit:
            pass
        except Exception:
            log.exception("%s: handler failed", type(self).__name__)
        finally:
            self._handlers.discard(g)
            try:
                sock.close()
            except OSError:
                pass

    def __repr__(self) -> str:
        state = "closed" if self.closed else ("started" if self.started else "new")
        return f"<{type(self).__name__} {state} {self.address!r}>"


def _check_address(listener: Any) -> None:
    if isinstance(listener, tuple):
        if len(listener) != 2:
            raise TypeError(f"expected (host, port), got {listener!r}")
    elif isinstance(listener, bool) or not isinstance(listener, (int, str, bytes)):
        raise TypeError(f"expected an address, a TCPServer or a socket, got {listener!r}")


def _make_spawn(spawn: Any) -> tuple[Pool | None, Callable[..., Any] | None]:
    """``(pool or None, spawn callable or None)`` from gevent's ``spawn`` argument."""
    if spawn == "default":
        return None, gevent.spawn
    if spawn is None:
        return None, None
    if isinstance(spawn, bool) or (isinstance(spawn, int) and spawn <= 0):
        raise ValueError(f"spawn must be 'default', None, a positive int or a pool, got {spawn!r}")
    if isinstance(spawn, int):
        pool = Pool(spawn)
        return pool, pool.spawn
    if isinstance(spawn, Pool):
        return spawn, spawn.spawn
    if isinstance(spawn, Group):
        return None, spawn.spawn
    if callable(spawn):
        return None, spawn
    raise TypeError(f"spawn must be 'default', None, an int, a pool or a callable, got {spawn!r}")
