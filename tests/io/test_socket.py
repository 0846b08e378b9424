"""io.Socket on loopback: connect errors, bind, IPv6, LOCAL, half-close, write queue."""

from __future__ import annotations

import _socket
import errno
import os
import socket as stdsocket
import time

import pytest

from reseau_patch.io.event_loop import LoopThreadError
from reseau_patch.io.socket import Socket, SocketDomain, SocketOptions, SocketState


def _free_port() -> int:
    s = stdsocket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _listener(lt, address=("127.0.0.1", 0), domain=SocketDomain.IPV4, backlog=16):
    def make():
        s = Socket(lt.loop, SocketOptions(domain=domain))
        s.bind(address)
        s.listen(backlog)
        return s
    return lt.call(make)


def _connect(lt, box, address, domain=SocketDomain.IPV4, timeout=None):
    b = box()

    def go():
        s = Socket(lt.loop, SocketOptions(domain=domain, connect_timeout=timeout))
        s.connect(address, b.set)
        return s
    sock = lt.call(go)
    return sock, b.wait()


def _accept_one(lt, box, listener):
    b = box()

    def on_accept(sock, err):
        listener.stop_accept()
        b.set((sock, err))
    lt.call(listener.start_accept, on_accept)
    sock, err = b.wait()
    assert err is None
    return sock


def _read_all(lt, sock, box, want: int | None = None) -> bytes:
    """Read until EOF (or ``want`` bytes) through readable notifications."""
    out = bytearray()
    done = box()

    def on_readable(_revents):
        buf = bytearray(65536)
        while True:
            n = sock.read_into(buf)
            if n is None:
                return
            if n == 0 or (want is not None and len(out) + n >= want):
                out.extend(buf[:n])
                sock.unsubscribe_readable()
                done.set(True)
                return
            out.extend(buf[:n])
    lt.call(sock.subscribe_readable, on_readable)
    done.wait()
    return bytes(out)


def _close(lt, *socks):
    for s in socks:
        lt.call(s.close)


def test_refused_raises_connection_refused(lt, box):
    sock, err = _connect(lt, box, ("127.0.0.1", _free_port()))
    assert isinstance(err, ConnectionRefusedError)
    assert err.errno == errno.ECONNREFUSED
    assert sock.state is SocketState.CLOSED  # closed before the callback ran


def test_connect_timeout_against_full_backlog(lt, box):
    # listen(0) that never accepts: once its queue is full Linux drops further SYNs.
    lst = stdsocket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(0)
    addr = lst.getsockname()
    fillers = []
    try:
        for _ in range(3):
            f = stdsocket.socket()
            f.setblocking(False)
            f.connect_ex(addr)
            fillers.append(f)
        time.sleep(0.05)
        t0 = time.monotonic()
        sock, err = _connect(lt, box, addr, timeout=0.3)
        elapsed = time.monotonic() - t0
        assert isinstance(err, TimeoutError), err
        assert "timed out after 0.3 s" in str(err)
        assert elapsed < 5  # bounded, not a timing assertion
        assert sock.closed
    finally:
        for f in fillers:
            f.close()
        lst.close()


def test_address_in_use_and_port_zero(lt):
    lst = _listener(lt)
    host, port = lst.local_address()
    assert host == "127.0.0.1" and port > 0
    assert lst.local_address() == (host, port)  # stable

    def second():
        s = Socket(lt.loop)
        try:
            s.bind(("127.0.0.1", port))
        finally:
            s.close()
    with pytest.raises(OSError) as ei:
        lt.call(second)
    assert ei.value.errno == errno.EADDRINUSE
    _close(lt, lst)


def test_bad_input_matches_stdlib(lt):
    def bad_port():
        s = Socket(lt.loop)
        try:
            s.bind(("127.0.0.1", 70000))
        finally:
            s.close()
    with pytest.raises(OverflowError, match="70000"):
        lt.call(bad_port)

    def empty_path():
        s = Socket(lt.loop, SocketOptions(domain=SocketDomain.LOCAL))
        try:
            s.bind("")
        finally:
            s.close()
    with pytest.raises(OSError, match="empty") as ei:
        lt.call(empty_path)
    assert ei.value.errno == errno.EINVAL
    with pytest.raises(ValueError, match="-1"):
        SocketOptions(keep_idle=-1)
    with pytest.raises(ValueError, match="x" * 20):
        SocketOptions(interface="x" * 20)


def _echo_roundtrip(lt, box, address, domain):
    lst = _listener(lt, address, domain)
    target = lst.local_address() if domain is not SocketDomain.LOCAL else address
    client, err = _connect(lt, box, target, domain)
    assert err is None
    server = _accept_one(lt, box, lst)
    wrote = box()
    lt.call(client.write, b"ping", lambda e, n: wrote.set((e, n)))
    assert wrote.wait() == (None, 4)
    assert _read_all(lt, server, box, want=4) == b"ping"
    _close(lt, client, server, lst)
    return target


def test_ipv6_loopback(lt, box):
    host, port, *_ = _echo_roundtrip(lt, box, ("::1", 0), SocketDomain.IPV6)
    assert host == "::1" and port > 0


def test_local_path(lt, box, tmp_path):
    path = str(tmp_path / "s.sock")
    _echo_roundtrip(lt, box, path, SocketDomain.LOCAL)
    assert os.path.exists(path)


def test_local_abstract_name(lt, box):
    name = f"\0reseau-test-{os.getpid()}-{time.monotonic_ns()}"
    _echo_roundtrip(lt, box, name, SocketDomain.LOCAL)


def test_shutdown_write_keeps_read_open(lt, box):
    lst = _listener(lt)
    client, err = _connect(lt, box, lst.local_address())
    assert err is None
    server = _accept_one(lt, box, lst)
    lt.call(client.write, b"last words")
    lt.call(client.shutdown, _socket.SHUT_WR)  # FIN goes after the queued bytes
    assert _read_all(lt, server, box) == b"last words"  # then EOF
    lt.call(server.write, b"reply after EOF")
    lt.call(server.shutdown, _socket.SHUT_WR)
    assert _read_all(lt, client, box) == b"reply after EOF"
    with pytest.raises(BrokenPipeError):
        lt.call(client.write, b"more")
    _close(lt, client, server, lst)


def test_write_completion_is_never_synchronous(lt, box):
    lst = _listener(lt)
    client, _ = _connect(lt, box, lst.local_address())
    server = _accept_one(lt, box, lst)
    done = box()

    def write_and_check():
        ran = []
        client.write(b"x" * 10, lambda e, n: (ran.append(n), done.set((e, n))))
        return list(ran)
    assert lt.call(write_and_check) == []
    assert done.wait() == (None, 10)
    _close(lt, client, server, lst)


def test_completions_run_in_write_order_with_each_writes_length(lt, box):
    """A write the kernel takes at once (no queue entry) and writes that queue behind a
    big one complete in write order, each with its own length; the bytes keep order."""
    lst = _listener(lt)
    client, _ = _connect(lt, box, lst.local_address())
    server = _accept_one(lt, box, lst)
    big = bytes(range(256)) * (128 << 10)  # 32 MiB: more than the socket buffers hold
    order = []
    done = box()

    def writes():
        client.write(b"first", lambda e, n: order.append(("first", e, n)))
        client.write(big, lambda e, n: order.append(("big", e, n)))
        queued = client.write_queue_bytes
        client.write(b"last", lambda e, n: (order.append(("last", e, n)), done.set(True)))
        return queued, list(order)
    queued, ran_inside = lt.call(writes)
    assert queued > 0 and ran_inside == []
    got = _read_all(lt, server, box, want=len(big) + 9)
    assert done.wait()
    assert order == [("first", None, 5), ("big", None, len(big)), ("last", None, 4)]
    assert got == b"first" + big + b"last"
    _close(lt, client, server, lst)


def test_write_into_a_full_kernel_buffer_waits_for_writable(lt, box):
    """Nothing queued but the kernel full (EAGAIN): the write queues, completes once the
    peer drains, and its bytes follow the ones already in the kernel."""
    lst = _listener(lt)
    client, _ = _connect(lt, box, lst.local_address())
    server = _accept_one(lt, box, lst)
    done = box()

    def fill_then_write():
        filler = 0
        while True:  # fill the send and receive buffers behind the Socket's back
            try:
                filler += client.raw.send(b"f" * 65536)
            except BlockingIOError:
                break
        client.write(b"tail", lambda e, n: done.set((e, n)))
        return filler, client.write_queue_bytes
    filler, queued = lt.call(fill_then_write)
    assert queued == 4
    got = _read_all(lt, server, box, want=filler + 4)
    assert done.wait() == (None, 4)
    assert got == b"f" * filler + b"tail"
    _close(lt, client, server, lst)


def test_close_cancels_pending_writes(lt, box):
    lst = _listener(lt)
    client, _ = _connect(lt, box, lst.local_address())
    server = _accept_one(lt, box, lst)
    results = box()
    big = b"y" * (64 << 20)  # far more than the socket buffers hold: the write queues

    def write_then_close():
        client.write(big, lambda e, n: results.set((e, n)))
        queued = client.write_queue_bytes
        client.close()
        return queued
    assert lt.call(write_then_close) > 0
    err, n = results.wait()
    assert isinstance(err, OSError) and err.errno == errno.ECANCELED and n == 0
    _close(lt, server, lst)


def test_write_to_reset_peer_reports_error(lt, box):
    lst = _listener(lt)
    client, _ = _connect(lt, box, lst.local_address())
    server = _accept_one(lt, box, lst)
    # SO_LINGER 0 makes close() send RST instead of FIN.
    lt.call(server.raw.setsockopt, _socket.SOL_SOCKET, _socket.SO_LINGER,
            b"\x01\x00\x00\x00\x00\x00\x00\x00")
    _close(lt, server)
    errors = []
    deadline = time.monotonic() + 5
    while not errors and time.monotonic() < deadline:
        b = box()
        try:
            lt.call(client.write, b"z" * 4096, lambda e, n, b=b: b.set(e))
        except OSError as exc:  # a sticky error from an earlier write surfaces here
            errors.append(exc)
            break
        err = b.wait()
        if err is not None:
            errors.append(err)
    assert errors and isinstance(errors[0], (BrokenPipeError, ConnectionResetError))
    _close(lt, client, lst)


def test_loop_only_calls_from_other_thread_raise(lt, box):
    sock = lt.call(Socket, lt.loop)
    with pytest.raises(LoopThreadError, match="loop-only"):
        sock.connect(("127.0.0.1", 1), lambda e: None)
    with pytest.raises(LoopThreadError):
        sock.write(b"x")
    _close(lt, sock)


def test_socket_is_nonblocking_and_cloexec(lt):
    sock = lt.call(Socket, lt.loop)
    import fcntl
    fd = sock.fileno()
    assert fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_NONBLOCK
    assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
    assert sock.raw.getsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY) == 1
    _close(lt, sock)
    assert sock.fileno() == -1


def test_keepalive_options_applied(lt):
    opts = SocketOptions(keepalive=True, keep_idle=7, keep_interval=3, keep_count=4,
                         recv_buffer=65536)
    sock = lt.call(Socket, lt.loop, opts)
    raw = sock.raw
    assert raw.getsockopt(_socket.SOL_SOCKET, _socket.SO_KEEPALIVE) == 1
    assert raw.getsockopt(_socket.IPPROTO_TCP, _socket.TCP_KEEPIDLE) == 7
    assert raw.getsockopt(_socket.IPPROTO_TCP, _socket.TCP_KEEPINTVL) == 3
    assert raw.getsockopt(_socket.IPPROTO_TCP, _socket.TCP_KEEPCNT) == 4
    _close(lt, sock)
