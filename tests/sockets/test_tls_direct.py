"""TCPSocket's direct TLS mode (a ``[SocketHandler, TlsHandler, TCPSocket]`` channel once
negotiated): the socket drives the TLS engine and the fd itself. Order, EOF and
close_notify, half-close, deadlines, close from another greenlet, STARTTLS and the
receive-buffer bound behave as on the channel path; an idle reader keeps no exception."""

from __future__ import annotations

import errno
import gc
import hashlib
import os
import ssl
from dataclasses import dataclass

import gevent
import pytest

from reseau_patch import pki
from reseau_patch import sockets as S
from reseau_patch.sockets.tcp import DEFAULT_READ_CAPACITY, TCPSocket


@dataclass
class Certs:
    ca: str
    cert: str
    key: str


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Certs:
    d = tmp_path_factory.mktemp("pki")
    ca = pki.make_ca("reseau direct-TLS test CA")
    (d / "ca.pem").write_bytes(ca.cert_pem())
    cert, key = ca.issue(["localhost"], ["127.0.0.1"]).write_pem(d, "server")
    return Certs(str(d / "ca.pem"), cert, key)


def _pair(certs: Certs, **kw) -> tuple[TCPSocket, TCPSocket]:
    srv = S.listen(("127.0.0.1", 0), tls=True, ssl_cert=certs.cert, ssl_key=certs.key, **kw)
    try:
        c = S.connect("127.0.0.1", srv.getsockname()[1], tls=True, ssl_cacert=certs.ca, **kw)
        s = srv.accept()
    finally:
        srv.close()
    return c, s


def _go_direct(*socks: TCPSocket) -> None:
    for sock in socks:
        sock.bytesavailable()  # the first call after the handshake enters the mode
        assert sock.mode == "tls-direct", sock.mode


def test_bulk_both_ways_reads_and_writes_in_direct_mode(run, certs):
    data = os.urandom(3 * 1024 * 1024 + 17)

    def body():
        c, s = _pair(certs)
        try:
            _go_direct(c, s)

            def echo():
                buf = bytearray(100_000)
                while n := s.readinto(buf):
                    s.write(buf[:n])
                s.flush()
                s.closewrite()

            server = gevent.spawn(echo)
            writer = gevent.spawn(lambda: (c.write(data), c.flush(), c.closewrite()))
            got = hashlib.sha256()
            total = 0
            while chunk := c.read(70_000):
                got.update(chunk)
                total += len(chunk)
            writer.get(timeout=30)
            server.get(timeout=30)
            assert total == len(data)
            assert got.digest() == hashlib.sha256(data).digest()
            assert c.mode == s.mode == "tls-direct"
            assert c.tls.peer_closed and s.tls.peer_closed  # close_notify both ways
        finally:
            c.close()
            s.close()
    run(body)


def test_closewrite_keeps_plaintext_the_engine_already_holds(run, certs):
    """A small read leaves whole records in the engine; closewrite (close_notify) must
    not let OpenSSL's shutdown discard them."""
    data = os.urandom(200_000)

    def body():
        c, s = _pair(certs)
        try:
            _go_direct(c, s)
            s.write(data)
            s.flush()
            first = c.read(10)
            c.closewrite()
            assert s.read() == b""  # our close_notify is a clean EOF for the peer
            s.write(b"after")
            s.closewrite()
            assert first + c.read() == data + b"after"
        finally:
            c.close()
            s.close()
    run(body)


def test_bare_close_is_truncation_after_the_data(run, certs):
    def body():
        c, s = _pair(certs)
        try:
            _go_direct(c)
            s.write(b"last words")
            s.flush()
            s.channel.first.handler.socket.close()  # the TCP stream ends, no close_notify
            assert c.read(10) == b"last words"
            with pytest.raises(ssl.SSLEOFError):
                c.readinto(bytearray(10))
            with pytest.raises(ssl.SSLEOFError):
                c.read(1)  # sticky
        finally:
            c.close()
            s.close()
    run(body)


def test_deadlines_on_direct_tls_reads(run, certs):
    def body():
        c, s = _pair(certs)
        try:
            _go_direct(c)
            c.settimeout(0.05)
            for op in (lambda: c.readinto(bytearray(4)), c.readavailable, lambda: c.read(1),
                       c.readline):
                with pytest.raises(TimeoutError):
                    op()
            c.settimeout(0)
            with pytest.raises(BlockingIOError):
                c.readinto(bytearray(4))
            assert not c.channel.first.handler.socket.reading  # no watcher left behind
            c.settimeout(5)
            s.write(b"late\n")
            assert c.readline() == b"late\n"
        finally:
            c.close()
            s.close()
    run(body)


def test_close_from_another_greenlet_ends_a_parked_direct_tls_read(run, certs):
    def body():
        c, s = _pair(certs)
        try:
            _go_direct(c)
            reader = gevent.spawn(c.readinto, bytearray(10))
            gevent.sleep(0.02)
            c.close()
            with pytest.raises(OSError) as ei:
                reader.get(timeout=5)
            assert ei.value.errno == errno.EBADF
        finally:
            c.close()
            s.close()
    run(body)


def test_slow_reader_buffers_at_most_its_window(run, certs):
    """Direct reads pull from the kernel only what a read asks for: a reader of small
    pieces never holds much more than one kernel read decrypted."""
    data = os.urandom(4 * 1024 * 1024)

    def body():
        c, s = _pair(certs)
        try:
            _go_direct(c)
            writer = gevent.spawn(lambda: (s.write(data), s.flush()))
            got = bytearray()
            while len(got) < len(data):
                got += c.read(min(1000, len(data) - len(got)))
            writer.get(timeout=30)
            assert got == data
            assert c.max_buffered <= DEFAULT_READ_CAPACITY, c.max_buffered
        finally:
            c.close()
            s.close()
    run(body)


def test_starttls_enters_direct_mode_after_the_handshake(run, certs):
    def body():
        port, srv = S.listenany()
        c = S.connect(port)
        s = srv.accept()
        srv.close()
        try:
            assert c.mode == s.mode == "direct"
            server = gevent.spawn(S.tlsupgrade, s, server_side=True, ssl_cert=certs.cert,
                                  ssl_key=certs.key)
            S.tlsupgrade(c, ssl_cacert=certs.ca, server_name="localhost")
            server.get(timeout=10)
            c.write(b"ping\n")
            assert s.readline() == b"ping\n"
            s.write(b"pong\n")
            assert c.readline() == b"pong\n"
            assert c.mode == s.mode == "tls-direct"
        finally:
            c.close()
            s.close()
    run(body)


def _direct_pair(kind: str, certs):
    """A connected (client, server) pair whose client is in ``kind`` mode."""
    if kind == "direct":
        port, srv = S.listenany()
        c = S.connect(port)
        s = srv.accept()
        srv.close()
        return c, s
    c, s = _pair(certs)
    _go_direct(c)
    return c, s


def _parked_exceptions() -> list[BaseException]:
    gc.collect()
    return [o for o in gc.get_objects() if isinstance(o, BlockingIOError)]


@pytest.mark.parametrize("kind", ["direct", "tls-direct"])
def test_an_idle_parked_reader_keeps_no_exception_alive(run, certs, kind):
    """Memory per idle connection: the reader parks outside its ``except`` block."""

    def body():
        c, s = _direct_pair(kind, certs)
        try:
            assert c.mode == kind
            before = len(_parked_exceptions())
            readers = [gevent.spawn(c.readinto, bytearray(10)),
                       gevent.spawn(s.readavailable)]
            gevent.sleep(0.05)
            assert not any(r.dead for r in readers)
            assert len(_parked_exceptions()) == before
            c.write(b"x")
            s.write(b"y")
            assert readers[1].get(timeout=5) == b"x"
            assert readers[0].get(timeout=5) == 1
        finally:
            c.close()
            s.close()
    run(body)


@pytest.mark.parametrize("kind", ["direct", "tls-direct"])
def test_an_idle_parked_reader_holds_no_receive_buffer(run, certs, kind):
    """Memory per idle connection: the buffer a read grew is given back once its bytes are
    consumed and the reader parks for the kernel again (TLS: none is taken for the wait)."""

    def body():
        c, s = _direct_pair(kind, certs)
        try:
            assert c.mode == kind
            s.write(b"a" * 50_000 + b"\n")
            assert len(c.readline()) == 50_001  # buffered reads grow the buffer
            reader = gevent.spawn(c.read, 1)
            gevent.sleep(0.05)
            assert not reader.dead
            assert c.buffer_memory == 0
            s.write(b"z")
            assert reader.get(timeout=5) == b"z"
        finally:
            c.close()
            s.close()
    run(body)


@pytest.mark.parametrize("ending", ["close_notify", "bare-close"])
def test_records_and_the_end_arriving_together_fill_one_big_readinto(run, certs, ending):
    """One readinto decrypts several records the engine holds; an end met behind them
    comes with the next call (EOF, or SSLEOFError for a stream cut without close_notify)."""
    data = os.urandom(100_000)  # seven records

    def body():
        c, s = _pair(certs)
        try:
            _go_direct(c)
            s.write(data)
            if ending == "close_notify":
                s.closewrite()
            s.flush()
            if ending == "bare-close":
                s.channel.first.handler.socket.close()
            gevent.sleep(0.05)  # let it all reach our kernel: one recv takes it
            buf = bytearray(1 << 20)
            got = bytearray()
            reads = 0

            def drain() -> None:
                nonlocal reads
                while n := c.readinto(buf):
                    got.extend(buf[:n])
                    reads += 1

            if ending == "close_notify":
                drain()
            else:
                with pytest.raises(ssl.SSLEOFError):
                    drain()
            assert got == data
            assert reads < 7  # records were batched
        finally:
            c.close()
            s.close()
    run(body)
