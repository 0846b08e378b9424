"""Each watcher kind of ReseauLoop, driven directly (no hub): gevent's watcher contract."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time

import pytest
from gevent._interfaces import ICallback, ILoop
from zope.interface.verify import verifyObject

from reseau_patch.hub.loop import EVENTS, READ, WRITE, ReseauLoop

from .conftest import WAIT_S


def run_until(loop: ReseauLoop, cond, timeout: float = WAIT_S) -> None:
    """Run single iterations until ``cond()`` holds (bounded)."""
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached in time"
        keep = loop.timer(0.05)
        keep.start(lambda: None)  # bound each blocking iteration
        loop.run(once=True)
        keep.close()


def test_verify_interface(loop: ReseauLoop) -> None:
    assert verifyObject(ILoop, loop)
    cb = loop.run_callback(lambda: None)
    assert verifyObject(ICallback, cb)
    loop.run()


def test_empty_loop_run_returns_immediately(loop: ReseauLoop) -> None:
    t = time.monotonic()
    loop.run()
    loop.run()
    assert time.monotonic() - t < 0.5


# ---------------------------------------------------------------------------- io
def test_io_many_watchers_per_fd_and_pass_events(loop: ReseauLoop) -> None:
    a, b = socket.socketpair()
    try:
        got: list[tuple] = []
        r1 = loop.io(a.fileno(), READ)
        r2 = loop.io(a.fileno(), READ)
        w = loop.io(a.fileno(), WRITE)

        def on_r1(*args):
            got.append(("r1", args))
            r1.stop()

        def on_r2(events, tag):
            got.append(("r2", events, tag))
            r2.stop()

        def on_w():
            got.append(("w",))
            w.stop()

        r1.start(on_r1, "x")
        r2.start(on_r2, "tag", pass_events=True)
        w.start(on_w)
        assert r2.args[0] is EVENTS
        b.send(b"!")
        loop.run()
        assert ("r1", ("x",)) in got
        assert ("r2", READ, "tag") in got
        assert ("w",) in got
        for x in (r1, r2, w):
            assert x.callback is None and x.args is None and not x.active
    finally:
        a.close()
        b.close()


def test_io_level_triggered_until_stopped(loop: ReseauLoop) -> None:
    a, b = socket.socketpair()
    try:
        count = [0]
        r = loop.io(a.fileno(), READ)

        def on_read():
            count[0] += 1
            if count[0] == 3:
                r.stop()

        r.start(on_read)
        b.send(b"data")  # never read: stays readable
        loop.run()
        assert count[0] == 3
    finally:
        a.close()
        b.close()


def test_io_validation(loop: ReseauLoop) -> None:
    with pytest.raises(ValueError):
        loop.io(-1, READ)
    with pytest.raises(ValueError):
        loop.io(0, 8)
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    with pytest.raises(OSError):
        loop.io(r, READ)  # closed fd: EBADF like libev


def test_io_callback_error_stops_watcher_and_reports(loop: ReseauLoop) -> None:
    errors: list = []
    loop.error_handler = lambda ctx, t, v, tb: errors.append((ctx, t))
    a, b = socket.socketpair()
    try:
        w = loop.io(a.fileno(), WRITE)
        w.start(lambda: 1 / 0)
        loop.run()  # would spin forever if the failing watcher stayed active
        assert errors == [(w, ZeroDivisionError)]
        assert not w.active
    finally:
        a.close()
        b.close()


def test_closing_fd_wakes_watchers(loop: ReseauLoop) -> None:
    a, b = socket.socketpair()
    try:
        woke: list[int] = []
        r = loop.io(a.fileno(), READ)
        r.start(lambda ev: (woke.append(ev), r.stop()), pass_events=True)
        assert loop.closing_fd(a.fileno()) is True
        assert loop.closing_fd(b.fileno()) is False
        check = loop.check()
        check.start(lambda: check.stop())
        loop.run()
        assert woke and woke[0] & READ
    finally:
        a.close()
        b.close()


# ---------------------------------------------------------------------------- timer
def test_one_shot_timer_stops_itself(loop: ReseauLoop) -> None:
    fired: list[float] = []
    t = loop.timer(0.01)
    assert t.callback is None
    t.start(fired.append, 1.0)
    assert t.active and t.callback is not None
    loop.run()
    assert fired == [1.0]
    assert not t.active and t.callback is None and t.args is None


def test_timer_restarted_from_its_callback_stays_active(loop: ReseauLoop) -> None:
    t = loop.timer(0.001)
    n = [0]

    def cb():
        n[0] += 1
        if n[0] < 3:
            t.start(cb)

    t.start(cb)
    loop.run()
    assert n[0] == 3 and not t.active


def test_repeating_timer_and_again(loop: ReseauLoop) -> None:
    t = loop.timer(0.001, 0.001)
    n = [0]

    def cb():
        n[0] += 1
        if n[0] == 5:
            t.stop()

    t.start(cb)
    loop.run()
    assert n[0] == 5 and not t.active
    # again(): restart at now + repeat.
    t.again(cb)
    assert t.active
    n[0] = 3
    loop.run()
    assert n[0] == 5
    with pytest.raises(ValueError):
        loop.timer(1, -1)


def test_timer_update_and_priority_rules(loop: ReseauLoop) -> None:
    t = loop.timer(0.01)
    before = loop.now()
    time.sleep(0.02)
    t.start(lambda: None, update=True)
    assert loop.now() > before
    with pytest.raises(ValueError):
        t.priority = 1
    t.stop()
    t.priority = 1
    assert t.priority == 1


def test_unreferenced_timer_does_not_keep_run_alive(loop: ReseauLoop) -> None:
    t = loop.timer(30, ref=False)
    t.start(lambda: None)
    start = time.monotonic()
    loop.run()
    assert time.monotonic() - start < 1
    # Flipping ref while active keeps the loop's count balanced.
    t.ref = True
    assert loop.activecnt == 1
    t.ref = False
    assert loop.activecnt == 0
    t.close()
    assert loop.activecnt == 0


def test_start_rejects_non_callable(loop: ReseauLoop) -> None:
    for w in (loop.timer(1), loop.idle(), loop.check(), loop.prepare(), loop.async_()):
        with pytest.raises(TypeError):
            w.start(None)
        with pytest.raises(TypeError):
            w.start("not callable")
        assert w.callback is None
        with pytest.raises(TypeError):
            w.callback = 42
        with pytest.raises(TypeError):
            w.args = [1]


def test_closed_watchers_restart(loop: ReseauLoop) -> None:
    fired: list[int] = []
    t = loop.timer(0)
    t.start(fired.append, 1)
    t.close()
    t.start(fired.append, 2)
    loop.run()
    assert fired == [2]
    with loop.timer(0) as t2:
        t2.start(fired.append, 3)
        loop.run()
    assert fired == [2, 3]


# ---------------------------------------------------------------------------- hooks
def test_prepare_check_idle_order(loop: ReseauLoop) -> None:
    seen: list[str] = []
    prep, chk, idle = loop.prepare(), loop.check(), loop.idle()
    prep.start(seen.append, "prepare")
    chk.start(seen.append, "check")

    def on_idle():
        seen.append("idle")
        for w in (prep, chk, idle):
            w.stop()

    idle.start(on_idle)
    loop.run()
    assert seen.index("prepare") < seen.index("check") < seen.index("idle")


def test_run_callback_fifo_stop_and_truthiness(loop: ReseauLoop) -> None:
    seen: list[int] = []
    cbs = [loop.run_callback(seen.append, i) for i in range(5)]
    assert all(cb.pending and cb for cb in cbs)
    cbs[2].stop()
    loop.run_callback(lambda: loop.run_callback(seen.append, 99))
    loop.run()
    assert seen == [0, 1, 3, 4, 99]
    assert not any(cb.pending or cb for cb in cbs)


def test_callbacks_run_before_check_watchers(loop: ReseauLoop) -> None:
    seen: list[str] = []
    chk = loop.check()
    idle = loop.idle()

    def from_idle():
        idle.stop()
        chk.start(lambda: (seen.append("check"), chk.stop()))
        loop.run_callback(seen.append, "callback")

    idle.start(from_idle)
    loop.run()
    assert seen == ["callback", "check"]


def test_callback_errors_never_escape_run(loop: ReseauLoop) -> None:
    errors: list = []

    class Handler:
        def handle_error(self, ctx, t, v, tb):
            errors.append(t)
            raise RuntimeError("the error handler itself fails")

    loop.error_handler = Handler()
    seen: list[int] = []
    loop.run_callback(lambda: 1 / 0)
    loop.run_callback(seen.append, 1)
    loop.run()
    assert errors == [ZeroDivisionError] and seen == [1]


def test_break_stops_run(loop: ReseauLoop) -> None:
    t = loop.timer(0.001, 0.001)
    n = [0]

    def cb():
        n[0] += 1
        if n[0] == 2:
            loop.break_()

    t.start(cb)
    loop.run()
    assert n[0] == 2 and t.active
    t.stop()


def test_ref_unref(loop: ReseauLoop) -> None:
    loop.ref()
    assert loop.activecnt == 1
    loop.unref()
    loop.run()


# ---------------------------------------------------------------------------- async / threads
def test_async_send_from_thread(loop: ReseauLoop) -> None:
    a = loop.async_()
    got: list[str] = []
    a.start(lambda: (got.append("sent"), a.stop()))
    th = threading.Thread(target=lambda: (time.sleep(0.05), a.send()))
    th.start()
    loop.run()
    th.join(WAIT_S)
    assert got == ["sent"] and not a.pending
    assert getattr(type(loop), "async") is type(loop).async_


def test_run_callback_threadsafe_wakes_blocked_loop(loop: ReseauLoop) -> None:
    got: list[int] = []
    keep = loop.async_()
    keep.start(lambda: None)  # referenced: keeps run() blocking in the poll

    def worker():
        time.sleep(0.05)
        loop.run_callback_threadsafe(lambda: (got.append(1), keep.stop()))

    th = threading.Thread(target=worker)
    th.start()
    t0 = time.monotonic()
    loop.run()
    th.join(WAIT_S)
    assert got == [1] and time.monotonic() - t0 < WAIT_S


# ------------------------------------------------------------ signal / child / fork / stat
def test_signal_watcher_wakes_blocked_poll() -> None:
    loop = ReseauLoop(default=False)
    try:
        got: list[int] = []
        sig = loop.signal(signal.SIGUSR1)
        sig.start(lambda: (got.append(1), sig.stop()))
        # Sent from another thread while the loop blocks in epoll_wait.
        th = threading.Thread(target=lambda: (time.sleep(0.05),
                                              signal.pthread_kill(threading.main_thread().ident,
                                                                  signal.SIGUSR1)))
        th.start()
        loop.run()
        th.join(WAIT_S)
        assert got == [1]
        assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL  # handler given back
        with pytest.raises(ValueError):
            loop.signal(0)
    finally:
        loop.destroy()


def test_child_watchers_pid_and_any(_hub) -> None:
    import gevent

    loop = _hub.loop  # "any child" watchers need the default loop
    other = ReseauLoop(default=False)
    try:
        with pytest.raises(TypeError):
            other.child(0)
    finally:
        other.destroy()
    pid = os.fork()
    if pid == 0:
        os._exit(7)
    got: list[tuple] = []
    w = loop.child(pid)
    w_any = loop.child(0)
    w.start(lambda: got.append(("pid", w.rpid, w.rstatus)))
    w_any.start(lambda: got.append(("any", w_any.rpid)))
    deadline = time.monotonic() + WAIT_S
    while len(got) < 2 and time.monotonic() < deadline:
        gevent.sleep(0.01)
    w.stop()
    w_any.stop()
    assert ("pid", pid, 7 << 8) in got and ("any", pid) in got


def test_fork_watcher_runs_after_reinit(loop: ReseauLoop) -> None:
    got: list[int] = []
    f = loop.fork()
    f.start(got.append, 1)
    loop.reinit()  # same process: fork watchers still run on the next iteration
    t = loop.timer(0)
    t.start(lambda: f.stop())
    loop.run()
    assert got == [1]


def test_stat_watcher(loop: ReseauLoop, tmp_path) -> None:
    path = tmp_path / "watched"
    path.write_bytes(b"")
    st = loop.stat(str(path), interval=0.01)
    assert st._paths == os.fsencode(str(path))
    got: list = []
    st.start(lambda: (got.append((st.attr, st.prev)), st.stop()))
    writer = loop.timer(0.05)
    writer.start(lambda: path.write_bytes(b"x"))
    loop.run()
    attr, prev = got[0]
    assert attr.st_size == 1 and prev.st_size == 0
    st.start(lambda: (got.append((st.attr, st.prev)), st.stop()))
    remover = loop.timer(0.05)
    remover.start(path.unlink)
    loop.run()
    assert got[1][0] is None


def test_destroy_and_identity() -> None:
    a = ReseauLoop(default=True)
    b = ReseauLoop(default=True)
    assert a.default and b.default and a.ptr and a.ptr != b.ptr
    assert "default" in a._format()
    a.destroy()
    assert not a.default and not a.ptr
    b.destroy()
    b.destroy()  # idempotent
