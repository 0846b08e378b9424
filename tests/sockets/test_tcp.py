"""The Sockets surface end to end: echo, LOCAL, listenany, accept callbacks, close,
timeouts, bad input, 1,000 concurrent clients, and the back-pressure bound."""

from __future__ import annotations

import errno
import gc
import hashlib
import ipaddress
import os
import random
import socket as stdsocket
import subprocess
import sys
import time

import gevent
import pytest
from gevent.exceptions import ConcurrentObjectUseError

from reseau_patch import sockets as S
from reseau_patch.io.message import MAX_FRAGMENT


def _echo_server(srv):
    def handle(c):
        while True:
            data = c.readavailable()
            if not data:
                break
            c.write(data)
        c.close()
    return S.accept(srv, handle)


def test_tcp_echo_with_names_peek_read_readavailable(run):
    def body():
        port, srv = S.listenany("127.0.0.1", 0)
        acceptor = _echo_server(srv)
        c = S.connect("127.0.0.1", port)
        local, peer = c.getsockname(), c.getpeername()
        assert peer == (ipaddress.ip_address("127.0.0.1"), port)
        assert isinstance(local[0], ipaddress.IPv4Address) and local[1] > 0
        c.write(b"hello world")
        assert c.peek(5) == b"hello"
        assert c.read(5) == b"hello"
        got = b""
        while len(got) < 6:
            got += c.readavailable()
        assert got == b" world"
        assert c.bytesavailable() == 0
        c.close()
        srv.close()
        acceptor.join(5)
        assert acceptor.dead
    run(body)


def test_connect_forms_port_only_inetaddr_and_ipv6(run):
    def body():
        srv = S.listen(0)  # binds 127.0.0.1
        host, port = srv.getsockname()
        assert host == ipaddress.ip_address("127.0.0.1")
        acceptor = _echo_server(srv)
        for args in [(port,), (S.InetAddr("127.0.0.1", port),), (("127.0.0.1", port),),
                     (S.ip("127.0.0.1"), port), ("localhost", port)]:
            c = S.connect(*args)
            c.write(b"x")
            assert c.read(1) == b"x"
            c.close()
        srv.close()
        acceptor.join(5)
        srv6 = S.listen("::1", 0)
        acceptor = _echo_server(srv6)
        c = S.connect("::1", srv6.getsockname()[1])
        assert c.getpeername()[0] == ipaddress.ip_address("::1")
        c.write(b"v6")
        assert c.read(2) == b"v6"
        c.close()
        srv6.close()
        acceptor.join(5)
    run(body)


@pytest.mark.parametrize("kind", ["path", "abstract"])
def test_local_echo(run, tmp_path, kind):
    path = (str(tmp_path / "echo.sock") if kind == "path"
            else f"\0reseau-{os.getpid()}-{time.monotonic_ns()}")

    def body():
        srv = S.listen(path)
        acceptor = _echo_server(srv)
        c = S.connect(path)
        c.write(b"over unix")
        assert c.read(9) == b"over unix"
        c.close()
        srv.close()
        acceptor.join(5)
    run(body)


def test_listenany_skips_a_taken_port(run):
    def body():
        taken = S.listen("127.0.0.1", 0)
        hint = taken.getsockname()[1]
        port, srv = S.listenany("127.0.0.1", hint)
        assert port > hint
        srv.close()
        taken.close()
    run(body)


def test_bind_returns_false_when_in_use(run):
    def body():
        srv = S.listen(0)
        port = srv.getsockname()[1]
        other = S.TCPServer()
        assert S.bind(other, "127.0.0.1", port) is False
        other.close()
        free = S.TCPServer()
        assert S.bind(free, "127.0.0.1", 0) is True
        free.listen()
        assert free.isopen
        free.close()
        srv.close()
        with pytest.raises(OverflowError, match="70000"):
            S.bind(S.TCPServer(), "127.0.0.1", 70000)
    run(body)


def test_accept_with_callback_runs_per_connection(run):
    def body():
        port, srv = S.listenany()
        seen = []

        def handler(c):
            seen.append(c.readline())
            c.close()

        acceptor = S.accept(srv, handler)
        clients = [S.connect(port) for _ in range(3)]
        for i, c in enumerate(clients):
            c.write(f"client {i}\n".encode())
        for c in clients:
            assert c.read() == b""  # server closed after reading the line
            c.close()
        srv.close()
        acceptor.join(5)
        assert sorted(seen) == [b"client 0\n", b"client 1\n", b"client 2\n"]
    run(body)


def test_close_semantics(run):
    def body():
        port, srv = S.listenany()
        c = S.connect(port)
        s = srv.accept()
        # EOF after the peer closes.
        s.write(b"bye")
        s.close()
        assert c.read() == b"bye"
        assert c.eof()
        # Read and write after our own close raise EBADF.
        c.close()
        c.close()  # idempotent
        for op in (lambda: c.read(1), lambda: c.readavailable(), lambda: c.write(b"x"),
                   lambda: c.settimeout(1)):
            with pytest.raises(OSError) as ei:
                op()
            assert ei.value.errno == errno.EBADF
        assert not c.isopen
        srv.close()
    run(body)


def test_half_close_both_directions(run):
    def body():
        port, srv = S.listenany()
        c = S.connect(port)
        s = srv.accept()
        c.write(b"request")
        c.closewrite()
        assert s.read() == b"request"  # to EOF
        s.write(b"response")
        with pytest.raises(BrokenPipeError):
            c.write(b"more")
        assert c.read(8) == b"response"
        s.closewrite()
        assert c.read() == b""
        c.close()
        s.close()
        srv.close()
    run(body)


def test_write_to_reset_peer_raises(run):
    def body():
        port, srv = S.listenany()
        c = S.connect(port)
        s = srv.accept()
        # SO_LINGER 0: the peer's close sends RST.
        raw = s.channel.first.handler.socket.raw
        raw.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_LINGER, b"\x01\x00\x00\x00" * 2)
        s.close()
        gevent.sleep(0.05)
        with pytest.raises((BrokenPipeError, ConnectionResetError)):
            for _ in range(100):
                c.write(b"z" * 65536)
                c.flush()
                gevent.sleep(0.01)
        c.close()
        srv.close()
    run(body)


def test_timeouts(run):
    def body():
        port, srv = S.listenany()
        c = S.connect(port)
        s = srv.accept()
        c.settimeout(0.2)
        t0 = time.monotonic()
        with pytest.raises(TimeoutError):
            c.read(1)
        elapsed = time.monotonic() - t0
        assert 0.15 <= elapsed < 5
        c.settimeout(0)
        with pytest.raises(BlockingIOError):
            c.read(1)
        with pytest.raises(ValueError, match="-1"):
            c.settimeout(-1)
        srv.settimeout(0.1)
        with pytest.raises(TimeoutError):
            srv.accept()
        c.settimeout(None)
        s.write(b"!")
        assert c.read(1) == b"!"
        c.close()
        s.close()
        srv.close()
    run(body)


def test_connect_timeout_against_full_backlog(run):
    lst = stdsocket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(0)
    fillers = []
    try:
        for _ in range(3):
            f = stdsocket.socket()
            f.setblocking(False)
            f.connect_ex(lst.getsockname())
            fillers.append(f)
        time.sleep(0.05)

        def body():
            t0 = time.monotonic()
            with pytest.raises(TimeoutError, match="timed out after 0.3"):
                S.connect(*lst.getsockname(), timeout=0.3)
            assert time.monotonic() - t0 < 5
        run(body)
    finally:
        for f in fillers:
            f.close()
        lst.close()


def test_bad_input_matches_stdlib(run):
    def body():
        with pytest.raises(OverflowError, match="70000"):
            S.connect("127.0.0.1", 70000)
        with pytest.raises(ValueError, match="not an ip"):
            S.ip("not an ip")
        with pytest.raises(ValueError, match="not an ip"):
            S.InetAddr("not an ip", 80)
        with pytest.raises(stdsocket.gaierror, match="not an ip"):
            S.connect("not an ip", 80)
        with pytest.raises(OSError) as ei:
            S.connect("")
        assert ei.value.errno == errno.EINVAL and "''" in str(ei.value)
        refused = stdsocket.socket()
        refused.bind(("127.0.0.1", 0))
        port = refused.getsockname()[1]
        refused.close()
        with pytest.raises(ConnectionRefusedError):
            S.connect(port)
    run(body)


def test_second_concurrent_reader_is_refused(run):
    def body():
        port, srv = S.listenany()
        c = S.connect(port)
        s = srv.accept()
        first = gevent.spawn(c.read, 1)
        gevent.sleep(0.01)
        with pytest.raises(ConcurrentObjectUseError, match="read"):
            c.read(1)
        s.write(b"1")
        assert first.get(timeout=5) == b"1"
        c.close()
        s.close()
        srv.close()
    run(body)


def test_back_pressure_bounds_reader_buffer(run):
    window = 64 * 1024

    def body():
        port, srv = S.listenany(read_buffer_capacity=window)
        c = S.connect(port)
        s = srv.accept()
        total = 8 << 20
        chunk = os.urandom(256 * 1024)

        def sender():
            sent = 0
            while sent < total:
                c.write(chunk)
                sent += len(chunk)
            c.close()

        g = gevent.spawn(sender)
        received = 0
        while True:
            gevent.sleep(0.001)  # a slow reader
            data = s.read(4096)
            if not data:
                break
            received += len(data)
        g.get(timeout=30)
        assert received == total
        assert s.max_buffered <= window + MAX_FRAGMENT, s.max_buffered
        s.close()
        srv.close()
    run(body, timeout=60)


def _fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_1000_concurrent_clients_sha256_both_ways(run):
    n = 1000

    def body():
        port, srv = S.listenany(backlog=1024)
        server_digests = {}

        def handle(c):
            h = hashlib.sha256()
            name = c.readline().strip()
            while True:
                data = c.readavailable()
                if not data:
                    break
                h.update(data)
                c.write(data)
            server_digests[name] = h.hexdigest()
            c.close()

        acceptor = S.accept(srv, handle)

        def client(i):
            rng = random.Random(i)
            payload = rng.randbytes(rng.randint(1, 64 * 1024))
            c = S.connect(port)
            c.write(f"{i}\n".encode())
            pos = 0
            back = hashlib.sha256()
            got = 0
            while pos < len(payload):
                size = rng.randint(1, 8192)
                c.write(payload[pos:pos + size])
                pos += size
                data = c.readavailable()
                back.update(data)
                got += len(data)
            c.closewrite()
            rest = c.read()
            back.update(rest)
            got += len(rest)
            c.close()
            want = hashlib.sha256(payload).hexdigest()
            assert got == len(payload)
            assert back.hexdigest() == want
            return str(i).encode(), want

        greenlets = [gevent.spawn(client, i) for i in range(n)]
        gevent.joinall(greenlets, timeout=120, raise_error=True)
        results = dict(g.get() for g in greenlets)
        srv.close()
        acceptor.join(5)
        gevent.sleep(0.05)
        assert len(results) == n
        assert server_digests == results
    before = _fd_count()
    run(body, timeout=180)
    gc.collect()
    assert _fd_count() <= before
    # No channel is left: the loop watches nothing but what it watched before.
    assert gevent.get_hub().loop.io_loop.pending_counts()["fds"] == 0


def test_import_selects_loop_in_fresh_interpreter_or_fails_clearly():
    ok = subprocess.run(
        [sys.executable, "-c",
         "import reseau_patch.sockets, gevent; print(type(gevent.get_hub().loop).__name__)"],
        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "ReseauLoop"
    bad = subprocess.run(
        [sys.executable, "-c",
         "import gevent; gevent.config.loop = 'libev-cext'; gevent.get_hub()\n"
         "import reseau_patch.sockets"],
        capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0
    assert "RuntimeError" in bad.stderr and "libev" in bad.stderr


def test_idle_connections_do_not_keep_the_hub_alive(run):
    # As with gevent's own sockets, only a greenlet waiting on a socket holds the loop.
    def body():
        port, srv = S.listenany()
        c = S.connect(port)
        s = srv.accept()
        srv.close()
        c.write(b"x")
        assert s.read(1) == b"x"
        return c, s

    c, s = run(body)
    assert gevent.wait(timeout=5) is True  # returned because nothing waits, not by timeout
    run(lambda: (c.close(), s.close()))
