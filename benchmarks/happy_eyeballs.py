"""Connect to a name whose first address is black-holed: Happy Eyeballs vs in-order tries.

Loopback only (DESIGN.md): the name answers [127.0.0.2:P, 127.0.0.3:P]; 127.0.0.2:P is a
``listen(0)`` listener whose one queue slot is taken, so the kernel drops further SYNs
(the connect hangs), and 127.0.0.3:P accepts. Milliseconds per connect, lower is better.

* ``reseau``: the patched ``socket.create_connection`` (Happy Eyeballs v2, 250 ms attempt
  delay), its resolver answering the name with both addresses;
* ``reseau-sockets``: ``reseau_patch.sockets.connect`` with a ``StaticResolver``;
* ``gevent`` / ``stdlib``: what their ``create_connection`` does with that list: each
  address in order, ``timeout=STDLIB_TIMEOUT`` per address;
* ``asyncio``: ``loop.create_connection(..., happy_eyeballs_delay=0.25)`` with the loop's
  ``getaddrinfo`` answering both addresses (uvloop's cannot be replaced).
"""

from __future__ import annotations

import select
import socket as _std
import time
from collections.abc import Callable
from typing import Any

from .harness import Metric

TITLE = "Happy Eyeballs: connect when the first address is black-holed"
BASELINE = "gevent"
IMPLS = ("reseau", "reseau-sockets", "gevent", "stdlib", "asyncio")
METRICS = {"connect": Metric("connect, first address black-holed", "ms",
                             higher_is_better=False)}
TARGETS = {"connect": ("<=", 1.0, "black-holed first address vs gevent")}
HEADLINE = ("connect",)
BLACKHOLE, GOOD = "127.0.0.2", "127.0.0.3"
NAME = "blackholed-first.test"
STDLIB_TIMEOUT = 2.0
TIMEOUT = 180


def _listeners() -> tuple[int, Any, Any, list[Any]]:
    """(P, black-holed listener on 127.0.0.2:P, accepting listener on 127.0.0.3:P, the
    sockets filling the black hole's queue). Plain C sockets: nothing here is green."""
    for _ in range(50):
        hole = _std.socket()
        hole.bind((BLACKHOLE, 0))
        hole.listen(0)
        port = hole.getsockname()[1]
        good = _std.socket()
        try:
            good.bind((GOOD, port))
        except OSError:
            good.close()
            hole.close()
            continue
        good.listen(64)
        break
    else:
        raise RuntimeError(f"no port free on both {BLACKHOLE} and {GOOD}")
    # listen(0) holds one connection in the accept queue; once full the kernel drops SYNs
    # (tcp_conn_request), so a connect hangs in SYN_SENT. Connect until one hangs.
    fillers: list[Any] = []
    for _ in range(8):
        c = _std.socket()
        c.setblocking(False)
        c.connect_ex((BLACKHOLE, port))
        fillers.append(c)
        if not select.select([], [c], [], 0.3)[1]:
            return port, hole, good, fillers
    raise RuntimeError(f"{BLACKHOLE}:{port} kept accepting SYNs: cannot black-hole it")


def _bench(connect: Callable[[int], Any], reps: int) -> float:
    port, hole, good, fillers = _listeners()
    try:
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            peer = connect(port)
            times.append(time.perf_counter() - t0)
            if peer != GOOD:
                raise RuntimeError(f"connected to {peer}, expected {GOOD}")
            good.accept()[0].close()
    finally:
        for s in (*fillers, good, hole):
            s.close()
    return min(times) * 1e3


def _in_order(timeout: float) -> Callable[[int], Any]:
    import socket

    def connect(port: int) -> Any:
        for addr in (BLACKHOLE, GOOD):
            try:
                s = socket.create_connection((addr, port), timeout=timeout)
            except OSError:
                continue
            peer = s.getpeername()[0]
            s.close()
            return peer
        raise ConnectionError("every address failed")

    return connect


def run(impl: str, quick: bool, part: str) -> dict[str, Any]:
    reps = 1 if quick else 2
    timeout = 0.3 if quick else STDLIB_TIMEOUT
    if impl == "asyncio":
        from .impls import run_async

        async def main() -> float:
            import asyncio

            loop = asyncio.get_running_loop()

            async def getaddrinfo(host: Any, port: Any, *args: Any, **kw: Any) -> list:
                if host != NAME:
                    return await type(loop).getaddrinfo(loop, host, port, *args, **kw)
                return [(_std.AF_INET, _std.SOCK_STREAM, 6, "", (a, port))
                        for a in (BLACKHOLE, GOOD)]

            loop.getaddrinfo = getaddrinfo  # type: ignore[method-assign]
            port, hole, good, fillers = _listeners()
            try:
                best = float("inf")
                for _ in range(reps):
                    t0 = time.perf_counter()
                    tr, _ = await asyncio.wait_for(loop.create_connection(
                        asyncio.Protocol, NAME, port, happy_eyeballs_delay=0.25), 30)
                    best = min(best, time.perf_counter() - t0)
                    peer = tr.get_extra_info("peername")[0]
                    tr.close()
                    if peer != GOOD:
                        raise RuntimeError(f"connected to {peer}, expected {GOOD}")
                    good.accept()[0].close()
            finally:
                for s in (*fillers, good, hole):
                    s.close()
            return best * 1e3

        return {"connect": run_async(impl, main)}
    if impl in ("gevent", "stdlib"):
        return {"connect": _bench(_in_order(timeout), reps),
                "note": f"in order, {timeout:g} s per address"}
    from reseau_patch.io import resolver as io_resolver

    static = io_resolver.StaticResolver({NAME: [BLACKHOLE, GOOD]})
    if impl == "reseau-sockets":
        from reseau_patch import sockets

        def connect(port: int) -> Any:
            s = sockets.connect(NAME, port, resolver=static, timeout=10)
            peer = str(s.getpeername()[0])
            s.close()
            return peer

        return {"connect": _bench(connect, reps)}
    import socket

    # The patched create_connection asks the process-wide resolver: answer the test name.
    io_resolver.default_resolver = lambda: static  # type: ignore[assignment]

    def connect_patched(port: int) -> Any:
        s = socket.create_connection((NAME, port), timeout=10)
        peer = s.getpeername()[0]
        s.close()
        return peer

    return {"connect": _bench(connect_patched, reps)}
