"""The EventLoop features the hub added (lazy_unregister, rearm, reentrant run, adopt)."""

from __future__ import annotations

import os
import socket
import threading

from reseau_patch.io.event_loop import READ, EventLoop, IOWatcher

from .conftest import WAIT_S


def _ticks_during(ev: EventLoop, seconds: float) -> int:
    before = ev.stats.ticks
    t = ev.call_later(seconds, lambda: None)
    ev.run()
    assert not t.active
    return ev.stats.ticks - before


def test_parked_fd_that_becomes_ready_does_not_spin() -> None:
    ev = EventLoop(lazy_unregister=True)
    a, b = socket.socketpair()
    try:
        w = IOWatcher(ev, a.fileno(), READ)
        w.start(lambda bits: None)
        w.stop()  # parked: still in the kernel's set
        assert ev.pending_counts()["fds"] == 0
        b.send(b"unread")  # level-triggered readiness nobody consumes
        assert _ticks_during(ev, 0.1) < 10
        # Restarting the same watcher works (and fires).
        got: list[int] = []
        w.start(lambda bits: (got.append(bits), w.stop()))
        ev.run()
        assert got and got[0] & READ
    finally:
        ev.close()
        a.close()
        b.close()


def test_fd_closed_while_a_dup_lives_on_forces_a_poller_rebuild() -> None:
    ev = EventLoop(lazy_unregister=True)
    a, b = socket.socketpair()
    dup = os.dup(a.fileno())
    try:
        w = IOWatcher(ev, a.fileno(), READ)
        w.start(lambda bits: None)
        w.stop()
        a.close()  # the kernel keeps reporting the old number: the file lives on in dup
        b.send(b"x")
        assert _ticks_during(ev, 0.1) < 10
    finally:
        ev.close()
        os.close(dup)
        b.close()


def test_new_watcher_on_reused_number_is_registered() -> None:
    ev = EventLoop(lazy_unregister=True)
    a, b = socket.socketpair()
    fd = a.fileno()
    w = IOWatcher(ev, fd, READ)
    w.start(lambda bits: None)
    w.stop()  # parked on fd
    a.close()
    c, d = socket.socketpair()
    try:
        if c.fileno() != fd:
            os.dup2(c.fileno(), fd)
            c.close()
            c = socket.socket(fileno=fd)
        got: list[int] = []
        w2 = IOWatcher(ev, fd, READ)  # another object: the kernel mask is re-sent
        w2.start(lambda bits: (got.append(bits), w2.stop()))
        d.send(b"!")
        guard = ev.call_later(WAIT_S, ev.stop, ref=False)
        ev.run()
        guard.cancel()
        assert got
    finally:
        ev.close()
        for s in (b, c, d):
            s.close()


def test_reentrant_run_and_adopt() -> None:
    ev = EventLoop()
    seen: list[str] = []

    def outer() -> None:
        ev.call_soon(seen.append, "inner")
        ev.run(reentrant=True)  # runs the inner callback, then returns here
        seen.append("outer done")

    ev.call_soon(outer)
    ev.run()
    assert seen == ["inner", "outer done"]
    err: list[BaseException] = []

    def close_elsewhere() -> None:
        try:
            ev.adopt()
            ev.close()
        except BaseException as exc:  # noqa: BLE001 - reported below
            err.append(exc)

    th = threading.Thread(target=close_elsewhere)
    th.start()
    th.join(WAIT_S)
    assert not err and ev.closed
