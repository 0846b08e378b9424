"""StreamServer: gevent's API over sockets.listen / TCPSocket."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import gevent
import gevent.event
import pytest

from reseau_patch import sockets
from reseau_patch.server import StreamServer

HERE = os.path.dirname(__file__)


def echo(sock, address):
    while data := sock.readavailable():
        sock.write(data)


def _roundtrip(port, payload: bytes = b"ping", **kw) -> bytes:
    c = sockets.connect(port, timeout=10, **kw) if isinstance(port, int) else \
        sockets.connect(port, timeout=10)
    c.settimeout(10)
    try:
        c.write(payload)
        return c.read(len(payload))
    finally:
        c.close()


def test_echo_on_address_tcpserver_and_unix_path(run, tmp_path):
    def body():
        with StreamServer(("127.0.0.1", 0), echo) as srv:
            assert srv.server_host == "127.0.0.1"
            assert _roundtrip(srv.server_port) == b"ping"
        listener = sockets.listen(0)
        with StreamServer(listener, echo) as srv:
            assert srv.server is listener
            assert _roundtrip(srv.server_port, b"tcpserver") == b"tcpserver"
        path = str(tmp_path / "s.sock")
        with StreamServer(path, echo) as srv:
            assert srv.address == path
            assert _roundtrip(path, b"unix") == b"unix"

    run(body)


def test_handler_gets_peer_address_and_socket_is_closed_after(run):
    seen = []

    def handle(sock, address):
        seen.append((address, sock))
        sock.write(b"hi")

    def body():
        with StreamServer(("127.0.0.1", 0), handle) as srv:
            c = sockets.connect(srv.server_port, timeout=10)
            c.settimeout(10)
            local_port = c.getsockname()[1]
            assert c.read(2) == b"hi"
            assert c.readavailable() == b""  # the server closed it when handle returned
            c.close()
        (address, sock), = seen
        assert address == ("127.0.0.1", local_port)
        assert sock.closed

    run(body)


def test_spawn_pool_limits_concurrent_handlers(run):
    release = gevent.event.Event()
    running = []

    def handle(sock, address):
        running.append(1)
        release.wait(10)
        sock.write(b"x")

    def body():
        with StreamServer(("127.0.0.1", 0), handle, spawn=2) as srv:
            clients = [sockets.connect(srv.server_port, timeout=10) for _ in range(4)]
            gevent.sleep(0.3)
            assert len(running) == 2  # the pool is full: the others wait in the backlog
            release.set()
            for c in clients:
                c.settimeout(10)
                assert c.read(1) == b"x"
                c.close()
            assert len(running) == 4

    run(body)


def test_handler_exception_is_logged_and_server_keeps_serving(run, caplog):
    def handle(sock, address):
        if sock.read(4) == b"boom":
            raise RuntimeError("handler blew up")
        sock.write(b"fine")

    def body():
        with StreamServer(("127.0.0.1", 0), handle) as srv:
            with caplog.at_level(logging.ERROR, logger="reseau_patch.server"):
                c = sockets.connect(srv.server_port, timeout=10)
                c.settimeout(10)
                c.write(b"boom")
                assert c.readavailable() == b""
                c.close()
            assert "handler blew up" in caplog.text
            assert _roundtrip(srv.server_port, b"good") == b"fine"

    run(body)


def test_serve_forever_returns_after_stop_and_new_connects_are_refused(run):
    def body():
        srv = StreamServer(("127.0.0.1", 0), echo)
        srv.init_socket()
        port = srv.server_port
        g = gevent.spawn(srv.serve_forever)
        gevent.sleep(0.05)
        assert _roundtrip(port) == b"ping"
        srv.stop(timeout=1)
        g.get(timeout=5)
        with pytest.raises(ConnectionRefusedError):
            sockets.connect(port, timeout=5)
        assert srv.closed

    run(body)


def test_tls_keywords_with_alpn(run, tmp_path):
    import ssl

    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(certfile)
    cert.private_key_pem.write_to_path(keyfile)
    cafile = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(cafile)

    def handle(sock, address):
        sock.write(sock.selected_alpn_protocol().encode())

    def body():
        with StreamServer(("127.0.0.1", 0), handle, certfile=str(certfile),
                          keyfile=str(keyfile), alpn_protocols=["h2", "http/1.1"]) as srv:
            assert srv.ssl_enabled
            ctx = ssl.create_default_context(cafile=str(cafile))
            ctx.set_alpn_protocols(["http/1.1"])
            c = sockets.connect("127.0.0.1", srv.server_port, ssl_context=ctx, timeout=10)
            c.settimeout(10)
            assert c.read(8) == b"http/1.1"
            c.close()

    run(body)


def test_bad_arguments():
    with pytest.raises(TypeError, match="object"):
        StreamServer(object(), echo)
    with pytest.raises(ValueError, match="-3"):
        StreamServer(("127.0.0.1", 0), echo, spawn=-3)
    with pytest.raises(ValueError, match="keyfile"):
        StreamServer(("127.0.0.1", 0), echo, keyfile="k.pem")
    with pytest.raises(ValueError, match="-1"):
        StreamServer(("127.0.0.1", 0), echo, backlog=-1)


def test_emfile_on_accept_backs_off_and_recovers():
    proc = subprocess.run([sys.executable, os.path.join(HERE, "scenarios", "emfile_accept.py")],
                          capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["ok"] == 10, result
    assert result["emfile_logged"], result


def test_wrap_socket_adapter_runs_a_gevent_style_handler(run):
    from reseau_patch.server import SocketAdapter

    def gevent_style(sock, address):
        # What gevent's docs show: recv/sendall, and a makefile-based line protocol.
        assert sock.getpeername() == address
        sock.sendall(b"hello " + sock.recv(5) + b"\n")
        f = sock.makefile("rwb")
        for line in f:
            if line.strip() == b"quit":
                f.write(b"bye\n")
                f.flush()
                break
            f.write(line.upper())
            f.flush()
        f.close()
        buf = bytearray(4)
        sock.settimeout(5)
        n = sock.recv_into(buf)
        sock.sendall(bytes(buf[:n]) + b"!")
        sock.shutdown(2)

    def body():
        with StreamServer(("127.0.0.1", 0), gevent_style, wrap=SocketAdapter) as srv:
            c = sockets.connect(srv.server_port, timeout=10)
            c.settimeout(10)
            c.write(b"world")
            assert c.readline() == b"hello world\n"
            c.write(b"abc\ndef\n")
            assert c.readline() == b"ABC\n"
            assert c.readline() == b"DEF\n"
            c.write(b"quit\n")
            assert c.readline() == b"bye\n"
            c.write(b"last")  # after the file: a buffered reader would have eaten it
            assert c.read() == b"last!"  # then EOF: shutdown(SHUT_RDWR) half-closed us
            c.close()

    run(body)

    with pytest.raises(TypeError, match="42"):
        StreamServer(("127.0.0.1", 0), echo, wrap=42)
