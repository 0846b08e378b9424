"""``sockets.listen(sock)``: a server on a listener someone else bound (gunicorn's)."""

from __future__ import annotations

import socket

import pytest

from reseau_patch import sockets


def test_listen_adopts_a_bound_socket_and_leaves_it_open(run):
    raw = socket.socket()
    raw.bind(("127.0.0.1", 0))
    raw.listen(8)
    port = raw.getsockname()[1]

    def body():
        server = sockets.listen(raw)
        try:
            assert server.getsockname()[1] == port
            client = sockets.connect(port, timeout=10)
            conn = server.accept()
            client.write(b"ping")
            assert conn.read(4) == b"ping"
            conn.close()
            client.close()
        finally:
            server.close()

    try:
        run(body)
        assert raw.fileno() >= 0  # still the caller's
        raw.getsockname()
    finally:
        raw.close()


def test_adopt_refuses_a_datagram_socket(run):
    udp = socket.socket(type=socket.SOCK_DGRAM)
    try:
        with pytest.raises(OSError, match="not a stream socket"):
            run(sockets.listen, udp)
    finally:
        udp.close()
