"""TCPSocket's direct mode (a plain ``[SocketHandler, TCPSocket]`` channel): reads go to
the kernel, writes with nothing queued are one ``send``; order, EOF, errors, half-close,
and timeouts behave as on the channel path."""

from __future__ import annotations

import errno
import hashlib
import os
import socket as stdsocket
import struct

import gevent
import pytest

from reseau_patch import sockets as S
from reseau_patch.io.socket_handler import SocketHandler
from reseau_patch.sockets.tcp import TCPSocket


def _pair(**kw):
    port, srv = S.listenany(**kw)
    c = S.connect(port, **{k: v for k, v in kw.items() if k != "backlog"})
    s = srv.accept()
    srv.close()
    return c, s


def _handler(sock: TCPSocket) -> SocketHandler:
    return sock.channel.first.handler


def test_plain_sockets_are_direct_and_bytes_stay_in_the_kernel(run):
    def body():
        c, s = _pair()
        assert c._direct and s._direct
        c.write(b"x" * 1000)
        gevent.sleep(0.05)
        # Nobody asked: the socket handler did not pull the bytes into the channel.
        assert _handler(s).bytes_read == 0 and not _handler(s).socket.reading
        buf = bytearray(10)
        assert s.readinto(buf) == 10 and buf == b"x" * 10
        assert s.read(990) == b"x" * 990
        assert s.max_buffered <= 64 * 1024
        c.close()
        s.close()
    run(body)


def test_readinto_and_readavailable_to_eof_then_ebadf(run):
    def body():
        c, s = _pair()
        c.write(b"abc")
        c.close()
        buf = bytearray(16)
        assert s.readinto(buf) == 3 and buf[:3] == b"abc"
        assert s.readinto(buf) == 0  # EOF through the direct read
        assert s.readinto(buf) == 0
        assert s.readavailable() == b""
        assert s.read() == b""
        assert s.eof()
        assert _handler(s).eof  # the handler will never read again
        s.close()
        with pytest.raises(OSError) as ei:
            s.readinto(buf)
        assert ei.value.errno == errno.EBADF
    run(body)


def test_half_close_then_write_back_on_direct_path(run):
    def body():
        c, s = _pair()
        c.write(b"request")
        c.closewrite()
        got = b""
        while chunk := s.readavailable():
            got += chunk
        assert got == b"request"
        s.write(b"response")
        s.closewrite()
        buf = bytearray(100)
        n = c.readinto(buf)
        assert buf[:n] == b"response"[:n]
        assert bytes(buf[:n]) + c.read() == b"response"
        with pytest.raises(BrokenPipeError):
            c.write(b"more")
        c.close()
        s.close()
    run(body)


def test_peer_reset_raises_from_direct_read_and_then_write(run):
    def body():
        c, s = _pair()
        raw = _handler(s).socket.raw
        raw.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()  # RST
        with pytest.raises(ConnectionResetError):
            c.readinto(bytearray(10))
        with pytest.raises(OSError):
            c.write(b"x")
        c.close()
    run(body)


def test_timeouts_on_direct_reads(run):
    def body():
        c, s = _pair()
        c.settimeout(0.1)
        for op in (lambda: c.readinto(bytearray(4)), c.readavailable, lambda: c.read(1),
                   c.readline):
            with pytest.raises(TimeoutError):
                op()
        c.settimeout(0)
        with pytest.raises(BlockingIOError):
            c.readinto(bytearray(4))
        with pytest.raises(BlockingIOError):
            c.readavailable()
        assert not _handler(c).socket.reading  # no watcher left behind by the timeouts
        c.settimeout(5)
        s.write(b"late\n")
        assert c.readline() == b"late\n"
        c.close()
        s.close()
    run(body)


def test_close_from_another_greenlet_ends_a_parked_direct_read(run):
    def body():
        c, s = _pair()
        reader = gevent.spawn(c.readinto, bytearray(10))
        gevent.sleep(0.02)
        c.close()
        with pytest.raises(OSError) as ei:
            reader.get(timeout=5)
        assert ei.value.errno == errno.EBADF
        s.close()
    run(body)


def test_write_order_kept_while_remainders_are_queued_and_data_arrives(run):
    """The kernel fills up, so writes go partly direct, partly through the channel; the
    peer answers meanwhile and the direct reader gets the answer with a write queued."""
    def body():
        c, s = _pair()
        # Small fixed kernel buffers (no autotuning): the 10 MiB cannot all fit.
        _handler(c).socket.raw.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_SNDBUF, 65536)
        _handler(s).socket.raw.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_RCVBUF, 65536)
        blocks = [struct.pack(">I", i) * (65536 // 4 + i) for i in range(160)]  # ~10 MiB
        digest = hashlib.sha256(b"".join(blocks)).hexdigest()

        def writer():
            for b in blocks:
                c.write(b)
            c.flush()

        w = gevent.spawn(writer)
        gevent.sleep(0.05)  # the peer reads nothing yet: the kernel buffers fill
        assert not w.dead  # parked behind a queued remainder
        assert c._in_flight > 0
        s.write(b"pong")
        buf = bytearray(4)
        assert c.readinto(buf) == 4 and buf == b"pong"  # read while a write is queued
        h = hashlib.sha256()
        total = sum(len(b) for b in blocks)
        got = 0
        while got < total:
            data = s.readavailable()
            assert data
            h.update(data)
            got += len(data)
        w.get(timeout=10)
        assert h.hexdigest() == digest
        assert c._in_flight == 0
        c.close()
        s.close()
    run(body, timeout=60)


def test_big_single_write_and_echo(run):
    def body():
        c, s = _pair()
        payload = os.urandom(5 << 20)

        def echo():
            while data := s.readavailable():
                s.write(data)
            s.close()

        e = gevent.spawn(echo)
        w = gevent.spawn(lambda: (c.write(payload), c.closewrite()))
        assert c.read() == payload
        w.get(timeout=10)
        e.get(timeout=10)
        c.close()
    run(body, timeout=60)


def test_nonblocking_writes_queue_up_to_the_high_water_mark_in_direct_mode(run):
    """A write with timeout 0 never parks behind a queued remainder (it would lose track
    of what it already sent); it queues, as on the channel path."""
    def body():
        c, s = _pair()
        _handler(c).socket.raw.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_SNDBUF, 65536)
        _handler(s).socket.raw.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_RCVBUF, 65536)
        c.settimeout(0)
        block = os.urandom(64 * 1024)
        sent = 0
        for _ in range(8):  # well past the kernel buffers, below WRITE_HIGH_WATER
            assert c.write(block) == len(block)
            sent += len(block)
        assert c._in_flight > 0
        got = 0
        while got < sent:
            got += len(s.readavailable())
        c.settimeout(5)
        c.flush()
        assert c._in_flight == 0
        c.close()
        s.close()
    run(body)


def test_readiness_watcher_left_on_after_a_wait_turns_itself_off(run):
    """After a parked read the watcher stays registered for the next wait; bytes that
    arrive while nobody waits turn it off (level-triggered: no spinning hub)."""
    def body():
        c, s = _pair()
        g = gevent.spawn(c.readinto, bytearray(4))
        gevent.sleep(0.01)
        s.write(b"ping")
        assert g.get(timeout=5) == 4
        s.write(b"unread")
        gevent.sleep(0.02)
        assert not _handler(c).socket.reading
        ticks = c._loop.stats.ticks
        gevent.sleep(0.05)
        assert c._loop.stats.ticks - ticks < 20  # idle, not spinning on the readable fd
        assert c.read(6) == b"unread"
        c.close()
        s.close()
    run(body)


def test_idle_socket_holds_no_buffer_or_addresses_and_answers_names_from_the_kernel(run):
    """An idle connection allocates no receive buffer and keeps no address tuples: the
    names come from the kernel while the fd is open. Once the channel is down (fd closed)
    they are the ones it had: after a reset getpeername says ENOTCONN, as the stdlib's does;
    after a local shutdown with the peer still there, it answers as before."""
    def body():
        c, s = _pair()
        g = gevent.spawn(s.readinto, bytearray(4))
        gevent.sleep(0.01)
        assert s.buffer_memory == 0
        assert s.getsockname() == c.getpeername() and s.getpeername() == c.getsockname()
        c.write(b"ping")
        assert g.get(timeout=5) == 4
        s.write(b"x" * 100)
        assert c.peek(1) == b"x" and c.buffer_memory > 0  # peek needs the buffer
        assert c.read(100) == b"x" * 100
        c_local, c_peer = c.getsockname(), c.getpeername()
        c.channel.shutdown()  # local shutdown: c's fd closes, the peer is still there
        with gevent.Timeout(5):
            while c.isopen:
                gevent.sleep(0.01)
        assert (c.getsockname(), c.getpeername()) == (c_local, c_peer)
        c.close()
        with pytest.raises(OSError) as err:
            c.getpeername()
        assert err.value.errno == errno.EBADF

        c, s = _pair()
        local = s.getsockname()
        raw = _handler(c).socket.raw
        raw.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()  # RST: s's channel goes down and its fd closes
        with pytest.raises(ConnectionResetError):
            s.readinto(bytearray(4))
        with gevent.Timeout(5):
            while s.isopen:
                gevent.sleep(0.01)
        assert s.getsockname() == local
        with pytest.raises(OSError) as err:
            s.getpeername()
        assert err.value.errno == errno.ENOTCONN
        s.close()
    run(body)


def test_sockets_can_be_weakly_referenced_and_handlers_have_no_dict(run):
    import weakref

    def body():
        c, s = _pair()
        ref = weakref.ref(c)
        assert ref() is c
        with pytest.raises(AttributeError, match="no attribute 'undeclared'"):
            c.undeclared = 1  # slots only: no per-connection dict
        assert not hasattr(_handler(c), "__dict__")
        c.close()
        s.close()
    run(body)
