"""Memory per idle connection: 10,000 connections, each with a reader parked on it.

The peer (another process, ``servers.py hold``) accepts and never sends. The client opens
``CONNECTIONS`` connections (100 connecting at a time), parks one reader per connection
(a greenlet in ``recv(1)``/``read(1)``, an asyncio task in ``reader.read(1)``) and reports
(RSS after − RSS before) / connections in KiB, after ``gc.collect()``. The process raises
its RLIMIT_NOFILE first. Plaintext and TLS (handshake done, test CA) run in separate
processes; the connection count is the same for both. Lower is better.

* ``reseau``: sockets from ``patch_all()``'s ``socket`` / ``ssl`` modules;
* ``reseau-sockets``: the Sockets-shaped API (``reseau_patch.sockets.connect``, channels);
* ``gevent``: ``monkey.patch_all()``; asyncio/uvloop: ``asyncio.open_connection``.
"""

from __future__ import annotations

import gc
import os
import time
from typing import Any

from .harness import Metric
from .servers import peer, raise_nofile

TITLE = "Memory per idle connection (10,000 connections, a reader parked on each)"
BASELINE = "gevent"
IMPLS = ("reseau", "reseau-sockets", "gevent", "asyncio", "uvloop")
PARTS = ("plain", "tls")
METRICS = {
    "plain": Metric("memory per idle connection, plaintext", "KiB", higher_is_better=False,
                    part="plain"),
    "tls": Metric("memory per idle connection, TLS", "KiB", higher_is_better=False, part="tls"),
}
TARGETS = {"plain": ("<=", 1.0, "plaintext memory per connection vs gevent"),
           "tls": ("<=", 1.0, "TLS memory per connection vs gevent")}
HEADLINE = ("plain", "tls")
NOTES = """Where an idle connection's bytes go (`python -m benchmarks.idle_breakdown IMPL PART
[N] [--no-trace] [--trim]`: tracemalloc and object census between N and 2N connections,
glibc `mallinfo2`, resident bytes per mapping). Per connection, 2026-12-06:

* Common to every green row: the parked reader's greenlet — its saved C stack (reseau
  2.3 KB, gevent 3.0 KB), one touched 4 KiB page of its Python data stack, gevent's five
  spawn-tree `_Frame`s, the `Waiter` (~1.1 KB of the rest is the benchmark's own lists).
* reseau (patch_all) plaintext: GreenSocket 56 B + `FdWaits` (4 slots) ~90 B + the kept
  `IOWatcher` 88 B + the loop's fd entry ~220 B + the Waiter/timer-free park. Was 9.1 KiB:
  FdWaits' two lists and per-socket lock (~250 B) and the frame object a frame gets when
  it catches EAGAIN and then parks (~200 B) are gone.
* reseau-sockets plaintext (parity with gevent since c92eca9): TCPSocket (slots, no
  dict) 296 B, io Socket 192 B, Channel 168 B, two ChannelSlots 176 B, SocketHandler
  104 B, `_socket.socket` 48 B, IOWatcher + its callback + fd entry ~320 B, the read
  Parker 64 B: ~0.5 KB of objects more than the patched socket, the price of the channel
  pipeline under the blocking API, offset by a smaller saved stack (2.3 vs 3.0 KB). Was
  13.9 KiB, then 9.57, then 9.37: the write/close Parkers are made on first wait, the
  connect's write watcher and address are dropped once connected (~350 B); the receive
  buffer is allocated when bytes arrive, the addresses are asked of the kernel, the
  handlers carry no base-class dict (~300 B).
* TLS, both reseau rows: OpenSSL's per-connection state (the SSL object, keys, the
  session — the NewSessionTicket's replaces the handshake's) is ~19.5 KB in any stack;
  the sans-IO engine adds its two MemoryBIOs (~1.7 KB). Reading the server's TLS 1.3
  tickets makes OpenSSL's state machine set up a 16.6 KB record write buffer, which
  `SSL_MODE_RELEASE_BUFFERS` (CPython sets it) frees only when a write completes: the
  stdlib `SSLSocket` gevent runs keeps it while idle (malloc in use 38.7 KB per
  connection, ~9 KB of it never-touched pages RSS does not count); the engine frees it
  with a 0-byte write when a read finds no ciphertext buffered (23.7 KB in use). Was 46.4
  (reseau) and 47.2 KiB (reseau-sockets); reseau-sockets also no longer keeps the
  connect's TlsClientSetup and options (~1 KB).
* Neither this workload nor idle_breakdown calls `malloc_trim` unless asked, for any
  implementation; with `--trim` (2,000 connections) reseau TLS is 30.4 KiB, gevent 35.6
  (37.5 without).
* Not measured here: a TLS connection idle *after* bulk traffic. OpenSSL's memory BIO
  never shrinks its buffer, which grows to the largest single write into it: after 4 MB
  each way through the patched socket, malloc in use per idle connection is ~170 KiB with
  64 KiB kernel reads and encrypt steps (~660 KiB with the 256 KiB ones before) vs gevent's
  36 KiB."""
MAX_ROUNDS = 1  # memory, not time: one round is the measurement
CONNECTIONS = 10_000
BATCH = 100
TIMEOUT = 420


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _settle() -> int:
    for _ in range(3):
        gc.collect()
    return _rss()


def _green(impl: str, n: int, port: int, ca: str | None) -> tuple[int, list[Any]]:
    """(RSS growth in bytes, keep-alive list) for ``n`` idle green connections."""
    import gevent

    if impl == "reseau-sockets":
        from reseau_patch import sockets

        def connect() -> Any:
            if ca:
                return sockets.connect("127.0.0.1", port, tls=True, ssl_cacert=ca, timeout=60)
            return sockets.connect("127.0.0.1", port, timeout=60)

        def park(conn: Any) -> Any:
            return conn.read(1)
    else:
        import socket
        import ssl

        ctx = ssl.create_default_context(cafile=ca) if ca else None

        def connect() -> Any:
            s = socket.create_connection(("127.0.0.1", port), timeout=60)
            if ctx is not None:
                s = ctx.wrap_socket(s, server_hostname="127.0.0.1")
            s.settimeout(None)
            return s

        def park(conn: Any) -> Any:
            return conn.recv(1)

    # Warm-up: imports, contexts, the hub and its loop exist before the "before" sample.
    first = connect()
    warm = gevent.spawn(park, first)
    gevent.sleep(0.01)
    before = _settle()
    conns: list[Any] = []
    readers: list[Any] = []
    while len(conns) < n:
        batch = [gevent.spawn(connect) for _ in range(min(BATCH, n - len(conns)))]
        gevent.joinall(batch, timeout=120, raise_error=True)
        for g in batch:
            conns.append(g.value)
            readers.append(gevent.spawn(park, g.value))
    gevent.sleep(0.05)  # every reader has parked
    after = _settle()
    if any(r.dead for r in readers):
        dead = next(r for r in readers if r.dead)
        raise RuntimeError(f"a reader returned early: {dead.value!r} {dead.exception!r}")
    grown = after - before
    gevent.killall([*readers, warm], timeout=60)
    for c in [*conns, first]:
        c.close()
    return grown, conns


async def _aio(n: int, port: int, ca: str | None) -> int:
    import asyncio
    import ssl

    ctx = ssl.create_default_context(cafile=ca) if ca else None

    async def connect() -> Any:
        return await asyncio.open_connection("127.0.0.1", port, ssl=ctx,
                                             server_hostname="127.0.0.1" if ctx else None)

    first = await connect()
    warm = asyncio.ensure_future(first[0].read(1))
    await asyncio.sleep(0.01)
    before = _settle()
    conns: list[Any] = []
    readers: list[Any] = []
    while len(conns) < n:
        batch = await asyncio.wait_for(
            asyncio.gather(*(connect() for _ in range(min(BATCH, n - len(conns))))), 120)
        for reader, writer in batch:
            conns.append(writer)
            readers.append(asyncio.ensure_future(reader.read(1)))
    await asyncio.sleep(0.05)
    after = _settle()
    for r in [*readers, warm]:
        r.cancel()
    for w in [*conns, first[1]]:
        w.close()
    await asyncio.gather(*readers, warm, return_exceptions=True)
    return after - before


def run(impl: str, quick: bool, part: str) -> dict[str, Any]:
    from .impls import IMPLS, run_async

    n = 50 if quick else CONNECTIONS
    raise_nofile(n + 1024)
    t0 = time.perf_counter()
    with peer("hold", tls=part == "tls") as (port, ca):
        if IMPLS[impl].aio:
            grown = run_async(impl, lambda: _aio(n, port, ca))
        else:
            grown, _ = _green(impl, n, port, ca)
    return {part: grown / n / 1024,
            "note": f"{part}: {n} connections in {time.perf_counter() - t0:.0f} s"}
