"""``connect``, ``listen``, ``listenany``, ``accept``, ``bind`` and ``TCPServer``.

Address forms accepted by ``connect``/``listen`` (PRD §3):

* ``(port)`` — localhost (127.0.0.1);
* ``(host, port)`` — a name or an IP literal (``str`` or ``ipaddress`` object);
* ``(InetAddr)`` or ``((ip, port))``;
* ``(path)`` — a unix socket path; a leading NUL byte names a Linux abstract socket.

Contract: every function here blocks only the calling greenlet; the hub of the calling
thread runs the io loop meanwhile. Errors are the stdlib's (``ConnectionRefusedError``,
``TimeoutError``, ``socket.gaierror``, ``OverflowError`` for a port outside 0–65535).
"""

from __future__ import annotations

import _socket
import errno
import functools
import ipaddress
import os
import ssl
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import gevent

from ..io.bootstrap import (
    ACCEPT_RESOURCE_ERRORS,
    ClientBootstrap,
    ServerBootstrap,
    ServerListener,
)
from ..io.channel import Channel
from ..io.event_loop import EventLoop
from ..io.happy_eyeballs import HappyEyeballsConfig
from ..io.resolver import Resolver
from ..io.socket import Socket, SocketDomain, SocketOptions, SocketState, check_port, os_error
from ..io.tls_options import DEFAULT_TLS_TIMEOUT, TlsConnectionOptions
from .addresses import InetAddr, IPAddr, sockaddr_to_inetaddr
from .parking import TIMED_OUT, Parker, current_io_loop
from .tcp import DEFAULT_READ_CAPACITY, TCPSocket
from .tls import client_tls_options, server_tls_options

__all__ = ["TCPServer", "accept", "bind", "connect", "listen", "listenany"]

LOCALHOST = "127.0.0.1"


def _split_address(args: tuple) -> tuple[SocketDomain | None, Any, int]:
    """``(domain or None for "resolve", host or path, port)`` from the accepted forms."""
    if len(args) == 1:
        (a,) = args
        if isinstance(a, InetAddr):
            return (SocketDomain.IPV6 if a.host.version == 6 else SocketDomain.IPV4,
                    str(a.host), a.port)
        if isinstance(a, int) and not isinstance(a, bool):
            return SocketDomain.IPV4, LOCALHOST, check_port(a)
        if isinstance(a, tuple) and len(a) == 2:
            return _split_address(a)
        if isinstance(a, (str, bytes, os.PathLike)):
            path = os.fsdecode(a) if not isinstance(a, bytes) else a
            if not path:
                raise os_error(errno.EINVAL, "empty unix socket path ''")
            return SocketDomain.LOCAL, path, 0
        raise TypeError(f"expected a port, InetAddr, (host, port) or path, got {a!r}")
    if len(args) == 2:
        host, port = args
        check_port(port)
        if isinstance(host, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
            return (SocketDomain.IPV6 if host.version == 6 else SocketDomain.IPV4,
                    str(host), port)
        if not isinstance(host, str):
            raise TypeError(f"host must be a str or an ip address, got {host!r}")
        return None, host, port
    raise TypeError(f"expected 1 or 2 address arguments, got {len(args)}: {args!r}")


def _options(domain: SocketDomain, connect_timeout: float | None, nodelay: bool,
             keepalive: bool, reuseaddr: bool = True) -> SocketOptions:
    """Socket options, one shared object per distinct set (every io Socket keeps its
    options for its life; nothing modifies them)."""
    try:
        return _shared_options(domain, connect_timeout, nodelay, keepalive, reuseaddr)
    except TypeError:  # an unhashable argument: SocketOptions gives the real error
        return SocketOptions(domain=domain, connect_timeout=connect_timeout, nodelay=nodelay,
                             keepalive=keepalive, reuseaddr=reuseaddr)


@functools.lru_cache(maxsize=64)
def _shared_options(domain: SocketDomain, connect_timeout: float | None, nodelay: bool,
                    keepalive: bool, reuseaddr: bool) -> SocketOptions:
    return SocketOptions(domain=domain, connect_timeout=connect_timeout, nodelay=nodelay,
                         keepalive=keepalive, reuseaddr=reuseaddr)


def _client_channel_shutdown(channel: Channel, err: BaseException | None) -> None:
    """A connected channel ended: tell its TCPSocket, free the channel. A function, not a
    closure over the socket: the channel keeps it for the connection's life."""
    handler = channel.last.handler if channel.last is not None else None
    if isinstance(handler, TCPSocket):
        handler.on_channel_shutdown(channel, err)
    channel.destroy()


def connect(*address: Any, timeout: float | None = None, nodelay: bool = True,
            keepalive: bool = False, read_buffer_capacity: int = DEFAULT_READ_CAPACITY,
            back_pressure: bool = True, resolver: Resolver | None = None,
            happy_eyeballs_delay: float | None = None, all_errors: bool = False,
            tls: bool = False, ssl_context: ssl.SSLContext | None = None,
            tls_options: TlsConnectionOptions | None = None, server_name: str | None = None,
            ssl_cacert: str | None = None, ssl_capath: str | None = None,
            ssl_cert: str | None = None, ssl_key: str | None = None,
            ssl_insecure: bool = False, alpn_list: str | Sequence[str] | None = None,
            tls_timeout: float | None = DEFAULT_TLS_TIMEOUT) -> TCPSocket:
    """Open a stream connection; ``timeout`` bounds the whole connect, DNS included.

    ``timeout`` bounds the connect only (DNS, the Happy Eyeballs attempts and, with TLS, the
    handshake). It is not a deadline on the returned socket: set one with
    ``TCPSocket.settimeout()``, or reads wait until data, EOF or an error.

    TLS keywords are described in :mod:`.tls`: with TLS on, ``connect`` returns once the
    handshake completed (``timeout`` covers it too) and raises the ``ssl`` error if it
    failed. The server name defaults to the host. With TLS 1.3 a server's refusal of our
    client certificate arrives after the client's handshake: it is raised by the first read.

    Names are raced with Happy Eyeballs v2 (RFC 8305): ``happy_eyeballs_delay`` is the
    connection attempt delay (default 0.25 s, kept within 0.1–2 s). When every address
    fails, the last address's error is raised, or with ``all_errors=True`` an
    ``ExceptionGroup`` of all of them (as ``socket.create_connection`` does).
    """
    domain, host, port = _split_address(address)
    tls_opts = client_tls_options(tls=tls, tls_options=tls_options, ssl_context=ssl_context,
                                  server_name=server_name, ssl_cacert=ssl_cacert,
                                  ssl_capath=ssl_capath, ssl_cert=ssl_cert, ssl_key=ssl_key,
                                  ssl_insecure=ssl_insecure, alpn_list=alpn_list,
                                  tls_timeout=tls_timeout)
    loop = current_io_loop()
    tcp = TCPSocket(loop, read_buffer_capacity=read_buffer_capacity,
                    back_pressure=back_pressure)
    tcp.host = None if domain is SocketDomain.LOCAL else host
    opts = _options(domain or SocketDomain.IPV4, timeout, nodelay, keepalive)
    he = HappyEyeballsConfig(all_errors=all_errors, **(
        {} if happy_eyeballs_delay is None else {"attempt_delay": happy_eyeballs_delay}))
    boot = ClientBootstrap(loop, resolver=resolver, socket_options=opts,
                           back_pressure=back_pressure, happy_eyeballs=he)
    result: list = []
    parker = Parker(tcp, "connect")

    def on_setup(channel: Channel | None, err: BaseException | None) -> None:
        result.append((channel, err))
        parker.wake()

    request = boot.connect(host, port, tcp.attach, on_setup, _client_channel_shutdown,
                           tls=tls_opts)
    if not result:
        try:
            if parker.park(loop, timeout) is TIMED_OUT and not result:
                target = host if domain is SocketDomain.LOCAL else f"{host}:{port}"
                raise TimeoutError(errno.ETIMEDOUT,
                                   f"connect to {target} timed out after {timeout} s")
        except BaseException:
            # Timeout, gevent.Timeout, kill: nothing the connect made may outlive it
            # (attempts in flight, a TLS handshake in progress, their timers).
            request.cancel()
            if result and result[0][0] is not None:
                # Set up just before the cancel: the caller never saw it. Abort, not
                # close(): a cancelled greenlet must not park again.
                result[0][0].shutdown(OSError(errno.ECANCELED, "connect cancelled"),
                                      abort=True)
            raise
    channel, err = result[0]
    if err is not None:
        raise err
    return tcp


class TCPServer:
    """A listening stream socket; ``accept()`` hands out connected :class:`TCPSocket`\\ s.

    Connections are accepted eagerly into a queue (their channels start at once), so a
    client's first bytes are already buffered when ``accept()`` returns. With
    ``tls_options``, a connection is queued only once its TLS handshake succeeded, so
    ``accept()`` never returns a socket whose handshake is pending or failed; failed
    handshakes are kept in :attr:`tls_handshake_errors`.

    ``pause_accepting()`` stops taking connections off the kernel's backlog (they wait
    there, or go to another process sharing the listener) until ``resume_accepting()``;
    connections already queued stay queued and ``accept()`` still returns them. Both are
    for the thread that listens (its loop's thread).
    """

    def __init__(self, *, read_buffer_capacity: int = DEFAULT_READ_CAPACITY,
                 back_pressure: bool = True,
                 tls_options: TlsConnectionOptions | None = None) -> None:
        self.read_buffer_capacity = read_buffer_capacity
        self.back_pressure = back_pressure
        self.tls_options = tls_options
        self._loop: EventLoop | None = None
        self._socket: Socket | None = None
        self._listener: ServerListener | None = None
        self._ready: deque[TCPSocket] = deque()
        self._accept_error: BaseException | None = None
        self._acceptor = Parker(self, "accept")
        self._closed = False
        self._timeout: float | None = None
        #: ``(path, st_dev, st_ino)`` of the unix socket file we bound, removed on close.
        self._unix_file: tuple[str, int, int] | None = None

    # ------------------------------------------------------------------ setup
    def _bind(self, domain: SocketDomain, address: object, reuseaddr: bool,
              ipv6only: bool = False) -> None:
        if self._closed:
            raise os_error(errno.EBADF, "server is closed")
        if self._socket is not None:
            raise os_error(errno.EINVAL, "server is already bound")
        loop = current_io_loop()
        sock = Socket(loop, _options(domain, None, True, False, reuseaddr))
        try:
            if domain is SocketDomain.IPV6:
                sock.raw.setsockopt(_socket.IPPROTO_IPV6, _socket.IPV6_V6ONLY, int(ipv6only))
            sock.bind(address)
        except BaseException:
            sock.close()
            raise
        self._loop, self._socket = loop, sock
        if domain is SocketDomain.LOCAL and isinstance(address, str) and address[:1] != "\0":
            st = os.stat(address)
            self._unix_file = (address, st.st_dev, st.st_ino)

    def adopt(self, sock: _socket.socket) -> None:
        """Take over a bound (or listening) stream socket made elsewhere, in place of
        ``bind``: a pre-forking server's shared listener. ``sock`` stays the caller's: this
        server works on a ``dup`` of its fd and closes only that."""
        if self._closed:
            raise os_error(errno.EBADF, "server is closed")
        if self._socket is not None:
            raise os_error(errno.EINVAL, "server is already bound")
        if not isinstance(sock, _socket.socket):
            raise TypeError(f"expected a socket.socket, got {sock!r}")
        if sock.type & 0xF != _socket.SOCK_STREAM:
            raise os_error(errno.EINVAL, f"not a stream socket: {sock!r}")
        loop = current_io_loop()
        raw = _socket.socket(sock.family, _socket.SOCK_STREAM, 0, _socket.dup(sock.fileno()))
        try:
            io_sock = Socket(loop, _options(SocketDomain(sock.family), None, True, False, False),
                             sock=raw)
        except BaseException:
            raw.close()
            raise
        io_sock.state = SocketState.BOUND  # listen() (re)runs listen(2): fine on a listener
        self._loop, self._socket = loop, io_sock

    def listen(self, backlog: int = 511) -> TCPServer:
        """Start accepting (after ``bind`` or ``adopt``)."""
        if self._socket is None:
            raise os_error(errno.EINVAL, "listen before bind")
        if self._listener is not None:
            return self
        loop = self._loop
        boot = ServerBootstrap(loop, socket_options=self._socket.options, backlog=backlog,
                               back_pressure=self.back_pressure)
        self._listener = boot.listen(self._socket, self._make_handler, self._on_incoming,
                                     self._on_channel_shutdown, tls=self.tls_options)
        return self

    @property
    def tls_handshake_errors(self) -> list[BaseException]:
        """The errors of the last (up to 16) failed TLS handshakes, oldest first."""
        setup = self._listener.tls_setup if self._listener is not None else None
        return list(setup.handshake_errors) if setup is not None else []

    def _make_handler(self, channel: Channel) -> TCPSocket:
        tcp = TCPSocket(self._loop, read_buffer_capacity=self.read_buffer_capacity,
                        back_pressure=self.back_pressure)
        return tcp.attach(channel)

    def _on_incoming(self, channel: Channel | None, err: BaseException | None) -> None:
        if channel is not None and self._closed:
            channel.shutdown()  # a TLS handshake that finished after close(): nobody wants it
            return
        if channel is None:
            self._accept_error = err  # EMFILE and friends: report to the next accept()
        else:
            self._accept_error = None  # resolved since: not worth raising any more
            self._ready.append(channel.last.handler)  # type: ignore[arg-type]
        self._acceptor.wake()

    @staticmethod
    def _on_channel_shutdown(channel: Channel, err: BaseException | None) -> None:
        handler = channel.last.handler if channel.last is not None else None
        if isinstance(handler, TCPSocket):
            handler.on_channel_shutdown(channel, err)

    # ------------------------------------------------------------------ use
    def accept(self) -> TCPSocket:
        """The next connection, parking until one arrives (``settimeout`` bounds it)."""
        loop = self._loop
        if self._closed:
            raise os_error(errno.EBADF, "server is closed")
        if self._listener is None:
            raise os_error(errno.EINVAL, "accept before listen")
        if not loop.is_loop_thread():
            loop.check_thread("TCPServer.accept")
        while not self._ready:
            if self._accept_error is not None:
                err, self._accept_error = self._accept_error, None
                raise err
            if self._timeout == 0:
                raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")
            if self._acceptor.park(loop, self._timeout) is TIMED_OUT:
                raise TimeoutError(errno.ETIMEDOUT, f"accept timed out after {self._timeout} s")
            if self._closed:
                raise os_error(errno.EBADF, "server closed while accepting")
        return self._ready.popleft()

    def settimeout(self, timeout: float | None) -> None:
        if timeout is not None and timeout < 0:
            raise ValueError(f"Timeout value out of range: {timeout}")
        self._timeout = timeout

    def getsockname(self) -> tuple[IPAddr, int] | str:
        if self._socket is None or self._closed:
            raise os_error(errno.EBADF, "server is closed" if self._closed else "not bound")
        return sockaddr_to_inetaddr(self._socket.local_address())

    def pause_accepting(self) -> None:
        """Stop accepting from the kernel (idempotent; a closed server ignores it)."""
        if self._listener is None:
            raise os_error(errno.EINVAL, "pause_accepting before listen")
        if not self._closed:
            self._listener.pause_accepting()

    def resume_accepting(self) -> None:
        """Accept from the kernel again after ``pause_accepting`` (idempotent)."""
        if self._listener is None:
            raise os_error(errno.EINVAL, "resume_accepting before listen")
        if not self._closed:
            self._listener.resume_accepting()

    @property
    def accepting(self) -> bool:
        """True while the listener takes connections off the kernel's backlog."""
        return self._listener is not None and not self._closed and self._listener.accepting

    @property
    def queued(self) -> int:
        """Connections accepted from the kernel and not yet returned by ``accept()``."""
        return len(self._ready)

    @property
    def isopen(self) -> bool:
        return self._listener is not None and not self._closed

    def close(self) -> None:
        """Stop listening and close queued, unaccepted connections (accepted ones live on);
        a unix socket file this server created is removed."""
        if self._closed:
            return
        self._closed = True
        if self._listener is not None:
            self._listener.destroy()
        elif self._socket is not None:
            self._socket.close()
        while self._ready:
            self._ready.popleft().close()
        self._acceptor.wake()
        self._remove_unix_file()

    def _remove_unix_file(self) -> None:
        """Remove our unix socket file — only if it is still ours (same inode): a path
        another process has bound since is left alone."""
        if self._unix_file is None:
            return
        path, dev, ino = self._unix_file
        self._unix_file = None
        try:
            st = os.stat(path)
            if (st.st_dev, st.st_ino) == (dev, ino):
                os.unlink(path)
        except FileNotFoundError:
            pass

    def __enter__(self) -> TCPServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("listening" if self._listener else "unbound")
        addr = self._socket.local_address() if self._socket and not self._closed else None
        return f"<TCPServer {state} {addr!r}>"


def bind(server: TCPServer, host: str | IPAddr, port: int, *, reuseaddr: bool = False,
         ipv6only: bool = False) -> bool:
    """Bind ``server``; ``False`` if the address is in use, forbidden or not available."""
    domain, host_s, port = _split_address((host, port))
    if domain is None:
        domain, host_s = _resolve_for_bind(host_s, port)
    try:
        server._bind(domain, (host_s, port), reuseaddr, ipv6only)
    except OSError as exc:
        if exc.errno in (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL):
            return False
        raise
    return True


def _resolve_for_bind(host: str, port: int) -> tuple[SocketDomain, str]:
    infos = _socket.getaddrinfo(host, port, 0, _socket.SOCK_STREAM, 0, _socket.AI_PASSIVE)
    family, _t, _p, _c, addr = infos[0]
    return SocketDomain(family), addr[0]


def listen(*address: Any, backlog: int = 511, reuseaddr: bool = True,
           read_buffer_capacity: int = DEFAULT_READ_CAPACITY,
           back_pressure: bool = True, tls: bool = False,
           ssl_context: ssl.SSLContext | None = None,
           tls_options: TlsConnectionOptions | None = None, ssl_cert: str | None = None,
           ssl_key: str | None = None, ssl_cacert: str | None = None,
           ssl_capath: str | None = None, ssl_insecure: bool = False,
           alpn_list: str | Sequence[str] | None = None,
           tls_timeout: float | None = DEFAULT_TLS_TIMEOUT) -> TCPServer:
    """Bind and listen: ``listen(port)`` binds 127.0.0.1, as the PRD says.

    ``listen(sock)`` with a bound or listening ``socket.socket`` listens on a ``dup`` of
    it instead (see :meth:`TCPServer.adopt`).

    TLS keywords are described in :mod:`.tls`; ``accept()`` then hands out only sockets
    whose handshake completed (see :class:`TCPServer`).
    """
    adopted = address[0] if len(address) == 1 and isinstance(address[0], _socket.socket) else None
    if adopted is None:
        domain, host, port = _split_address(address)
    tls_opts = server_tls_options(tls=tls, tls_options=tls_options, ssl_context=ssl_context,
                                  ssl_cert=ssl_cert, ssl_key=ssl_key, ssl_cacert=ssl_cacert,
                                  ssl_capath=ssl_capath, ssl_insecure=ssl_insecure,
                                  alpn_list=alpn_list, tls_timeout=tls_timeout)
    server = TCPServer(read_buffer_capacity=read_buffer_capacity, back_pressure=back_pressure,
                       tls_options=tls_opts)
    if adopted is not None:
        server.adopt(adopted)
    else:
        if domain is None:
            domain, host = _resolve_for_bind(host, port)
        sockaddr = host if domain is SocketDomain.LOCAL else (host, port)
        server._bind(domain, sockaddr, reuseaddr)
    try:
        return server.listen(backlog)
    except BaseException:
        server.close()
        raise


def listenany(host: str | IPAddr = LOCALHOST, port_hint: int = 0, *, backlog: int = 511,
              **kw: Any) -> tuple[int, TCPServer]:
    """Listen on ``port_hint`` or the next free port above it; returns ``(port, server)``."""
    check_port(port_hint)
    port = port_hint
    while True:
        server = TCPServer(**kw)
        if bind(server, host, port):
            server.listen(backlog)
            return server.getsockname()[1], server
        server.close()
        if port == 0 or port >= 65535:
            raise os_error(errno.EADDRINUSE, f"no free port from {port_hint} on {host}")
        port += 1


def accept(server: TCPServer, callback: Callable[[TCPSocket], Any] | None = None
           ) -> TCPSocket | gevent.Greenlet:
    """``accept(server)``: the next connection. ``accept(server, callback)``: a greenlet
    that accepts forever, running ``callback(sock)`` in a new greenlet per connection
    (it ends when the server closes). Running out of fds (EMFILE and friends) does not
    end it: it logs, backs off and serves again once fds are free."""
    if callback is None:
        return server.accept()

    def loop() -> None:
        while server.isopen:
            try:
                sock = server.accept()
            except OSError as exc:
                if not server.isopen:
                    return
                if exc.errno not in ACCEPT_RESOURCE_ERRORS:
                    raise
                # Out of fds/buffers: the listener already logged it and backs off; keep
                # serving, as socketserver and gevent's StreamServer do.
                continue
            gevent.spawn(callback, sock)

    return gevent.spawn(loop)
