"""Scenario (run under ``python -m reseau_patch run``): cancel the patched socket, ssl and
``create_connection`` with ``gevent.Timeout`` and ``Greenlet.kill`` in every phase —
resolve+connect, connect, TLS handshake, recv, sendall, accept — 20 times each, closing
what the caller owns; then nothing may be left: fds, live greenlets, or fds and timers
registered with the hub's loop. Prints one JSON line; exits 1 on a leak or a failure.
"""

from __future__ import annotations

import gc
import json
import os
import socket
import ssl
import sys
import time

import gevent
import greenlet

ROUNDS = 20
failures: list[str] = []


def counts() -> dict:
    gc.collect()
    loop = gevent.get_hub().loop.io_loop.pending_counts()
    return {"fds": len(os.listdir("/proc/self/fd")), "loop_fds": loop["fds"],
            "loop_timers": loop["timers"],
            "greenlets": sum(1 for g in gc.get_objects()
                             if isinstance(g, greenlet.greenlet) and g)}


def cancel(how: str, fn, *args) -> None:
    """Run ``fn(*args)``, cancelled after 0.05 s by ``how``; it must not finish first."""
    if how == "timeout":
        try:
            with gevent.Timeout(0.05):
                fn(*args)
        except gevent.Timeout:
            return
        failures.append(f"{fn.__name__} finished before its timeout")
        return
    g = gevent.spawn(fn, *args)
    gevent.sleep(0.05)
    if g.dead:
        failures.append(f"{fn.__name__} finished before the kill: {g.exception!r}")
    g.kill(block=True, timeout=5)


def full_backlog() -> tuple[socket.socket, list[socket.socket]]:
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(0)
    fillers = []
    for _ in range(3):
        f = socket.socket()
        f.setblocking(False)
        f.connect_ex(lst.getsockname())
        fillers.append(f)
    gevent.sleep(0.05)
    return lst, fillers


def main() -> int:
    from reseau_patch import is_patched
    assert is_patched()
    lst, fillers = full_backlog()
    port = lst.getsockname()[1]
    silent = socket.create_server(("127.0.0.1", 0), backlog=128)
    echo = socket.create_server(("127.0.0.1", 0))
    ctx = ssl.create_default_context()
    gevent.sleep(0.1)
    before = counts()

    def connect_plain() -> None:
        with socket.socket() as s:
            s.connect(("127.0.0.1", port))

    def create_connection_by_name() -> None:
        socket.create_connection(("localhost", port)).close()

    def create_connection_literal() -> None:  # one plain connect, no Happy Eyeballs
        socket.create_connection(("127.0.0.1", port)).close()

    def tls_handshake() -> None:
        with socket.create_connection(silent.getsockname()) as raw:
            ctx.wrap_socket(raw, server_hostname="localhost").close()

    for how in ("timeout", "kill"):
        for _ in range(ROUNDS):
            cancel(how, connect_plain)
            cancel(how, create_connection_by_name)
            cancel(how, create_connection_literal)
            cancel(how, tls_handshake)
            cancel(how, echo.accept)
    # Sub-millisecond timeouts land anywhere in resolve → connect: none may leak either.
    for i in range(ROUNDS):
        try:
            with gevent.Timeout(i * 0.0002):
                create_connection_by_name()
        except gevent.Timeout:
            pass

    # recv and sendall on a live pair: cancelled, the socket stays usable.
    c = socket.create_connection(echo.getsockname())
    s, _ = echo.accept()
    for how in ("timeout", "kill"):
        cancel(how, c.recv, 1)
        s.sendall(b"x")
        if c.recv(1) != b"x":
            failures.append(f"recv after a cancelled recv ({how}) lost or doubled a byte")
    for how in ("timeout", "kill"):
        cancel(how, c.sendall, b"y" * (64 << 20))
    c.close()
    s.close()

    # The listeners and fillers existed in "before"; closed now, they are not counted.
    ours = (silent, echo, lst, *fillers)
    for sock in ours:
        sock.close()
    expect = dict(before, fds=before["fds"] - len(ours))
    deadline = time.monotonic() + 5
    after = counts()
    while after != expect and time.monotonic() < deadline:
        gevent.sleep(0.05)
        after = counts()
    leaked = {k: (expect[k], after[k]) for k in expect if after[k] > expect[k]}
    print(json.dumps({"before": before, "after": after, "leaked": leaked,
                      "failures": failures}))
    return 1 if leaked or failures else 0


if __name__ == "__main__":
    sys.exit(main())
