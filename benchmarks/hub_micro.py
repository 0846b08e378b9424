"""Loop micro-ops: gevent's hub on the Reseau loop vs libev-cext, libuv-cffi, asyncio, uvloop.

Nothing is patched; each loop runs in its own process. Per operation, in µs (lower is
better), the best of ``REPEAT`` measurements inside the process (timeit's rule):

* ``sleep0``    ``gevent.sleep(0)`` / ``await asyncio.sleep(0)`` in a tight loop;
* ``iteration`` ``gevent.socket.wait_write`` on an always-writable socket — one full loop
  iteration (io watcher start → poll → dispatch → stop); asyncio: ``add_writer`` + a future;
* ``pingpong``  64 bytes there and back between two sockets in one process (an echo
  greenlet/task and the client), TCP_NODELAY.
"""

from __future__ import annotations

import socket as std_socket
import time
from collections.abc import Callable
from typing import Any

from .harness import Metric

TITLE = "Loop micro-ops: gevent's hub per loop, asyncio"
BASELINE = "libev-cext"
SUBJECT = "reseau-loop"
IMPLS = ("reseau-loop", "libev-cext", "libuv-cffi", "asyncio", "uvloop")
METRICS = {
    "sleep0": Metric("sleep(0)", "µs", higher_is_better=False),
    "iteration": Metric("one loop iteration (wait_write)", "µs", higher_is_better=False),
    "pingpong": Metric("64 B ping-pong, in-process", "µs", higher_is_better=False),
}
TARGETS = {"sleep0": ("<=", 1.1, "sleep(0) vs libev-cext"),
           "iteration": ("<=", 1.3, "one loop iteration vs libev-cext")}
HEADLINE = ("sleep0", "iteration", "pingpong")
NOTES = """In-process micro-benchmarks: nothing patched, gevent's own socket module.

Where the pure-Python floor stands (CPU µs per operation, `time.process_time`, best of 7,
reseau-loop vs libev-cext, same machine): a new io watcher 1.3 vs 0.36; start+stop of a
watcher 0.7 vs 0.08 (was 1.14 before the parked-restart fast path); one tick of
`EventLoop.run(once=True)` with one ready fd 1.9, of which the `epoll.poll` call itself is
0.63; `hub.wait()` on a kept watcher 4.3 vs 2.1; `wait_write` (a new watcher each time,
one `epoll_ctl` each, as libev does) 7.0 vs 3.0; `sleep(0)` 1.7 vs 1.4. libev's whole
iteration costs less than our tick's Python alone: the 1.3× iteration target needs the
loop's tick, dispatch and watcher start/stop compiled (Cython pure-Python mode or mypyc,
as gevent compiles its own), not further Python tuning."""
REPEAT = 5
#: Share of the full counts per measurement (sized for a ~10 minute whole run).
SCALE = 0.4
TIMEOUT = 240


def _best(fn: Callable[[], float], repeat: int) -> float:
    fn()  # warm-up
    return min(fn() for _ in range(repeat))




def run_gevent(quick: bool) -> dict[str, float]:
    import gevent
    from gevent import socket

    scale = 0.02 if quick else SCALE
    n_sleep, n_iter, n_pp = int(100_000 * scale), int(40_000 * scale), int(10_000 * scale)
    repeat = 1 if quick else REPEAT

    def bench_sleep0() -> float:
        sleep = gevent.sleep
        t = time.perf_counter()
        for _ in range(n_sleep):
            sleep(0)
        return (time.perf_counter() - t) / n_sleep * 1e6

    a, b = socket.socketpair()

    def bench_iteration() -> float:
        wait_write = socket.wait_write
        fd = a.fileno()
        t = time.perf_counter()
        for _ in range(n_iter):
            wait_write(fd)
        return (time.perf_counter() - t) / n_iter * 1e6

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    for s in (client, server):
        s.setsockopt(std_socket.IPPROTO_TCP, std_socket.TCP_NODELAY, 1)

    def echo() -> None:
        recv, sendall = server.recv, server.sendall
        while data := recv(65536):
            sendall(data)

    echo_g = gevent.spawn(echo)
    payload = b"x" * 64

    def bench_pingpong() -> float:
        sendall, recv = client.sendall, client.recv
        t = time.perf_counter()
        for _ in range(n_pp):
            sendall(payload)
            got = 0
            while got < 64:
                got += len(recv(64 - got))
        return (time.perf_counter() - t) / n_pp * 1e6

    try:
        with gevent.Timeout(TIMEOUT - 30):
            out = {"sleep0": _best(bench_sleep0, repeat),
                   "iteration": _best(bench_iteration, repeat),
                   "pingpong": _best(bench_pingpong, repeat)}
    finally:
        client.close()
        echo_g.join(5)
        for s in (server, listener, a, b):
            s.close()
    return out


async def _asyncio_micro(quick: bool) -> dict[str, float]:
    import asyncio

    loop = asyncio.get_running_loop()
    scale = 0.02 if quick else SCALE
    n_sleep, n_iter, n_pp = int(100_000 * scale), int(40_000 * scale), int(10_000 * scale)
    repeat = 1 if quick else REPEAT

    async def best(coro_fn: Callable[[], Any]) -> float:
        await coro_fn()
        return min([await coro_fn() for _ in range(repeat)])

    async def bench_sleep0() -> float:
        sleep = asyncio.sleep
        t = time.perf_counter()
        for _ in range(n_sleep):
            await sleep(0)
        return (time.perf_counter() - t) / n_sleep * 1e6

    a, b = std_socket.socketpair()
    a.setblocking(False)

    async def bench_iteration() -> float:
        fd = a.fileno()
        t = time.perf_counter()
        for _ in range(n_iter):
            fut = loop.create_future()
            loop.add_writer(fd, fut.set_result, None)
            await fut
            loop.remove_writer(fd)
        return (time.perf_counter() - t) / n_iter * 1e6

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname()[:2])
    writer.transport.get_extra_info("socket").setsockopt(
        std_socket.IPPROTO_TCP, std_socket.TCP_NODELAY, 1)
    payload = b"x" * 64

    async def bench_pingpong() -> float:
        t = time.perf_counter()
        for _ in range(n_pp):
            writer.write(payload)
            await reader.readexactly(64)
        return (time.perf_counter() - t) / n_pp * 1e6

    try:
        return {"sleep0": await best(bench_sleep0), "iteration": await best(bench_iteration),
                "pingpong": await best(bench_pingpong)}
    finally:
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()
        a.close()
        b.close()


def run(impl: str, quick: bool, part: str) -> dict[str, Any]:
    if impl in ("asyncio", "uvloop"):
        from .impls import run_async

        return run_async(impl, lambda: _asyncio_micro(quick))
    return run_gevent(quick)
