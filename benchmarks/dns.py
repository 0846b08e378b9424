"""Cached ``getaddrinfo("localhost", 80)``: each stack's resolver vs the stdlib's (glibc).

``CALLS`` timed calls after a warm-up (so reseau's cache is hot), µs per call. ``reseau``
and ``gevent`` call the patched ``socket.getaddrinfo`` (reseau's caching resolver; gevent's
default thread resolver), ``stdlib`` the unpatched one, asyncio/uvloop
``loop.getaddrinfo`` (a thread-pool call). Every answer is checked against the C
library's. For the green stacks the greenlet switches per call are counted too
(``greenlet.settrace``): a cache hit should not switch at all.
"""

from __future__ import annotations

import _socket
import time
from typing import Any

from .harness import Metric

TITLE = "Cached getaddrinfo('localhost', 80)"
BASELINE = "stdlib"
IMPLS = ("reseau", "gevent", "stdlib", "asyncio", "uvloop")
METRICS = {
    "getaddrinfo": Metric("cached getaddrinfo", "µs/call", higher_is_better=False),
    "switches": Metric("greenlet switches per getaddrinfo", "switches/call",
                       higher_is_better=False),
}
TARGETS = {"getaddrinfo": ("<=", 0.2, "cached getaddrinfo ≥ 5× faster than the stdlib's")}
HEADLINE = ("getaddrinfo",)
HOST, PORT = "localhost", 80


def _canonical(infos: list[tuple]) -> list[tuple]:
    return [(int(f), int(t), int(p), c, tuple(sa)) for f, t, p, c, sa in infos]


def _time(fn: Any, calls: int) -> float:
    for _ in range(200):
        fn()
    want = _canonical(_socket.getaddrinfo(HOST, PORT))
    got = _canonical(fn())
    if got != want:
        raise RuntimeError(f"getaddrinfo answered {got}, the C library {want}")
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls * 1e6


def _switches(fn: Any, calls: int) -> float:
    import greenlet

    count = 0

    def trace(event: str, args: Any) -> None:
        nonlocal count
        if event in ("switch", "throw"):
            count += 1

    old = greenlet.settrace(trace)
    try:
        for _ in range(calls):
            fn()
    finally:
        greenlet.settrace(old)
    return count / calls


def run(impl: str, quick: bool, part: str) -> dict[str, Any]:
    from .impls import IMPLS, is_green, run_async

    calls = 200 if quick else 20_000
    if IMPLS[impl].aio:
        async def main() -> float:
            import asyncio

            loop = asyncio.get_running_loop()
            for _ in range(50):
                await loop.getaddrinfo(HOST, PORT)
            t0 = time.perf_counter()
            n = calls // 10  # a thread-pool round trip each: far slower
            for _ in range(n):
                await loop.getaddrinfo(HOST, PORT)
            return (time.perf_counter() - t0) / n * 1e6

        return {"getaddrinfo": run_async(impl, main)}
    import socket

    def fn() -> list[tuple]:
        return socket.getaddrinfo(HOST, PORT)

    out: dict[str, Any] = {"getaddrinfo": _time(fn, calls)}
    if is_green(impl):
        out["switches"] = _switches(fn, min(calls, 1000))
        import gevent

        out["note"] = f"resolver {type(gevent.get_hub().resolver).__module__}"
    return out
