"""Module-level ``socket`` functions for the patched module.

``create_connection`` keeps the stdlib's signature, socket options and errors (the last
attempt's error, or ``ExceptionGroup`` with ``all_errors``) but connects with Happy
Eyeballs v2 (RFC 8305) on our loop: addresses of both families are raced, 250 ms apart,
so one black-holed address costs a quarter second instead of the whole timeout. A literal
IP address is one candidate, so it gets one plain green connect (nothing to race; the
loop round trips of a Happy Eyeballs run cost ~15% of a TLS handshake's CPU). Ports are
read as the stdlib reads them (``"8080"``, service names like ``"http"``; a bad one is a
``socket.gaierror``). Where the caller replaced ``socket.socket`` (a mock, a subclass of
its own), the stdlib's algorithm runs with that class, as the stdlib would use it.

``getnameinfo`` checks its arguments in the caller's frame, as the C function does, so a
bad argument's traceback holds no resolver frame (and no reference to the argument).
"""

from __future__ import annotations

import _socket
import operator
import socket as _stdsocket
from typing import Any

__all__ = ["create_connection", "getnameinfo", "port_number"]

_stdlib_create_connection = _stdsocket.create_connection
_GLOBAL_DEFAULT_TIMEOUT: Any = _stdsocket._GLOBAL_DEFAULT_TIMEOUT


def port_number(port: Any) -> int:
    """``port`` as ``getaddrinfo`` reads it: an int in 0-65535 as is; a numeric string,
    service name, None or an out-of-range int through the C library (no DNS involved),
    with its errors (``gaierror`` "Servname not supported ...")."""
    if type(port) is int and 0 <= port <= 0xFFFF:
        return port
    infos = _socket.getaddrinfo(None, port, _socket.AF_INET, _socket.SOCK_STREAM, 0,
                                _socket.AI_PASSIVE)
    return infos[0][4][1]


def create_connection(address: tuple[str, int], timeout: Any = _GLOBAL_DEFAULT_TIMEOUT,
                      source_address: Any = None, *, all_errors: bool = False) -> Any:
    """Connect to ``address`` (host, port) and return the connected socket."""
    from ..io.happy_eyeballs import HappyEyeballs, HappyEyeballsConfig
    from ..io.resolver import default_resolver
    from ..io.socket import SocketOptions
    from ..sockets.parking import Parker, current_io_loop
    from .green_socket import GreenSocket

    host, port = address[0], address[1]
    if timeout is _GLOBAL_DEFAULT_TIMEOUT:
        timeout = _stdsocket.getdefaulttimeout()
    if not isinstance(host, str) or not host or timeout == 0 \
            or _stdsocket.socket is not GreenSocket:
        # Odd inputs, or a socket class the caller installed: the stdlib's exact path
        # (it looks ``socket`` up at call time; its getaddrinfo is the patched one).
        return _stdlib_create_connection(address, timeout, source_address,
                                         all_errors=all_errors)
    port = port_number(port)
    family = _literal_family(host)
    if family:
        return _connect_one(GreenSocket, family, host, port, timeout, source_address,
                            all_errors)
    loop = current_io_loop()
    # The stdlib sets no socket options: neither do we (no TCP_NODELAY, no SO_REUSEADDR).
    opts = SocketOptions(connect_timeout=timeout or None, nodelay=False, reuseaddr=False,
                         bind_address=source_address)
    result: list = []
    parker = Parker(address, "connect")

    def done(sock: Any, err: BaseException | None) -> None:
        result.append((sock, err))
        parker.wake()

    he = HappyEyeballs(loop, opts, done, config=HappyEyeballsConfig(all_errors=all_errors),
                       resolver=default_resolver())
    he.start(host, port)
    try:
        while not result:
            parker.park(loop, None)  # each attempt is bounded by its connect timeout
    except BaseException:
        he.cancel()
        raise
    sock, err = result[0]
    if err is not None:
        raise err
    family = int(sock.options.domain)
    fd = sock.detach()
    green = GreenSocket(family, _socket.SOCK_STREAM, _socket.IPPROTO_TCP, fileno=fd)
    green.settimeout(timeout)
    return green


def _literal_family(host: str) -> int:
    """AF_INET/AF_INET6 when ``host`` is an IP literal (no scope id), else 0."""
    for family in (_socket.AF_INET, _socket.AF_INET6):
        try:
            _socket.inet_pton(family, host)
        except (OSError, ValueError):  # ValueError: an embedded NUL
            continue
        return family
    return 0


def _connect_one(cls: Any, family: int, host: str, port: int, timeout: float | None,
                 source_address: Any, all_errors: bool) -> Any:
    """The stdlib's create_connection loop for its one address: errors as it raises them."""
    sock = cls(family, _socket.SOCK_STREAM, _socket.IPPROTO_TCP)  # getaddrinfo's proto
    try:
        sock.settimeout(timeout)
        if source_address:
            sock.bind(source_address)
        sock.connect((host, port))
        return sock
    except OSError as exc:
        sock.close()
        if all_errors:
            raise ExceptionGroup("create_connection failed", [exc]) from None
        raise
    except BaseException:  # gevent.Timeout, kill: no fd left behind
        sock.close()
        raise


def getnameinfo(sockaddr: Any, flags: Any) -> tuple[str, str]:
    """``socket.getnameinfo`` on the hub's resolver, argument errors as the C function's."""
    from gevent.socket import getnameinfo as green_getnameinfo

    if not isinstance(sockaddr, tuple):
        del sockaddr  # the traceback keeps this frame: it must not keep the argument
        raise TypeError("getnameinfo() argument 1 must be a tuple")
    operator.index(flags)  # TypeError "... cannot be interpreted as an integer"
    return green_getnameinfo(sockaddr, flags)
