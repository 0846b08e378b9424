"""64 B ping-pong and bulk receive through ``socket.socket`` as each stack patches it.

The peer is another process (``servers.py`` on uvloop, the same for every row), so the
table compares the client side only: ``reseau`` runs after ``reseau_patch.patch_all()``,
``gevent`` after ``gevent.monkey.patch_all()``, ``stdlib`` unpatched (blocking calls),
asyncio/uvloop use streams (``readexactly`` / ``read``).

* ``pingpong``: one connection, TCP_NODELAY, 64 bytes sent after the previous 64 came back;
* ``bulk``: the peer sends 384 MiB, the client ``recv_into``s a 64 KiB buffer.

Each number is the best of ``REPEAT`` measurements inside the process (load bursts on a
shared machine only slow a run down); the harness takes the median over rounds.
"""

from __future__ import annotations

import socket
import time
from typing import Any

from .harness import Metric
from .servers import peer

TITLE = "Patched socket: 64 B ping-pong and bulk receive (peer in another process)"
BASELINE = "gevent"
IMPLS = ("reseau", "gevent", "stdlib", "asyncio", "uvloop")
METRICS = {
    "pingpong": Metric("64 B ping-pong through the patched socket", "round trips/s"),
    "bulk": Metric("plaintext bulk receive", "MB/s"),
}
TARGETS = {"pingpong": (">=", 1.0, "ping-pong vs gevent"),
           "bulk": (">=", 1.0, "bulk receive vs gevent")}
HEADLINE = ("pingpong", "bulk")
PING = b"p" * 64
CHUNK = 64 * 1024
TIMEOUT = 180


def _counts(quick: bool) -> tuple[int, int, int]:
    """(warm-up round trips, timed round trips, bulk bytes), per measurement."""
    return (50, 500, 4 << 20) if quick else (1_000, 8_000, 384 << 20)


REPEAT = 3  # measurements per process, best kept (load bursts only slow a run down)


def _blocking(quick: bool) -> dict[str, Any]:
    warmup, rounds, nbytes = _counts(quick)
    with peer("echo") as (port, _):
        s = socket.create_connection(("127.0.0.1", port), timeout=60)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = bytearray(64)
        view = memoryview(buf)
        sendall, recv_into = s.sendall, s.recv_into
        try:
            pp = 0.0
            for r in range(1 if quick else REPEAT):
                t0 = 0.0
                for i in range((warmup if r == 0 else 0) + rounds):
                    if i == (warmup if r == 0 else 0):
                        t0 = time.perf_counter()
                    sendall(PING)
                    got = 0
                    while got < 64:
                        n = recv_into(view[got:])
                        if not n:
                            raise ConnectionError("echo peer closed")
                        got += n
                pp = max(pp, rounds / (time.perf_counter() - t0))
        finally:
            s.close()
    bulk = 0.0
    with peer("source") as (port, _):
        # One untimed transfer first: the fresh peer process and the connection path warm up.
        for size in [1 << 20] + [nbytes] * (1 if quick else REPEAT):
            s = socket.create_connection(("127.0.0.1", port), timeout=60)
            buf = bytearray(CHUNK)
            recv_into = s.recv_into
            try:
                t0 = time.perf_counter()
                s.sendall(size.to_bytes(8, "big"))
                got = 0
                while n := recv_into(buf):
                    got += n
                if size == nbytes:
                    bulk = max(bulk, got / (time.perf_counter() - t0) / 1e6)
            finally:
                s.close()
            if got != size:
                raise RuntimeError(f"bulk: received {got} of {size} bytes")
    return {"pingpong": pp, "bulk": bulk, "note": f"socket class {socket.socket.__module__}."
            f"{socket.socket.__qualname__}"}


async def _streams(quick: bool) -> dict[str, Any]:
    import asyncio

    warmup, rounds, nbytes = _counts(quick)
    with peer("echo") as (port, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.transport.get_extra_info("socket").setsockopt(
            socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pp = 0.0
        for r in range(1 if quick else REPEAT):
            skip = warmup if r == 0 else 0
            t0 = 0.0
            for i in range(skip + rounds):
                if i == skip:
                    t0 = time.perf_counter()
                writer.write(PING)
                await reader.readexactly(64)
            pp = max(pp, rounds / (time.perf_counter() - t0))
        writer.close()
        await writer.wait_closed()
    bulk = 0.0
    with peer("source") as (port, _):
        for size in [1 << 20] + [nbytes] * (1 if quick else REPEAT):  # first: untimed
            reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=CHUNK)
            t0 = time.perf_counter()
            writer.write(size.to_bytes(8, "big"))
            got = 0
            while data := await reader.read(CHUNK):
                got += len(data)
            if size == nbytes:
                bulk = max(bulk, got / (time.perf_counter() - t0) / 1e6)
            writer.close()
            await writer.wait_closed()
            if got != size:
                raise RuntimeError(f"bulk: received {got} of {size} bytes")
    return {"pingpong": pp, "bulk": bulk}


def run(impl: str, quick: bool, part: str) -> dict[str, Any]:
    from .impls import IMPLS, run_async

    if IMPLS[impl].aio:
        return run_async(impl, lambda: _streams(quick))
    return _blocking(quick)
