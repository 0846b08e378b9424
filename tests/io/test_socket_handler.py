"""SocketHandler: windows against real sockets, pending reads, half-close, no busy loop."""

from __future__ import annotations

import _socket
import socket as stdsocket
import threading
import time

from reseau_patch.io.channel import Channel, ChannelHandler, Direction
from reseau_patch.io.socket import Socket
from reseau_patch.io.socket_handler import SocketHandler


class App(ChannelHandler):
    """Rightmost handler that collects reads and grants windows only when told to."""

    def __init__(self, window: int) -> None:
        self.window = window
        self.data = bytearray()
        self.reads = 0
        self.eof = threading.Event()
        self.changed = threading.Condition()

    def initial_window_size(self) -> int:
        return self.window

    def process_read(self, slot, msg):
        with self.changed:
            self.data += msg.data()
            self.reads += 1
            self.changed.notify_all()
        msg.release()

    def process_read_eof(self, slot):
        self.eof.set()
        with self.changed:
            self.changed.notify_all()

    def wait_for(self, n: int, timeout: float = 10.0) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: len(self.data) >= n, timeout)

    def write(self, data: bytes, on_completion=None) -> None:
        msg = self.slot.acquire_message(len(data))
        msg.fill(data)
        msg.on_completion = on_completion
        self.slot.send_message(msg, Direction.WRITE)


def _pair(lt, app: ChannelHandler | None, back_pressure: bool):
    """A stdlib peer socket and a channel [SocketHandler, app] on the other end."""
    lst = stdsocket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(1)
    peer = stdsocket.create_connection(lst.getsockname(), timeout=5)
    conn, _ = lst.accept()
    lst.close()
    raw = _socket.socket(fileno=conn.detach())  # the io Socket owns the fd from here on

    def build():
        sock = Socket(lt.loop, sock=raw)
        ch = Channel(lt.loop, back_pressure=back_pressure)
        ch.activate()
        handler = SocketHandler(sock)
        ch.add_handler(handler)
        if app is not None:
            ch.add_handler(app)
        ch.trigger_read()
        return ch, handler

    ch, handler = lt.call(build)
    return peer, ch, handler


def _shutdown(lt, ch, box):
    done = box()
    ch.on_shutdown = lambda c, e: done.set(e)
    ch.shutdown()
    done.wait()
    lt.call(ch.destroy)


def test_back_pressure_4_then_10(lt, box):
    app = App(window=4)
    peer, ch, _ = _pair(lt, app, back_pressure=True)
    peer.sendall(b"abcdefghijklmn")
    assert app.wait_for(4)
    time.sleep(0.2)  # give the loop every chance to over-deliver
    assert bytes(app.data) == b"abcd"
    lt.call(app.slot.increment_read_window, 10)
    assert app.wait_for(14)
    assert bytes(app.data) == b"abcdefghijklmn"
    peer.close()
    _shutdown(lt, ch, box)


def test_no_busy_loop_while_window_is_zero(lt, box):
    app = App(window=4)
    peer, ch, handler = _pair(lt, app, back_pressure=True)
    peer.sendall(b"x" * 10000)  # far more than the window: data waits in the kernel
    assert app.wait_for(4)
    time.sleep(0.05)
    ticks0 = lt.loop.stats.ticks
    time.sleep(0.2)
    ticks = lt.loop.stats.ticks - ticks0
    assert ticks <= 5, f"loop ran {ticks} ticks in 200 ms with a zero window"
    assert not lt.call(lambda: handler.socket.reading)
    peer.close()
    _shutdown(lt, ch, box)


def test_read_pending_before_downstream_exists_is_delivered_after_setup(lt, box):
    peer, ch, handler = _pair(lt, None, back_pressure=False)
    peer.sendall(b"pending")
    time.sleep(0.1)
    assert lt.call(lambda: handler.bytes_read) == 0  # nobody to hand it to yet
    app = App(window=1 << 20)
    lt.call(ch.add_handler, app)
    assert app.wait_for(7)
    assert bytes(app.data) == b"pending"
    peer.close()
    _shutdown(lt, ch, box)


def test_peer_eof_is_not_a_shutdown_and_writes_still_flow(lt, box):
    app = App(window=1 << 20)
    peer, ch, _ = _pair(lt, app, back_pressure=True)
    peer.sendall(b"request")
    peer.shutdown(stdsocket.SHUT_WR)
    assert app.eof.wait(5)
    assert bytes(app.data) == b"request"
    assert not ch.shutting_down
    lt.call(app.write, b"response after your FIN")
    lt.call(lambda: app.slot.send_write_eof())
    peer.settimeout(5)
    got = b""
    while True:
        chunk = peer.recv(100)
        if not chunk:
            break
        got += chunk
    assert got == b"response after your FIN"
    peer.close()
    _shutdown(lt, ch, box)


def test_our_half_close_then_peer_keeps_sending(lt, box):
    app = App(window=1 << 20)
    peer, ch, _ = _pair(lt, app, back_pressure=True)
    lt.call(app.write, b"bye")
    lt.call(lambda: app.slot.send_write_eof())
    peer.settimeout(5)
    assert peer.recv(10) == b"bye"
    assert peer.recv(10) == b""  # our FIN
    peer.sendall(b"still talking")
    assert app.wait_for(13)
    assert bytes(app.data) == b"still talking"
    peer.close()
    assert app.eof.wait(5)
    _shutdown(lt, ch, box)


def test_write_completion_not_synchronous_and_reports_success(lt, box):
    app = App(window=1 << 20)
    peer, ch, _ = _pair(lt, app, back_pressure=False)
    done = box()

    def write():
        ran = []
        app.write(b"hello", lambda err: (ran.append(err), done.set(err)))
        return list(ran)

    assert lt.call(write) == []
    assert done.wait() is None
    peer.settimeout(5)
    assert peer.recv(10) == b"hello"
    peer.close()
    _shutdown(lt, ch, box)


def test_data_before_hangup_is_drained_then_reset_shuts_down(lt, box):
    app = App(window=1 << 20)
    peer, ch, _ = _pair(lt, app, back_pressure=False)
    finished = box()
    ch.on_shutdown = lambda c, e: finished.set(e)
    peer.sendall(b"last bytes")
    peer.shutdown(stdsocket.SHUT_WR)
    assert app.eof.wait(5)
    assert bytes(app.data) == b"last bytes"
    # Now a reset: the next write fails and the channel shuts down with that error.
    peer.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_LINGER, b"\x01\x00\x00\x00" * 2)
    peer.close()
    time.sleep(0.05)
    for _ in range(50):
        if finished.event.is_set():
            break
        try:
            lt.call(app.write, b"z" * 1024)
        except Exception:
            break
        time.sleep(0.01)
    err = finished.wait()
    assert isinstance(err, (BrokenPipeError, ConnectionResetError)), err
    lt.call(ch.destroy)


def test_graceful_shutdown_flushes_queued_writes(lt, box):
    app = App(window=1 << 20)
    peer, ch, _ = _pair(lt, app, back_pressure=False)
    payload = b"q" * (4 << 20)

    def write_all_then_shutdown():
        for i in range(0, len(payload), 16384):
            app.write(payload[i:i + 16384])
        ch.shutdown()

    finished = box()
    ch.on_shutdown = lambda c, e: finished.set(e)
    lt.call(write_all_then_shutdown)
    peer.settimeout(10)
    got = bytearray()
    while True:
        chunk = peer.recv(1 << 16)
        if not chunk:
            break
        got += chunk
    assert len(got) == len(payload)
    assert finished.wait() is None
    peer.close()
    lt.call(ch.destroy)


def test_one_readiness_reads_several_messages_but_bounded(lt, box):
    """With a large window, one readiness report reads far more than 16 KiB (bulk pays
    the per-event cost rarely), never more than MAX_READ_PER_EVENT (fairness)."""
    from reseau_patch.io.socket_handler import MAX_READ_PER_EVENT

    per_tick: dict[int, int] = {}

    class TickApp(App):
        def process_read(self, slot, msg):
            tick = lt.loop.stats.ticks
            per_tick[tick] = per_tick.get(tick, 0) + msg.len
            super().process_read(slot, msg)

    app = TickApp(window=0)
    peer, ch, handler = _pair(lt, app, back_pressure=True)
    lt.call(lambda: handler.socket.raw.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_RCVBUF,
                                                  4 << 20))
    payload = bytes(range(256)) * 4096  # 1 MiB, all in our kernel buffer before any read
    peer.sendall(payload)
    time.sleep(0.05)
    lt.call(app.slot.increment_read_window, len(payload))
    assert app.wait_for(len(payload))
    assert bytes(app.data) == payload
    assert max(per_tick.values()) >= 4 * 16384, per_tick
    assert max(per_tick.values()) <= MAX_READ_PER_EVENT, per_tick
    peer.close()
    _shutdown(lt, ch, box)
