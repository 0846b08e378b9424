"""Echo in one process: Reseau io/ channels vs threads, gevent (libev, libuv), asyncio, uvloop.

Server and client share the process (and, for reseau-io, one EventLoop thread); 127.0.0.1:

* ``pingpong``: one connection, a 64-byte message sent only after the previous echo fully
  arrived; round trips per second after a warm-up;
* ``bulk``: one connection, the sender streams ``BULK_MIB`` MiB while the receiver reads
  the echo back concurrently; MB/s (10**6 bytes) of payload through the echo. Every
  client writes ``CHUNK`` (64 KiB) per call and copies nothing: ``sendall`` of a view,
  ``transport.write`` of one block, a channel message owning a view of the block.

gevent rows use gevent's own sockets and StreamServer on that loop (nothing patched).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from .harness import Metric

TITLE = "Echo in one process: io/ channels vs threads, gevent, asyncio, uvloop"
BASELINE = "libev-cext"
SUBJECT = "reseau-io"
IMPLS = ("reseau-io", "stdlib", "libev-cext", "libuv-cffi", "asyncio", "uvloop")
METRICS = {"pingpong": Metric("64 B ping-pong, in-process echo", "round trips/s"),
           "bulk": Metric("bulk through an in-process echo", "MB/s")}
TIMEOUT = 240
ECHO_WINDOW = 256 * 1024
PING = b"p" * 64
CHUNK = 64 * 1024
Result = dict[str, Any]


def _result(pp_rounds: int, pp_seconds: float, bulk_bytes: int, bulk_seconds: float,
            received: int, **extra: Any) -> Result:
    if received != bulk_bytes:
        raise RuntimeError(f"bulk echo returned {received} of {bulk_bytes} bytes")
    return {"pingpong_rps": pp_rounds / pp_seconds, "bulk_mbps": bulk_bytes / bulk_seconds / 1e6,
            "pingpong_s": pp_seconds, "bulk_s": bulk_seconds, **extra}


# ---------------------------------------------------------------------------- reseau
def run_reseau(rounds: int, warmup: int, nbytes: int, timeout: float) -> Result:
    """Server and client channels share one EventLoop thread."""
    from reseau_patch.io.bootstrap import ClientBootstrap, ServerBootstrap
    from reseau_patch.io.channel import Channel, ChannelHandler, ChannelSlot, Direction
    from reseau_patch.io.event_loop import EventLoop
    from reseau_patch.io.message import IoMessage

    class EchoHandler(ChannelHandler):
        """Server side: each read message goes straight back; the read window re-opens
        once it is on the wire; the channel shuts down gracefully at the peer's EOF."""

        def initial_window_size(self) -> int:
            return ECHO_WINDOW

        def process_read(self, slot: ChannelSlot, msg: IoMessage) -> None:
            n = msg.len

            def written(err: BaseException | None) -> None:
                if err is None:
                    slot.increment_read_window(n)

            msg.on_completion = written
            slot.send_message(msg, Direction.WRITE)

        def process_read_eof(self, slot: ChannelSlot) -> None:
            slot.channel.shutdown()

    class PingPong(ChannelHandler):
        """Sends 64 bytes, waits for all 64 to come back, repeats ``warmup + rounds`` times."""

        def __init__(self) -> None:
            self.pending = 0
            self.count = 0
            self.t0 = self.t1 = 0.0
            self.done = threading.Event()

        def send(self, slot: ChannelSlot) -> None:
            msg = slot.acquire_message(len(PING))
            msg.fill(PING)
            slot.send_message(msg, Direction.WRITE)
            self.pending = len(PING)

        def process_read(self, slot: ChannelSlot, msg: IoMessage) -> None:
            self.pending -= msg.len
            msg.release()
            if self.pending > 0:
                return
            self.count += 1
            if self.count == warmup:
                self.t0 = time.perf_counter()
            if self.count == warmup + rounds:
                self.t1 = time.perf_counter()
                self.done.set()
            else:
                self.send(slot)

    class Bulk(ChannelHandler):
        """Streams ``nbytes`` in ``CHUNK`` messages with at most 1 MiB queued, half-closes,
        counts the echo."""

        def __init__(self) -> None:
            self.sent = self.unacked = self.received = 0
            self.t0 = self.t1 = 0.0
            self.block = memoryview(bytes(range(256)) * (CHUNK // 256))
            self.done = threading.Event()

        def pump(self, slot: ChannelSlot) -> None:
            while self.sent < nbytes and self.unacked < (1 << 20):
                msg = IoMessage.owning(self.block[: nbytes - self.sent])
                n = msg.len
                self.sent += n
                self.unacked += n
                msg.on_completion = lambda err, n=n: self.written(slot, n, err)
                slot.send_message(msg, Direction.WRITE)
            if self.sent == nbytes and self.unacked == 0:
                self.sent += 1  # send the EOF once
                slot.send_write_eof()

        def written(self, slot: ChannelSlot, n: int, err: BaseException | None) -> None:
            self.unacked -= n
            if err is None and not slot.channel.shutting_down:
                self.pump(slot)

        def process_read(self, slot: ChannelSlot, msg: IoMessage) -> None:
            self.received += msg.len
            msg.release()

        def process_read_eof(self, slot: ChannelSlot) -> None:
            self.t1 = time.perf_counter()
            self.done.set()

    loop = EventLoop()
    loop.start_thread()
    channels: list[Channel] = []
    try:
        listener = loop.call_sync(lambda: ServerBootstrap(loop, back_pressure=True).listen(
            ("127.0.0.1", 0), lambda ch: EchoHandler(), lambda ch, err: None))
        boot = ClientBootstrap(loop)
        port = listener.address[1]

        def connect(handler: ChannelHandler, start: Callable[[ChannelSlot], None]) -> None:
            def setup(ch: Channel | None, err: BaseException | None) -> None:
                if ch is None:
                    raise RuntimeError(f"connect failed: {err!r}")
                channels.append(ch)
                start(ch.last)
            boot.connect("127.0.0.1", port, lambda ch: handler, setup)

        pp = PingPong()
        connect(pp, pp.send)
        if not pp.done.wait(timeout):
            raise TimeoutError(f"reseau ping-pong: {pp.count} round trips in {timeout} s")

        bulk = Bulk()

        def start_bulk(slot: ChannelSlot) -> None:
            bulk.t0 = time.perf_counter()
            bulk.pump(slot)

        connect(bulk, start_bulk)
        if not bulk.done.wait(timeout):
            raise TimeoutError(f"reseau bulk: {bulk.received} bytes in {timeout} s")
        stats = loop.stats.snapshot()
    finally:
        gone = threading.Event()
        for ch in channels:
            ch.shutdown()
        if "listener" in locals():
            listener.destroy(gone.set)
            gone.wait(5)
        loop.stop_thread()
    return _result(rounds, pp.t1 - pp.t0, nbytes, bulk.t1 - bulk.t0, bulk.received,
                   ticks=stats["ticks"], note=f"one EventLoop ({loop.backend}) thread")


# ---------------------------------------------------------------------------- blocking
def _blocking_echo(conn: Any) -> None:
    """Server side for threads and gevent: recv_into, sendall, until EOF."""
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    with conn:
        while n := conn.recv_into(buf):
            conn.sendall(view[:n])


def _blocking_client(sock_mod: Any, address: tuple[str, int], rounds: int, warmup: int,
                     nbytes: int, spawn: Callable[[Callable[[], None]], Any],
                     join: Callable[[Any], None]) -> tuple[float, float, int]:
    """Ping-pong then bulk over blocking-style sockets; returns (pp_s, bulk_s, received)."""
    buf = bytearray(CHUNK)
    with sock_mod.create_connection(address) as s:
        s.setsockopt(sock_mod.IPPROTO_TCP, sock_mod.TCP_NODELAY, 1)
        t0 = 0.0
        for i in range(warmup + rounds):
            if i == warmup:
                t0 = time.perf_counter()
            s.sendall(PING)
            got = 0
            while got < len(PING):
                n = s.recv_into(buf, len(PING) - got)
                if not n:
                    raise ConnectionError("echo closed during ping-pong")
                got += n
        pp_s = time.perf_counter() - t0

    block = memoryview(bytes(range(256)) * (CHUNK // 256))
    with sock_mod.create_connection(address) as s:
        s.setsockopt(sock_mod.IPPROTO_TCP, sock_mod.TCP_NODELAY, 1)

        def send() -> None:
            left = nbytes
            while left > 0:
                s.sendall(block[: min(left, CHUNK)])
                left -= min(left, CHUNK)
            s.shutdown(sock_mod.SHUT_WR)

        t0 = time.perf_counter()
        sender = spawn(send)
        received = 0
        while n := s.recv_into(buf):
            received += n
        bulk_s = time.perf_counter() - t0
        join(sender)
    return pp_s, bulk_s, received


def run_threads(rounds: int, warmup: int, nbytes: int, timeout: float) -> Result:
    """Blocking stdlib sockets, one server thread per connection."""
    import socket

    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=_blocking_echo, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()

    def spawn(fn: Callable[[], None]) -> threading.Thread:
        t = threading.Thread(target=fn, daemon=True)
        t.start()
        return t

    try:
        pp_s, bulk_s, received = _blocking_client(
            socket, listener.getsockname(), rounds, warmup, nbytes, spawn,
            lambda t: t.join(timeout))
    finally:
        listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() on Linux
        listener.close()
    return _result(rounds, pp_s, nbytes, bulk_s, received, note="thread per connection")


def run_gevent(rounds: int, warmup: int, nbytes: int, timeout: float) -> Result:
    """gevent StreamServer and gevent sockets on the loop named by GEVENT_LOOP."""
    import gevent
    from gevent import socket as gsocket
    from gevent.server import StreamServer

    def handle(conn: Any, _addr: Any) -> None:
        conn.setsockopt(gsocket.IPPROTO_TCP, gsocket.TCP_NODELAY, 1)
        _blocking_echo(conn)

    server = StreamServer(("127.0.0.1", 0), handle)
    server.start()
    try:
        with gevent.Timeout(timeout):
            pp_s, bulk_s, received = _blocking_client(
                gsocket, server.address, rounds, warmup, nbytes, gevent.spawn,
                lambda g: g.get())
    finally:
        server.stop(timeout=5)
    loop = type(gevent.get_hub().loop).__module__
    return _result(rounds, pp_s, nbytes, bulk_s, received, note=f"gevent {gevent.__version__} "
                   f"{loop}")


# ---------------------------------------------------------------------------- asyncio
async def _asyncio_bench(rounds: int, warmup: int, nbytes: int) -> tuple[float, float, int]:
    import asyncio

    loop = asyncio.get_running_loop()

    class EchoServer(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            self.transport.write(data)

        def pause_writing(self) -> None:  # peer reads slower than it sends: stop reading
            self.transport.pause_reading()

        def resume_writing(self) -> None:
            self.transport.resume_reading()

        def eof_received(self) -> bool:
            return False  # close once the echoed data is flushed

    class PingPong(asyncio.Protocol):
        def __init__(self) -> None:
            self.pending = self.count = 0
            self.t0 = 0.0
            self.done: asyncio.Future[float] = loop.create_future()

        def connection_made(self, transport: Any) -> None:
            self.transport = transport
            self.pending = len(PING)
            transport.write(PING)

        def data_received(self, data: bytes) -> None:
            self.pending -= len(data)
            if self.pending > 0:
                return
            self.count += 1
            if self.count == warmup:
                self.t0 = time.perf_counter()
            if self.count == warmup + rounds:
                self.done.set_result(time.perf_counter() - self.t0)
                return
            self.pending = len(PING)
            self.transport.write(PING)

    class Bulk(asyncio.Protocol):
        def __init__(self) -> None:
            self.received = 0
            self.writable = asyncio.Event()
            self.writable.set()
            self.done: asyncio.Future[None] = loop.create_future()

        def connection_made(self, transport: Any) -> None:
            self.transport = transport

        def pause_writing(self) -> None:
            self.writable.clear()

        def resume_writing(self) -> None:
            self.writable.set()

        def data_received(self, data: bytes) -> None:
            self.received += len(data)

        def eof_received(self) -> None:
            self.done.set_result(None)

    server = await loop.create_server(EchoServer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        transport, pp = await loop.create_connection(PingPong, "127.0.0.1", port)
        pp_s = await pp.done
        transport.close()

        block = bytes(range(256)) * (CHUNK // 256)
        transport, bulk = await loop.create_connection(Bulk, "127.0.0.1", port)
        t0 = time.perf_counter()
        left = nbytes
        while left > 0:
            if not bulk.writable.is_set():
                await bulk.writable.wait()
            transport.write(block[: min(left, CHUNK)])
            left -= min(left, CHUNK)
        transport.write_eof()
        await bulk.done
        bulk_s = time.perf_counter() - t0
        transport.close()
    finally:
        server.close()
        await server.wait_closed()
    return pp_s, bulk_s, bulk.received


def run_asyncio(rounds: int, warmup: int, nbytes: int, timeout: float) -> Result:
    """asyncio Protocols (default selector loop) for server and client."""
    import asyncio

    async def main() -> tuple[float, float, int]:
        return await asyncio.wait_for(_asyncio_bench(rounds, warmup, nbytes), timeout)

    pp_s, bulk_s, received = asyncio.run(main())
    return _result(rounds, pp_s, nbytes, bulk_s, received, note="selector event loop")


def run_uvloop(rounds: int, warmup: int, nbytes: int, timeout: float) -> Result:
    """The same asyncio Protocols on uvloop."""
    import asyncio

    import uvloop

    async def main() -> tuple[float, float, int]:
        return await asyncio.wait_for(_asyncio_bench(rounds, warmup, nbytes), timeout)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        pp_s, bulk_s, received = runner.run(main())
    return _result(rounds, pp_s, nbytes, bulk_s, received, note=f"uvloop {uvloop.__version__}")


def run(impl: str, quick: bool, part: str) -> dict[str, Any]:
    rounds, warmup, nbytes = (300, 30, 4 << 20) if quick else (20_000, 1_000, 512 << 20)
    worker = {"reseau-io": run_reseau, "stdlib": run_threads, "libev-cext": run_gevent,
              "libuv-cffi": run_gevent, "asyncio": run_asyncio, "uvloop": run_uvloop}[impl]
    res = worker(rounds, warmup, nbytes, TIMEOUT - 30)
    return {"pingpong": res["pingpong_rps"], "bulk": res["bulk_mbps"], "note": res["note"]}
