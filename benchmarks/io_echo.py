"""Echo benchmark: Reseau io/ channels vs threads, gevent (libev, libuv), asyncio and uvloop.

Two measurements per implementation, all on 127.0.0.1, server and client in one process:

* ping-pong: one connection, a 64-byte message sent only after the previous echo fully
  arrived; round trips per second after a warm-up;
* bulk: one connection, the sender streams ``--bulk-mib`` MiB while the receiver reads the
  echo back concurrently; MB/s (10**6 bytes) of payload through the echo.

Each implementation runs in its own subprocess (``--worker NAME``), so gevent's hub, the
uvloop policy and leftover threads cannot influence the others. This is a benchmark, not a
test: run it by hand, e.g. ``python benchmarks/io_echo.py --bulk-mib 256``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PING = b"p" * 64
CHUNK = 64 * 1024
#: name -> extra environment for its subprocess.
IMPLEMENTATIONS: dict[str, dict[str, str]] = {
    "reseau": {},
    "threads": {},
    "gevent-libev": {"GEVENT_LOOP": "libev-cext"},
    "gevent-libuv": {"GEVENT_LOOP": "libuv-cffi"},
    "asyncio": {},
    "uvloop": {},
}
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
    sys.path.insert(0, str(REPO))
    from reseau_patch.demo import EchoHandler
    from reseau_patch.io.bootstrap import ClientBootstrap, ServerBootstrap
    from reseau_patch.io.channel import Channel, ChannelHandler, ChannelSlot, Direction
    from reseau_patch.io.event_loop import EventLoop
    from reseau_patch.io.message import IoMessage

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
        """Streams ``nbytes`` with at most 1 MiB queued, half-closes, counts the echo."""

        def __init__(self) -> None:
            self.sent = self.unacked = self.received = 0
            self.t0 = self.t1 = 0.0
            self.block = memoryview(bytes(range(256)) * 64)  # one 16 KiB message
            self.done = threading.Event()

        def pump(self, slot: ChannelSlot) -> None:
            while self.sent < nbytes and self.unacked < (1 << 20):
                msg = slot.acquire_message(nbytes - self.sent)
                n = msg.fill(self.block[: nbytes - self.sent])
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


WORKERS: dict[str, Callable[[int, int, int, float], Result]] = {
    "reseau": run_reseau,
    "threads": run_threads,
    "gevent-libev": run_gevent,
    "gevent-libuv": run_gevent,
    "asyncio": run_asyncio,
    "uvloop": run_uvloop,
}


# ---------------------------------------------------------------------------- driver
def _run_worker(name: str, args: argparse.Namespace) -> Result:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", name,
           "--rounds", str(args.rounds), "--warmup", str(args.warmup),
           "--bulk-mib", str(args.bulk_mib), "--timeout", str(args.timeout)]
    env = {**os.environ, **IMPLEMENTATIONS[name]}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True,
                              timeout=2 * args.timeout + 30)
    except subprocess.TimeoutExpired:
        return {"error": f"worker killed after {2 * args.timeout + 30:.0f} s"}
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit {proc.returncode}: {tail}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _best(results: list[Result]) -> Result:
    ok = [r for r in results if "error" not in r]
    if not ok:
        return results[-1]
    return {**ok[0], "pingpong_rps": max(r["pingpong_rps"] for r in ok),
            "bulk_mbps": max(r["bulk_mbps"] for r in ok)}


def _print_table(results: dict[str, Result]) -> None:
    base = results.get("reseau", {})
    header = (f"{'implementation':14} {'ping-pong rt/s':>15} {'x reseau':>9} "
              f"{'bulk MB/s':>10} {'x reseau':>9}  notes")
    print(header)
    print("-" * len(header))
    for name, r in results.items():
        if "error" in r:
            print(f"{name:14} {'FAILED':>15} {'':>9} {'':>10} {'':>9}  {r['error']}")
            continue
        cells = [f"{name:14}"]
        for key, width in (("pingpong_rps", 15), ("bulk_mbps", 10)):
            cells.append(f"{r[key]:>{width},.0f}" if key == "pingpong_rps"
                         else f"{r[key]:>{width},.1f}")
            ref = base.get(key)
            cells.append(f"{r[key] / ref:>8.2f}x" if ref else f"{'n/a':>9}")
        print(" ".join(cells) + f"  {r.get('note', '')}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20_000, help="timed ping-pong round trips")
    parser.add_argument("--warmup", type=int, default=1_000, help="untimed ping-pong round trips")
    parser.add_argument("--bulk-mib", type=int, default=1024,
                        help="MiB streamed through the echo in the bulk test (default 1024)")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="per-measurement timeout in seconds (default 120)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per implementation; best kept")
    parser.add_argument("--only", nargs="+", choices=list(IMPLEMENTATIONS), metavar="NAME",
                        help=f"run only these: {', '.join(IMPLEMENTATIONS)}")
    parser.add_argument("--worker", choices=list(WORKERS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.warmup < 0 or args.bulk_mib < 1 or args.repeat < 1:
        parser.error("--rounds, --bulk-mib and --repeat must be >= 1, --warmup >= 0")

    if args.worker:
        res = WORKERS[args.worker](args.rounds, args.warmup, args.bulk_mib << 20, args.timeout)
        print(json.dumps(res))
        return 0

    print("command:", shlex.join([sys.executable, *sys.argv]))
    print(f"python {platform.python_version()} on {platform.platform()}, "
          f"{os.cpu_count()} CPUs; ping-pong {args.rounds} x 64 B after {args.warmup} warm-up; "
          f"bulk {args.bulk_mib} MiB; best of {args.repeat}")
    results: dict[str, Result] = {}
    for name in args.only or IMPLEMENTATIONS:
        started = time.perf_counter()
        results[name] = _best([_run_worker(name, args) for _ in range(args.repeat)])
        print(f"  ran {name} in {time.perf_counter() - started:.1f} s", flush=True)
    print()
    _print_table(results)
    return 1 if any("error" in r for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
