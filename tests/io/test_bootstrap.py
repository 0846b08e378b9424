"""Client and server bootstraps end to end on loopback."""

from __future__ import annotations

import hashlib
import os
import select
import socket as stdsocket
import threading
import time

import pytest

from reseau_patch.io.bootstrap import ClientBootstrap, ServerBootstrap
from reseau_patch.io.channel import ChannelHandler, Direction
from reseau_patch.io.event_loop import EventLoop
from reseau_patch.io.resolver import SystemResolver


class Echo(ChannelHandler):
    """Server side: echo every byte; on the peer's EOF, finish writing and shut down."""

    def process_read(self, slot, msg):
        slot.send_message(msg, Direction.WRITE)  # the read message, any size, goes back

    def process_read_eof(self, slot):
        slot.channel.shutdown()  # graceful: queued echo bytes are flushed before close


class Client(ChannelHandler):
    """Sends ``payload`` then half-closes; collects the echo until the server's EOF."""

    def __init__(self, payload: bytes, done: threading.Event) -> None:
        self.payload = payload
        self.received = hashlib.sha256()
        self.count = 0
        self.done = done

    def start(self) -> None:
        view = memoryview(self.payload)
        slot = self.slot
        for i in range(0, len(view), 16384):
            msg = slot.acquire_message(16384)
            msg.fill(view[i:i + 16384])
            slot.send_message(msg, Direction.WRITE)
        slot.send_write_eof()

    def process_read(self, slot, msg):
        self.received.update(msg.data())
        self.count += msg.len
        msg.release()

    def process_read_eof(self, slot):
        slot.channel.shutdown()
        self.done.set()


def _free_port() -> int:
    s = stdsocket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture
def two_loops(lt):
    client_loop = EventLoop()
    client_loop.start_thread("client-loop")
    try:
        yield lt, client_loop
    finally:
        client_loop.stop_thread()


def test_client_tries_next_address_after_refusal(lt, box):
    listener = lt.call(lambda: ServerBootstrap(lt.loop).listen(
        ("127.0.0.1", 0), lambda ch: Echo(), lambda ch, e: None))
    port = listener.address[1]
    refused = ("127.0.0.1", _free_port())
    setup = box()
    done = threading.Event()
    client = Client(b"hello", done)
    boot = ClientBootstrap(lt.loop)
    lt.call(boot.connect_addresses,
            [(stdsocket.AF_INET, refused), (stdsocket.AF_INET, ("127.0.0.1", port))],
            lambda ch: client, lambda ch, e: setup.set((ch, e)))
    ch, err = setup.wait()
    assert err is None and ch is not None
    assert lt.call(lambda: ch.first.handler.socket.remote_address()) == ("127.0.0.1", port)
    lt.call(client.start)
    assert done.wait(10)
    assert client.received.digest() == hashlib.sha256(b"hello").digest()
    destroyed = box()
    listener.destroy(lambda: destroyed.set(True))
    assert destroyed.wait()


def test_all_addresses_refused_reports_last_error(lt, box):
    setup = box()
    boot = ClientBootstrap(lt.loop)
    addrs = [(stdsocket.AF_INET, ("127.0.0.1", _free_port())) for _ in range(2)]
    lt.call(boot.connect_addresses, addrs, lambda ch: ChannelHandler(),
            lambda ch, e: setup.set((ch, e)))
    ch, err = setup.wait()
    assert ch is None and isinstance(err, ConnectionRefusedError)


def test_connect_resolves_names_through_the_resolver(lt, box):
    listener = lt.call(lambda: ServerBootstrap(lt.loop).listen(
        ("127.0.0.1", 0), lambda ch: Echo(), lambda ch, e: None))
    resolver = SystemResolver(max_workers=1)
    try:
        boot = ClientBootstrap(lt.loop, resolver=resolver)
        setup = box()
        done = threading.Event()
        client = Client(b"by name", done)
        boot.connect("localhost", listener.address[1], lambda ch: client,
                     lambda ch, e: setup.set((ch, e)))
        ch, err = setup.wait()
        assert err is None
        assert resolver.lookups == 2  # AAAA and A are asked separately (RFC 8305 §3)
        lt.call(client.start)
        assert done.wait(10)
        bad = box()
        boot.connect("localhost", 70000, lambda ch: client, lambda ch, e: bad.set(e))
    except OverflowError as exc:
        assert "70000" in str(exc)
    else:
        pytest.fail("port 70000 was accepted")
    finally:
        destroyed = box()
        listener.destroy(lambda: destroyed.set(True))
        destroyed.wait()
        resolver.close()


def test_200_clients_echo_1_mib_each_sha256(two_loops, box):
    server_lt, client_loop = two_loops
    n_clients, size = 200, 1 << 20
    incoming = []
    listener = server_lt.call(lambda: ServerBootstrap(server_lt.loop, backlog=512).listen(
        ("127.0.0.1", 0), lambda ch: Echo(), lambda ch, e: incoming.append(e)))
    port = listener.address[1]
    boot = ClientBootstrap(client_loop)
    clients = []
    lock = threading.Lock()
    all_done = threading.Event()
    finished = [0]

    def one_done():
        with lock:
            finished[0] += 1
            if finished[0] == n_clients:
                all_done.set()

    class Tracked(Client):
        def process_read_eof(self, slot):
            super().process_read_eof(slot)
            one_done()

    failures = []
    for _ in range(n_clients):
        c = Tracked(os.urandom(size), threading.Event())
        clients.append(c)

        def on_setup(ch, err, c=c):
            if err is not None:
                failures.append(err)
                one_done()
            else:
                c.start()
        boot.connect("127.0.0.1", port, lambda ch, c=c: c, on_setup)
    assert all_done.wait(120), f"only {finished[0]} of {n_clients} finished"
    assert failures == []
    for c in clients:
        assert c.count == size
        assert c.received.digest() == hashlib.sha256(c.payload).digest()
    assert incoming == [None] * n_clients
    destroyed = box()
    listener.destroy(lambda: destroyed.set(True))
    assert destroyed.wait(30)
    # Every server channel ended; every client channel too.
    assert server_lt.call(lambda: len(listener.channels)) == 0


def test_listener_destroy_waits_for_open_channels(lt, box):
    shut = []
    listener = lt.call(lambda: ServerBootstrap(lt.loop).listen(
        ("127.0.0.1", 0), lambda ch: ChannelHandler(), lambda ch, e: None,
        lambda ch, e: shut.append(e)))
    peer = stdsocket.create_connection(listener.address, timeout=5)
    deadline = time.monotonic() + 5
    while lt.call(lambda: len(listener.channels)) == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    destroyed = box()
    listener.destroy(lambda: destroyed.set(True))
    assert not destroyed.event.wait(0.2)  # a channel is still open
    with pytest.raises(ConnectionRefusedError):
        stdsocket.create_connection(listener.address, timeout=5)  # no longer listening
    (ch,) = lt.call(lambda: list(listener.channels))
    ch.shutdown()
    assert destroyed.wait()
    assert shut == [None]
    peer.close()


def test_listener_destroy_without_channels(lt, box):
    listener = lt.call(lambda: ServerBootstrap(lt.loop).listen(
        ("127.0.0.1", 0), lambda ch: ChannelHandler(), lambda ch, e: None))
    destroyed = box()
    listener.destroy(lambda: destroyed.set(True))
    assert destroyed.wait()


@pytest.mark.parametrize("backlog", [1, 3])
def test_backlog_reaches_listen(lt, box, backlog):
    listener = lt.call(lambda: ServerBootstrap(lt.loop, backlog=backlog).listen(
        ("127.0.0.1", 0), lambda ch: ChannelHandler(), lambda ch, e: None))
    lt.call(listener.socket.stop_accept)  # leave connections in the kernel queue
    clients = []
    try:
        for _ in range(backlog + 4):
            c = stdsocket.socket()
            c.setblocking(False)
            c.connect_ex(listener.address)
            clients.append(c)
        time.sleep(0.3)
        _, writable, _ = select.select([], clients, [], 0)
        established = [c for c in writable
                       if c.getsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_ERROR) == 0]
        # Linux queues backlog + 1 completed connections, then drops SYNs.
        assert len(established) == backlog + 1
    finally:
        for c in clients:
            c.close()
        destroyed = box()
        listener.destroy(lambda: destroyed.set(True))
        destroyed.wait()


def test_unix_path_bootstrap(lt, box, tmp_path):
    from reseau_patch.io.socket import SocketDomain, SocketOptions
    path = str(tmp_path / "echo.sock")
    opts = SocketOptions(domain=SocketDomain.LOCAL)
    listener = lt.call(lambda: ServerBootstrap(lt.loop, socket_options=opts).listen(
        path, lambda ch: Echo(), lambda ch, e: None))
    done = threading.Event()
    client = Client(b"over a unix socket", done)
    setup = box()
    ClientBootstrap(lt.loop, socket_options=opts).connect(
        path, 0, lambda ch: client, lambda ch, e: setup.set((ch, e)))
    ch, err = setup.wait()
    assert err is None
    lt.call(client.start)
    assert done.wait(10)
    assert client.received.digest() == hashlib.sha256(b"over a unix socket").digest()
    destroyed = box()
    listener.destroy(lambda: destroyed.set(True))
    assert destroyed.wait()


def _full_backlog_listener() -> tuple[stdsocket.socket, list[stdsocket.socket]]:
    lst = stdsocket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(0)
    fillers = []
    for _ in range(3):
        f = stdsocket.socket()
        f.setblocking(False)
        f.connect_ex(lst.getsockname())
        fillers.append(f)
    time.sleep(0.05)
    return lst, fillers


def _wait_until(lt, pred, what: str) -> None:
    deadline = time.monotonic() + 10
    while not lt.call(pred):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def test_cancel_closes_the_attempts_and_never_reports_setup(lt, box):
    lst, fillers = _full_backlog_listener()
    try:
        setup = box()
        request = ClientBootstrap(lt.loop).connect(
            "127.0.0.1", lst.getsockname()[1], lambda ch: ChannelHandler(),
            lambda ch, e: setup.set((ch, e)))
        _wait_until(lt, lambda: request.racer is not None and request.racer.sockets,
                    "the first attempt")
        attempts = lt.call(lambda: list(request.racer.sockets))
        request.cancel()  # from another thread: posted to the loop
        _wait_until(lt, lambda: request.cancelled, "the cancel")
        assert lt.call(lambda: all(s.closed for s in attempts))
        counts = lt.call(lt.loop.pending_counts)
        assert counts["fds"] == 0 and counts["timers"] == 0, counts
        assert not setup.event.wait(0.2)
    finally:
        for f in fillers:
            f.close()
        lst.close()


def test_cancel_during_the_tls_handshake_shuts_the_channel(lt, box):
    from reseau_patch.io.tls_options import TlsConnectionOptions
    silent = stdsocket.create_server(("127.0.0.1", 0), backlog=8)  # never speaks TLS
    try:
        setup = box()
        request = ClientBootstrap(lt.loop).connect(
            "127.0.0.1", silent.getsockname()[1], lambda ch: ChannelHandler(),
            lambda ch, e: setup.set((ch, e)), tls=TlsConnectionOptions())
        _wait_until(lt, lambda: request.channel is not None, "the handshake to start")
        channel = lt.call(lambda: request.channel)
        request.cancel()
        _wait_until(lt, lambda: channel.first is None, "the channel to be destroyed")
        counts = lt.call(lt.loop.pending_counts)
        assert counts["fds"] == 0 and counts["timers"] == 0, counts
        assert not setup.event.wait(0.2)
    finally:
        silent.close()
