"""Module-level ``socket`` functions for the patched module.

``create_connection`` keeps the stdlib's signature, socket options and errors (the last
attempt's error, or ``ExceptionGroup`` with ``all_errors``) but connects with Happy
Eyeballs v2 (RFC 8305) on our loop: addresses of both families are raced, 250 ms apart,
so one black-holed address costs a quarter second instead of the whole timeout.
"""

from __future__ import annotations

import _socket
import socket as _stdsocket
from typing import Any

__all__ = ["create_connection"]

_stdlib_create_connection = _stdsocket.create_connection
_GLOBAL_DEFAULT_TIMEOUT: Any = _stdsocket._GLOBAL_DEFAULT_TIMEOUT


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
    if not isinstance(host, str) or not host or timeout == 0:
        # Odd inputs keep the stdlib's exact path (and its errors).
        return _stdlib_create_connection(address, timeout, source_address,
                                         all_errors=all_errors)
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
    green = GreenSocket(family, _socket.SOCK_STREAM, 0, fileno=fd)
    green.settimeout(timeout)
    return green
