"""Pair factories for the TCPSocket stream kinds: plain direct (the default for a plain
connection), plain through the channel (a pass-through handler keeps the TCPSocket off
the direct path), TLS direct (the default for ``tls=True``: the socket drives the TLS
engine itself) and TLS through the channel (``tlsupgrade`` of a channel pair: the
pass-through handler keeps it on the channel path). Each runs inside a greenlet of this
thread's hub."""

from __future__ import annotations

import socket as stdsocket
from dataclasses import dataclass

import gevent

from reseau_patch import sockets as S
from reseau_patch.io.channel import Channel, ChannelHandler
from reseau_patch.io.socket import Socket as IoSocket
from reseau_patch.io.socket_handler import SocketHandler
from reseau_patch.sockets.parking import current_io_loop
from reseau_patch.sockets.tcp import DEFAULT_READ_CAPACITY, TCPSocket


class TcpEndpoint:
    """The stream_suite Endpoint over a TCPSocket."""

    half_close = True

    def __init__(self, sock: TCPSocket) -> None:
        self.sock = sock

    def send(self, data: bytes) -> None:
        self.sock.write(data)

    def recv(self, n: int) -> bytes:
        buf = bytearray(n)
        k = self.sock.readinto(buf)
        return bytes(buf[:k])

    def close_write(self) -> None:
        self.sock.flush()
        self.sock.closewrite()

    def close(self) -> None:
        self.sock.close()


def _cap(window: int | None) -> int:
    return DEFAULT_READ_CAPACITY if window is None else window


def direct_pair(window: int | None = None, back_pressure: bool = True
                ) -> tuple[TCPSocket, TCPSocket]:
    port, srv = S.listenany(read_buffer_capacity=_cap(window), back_pressure=back_pressure)
    try:
        c = S.connect(port, read_buffer_capacity=_cap(window), back_pressure=back_pressure)
        s = srv.accept()
    finally:
        srv.close()
    assert c._direct and s._direct
    return c, s


class PassThrough(ChannelHandler):
    """A middle handler that forwards everything: the channel is no longer
    ``[SocketHandler, TCPSocket]``, so the TCPSocket reads through the channel. It holds
    nothing, so it grants its left neighbour exactly what its right one grants it."""

    def initial_window_size(self) -> int:
        return 0


def _channel_socket(raw: stdsocket.socket, window: int | None, back_pressure: bool
                    ) -> TCPSocket:
    loop = current_io_loop()
    channel = Channel(loop, back_pressure=back_pressure)
    channel.activate()
    channel.add_handler(SocketHandler(IoSocket(loop, sock=raw)))
    channel.add_handler(PassThrough())
    tcp = TCPSocket(loop, read_buffer_capacity=_cap(window), back_pressure=back_pressure)
    tcp.attach(channel)

    def on_shutdown(ch: Channel, err: BaseException | None) -> None:
        tcp.on_channel_shutdown(ch, err)
        ch.destroy()

    channel.on_shutdown = on_shutdown
    channel.add_handler(tcp)
    channel.trigger_read()
    assert not tcp._direct
    return tcp


def channel_pair(window: int | None = None, back_pressure: bool = True
                 ) -> tuple[TCPSocket, TCPSocket]:
    with stdsocket.create_server(("127.0.0.1", 0)) as lsock:
        a = stdsocket.create_connection(lsock.getsockname(), timeout=5)
        b, _ = lsock.accept()
    a.setsockopt(stdsocket.IPPROTO_TCP, stdsocket.TCP_NODELAY, 1)
    b.setsockopt(stdsocket.IPPROTO_TCP, stdsocket.TCP_NODELAY, 1)
    return _channel_socket(a, window, back_pressure), _channel_socket(b, window, back_pressure)


@dataclass
class Certs:
    ca: str
    cert: str
    key: str


def tls_pair(certs: Certs, window: int | None = None, back_pressure: bool = True
             ) -> tuple[TCPSocket, TCPSocket]:
    srv = S.listen(("127.0.0.1", 0), tls=True, ssl_cert=certs.cert, ssl_key=certs.key,
                   read_buffer_capacity=_cap(window), back_pressure=back_pressure)
    try:
        port = srv.getsockname()[1]
        c = S.connect("127.0.0.1", port, tls=True, ssl_cacert=certs.ca,
                      read_buffer_capacity=_cap(window), back_pressure=back_pressure)
        s = srv.accept()
    finally:
        srv.close()
    assert c.tls is not None and s.tls is not None
    # Direct TLS starts at the first read or write once negotiated.
    assert c.bytesavailable() == 0 and s.bytesavailable() == 0
    assert c.mode == s.mode == "tls-direct", (c.mode, s.mode)
    return c, s


def tls_channel_pair(certs: Certs, window: int | None = None, back_pressure: bool = True
                     ) -> tuple[TCPSocket, TCPSocket]:
    """TLS on the channel path: a channel pair upgraded with ``tlsupgrade``."""
    c, s = channel_pair(window, back_pressure)
    server = gevent.spawn(S.tlsupgrade, s, server_side=True, ssl_cert=certs.cert,
                          ssl_key=certs.key)
    try:
        S.tlsupgrade(c, ssl_cacert=certs.ca, server_name="localhost")
        server.get(timeout=10)
    except BaseException:
        server.kill(block=True, timeout=5)
        c.close()
        s.close()
        raise
    assert c.bytesavailable() == 0 and s.bytesavailable() == 0
    assert c.mode == s.mode == "channel", (c.mode, s.mode)
    return c, s


KINDS = ("direct", "channel", "tls", "tls-channel")


def socket_pair(kind: str, certs: Certs, window: int | None = None,
                back_pressure: bool = True) -> tuple[TCPSocket, TCPSocket]:
    if kind == "direct":
        return direct_pair(window, back_pressure)
    if kind == "channel":
        return channel_pair(window, back_pressure)
    if kind == "tls-channel":
        return tls_channel_pair(certs, window, back_pressure)
    return tls_pair(certs, window, back_pressure)


def endpoint_factory(kind: str, certs: Certs):
    """A stream_suite pair factory for ``kind``."""

    def make(window: int | None = None, back_pressure: bool = True
             ) -> tuple[TcpEndpoint, TcpEndpoint]:
        a, b = socket_pair(kind, certs, window, back_pressure)
        return TcpEndpoint(a), TcpEndpoint(b)

    return make


def connect_to(kind: str, certs: Certs, address: tuple[str, int], window: int | None = None
               ) -> TCPSocket:
    """Our ``kind`` of TCPSocket connected to a plain stdlib listener at ``address``
    (the peer does its TLS by hand)."""
    if kind == "direct":
        return S.connect(*address, read_buffer_capacity=_cap(window))
    if kind == "channel":
        raw = stdsocket.create_connection(address, timeout=5)
        return _channel_socket(raw, window, True)
    if kind == "tls-channel":
        sock = _channel_socket(stdsocket.create_connection(address, timeout=5), window, True)
        try:
            S.tlsupgrade(sock, ssl_cacert=certs.ca, server_name="localhost")
        except BaseException:
            sock.close()
            raise
        return sock
    return S.connect(*address, tls=True, ssl_cacert=certs.ca, read_buffer_capacity=_cap(window))
