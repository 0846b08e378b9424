"""TLS on the Sockets surface: the ``connect``/``listen`` keywords and ``tlsupgrade``.

Keywords (PRD §3F): ``tls=True`` turns TLS on with our own context options built from
``ssl_cacert`` (CA file), ``ssl_capath`` (CA directory), ``ssl_cert``/``ssl_key`` (our
certificate), ``ssl_insecure`` (verify nothing) and ``alpn_list``. ``ssl_context=`` takes
a ready ``ssl.SSLContext`` and uses it unchanged (implies TLS; the other knobs must then
be set on the context), ``tls_options=`` a ready :class:`TlsConnectionOptions`.
``tls_timeout`` bounds the handshake (default 10 s).

A server verifies client certificates (mTLS) when it is given a CA (``ssl_cacert`` or
``ssl_capath``) and ``ssl_insecure`` is false.
"""

from __future__ import annotations

import errno
import ssl
from collections.abc import Sequence
from typing import Any

from ..io.socket import os_error
from ..io.tls import TlsHandler
from ..io.tls_options import DEFAULT_TLS_TIMEOUT, TlsConnectionOptions, TlsContextOptions
from .parking import Parker
from .tcp import TCPSocket

__all__ = ["client_tls_options", "server_tls_options", "tlsupgrade"]

_KNOBS = ("ssl_cacert", "ssl_capath", "ssl_cert", "ssl_key", "ssl_insecure", "alpn_list")


def _given(knobs: dict[str, Any]) -> list[str]:
    return [k for k in _KNOBS if knobs.get(k) not in (None, False)]


def _pick(tls: bool, tls_options: TlsConnectionOptions | None,
          ssl_context: ssl.SSLContext | None, knobs: dict[str, Any]) -> str:
    """Which source configures TLS: "options", "context", "knobs" or "off"."""
    given = _given(knobs)
    if tls_options is not None:
        if ssl_context is not None or given:
            raise ValueError(f"tls_options= cannot be combined with "
                             f"{', '.join(given or ['ssl_context'])}=")
        return "options"
    if ssl_context is not None:
        if not isinstance(ssl_context, ssl.SSLContext):
            raise TypeError(f"ssl_context must be an ssl.SSLContext, got {ssl_context!r}")
        if given:
            raise ValueError(f"{', '.join(given)}= cannot be combined with ssl_context=; "
                             "configure the ssl.SSLContext instead")
        return "context"
    if not tls:
        if given:
            raise ValueError(f"{', '.join(given)}= given without tls=True")
        return "off"
    return "knobs"


def client_tls_options(*, tls: bool = False, tls_options: TlsConnectionOptions | None = None,
                       ssl_context: ssl.SSLContext | None = None,
                       server_name: str | None = None, ssl_cacert: str | None = None,
                       ssl_capath: str | None = None, ssl_cert: str | None = None,
                       ssl_key: str | None = None, ssl_insecure: bool = False,
                       alpn_list: str | Sequence[str] | None = None,
                       tls_timeout: float | None = DEFAULT_TLS_TIMEOUT
                       ) -> TlsConnectionOptions | None:
    """Client options from the keywords, or None when TLS is off."""
    knobs = dict(ssl_cacert=ssl_cacert, ssl_capath=ssl_capath, ssl_cert=ssl_cert,
                 ssl_key=ssl_key, ssl_insecure=ssl_insecure, alpn_list=alpn_list)
    how = _pick(tls, tls_options, ssl_context, knobs)
    if how == "off":
        if server_name is not None:
            raise ValueError("server_name= given without tls=True")
        return None
    if how == "options":
        return tls_options
    if how == "context":
        return TlsConnectionOptions(ssl_context, server_name=server_name, timeout=tls_timeout)
    ctx = TlsContextOptions(ca_file=ssl_cacert, ca_path=ssl_capath, cert_file=ssl_cert,
                            key_file=ssl_key, verify_peer=not ssl_insecure, alpn_list=alpn_list)
    return TlsConnectionOptions(ctx, server_name=server_name, timeout=tls_timeout)


def server_tls_options(*, tls: bool = False, tls_options: TlsConnectionOptions | None = None,
                       ssl_context: ssl.SSLContext | None = None,
                       ssl_cert: str | None = None, ssl_key: str | None = None,
                       ssl_cacert: str | None = None, ssl_capath: str | None = None,
                       ssl_insecure: bool = False,
                       alpn_list: str | Sequence[str] | None = None,
                       tls_timeout: float | None = DEFAULT_TLS_TIMEOUT
                       ) -> TlsConnectionOptions | None:
    """Server options from the keywords, or None when TLS is off."""
    knobs = dict(ssl_cacert=ssl_cacert, ssl_capath=ssl_capath, ssl_cert=ssl_cert,
                 ssl_key=ssl_key, ssl_insecure=ssl_insecure, alpn_list=alpn_list)
    how = _pick(tls, tls_options, ssl_context, knobs)
    if how == "off":
        return None
    if how == "options":
        return tls_options
    if how == "context":
        return TlsConnectionOptions(ssl_context, timeout=tls_timeout)
    if ssl_cert is None:
        raise ValueError("listen(tls=True) needs ssl_cert= (and ssl_key= unless the "
                         "certificate file holds the key), or ssl_context=")
    verify_clients = (ssl_cacert is not None or ssl_capath is not None) and not ssl_insecure
    ctx = TlsContextOptions(server_side=True, cert_file=ssl_cert, key_file=ssl_key,
                            ca_file=ssl_cacert, ca_path=ssl_capath,
                            verify_peer=verify_clients, alpn_list=alpn_list)
    return TlsConnectionOptions(ctx, timeout=tls_timeout)


def tlsupgrade(sock: TCPSocket, *, server_side: bool = False,
               tls_options: TlsConnectionOptions | None = None,
               ssl_context: ssl.SSLContext | None = None, server_name: str | None = None,
               ssl_cacert: str | None = None, ssl_capath: str | None = None,
               ssl_cert: str | None = None, ssl_key: str | None = None,
               ssl_insecure: bool = False, alpn_list: str | Sequence[str] | None = None,
               tls_timeout: float | None = DEFAULT_TLS_TIMEOUT) -> TCPSocket:
    """Upgrade a live plaintext ``sock`` to TLS in place (STARTTLS) and wait for the
    handshake; returns ``sock``. Raises the TLS error (the connection is then shut down).

    The TLS handler goes between the socket handler and ``sock``. Bytes ``sock`` had
    already buffered but nobody read are the peer's first TLS bytes (a peer may pipeline
    them right behind its plaintext reply): they go to the TLS handler, not to the reader.
    A client's server name defaults to the host it connected to. Bounded by
    ``tls_timeout``; call it with no other greenlet reading or writing ``sock``.
    """
    if server_side:
        opts = server_tls_options(tls=True, tls_options=tls_options, ssl_context=ssl_context,
                                  ssl_cert=ssl_cert, ssl_key=ssl_key, ssl_cacert=ssl_cacert,
                                  ssl_capath=ssl_capath, ssl_insecure=ssl_insecure,
                                  alpn_list=alpn_list, tls_timeout=tls_timeout)
    else:
        opts = client_tls_options(tls=True, tls_options=tls_options, ssl_context=ssl_context,
                                  server_name=server_name, ssl_cacert=ssl_cacert,
                                  ssl_capath=ssl_capath, ssl_cert=ssl_cert, ssl_key=ssl_key,
                                  ssl_insecure=ssl_insecure, alpn_list=alpn_list,
                                  tls_timeout=tls_timeout)
    assert opts is not None
    if not isinstance(sock, TCPSocket):
        raise TypeError(f"tlsupgrade() needs a TCPSocket, got {sock!r}")
    if sock.closed:
        raise os_error(errno.EBADF, "socket is closed")
    if sock.tls is not None:
        raise ValueError(f"{sock!r} already runs TLS")
    ctx_opts = opts.context
    if isinstance(ctx_opts, TlsContextOptions) and ctx_opts.server_side != server_side:
        raise ValueError(f"TlsContextOptions(server_side={ctx_opts.server_side}) given to "
                         f"tlsupgrade(server_side={server_side})")
    name = None if server_side else (opts.server_name or sock.host)
    result: list[BaseException | None] = []
    parker = Parker(sock, "upgrade to TLS")

    def negotiated(_h: TlsHandler, err: BaseException | None) -> None:
        result.append(err)
        parker.wake()

    tls = TlsHandler(opts.ssl_context(), server_side=server_side, server_hostname=name,
                     timeout=opts.timeout, on_negotiated=negotiated)
    sock._start_tls(tls)
    while not result:
        parker.park(sock._loop, None)  # the handler's own timeout bounds the wait
    if result[0] is not None:
        raise result[0]
    return sock
