"""Under ``patch_all``: gevent's own servers run over the patched socket, not gevent's.

``gevent.server`` captured ``gevent.socket.socket`` when it was imported and builds every
listener and accepted socket from it; with TLS ``ssl_args`` and no ``ssl_context`` it wraps
through ``gevent.ssl.wrap_socket`` (gevent's SSLSocket). :func:`install` points both at the
patched ``socket.socket`` and the (patched) stdlib ``ssl``, so ``gevent.server.StreamServer``
and ``gevent.pywsgi.WSGIServer`` run over our sockets and TLS engine. Call it after
``patch_socket``/``patch_ssl``; it is idempotent.
"""

from __future__ import annotations

import ssl
from typing import Any

__all__ = ["install", "wrap_socket"]


def wrap_socket(sock: Any, keyfile: str | None = None, certfile: str | None = None,
                server_side: bool = False, cert_reqs: int = ssl.CERT_NONE,
                ssl_version: int | None = None, ca_certs: str | None = None,
                do_handshake_on_connect: bool = True, suppress_ragged_eofs: bool = True,
                ciphers: str | None = None, **_ignored: Any) -> ssl.SSLSocket:
    """``gevent.ssl.wrap_socket``'s signature on a stdlib ``SSLContext`` (our TLS engine)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server_side else ssl.PROTOCOL_TLS_CLIENT)
    if not server_side:
        ctx.check_hostname = False  # the old module-level wrap_socket never checked names
    ctx.verify_mode = cert_reqs
    if certfile:
        ctx.load_cert_chain(certfile, keyfile)
    if ca_certs:
        ctx.load_verify_locations(ca_certs)
    if ciphers:
        ctx.set_ciphers(ciphers)
    return ctx.wrap_socket(sock, server_side=server_side,
                           do_handshake_on_connect=do_handshake_on_connect,
                           suppress_ragged_eofs=suppress_ragged_eofs)


def install() -> None:
    """Point ``gevent.server`` (and through it ``gevent.pywsgi``) at the patched socket."""
    import socket

    import gevent.server
    import gevent.ssl
    from gevent.monkey.api import patch_item

    from .green_socket import GreenSocket

    if not (isinstance(socket.socket, type) and issubclass(socket.socket, GreenSocket)):
        raise RuntimeError(f"socket.socket is {socket.socket!r}, not the patched class: "
                           "call reseau_patch.patch_all() first")
    if gevent.server.GeventSocket is not socket.socket:
        patch_item(gevent.server, "GeventSocket", socket.socket)
    if gevent.ssl.wrap_socket is not wrap_socket:
        patch_item(gevent.ssl, "wrap_socket", wrap_socket)
