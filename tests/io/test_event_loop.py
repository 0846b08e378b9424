"""EventLoop: run-queue snapshots, priorities, timers, cross-thread posting, IO watchers,
refs, error routing and teardown. Every wait is bounded; nothing asserts tight timings."""

from __future__ import annotations

import gc
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from reseau_patch.io.event_loop import (
    ERROR,
    READ,
    WRITE,
    EventLoop,
    Hook,
    IOWatcher,
    LoopThreadError,
)

BACKENDS = ["epoll", "poll"] if hasattr(__import__("select"), "epoll") else ["poll"]
WAIT = 5.0  # upper bound for any wait; only there so a bug fails instead of hanging


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture
def loop() -> Iterator[EventLoop]:
    lp = EventLoop()
    yield lp
    if not lp.closed:
        lp.close()


@pytest.fixture(params=BACKENDS)
def any_loop(request: pytest.FixtureRequest) -> Iterator[EventLoop]:
    lp = EventLoop(backend=request.param)
    assert lp.backend == request.param
    # A blocking run(once=True) whose expected event never comes ends here, not at the
    # suite's 120 s timeout; the test's own assertions then fail.
    lp.call_later(WAIT, lp.stop, ref=False)
    yield lp
    if not lp.closed:
        lp.close()


@pytest.fixture
def threaded_loop() -> Iterator[EventLoop]:
    """A loop running forever on its own thread; stopped, joined and closed afterwards."""
    lp = EventLoop()
    lp.start_thread(name="test-loop")
    yield lp
    lp.stop_thread(timeout=WAIT)


@pytest.fixture
def pairs() -> Iterator[Callable[[], tuple[socket.socket, socket.socket]]]:
    """Factory of non-blocking connected socket pairs, all closed at teardown."""
    made: list[socket.socket] = []

    def make() -> tuple[socket.socket, socket.socket]:
        a, b = socket.socketpair()
        a.setblocking(False)
        b.setblocking(False)
        made.extend((a, b))
        return a, b

    yield make
    for s in made:
        s.close()


def watchdog(lp: EventLoop, seconds: float = WAIT) -> list[bool]:
    """An unreferenced timer that stops a run() that would otherwise hang; [True] if it fired."""
    fired: list[bool] = []

    def bark() -> None:
        fired.append(True)
        lp.stop()

    lp.call_later(seconds, bark, ref=False)
    return fired


def park(lp: EventLoop) -> tuple[threading.Event, threading.Event]:
    """Post a callback that blocks the loop thread until released; returns (parked, release)."""
    parked, release = threading.Event(), threading.Event()

    def sit() -> None:
        parked.set()
        release.wait(WAIT)

    lp.post(sit)
    assert parked.wait(WAIT), "loop thread never ran the parking callback"
    return parked, release


def fd_table() -> dict[int, str]:
    out = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            out[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            pass
    return out


# ---------------------------------------------------------------------------- run queue
def test_callback_queued_during_tick_runs_next_tick(loop: EventLoop) -> None:
    seen: list[tuple[str, int]] = []

    def second() -> None:
        seen.append(("second", loop.stats.ticks))

    def first() -> None:
        seen.append(("first", loop.stats.ticks))
        loop.call_soon(second)

    loop.call_soon(first)
    loop.run(once=True)
    assert seen == [("first", 1)], "work queued during a snapshot must wait for the next tick"
    loop.run(once=True)
    assert seen == [("first", 1), ("second", 2)]


def test_self_requeueing_callback_does_not_starve_io(loop: EventLoop, pairs) -> None:
    a, b = pairs()
    spins: list[int] = []
    io_tick: list[int] = []

    def spin() -> None:
        spins.append(loop.stats.ticks)
        if not io_tick and len(spins) < 1000:
            loop.call_soon(spin)

    w = IOWatcher(loop, a.fileno(), READ)

    def on_read(_ev: int) -> None:
        io_tick.append(loop.stats.ticks)
        a.recv(100)
        w.stop()

    w.start(on_read)
    b.send(b"x")
    loop.call_soon(spin)
    fired = watchdog(loop)
    loop.run()
    assert not fired
    assert io_tick and io_tick[0] <= 2, f"IO waited behind a re-queueing callback: {io_tick}"
    assert len(spins) <= 3


def test_priorities_order_within_snapshot(loop: EventLoop) -> None:
    order: list[str] = []
    for name, pri in [("a0", 0), ("b-2", -2), ("c2", 2), ("d1", 1), ("e0", 0), ("f2", 2),
                      ("g-1", -1)]:
        loop.call_soon(order.append, name, priority=pri)
    loop.run(once=True)
    assert order == ["c2", "f2", "d1", "a0", "e0", "g-1", "b-2"]


def test_out_of_range_priority_is_clamped(loop: EventLoop) -> None:
    order: list[str] = []
    loop.call_soon(order.append, "zero")
    loop.call_soon(order.append, "max", priority=EventLoop.MAXPRI)
    loop.call_soon(order.append, "above", priority=EventLoop.MAXPRI + 7)
    loop.call_soon(order.append, "below", priority=EventLoop.MINPRI - 7)
    loop.call_soon(order.append, "min", priority=EventLoop.MINPRI)
    loop.run(once=True)
    assert order == ["max", "above", "zero", "below", "min"]


def test_cancelled_handle_never_runs(loop: EventLoop) -> None:
    ran: list[int] = []
    loop.call_soon(ran.append, 1)
    h = loop.call_soon(ran.append, 2)
    loop.call_soon(ran.append, 3)
    h.cancel()
    h.cancel()
    loop.run()
    assert ran == [1, 3]
    assert loop.stats.callbacks_run == 2


# ---------------------------------------------------------------------------- timers
def test_timers_fire_in_deadline_order(loop: EventLoop) -> None:
    fired: list[str] = []
    loop.call_later(0.03, fired.append, "30ms")
    loop.call_later(0.01, fired.append, "10ms")
    loop.call_later(0.0, fired.append, "0ms")
    loop.call_later(0.02, fired.append, "20ms")
    dog = watchdog(loop)
    loop.run()
    assert not dog
    assert fired == ["0ms", "10ms", "20ms", "30ms"]
    assert loop.stats.timers_fired == 4


def test_equal_deadlines_fire_fifo(loop: EventLoop) -> None:
    fired: list[int] = []
    when = loop.now() + 0.01
    for i in range(10):
        loop.call_at(when, fired.append, i)
    loop.run()
    assert fired == list(range(10))


def test_timer_armed_by_a_timer_callback_waits_for_the_next_tick(loop: EventLoop) -> None:
    # A late repeating timer re-arms at "now"; run in the same tick it would fire again and
    # again (libev runs a timer at most once per iteration, so break_ after a fire holds).
    ticks: list[int] = []

    def cb() -> None:
        ticks.append(loop.stats.ticks)
        if len(ticks) < 3:
            loop.call_at(loop.now() - 1.0, cb)  # already due

    loop.call_later(0, cb)
    loop.run()
    assert len(ticks) == 3 and len(set(ticks)) == 3, ticks


def test_cancelled_timer_never_fires_and_cancel_is_idempotent(loop: EventLoop) -> None:
    fired: list[str] = []
    keep = loop.call_later(0.02, fired.append, "keep")
    drop = loop.call_later(0.01, fired.append, "drop")
    assert loop.activecnt == 2
    assert drop.active
    drop.cancel()
    drop.cancel()
    assert not drop.active and drop.cancelled
    assert loop.activecnt == 1, "a second cancel must not release the ref twice"
    loop.run()
    assert fired == ["keep"]
    assert not keep.active
    keep.cancel()  # cancelling a fired timer is a no-op
    assert loop.activecnt == 0
    assert loop.stats.timers_fired == 1


def test_cancel_many_compacts_heap_and_live_timers_still_fire(loop: EventLoop) -> None:
    fired: list[int] = []
    base = loop.now()
    handles = [loop.call_at(base + 0.001 * (i % 10), fired.append, i) for i in range(200)]
    live = [i for i in range(200) if i % 4 == 0]
    for i, h in enumerate(handles):
        if i % 4:
            h.cancel()
    # White-box: lazy deletion must have compacted the heap (dead entries dominated).
    assert len(loop._timers) < 200
    assert loop.pending_counts()["timers"] == len(live)
    assert loop.activecnt == len(live)
    loop.run()
    assert fired == sorted(live, key=lambda i: (i % 10, i))
    assert loop.pending_counts()["timers"] == 0


def test_cancel_inside_timer_callback_keeps_heap_accounting(loop: EventLoop) -> None:
    """A timer callback whose cancels compact the heap while other due timers remain."""
    fired: list[str] = []
    victims = [loop.call_later(100, fired.append, "victim") for _ in range(200)]

    def killer() -> None:
        fired.append("killer")
        for v in victims:
            v.cancel()

    now = loop.now()
    loop.call_at(now, killer)
    loop.call_at(now, fired.append, "after-1")
    loop.call_at(now, fired.append, "after-2")
    loop.run()  # returns: every referenced timer is either fired or cancelled
    assert fired == ["killer", "after-1", "after-2"]
    dead_in_heap = sum(1 for t in loop._timers if not t._armed)
    assert loop._timers_dead == dead_in_heap
    assert loop.pending_counts()["timers"] == 0


def test_ref_false_timer_does_not_keep_run_alive(loop: EventLoop) -> None:
    fired: list[int] = []
    loop.call_later(WAIT, fired.append, 1, ref=False)
    loop.run()
    assert fired == []
    assert loop.stats.ticks == 0


def test_ref_timer_keeps_run_alive_until_it_fires(loop: EventLoop, pairs) -> None:
    a, _b = pairs()
    w = IOWatcher(loop, a.fileno(), READ, ref=False)
    w.start(lambda ev: None)
    fired: list[int] = []
    loop.call_later(0.02, fired.append, 1)
    dog = watchdog(loop)
    loop.run()
    assert fired == [1]
    assert not dog
    assert w.active


# ---------------------------------------------------------------------------- refs
def test_run_returns_when_only_unref_watchers_remain(loop: EventLoop, pairs) -> None:
    a, b = pairs()
    w = IOWatcher(loop, a.fileno(), READ, ref=False)
    w.start(lambda ev: None)
    assert loop.activecnt == 0 and not loop.alive()
    dog = watchdog(loop)
    loop.run()
    assert not dog


def test_loop_ref_keeps_run_alive_until_unref(loop: EventLoop) -> None:
    loop.ref()
    loop.call_later(0.02, loop.unref, ref=False)
    dog = watchdog(loop)
    loop.run()
    assert not dog
    assert loop.activecnt == 0


def test_ref_watcher_keeps_run_alive_until_stopped(loop: EventLoop, pairs) -> None:
    a, b = pairs()
    w = IOWatcher(loop, a.fileno(), READ)
    got: list[bytes] = []

    def on_read(_ev: int) -> None:
        got.append(a.recv(10))
        w.stop()

    w.start(on_read)
    assert loop.activecnt == 1
    loop.call_later(0.02, b.send, b"hi", ref=False)
    dog = watchdog(loop)
    loop.run()
    assert not dog
    assert got == [b"hi"]
    assert loop.activecnt == 0


# ---------------------------------------------------------------------------- threads
def test_post_wakes_loop_blocked_without_timers(threaded_loop: EventLoop) -> None:
    lp = threaded_loop
    time.sleep(0.05)
    assert lp.stats.ticks == 0, "a loop with nothing to do must block in poll, not tick"
    done = threading.Event()
    ran_on: list[int] = []

    def job() -> None:
        ran_on.append(threading.get_ident())
        done.set()

    t0 = time.monotonic()
    lp.post(job)
    assert done.wait(WAIT), "a post did not wake a loop blocked in poll with no timers"
    assert time.monotonic() - t0 < WAIT
    assert ran_on == [lp._thread.ident]
    assert lp.stats.wakeups >= 1


def test_one_wakeup_write_for_burst_of_posts(threaded_loop: EventLoop) -> None:
    lp = threaded_loop
    writes: list[int] = []
    real_wake = lp._wake

    def counting_wake() -> None:
        writes.append(1)
        real_wake()

    lp._wake = counting_wake  # instance attribute shadows the method post() calls
    _parked, release = park(lp)
    writes.clear()  # park() itself posted once
    try:
        wakeups_before = lp.stats.wakeups
        ran: list[tuple[int, int]] = []
        all_ran = threading.Event()

        def item(i: int) -> None:
            ran.append((i, lp.stats.ticks))
            if i == 99:
                all_ran.set()

        for i in range(100):
            lp.post(item, i)
        assert len(writes) == 1, f"{len(writes)} wake-up writes for one empty→non-empty burst"
    finally:
        release.set()
    assert all_ran.wait(WAIT)
    assert [i for i, _ in ran] == list(range(100)), "posted work must run in FIFO order"
    assert len({tick for _, tick in ran}) == 1, "the burst should drain in a single tick"
    assert lp.stats.wakeups - wakeups_before == 1


def _loop_only_ops(lp: EventLoop, fd: int) -> dict[str, Callable[[], object]]:
    timer = lp.call_later(10, lambda: None)
    return {
        "call_soon": lambda: lp.call_soon(lambda: None),
        "call_later": lambda: lp.call_later(1, lambda: None),
        "call_at": lambda: lp.call_at(lp.now() + 1, lambda: None),
        "IOWatcher.start": lambda: IOWatcher(lp, fd, READ).start(lambda ev: None),
        "closing_fd": lambda: lp.closing_fd(fd),
        "Hook.start": lambda: Hook(lp, "prepare").start(lambda: None),
        "TimerHandle.cancel": timer.cancel,
        "close": lp.close,
    }


@pytest.mark.parametrize("op", ["call_soon", "call_later", "call_at", "IOWatcher.start",
                                "closing_fd", "Hook.start", "TimerHandle.cancel", "close"])
def test_loop_only_call_from_other_thread_raises(loop: EventLoop, pairs, op: str) -> None:
    a, _b = pairs()
    fn = _loop_only_ops(loop, a.fileno())[op]
    caught: list[BaseException] = []
    worker_ident: list[int] = []

    def other() -> None:
        worker_ident.append(threading.get_ident())
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - inspected below
            caught.append(exc)

    t = threading.Thread(target=other, name=f"intruder-{op}")
    t.start()
    t.join(WAIT)
    assert not t.is_alive()
    assert len(caught) == 1 and isinstance(caught[0], LoopThreadError), caught
    msg = str(caught[0])
    assert "loop-only" in msg
    assert {"call_later": "call_at"}.get(op, op) in msg  # call_later is checked by call_at
    assert str(worker_ident[0]) in msg and str(threading.get_ident()) in msg, msg
    assert not loop.closed
    assert loop.activecnt == 1  # only the timer _loop_only_ops armed; nothing half-done


def test_post_and_stop_from_other_thread(loop: EventLoop) -> None:
    ran: list[str] = []

    def other() -> None:
        loop.post(ran.append, "posted")
        loop.stop()

    t = threading.Thread(target=other)
    t.start()
    t.join(WAIT)
    dog = watchdog(loop)
    loop.run(forever=True)  # only the posted stop can end this
    assert ran == ["posted"]
    assert not dog


def test_call_sync_returns_value_and_reraises(threaded_loop: EventLoop) -> None:
    lp = threaded_loop
    assert lp.call_sync(lambda x, y: x * y, 6, 7, timeout=WAIT) == 42
    assert lp.call_sync(threading.get_ident, timeout=WAIT) == lp._thread.ident

    boom = ValueError("boom")

    def fail() -> None:
        raise boom

    with pytest.raises(ValueError) as info:
        lp.call_sync(fail, timeout=WAIT)
    assert info.value is boom
    # The loop is unharmed by the exception it handed back.
    assert lp.call_sync(lambda: "still alive", timeout=WAIT) == "still alive"


def test_call_sync_on_loop_thread_calls_directly(loop: EventLoop) -> None:
    assert loop.call_sync(lambda: threading.get_ident()) == threading.get_ident()
    assert loop.stats.ticks == 0


def test_call_sync_times_out_when_loop_is_stuck(threaded_loop: EventLoop) -> None:
    lp = threaded_loop
    _parked, release = park(lp)
    try:
        with pytest.raises(TimeoutError, match="within 0.1 s"):
            lp.call_sync(lambda: None, timeout=0.1)
    finally:
        release.set()


# ---------------------------------------------------------------------------- statistics
def test_statistics_move(loop: EventLoop, pairs) -> None:
    a, b = pairs()
    assert loop.stats.ticks == loop.stats.callbacks_run == loop.stats.timers_fired == 0
    w = IOWatcher(loop, a.fileno(), READ)

    def on_read(_ev: int) -> None:
        a.recv(10)
        w.stop()

    w.start(on_read)
    b.send(b"x")
    for _ in range(3):
        loop.call_soon(lambda: None)
    loop.call_later(0, lambda: None)
    loop.run()
    s = loop.stats
    assert s.ticks >= 1
    assert s.callbacks_run == 3
    assert s.timers_fired == 1
    assert s.io_events >= 1
    assert 0 <= s.tick_latency_last <= s.tick_latency_max <= s.tick_latency_total
    snap = s.snapshot()
    for key in ("ticks", "callbacks_run", "timers_fired", "io_events", "wakeups"):
        assert key in snap
    ticks = s.ticks
    loop.run(nowait=True)
    assert loop.stats.ticks == ticks + 1


# ---------------------------------------------------------------------------- IO watchers
def test_level_triggered_read_keeps_firing_until_drained(any_loop: EventLoop, pairs) -> None:
    lp = any_loop
    a, b = pairs()
    events: list[int] = []
    w = IOWatcher(lp, a.fileno(), READ)
    w.start(events.append)
    b.send(b"x" * 10)
    for _ in range(3):
        lp.run(once=True)  # data is pending, so these never block
    assert len(events) == 3, "level-triggered readiness must repeat while data is unread"
    assert all(ev & READ for ev in events)
    assert a.recv(100) == b"x" * 10
    lp.run(nowait=True)
    assert len(events) == 3, "a drained fd must stop firing"
    b.send(b"y")
    lp.run(once=True)
    assert len(events) == 4
    w.stop()


def test_two_watchers_on_one_fd_both_fire(any_loop: EventLoop, pairs) -> None:
    lp = any_loop
    a, b = pairs()
    seen: list[str] = []
    w1 = IOWatcher(lp, a.fileno(), READ)
    w2 = IOWatcher(lp, a.fileno(), READ)
    w1.start(lambda ev: seen.append("w1"))
    w2.start(lambda ev: seen.append("w2"))
    assert lp.watchers_for(a.fileno()) == [w1, w2]
    b.send(b"x")
    lp.run(once=True)
    assert seen == ["w1", "w2"]
    w1.stop()
    lp.run(once=True)
    assert seen == ["w1", "w2", "w2"]
    w2.stop()
    assert lp.watchers_for(a.fileno()) == []


def test_read_and_write_watchers_on_one_fd_get_own_events(any_loop: EventLoop, pairs) -> None:
    lp = any_loop
    a, b = pairs()
    seen: list[tuple[str, int]] = []
    r = IOWatcher(lp, a.fileno(), READ)
    wr = IOWatcher(lp, a.fileno(), WRITE)
    r.start(lambda ev: seen.append(("r", ev)))
    wr.start(lambda ev: seen.append(("w", ev)))
    lp.run(once=True)
    assert seen == [("w", WRITE)], "no data pending: only the write watcher is ready"
    b.send(b"x")
    seen.clear()
    lp.run(once=True)
    assert sorted(name for name, _ in seen) == ["r", "w"]
    assert dict(seen) == {"r": READ, "w": WRITE}
    wr.stop()
    seen.clear()
    lp.run(once=True)
    assert seen == [("r", READ)]
    r.stop()


def test_watcher_stopped_by_earlier_callback_in_batch_is_skipped(any_loop: EventLoop,
                                                                 pairs) -> None:
    lp = any_loop
    a, b = pairs()
    c, d = pairs()
    seen: list[str] = []
    w2 = IOWatcher(lp, a.fileno(), READ)
    w3 = IOWatcher(lp, c.fileno(), READ)  # another fd, same poll batch

    def first(_ev: int) -> None:
        seen.append("w1")
        w2.stop()
        w3.stop()

    w1 = IOWatcher(lp, a.fileno(), READ, priority=1)
    w1.start(first)
    w2.start(lambda ev: seen.append("w2"))
    w3.start(lambda ev: seen.append("w3"))
    b.send(b"x")
    d.send(b"x")
    lp.run(once=True)
    assert seen == ["w1"]
    w1.stop()


def test_io_priority_orders_callbacks_of_one_batch(any_loop: EventLoop, pairs) -> None:
    lp = any_loop
    a, b = pairs()
    c, d = pairs()
    seen: list[str] = []
    IOWatcher(lp, a.fileno(), READ, priority=-1).start(lambda ev: seen.append("low"))
    IOWatcher(lp, c.fileno(), READ, priority=2).start(lambda ev: seen.append("high"))
    IOWatcher(lp, c.fileno(), READ).start(lambda ev: seen.append("mid"))
    b.send(b"x")
    d.send(b"x")
    lp.run(once=True)
    assert seen == ["high", "mid", "low"]
    for fd in (a.fileno(), c.fileno()):
        for w in lp.watchers_for(fd):
            w.stop()


def test_set_events_while_active(any_loop: EventLoop, pairs) -> None:
    lp = any_loop
    a, b = pairs()
    seen: list[int] = []
    w = IOWatcher(lp, a.fileno(), READ)
    w.start(seen.append)
    lp.run(nowait=True)
    assert seen == []
    w.set_events(WRITE)
    assert w.active and lp.activecnt == 1
    lp.run(once=True)
    assert seen == [WRITE]
    w.stop()


def test_peer_close_is_readable(any_loop: EventLoop, pairs) -> None:
    lp = any_loop
    a, b = pairs()
    seen: list[int] = []
    w = IOWatcher(lp, a.fileno(), READ)
    w.start(seen.append)
    b.close()
    lp.run(once=True)
    assert seen and seen[0] & READ
    assert a.recv(10) == b""
    w.stop()


@pytest.mark.parametrize("order", ["start-new-first", "stop-old-first"])
def test_closing_fd_then_fd_reuse_rearms(any_loop: EventLoop, pairs, order: str) -> None:
    lp = any_loop
    a, _b = pairs()
    fd = a.fileno()
    old_seen: list[int] = []
    old = IOWatcher(lp, fd, READ)
    old.start(old_seen.append)
    c, d = pairs()  # made while fd is taken, so neither of them gets its number
    assert lp.closing_fd(fd) is True
    a.close()
    # Reuse the very fd number for a new, unrelated socket.
    reused = socket.socket(fileno=os.dup2(c.fileno(), fd))
    c.close()
    try:
        reused.setblocking(False)
        d.send(b"new")
        new_seen: list[int] = []
        new = IOWatcher(lp, fd, READ)
        if order == "stop-old-first":
            old.stop()
            new.start(new_seen.append)
        else:
            new.start(new_seen.append)
        lp.run(once=True)
        assert new_seen and new_seen[0] & READ, "a watcher on a reused fd number must fire"
        if order == "start-new-first":
            # libev semantics: watchers are by fd number, so the still-active old one fires too.
            assert old_seen
            old.stop()
            new_seen.clear()
            lp.run(once=True)
            assert new_seen, "stopping the old watcher must keep the new one armed"
        assert reused.recv(10) == b"new"
        new.stop()
        assert lp.watchers_for(fd) == []
    finally:
        reused.close()


def test_stop_after_closing_fd_and_close_does_not_raise(any_loop: EventLoop, pairs) -> None:
    lp = any_loop
    a, _b = pairs()
    fd = a.fileno()
    r = IOWatcher(lp, fd, READ)
    w = IOWatcher(lp, fd, WRITE)
    r.start(lambda ev: None)
    w.start(lambda ev: None)
    lp.closing_fd(fd)
    a.close()
    r.stop()  # the remaining watcher changes the mask of an fd that is already closed
    w.stop()
    assert lp.watchers_for(fd) == [] and lp.activecnt == 0


def test_closing_fd_without_watchers(loop: EventLoop, pairs) -> None:
    a, _b = pairs()
    assert loop.closing_fd(a.fileno()) is False


def test_watcher_rejects_bad_arguments(loop: EventLoop) -> None:
    with pytest.raises(ValueError, match="-1"):
        IOWatcher(loop, -1, READ)
    with pytest.raises(ValueError, match="8"):
        IOWatcher(loop, 0, 8)
    with pytest.raises(ValueError, match="'bogus'"):
        Hook(loop, "bogus")
    with pytest.raises(ValueError, match="'kqueue9'"):
        EventLoop(backend="kqueue9")


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def test_a_loop_freed_unclosed_releases_its_fds_and_a_failed_one_is_quiet(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """gevent frees a finished thread-pool worker's hub without closing its loop; a loop
    whose __init__ raised (a bad backend) has nothing to release and must not complain."""
    unraisable: list[object] = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    def open_fds() -> set[int]:  # without listdir's own, closed by the time we look
        return {fd for fd in map(int, os.listdir("/proc/self/fd")) if _is_open(fd)}

    before = open_fds()
    lp = EventLoop()
    fds = open_fds() - before
    assert lp.fileno() in fds and len(fds) >= 2  # the epoll fd and the wake-up fd
    del lp
    gc.collect()
    assert not any(_is_open(fd) for fd in fds)
    with pytest.raises(ValueError, match="'kqueue9'"):
        EventLoop(backend="kqueue9")
    gc.collect()
    assert unraisable == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_echo_smoke(backend: str, pairs) -> None:
    lp = EventLoop(backend=backend)
    try:
        server, client = pairs()
        rounds = 50
        got: list[bytes] = []
        sw = IOWatcher(lp, server.fileno(), READ)
        cw = IOWatcher(lp, client.fileno(), READ)

        def echo(_ev: int) -> None:
            data = server.recv(4096)
            if data:
                server.send(data)

        def on_reply(_ev: int) -> None:
            got.append(client.recv(4096))
            if len(got) < rounds:
                client.send(b"msg%d" % len(got))
            else:
                sw.stop()
                cw.stop()

        sw.start(echo)
        cw.start(on_reply)
        client.send(b"msg0")
        dog = watchdog(lp)
        lp.run()
        assert not dog
        assert got == [b"msg%d" % i for i in range(rounds)]
        assert lp.stats.io_events >= 2 * rounds
    finally:
        lp.close()


# ---------------------------------------------------------------------------- errors
def test_callback_exception_is_reported_and_loop_continues(loop: EventLoop, capsys) -> None:
    ran: list[str] = []

    def bad() -> None:
        raise ValueError("boom-in-callback")

    loop.call_soon(bad)
    loop.call_soon(ran.append, "after")
    loop.call_later(0, bad)
    loop.call_later(0, ran.append, "timer-after")
    loop.run()
    assert ran == ["timer-after", "after"]
    err = capsys.readouterr().err
    assert err.count("error in event-loop callback") == 2
    assert "ValueError: boom-in-callback" in err


def test_error_handler_receives_errors(loop: EventLoop) -> None:
    got: list[tuple[object, type, BaseException]] = []

    class Handler:
        def handle_error(self, context, typ, value, tb) -> None:
            got.append((context, typ, value))

    loop.error_handler = Handler()

    def bad() -> None:
        raise KeyError("k")

    def interrupt() -> None:
        raise KeyboardInterrupt

    loop.call_soon(bad)
    loop.call_soon(interrupt)
    loop.run()  # the handler swallowed both, so nothing escapes
    assert [(c, t) for c, t, _ in got] == [(bad, KeyError), (interrupt, KeyboardInterrupt)]


def test_keyboard_interrupt_propagates_and_keeps_queued_work(loop: EventLoop) -> None:
    ran: list[str] = []

    def interrupt() -> None:
        ran.append("interrupt")
        raise KeyboardInterrupt

    loop.call_soon(ran.append, "before")
    loop.call_soon(interrupt)
    loop.call_soon(ran.append, "after")
    with pytest.raises(KeyboardInterrupt):
        loop.run()
    assert ran == ["before", "interrupt"]
    assert not loop.running
    loop.run()  # the rest of the interrupted snapshot is not lost
    assert ran == ["before", "interrupt", "after"]


def test_keyboard_interrupt_from_timer_propagates(loop: EventLoop) -> None:
    def interrupt() -> None:
        raise KeyboardInterrupt

    loop.call_later(0, interrupt)
    fired: list[int] = []
    loop.call_later(0.01, fired.append, 1)
    with pytest.raises(KeyboardInterrupt):
        loop.run()
    loop.run()
    assert fired == [1]


# ---------------------------------------------------------------------------- hooks, time
def test_prepare_and_check_hooks_run_around_poll(loop: EventLoop) -> None:
    order: list[str] = []
    prep = Hook(loop, "prepare", ref=False)
    chk = Hook(loop, "check", ref=False)
    prep.start(lambda: order.append("prepare"))
    chk.start(lambda: order.append("check"))
    loop.call_soon(order.append, "callback")
    loop.run(nowait=True)
    assert order == ["prepare", "check", "callback"]
    prep.stop()
    chk.stop()


def test_idle_hook_runs_only_in_idle_ticks_and_keeps_poll_nonblocking(loop: EventLoop) -> None:
    idle_ticks: list[int] = []
    idle = Hook(loop, "idle")

    def on_idle() -> None:
        idle_ticks.append(loop.stats.ticks)
        if len(idle_ticks) == 3:
            idle.stop()

    idle.start(on_idle)
    loop.call_soon(lambda: None)  # tick 1 does work: no idle call there
    dog = watchdog(loop)
    loop.run()  # an active idle hook makes every poll non-blocking; it stops itself
    assert not dog
    assert idle_ticks == [2, 3, 4]


def test_now_is_cached_within_a_tick(loop: EventLoop) -> None:
    seen: list[float] = []

    def cb() -> None:
        first = loop.now()
        time.sleep(0.01)
        seen.extend([first, loop.now()])

    loop.call_soon(cb)
    loop.run()
    assert seen[0] == seen[1]
    before = loop.now()
    assert loop.update_now() >= before


# ---------------------------------------------------------------------------- lifecycle
@pytest.mark.parametrize("backend", BACKENDS)
def test_close_frees_the_loops_fds(backend: str, pairs) -> None:
    before = fd_table()
    lp = EventLoop(backend=backend)
    opened = {fd: t for fd, t in fd_table().items() if before.get(fd) != t}
    assert any("eventfd" in t or "pipe" in t for t in opened.values()), opened
    if backend == "epoll":
        assert any("eventpoll" in t for t in opened.values()), opened
    a, b = pairs()
    IOWatcher(lp, a.fileno(), READ).start(lambda ev: None)
    lp.call_later(10, lambda: None)
    lp.close()
    lp.close()  # idempotent
    after = fd_table()
    left = {fd: t for fd, t in after.items() if before.get(fd) != t}
    assert left.keys() == {a.fileno(), b.fileno()}, left  # only the test's own sockets
    assert lp.closed and lp.activecnt == 0


def test_closed_loop_rejects_work(loop: EventLoop) -> None:
    loop.close()
    with pytest.raises(RuntimeError, match="closed"):
        loop.post(lambda: None)
    with pytest.raises(RuntimeError, match="closed"):
        loop.run()


def test_run_cannot_be_reentered_or_closed_while_running(loop: EventLoop) -> None:
    errors: list[str] = []

    def cb() -> None:
        for op in (loop.run, loop.close):
            try:
                op()
            except RuntimeError as exc:
                errors.append(str(exc))

    loop.call_soon(cb)
    loop.run()
    assert len(errors) == 2
    assert "re-entered" in errors[0] and "running" in errors[1]


def test_start_thread_and_stop_thread() -> None:
    lp = EventLoop()
    t = lp.start_thread(name="lifecycle-loop")
    try:
        assert t.name == "lifecycle-loop" and t.is_alive()
        with pytest.raises(RuntimeError, match="already has a thread"):
            lp.start_thread()
        assert lp.call_sync(lp.is_loop_thread, timeout=WAIT) is True
        assert not lp.is_loop_thread()
    finally:
        lp.stop_thread(timeout=WAIT)
    assert not t.is_alive()
    assert lp.closed
    lp.stop_thread()  # no thread any more: a no-op


def test_error_bit_reaches_watchers_on_hangup(any_loop: EventLoop, pairs) -> None:
    """A write watcher on a socket whose peer vanished wakes up (with ERROR or WRITE)."""
    lp = any_loop
    a, b = pairs()
    b.close()
    seen: list[int] = []
    w = IOWatcher(lp, a.fileno(), WRITE)
    w.start(seen.append)
    lp.run(once=True)
    assert seen and seen[0] & (WRITE | ERROR)
    w.stop()


# ---------------------------------------------------------------- lazy unregister fast paths
@pytest.mark.skipif("epoll" not in BACKENDS, reason="counts epoll registrations")
def test_parked_fd_restart_by_the_same_watcher_costs_no_syscall():
    """A watcher stopping and restarting on its fd (gevent's wait pattern) keeps the
    kernel registration; a different watcher object, or a changed mask, re-sends it."""
    loop = EventLoop(backend="epoll", lazy_unregister=True)
    base = loop.ctl_calls  # the loop's own wake-up fd
    a, b = socket.socketpair()
    try:
        fired: list[int] = []
        w = IOWatcher(loop, a.fileno(), WRITE)
        w.start(fired.append)
        assert loop.ctl_calls - base == 1  # EPOLL_CTL_ADD
        loop.run(once=True)
        assert fired and fired[-1] & WRITE
        for _ in range(3):
            w.stop()
            w.start(fired.append)
            loop.run(once=True)
        assert loop.ctl_calls - base == 1  # parked and restarted: nothing sent to the kernel
        assert loop.pending_counts()["fds"] == 1
        w.stop()
        assert loop.pending_counts()["fds"] == 0  # parked fds are not live handles
        other = IOWatcher(loop, a.fileno(), WRITE)
        other.start(fired.append, rearm=True)
        assert loop.ctl_calls - base == 2  # a new watcher re-arms (fd reuse safety)
        other.stop()
        w.start(fired.append)
        assert loop.ctl_calls - base == 3  # parked by `other`, not `w`
        w.stop()
        w.set_events(READ)
        w.start(fired.append)
        assert loop.ctl_calls - base == 4  # another mask: re-sent
        n = len(fired)
        loop.run(once=True, nowait=True)
        assert len(fired) == n  # READ on a socket with nothing to read: no callback
        w.stop()
    finally:
        loop.close()
        a.close()
        b.close()


def test_os_primitives_when_imported_after_gevent_patched_thread():
    """The loop's lock and owner thread are the OS's even when gevent.monkey replaced
    ``_thread``'s functions first (io/ captures fresh originals, naming no gevent)."""
    import json
    import subprocess
    import sys

    scenario = os.path.join(os.path.dirname(__file__), "scenarios",
                            "os_primitives_after_patch.py")
    proc = subprocess.run([sys.executable, scenario], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report == {"patched_lock_is_green": True, "os_lock_type": "lock",
                      "os_lock_module": "_thread",
                      "ident_is_builtin": "builtin_function_or_method",
                      "pool_thread_start_is_builtin": "builtin_function_or_method",
                      "owner_is_os_thread": True}
