"""Loop micro-ops: gevent's hub on the Reseau loop vs libev-cext, libuv-cffi, asyncio, uvloop.

Nothing is patched; each loop runs in its own process. Per operation, in µs (lower is
better), the best of ``REPEAT`` measurements inside the process (timeit's rule):

* ``sleep0``    ``gevent.sleep(0)`` / ``await asyncio.sleep(0)`` in a tight loop;
* ``iteration`` ``gevent.socket.wait_write`` on an always-writable socket — one full loop
  iteration (io watcher start → poll → dispatch → stop); asyncio: ``add_writer`` + a future;
* ``pingpong``  64 bytes there and back between two sockets in one process (an echo
  greenlet/task and the client), TCP_NODELAY;
* ``sleep0_cpu``, ``iteration_cpu``  the first two in process CPU time (``time.process_time``).
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
    # The same two loops in process CPU time: on a shared machine other processes stretch
    # wall time (and so the rows above) far more than the CPU the loop itself spends.
    "sleep0_cpu": Metric("sleep(0), CPU", "µs", higher_is_better=False),
    "iteration_cpu": Metric("one loop iteration (wait_write), CPU", "µs",
                            higher_is_better=False),
}
TARGETS = {"sleep0": ("<=", 1.1, "sleep(0) vs libev-cext"),
           "iteration": ("<=", 1.3, "one loop iteration vs libev-cext")}
HEADLINE = ("sleep0", "iteration", "pingpong")
NOTES = """In-process micro-benchmarks: nothing patched, gevent's own socket module.

Compiled hot paths (issue #12): `pip install -e .` builds io/event_loop.py, hub/io_watcher.py
and hub/callbacks.py as Cython extension types (`RESEAU_PATCH_PURE_PYTHON=1` runs the .py).
CPU µs per operation (`time.process_time`, best of 7 in one process, median of 5 interleaved
process rounds, 2026-12-06, loaded 2-core machine), compiled / pure Python / libev-cext:
`wait_write` 3.96 / 6.75 / 3.10 (1.28× / 2.18×); `sleep(0)` 1.41 / 1.69 / 1.35; `hub.wait()`
on a kept watcher 2.66 / 4.22 / 1.97; a new io watcher + close 0.36 / 1.05 / 0.38; start+stop
of a kept watcher 0.30 / 0.78 / 0.10. This table's wall-clock ratios move ±10% with the load
(1.37× and 1.11× in the run of 06:57). What remains above libev: most of the `hub.wait` gap
is the tick around `epoll_wait` (the Python `EpollPoller.poll` frame building its list of
tuples, two clock reads for the tick statistics); watcher start/stop still does Python
set/list/dict calls and an OS-thread check libev does not; and the fcntl(F_GETFD) that makes
a closed fd fail at watcher creation is one syscall per wait libev does not make."""
REPEAT = 5
#: Share of the full counts per measurement (sized for a ~10 minute whole run).
SCALE = 0.4
TIMEOUT = 240


def _best(fn: Callable[[], float], repeat: int) -> float:
    fn()  # warm-up
    return min(fn() for _ in range(repeat))


def _best2(fn: Callable[[], tuple[float, float]], repeat: int) -> tuple[float, float]:
    """Best (wall, CPU) of ``repeat`` runs after a warm-up, each minimum on its own."""
    fn()
    runs = [fn() for _ in range(repeat)]
    return min(r[0] for r in runs), min(r[1] for r in runs)


def _clocks() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _per_op_us(start: tuple[float, float], n: int) -> tuple[float, float]:
    """µs per operation since ``start``: (wall, process CPU)."""
    wall, cpu = _clocks()
    return (wall - start[0]) / n * 1e6, (cpu - start[1]) / n * 1e6




def run_gevent(quick: bool) -> dict[str, float]:
    import gevent
    from gevent import socket

    scale = 0.02 if quick else SCALE
    n_sleep, n_iter, n_pp = int(100_000 * scale), int(40_000 * scale), int(10_000 * scale)
    repeat = 1 if quick else REPEAT

    def bench_sleep0() -> tuple[float, float]:
        sleep = gevent.sleep
        t = _clocks()
        for _ in range(n_sleep):
            sleep(0)
        return _per_op_us(t, n_sleep)

    a, b = socket.socketpair()

    def bench_iteration() -> tuple[float, float]:
        wait_write = socket.wait_write
        fd = a.fileno()
        t = _clocks()
        for _ in range(n_iter):
            wait_write(fd)
        return _per_op_us(t, n_iter)

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
            sleep0, sleep0_cpu = _best2(bench_sleep0, repeat)
            iteration, iteration_cpu = _best2(bench_iteration, repeat)
            out = {"sleep0": sleep0, "iteration": iteration,
                   "pingpong": _best(bench_pingpong, repeat),
                   "sleep0_cpu": sleep0_cpu, "iteration_cpu": iteration_cpu}
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

    async def best(coro_fn: Callable[[], Any]) -> Any:
        await coro_fn()
        runs = [await coro_fn() for _ in range(repeat)]
        if isinstance(runs[0], tuple):
            return min(r[0] for r in runs), min(r[1] for r in runs)
        return min(runs)

    async def bench_sleep0() -> tuple[float, float]:
        sleep = asyncio.sleep
        t = _clocks()
        for _ in range(n_sleep):
            await sleep(0)
        return _per_op_us(t, n_sleep)

    a, b = std_socket.socketpair()
    a.setblocking(False)

    async def bench_iteration() -> tuple[float, float]:
        fd = a.fileno()
        t = _clocks()
        for _ in range(n_iter):
            fut = loop.create_future()
            loop.add_writer(fd, fut.set_result, None)
            await fut
            loop.remove_writer(fd)
        return _per_op_us(t, n_iter)

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
        sleep0, sleep0_cpu = await best(bench_sleep0)
        iteration, iteration_cpu = await best(bench_iteration)
        return {"sleep0": sleep0, "iteration": iteration,
                "pingpong": await best(bench_pingpong),
                "sleep0_cpu": sleep0_cpu, "iteration_cpu": iteration_cpu}
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
