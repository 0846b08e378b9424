"""Channel pipeline scenarios (design brief §9.2–9.3) on a loop thread."""

from __future__ import annotations

import threading

import pytest

from reseau_patch.io.channel import (
    Channel,
    ChannelHandler,
    ChannelSlot,
    ChannelState,
    Direction,
    TaskStatus,
)
from reseau_patch.io.event_loop import EventLoop
from reseau_patch.io.message import MAX_FRAGMENT


class Recorder(ChannelHandler):
    """Passes everything through and records the shutdown calls it sees."""

    def __init__(self, name: str, log: list) -> None:
        self.name = name
        self.log = log

    def shutdown(self, slot, direction, error, abort):
        self.log.append((self.name, direction.value))
        slot.on_shutdown_complete(direction, error, abort)


def test_slot_insert_remove_replace(lt):
    def build():
        ch = Channel(lt.loop)
        s = [ch.new_slot() for _ in range(5)]
        s[0].insert_right(s[1])
        s[1].insert_right(s[2])
        s[2].insert_left(s[3])
        s[1].remove()
        chain1 = ch.slots()
        s[3].replace(s[4])
        chain2 = ch.slots()
        return s, chain1, chain2, ch

    s, chain1, chain2, ch = lt.call(build)
    assert chain1 == [s[0], s[3], s[2]]
    assert s[0].left is None and s[2].right is None
    assert chain2 == [s[0], s[4], s[2]]
    assert s[4].left is s[0] and s[4].right is s[2]


def test_destroy_before_setup_waits_for_setup():
    loop = EventLoop()  # not running yet
    seen = []
    ch = Channel(loop, on_setup=lambda c, e: seen.append((c.state, e)))
    ch.destroy()
    assert seen == []
    loop.run(nowait=True)
    assert seen == [(ChannelState.ACTIVE, None)]
    assert ch.state is ChannelState.SHUT_DOWN
    loop.close()


def test_tasks_run_from_loop_and_other_threads(lt, box):
    ch = lt.call(Channel, lt.loop)
    statuses = []
    done = threading.Event()
    lock = threading.Lock()

    def task(status):
        with lock:
            statuses.append(status)
            if len(statuses) == 8:
                done.set()

    ch.schedule_task(task)
    ch.schedule_task(task, delay=0.001)
    lt.call(lambda: (ch.schedule_task(task), ch.schedule_task(task, delay=0.001)))
    threads = [threading.Thread(target=lambda: (ch.schedule_task(task),
                                                ch.schedule_task(task, 0.001)))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert done.wait(5)
    assert statuses == [TaskStatus.RUN_READY] * 8
    lt.call(ch.shutdown)


def test_shutdown_cancels_pending_then_later_tasks_run_cancelled_synchronously(lt, box):
    finished = box()
    ch = lt.call(lambda: Channel(lt.loop, on_shutdown=lambda c, e: finished.set(e)))
    pending = []
    ch.schedule_task(pending.append, delay=3600)  # would never run by itself
    ch.shutdown()
    assert finished.wait() is None
    assert pending == [TaskStatus.CANCELED]
    late = []
    ch.schedule_task(late.append)
    assert late == [TaskStatus.CANCELED]  # synchronously, before schedule_task returned


def test_duplicate_and_concurrent_shutdown_complete_once_with_first_error(lt):
    calls = []
    done = threading.Event()

    def on_shutdown(c, e):
        calls.append(e)
        done.set()

    def build():
        ch = Channel(lt.loop, on_shutdown=on_shutdown)
        ch.add_handler(Recorder("a", []))
        return ch

    ch = lt.call(build)
    errors = [ValueError("first"), KeyError("second")]
    barrier = threading.Barrier(2)

    def race(err):
        barrier.wait(5)
        ch.shutdown(err)

    threads = [threading.Thread(target=race, args=(e,)) for e in errors]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert done.wait(5)
    ch.shutdown(RuntimeError("after"))  # duplicate after completion: harmless
    lt.call(lambda: None)
    lt.call(lambda: None)
    assert len(calls) == 1
    assert calls[0] in errors


def test_shutdown_order_read_left_to_right_then_write_right_to_left(lt, box):
    log: list = []
    finished = box()

    def build():
        ch = Channel(lt.loop, on_shutdown=lambda c, e: finished.set((list(log), e)))
        for name in ("sock", "tls", "app"):
            ch.add_handler(Recorder(name, log))
        ch.shutdown(OSError("boom"))
        return ch

    lt.call(build)
    order, err = finished.wait()
    assert order == [("sock", "read"), ("tls", "read"), ("app", "read"),
                     ("app", "write"), ("tls", "write"), ("sock", "write")]
    assert isinstance(err, OSError) and str(err) == "boom"


def test_on_shutdown_is_never_synchronous(lt):
    def build():
        calls = []
        ch = Channel(lt.loop, on_shutdown=lambda c, e: calls.append(e))
        ch.activate()
        ch.shutdown()
        return ch, list(calls), calls

    ch, during, calls = lt.call(build)
    lt.call(lambda: None)
    lt.call(lambda: None)
    assert during == []
    assert calls == [None]


class Source(ChannelHandler):
    """Leftmost handler that emits ``total`` bytes as the downstream window allows."""

    def __init__(self, total: int) -> None:
        self.remaining = total
        self.scheduled = False

    def pump(self) -> None:
        slot = self.slot
        self.scheduled = False
        while self.remaining:
            n = min(self.remaining, MAX_FRAGMENT, slot.downstream_read_window())
            if n <= 0:
                return
            msg = slot.acquire_message(n)
            msg.len = n
            self.remaining -= n
            slot.send_message(msg, Direction.READ)

    def increment_read_window(self, slot, size):
        if not self.scheduled:
            self.scheduled = True
            slot.channel.loop.call_soon(self.pump)


class Middle(ChannelHandler):
    """Like a TLS handler: a small window of its own, topped up upstream only when the
    application grants it."""

    def initial_window_size(self) -> int:
        return MAX_FRAGMENT

    def increment_read_window(self, slot, size):
        # Keep at most one record's worth granted upstream, as a TLS handler does.
        want = MAX_FRAGMENT - slot.window - slot.pending_increment
        if want > 0:
            slot.increment_read_window(want)


class Sink(ChannelHandler):
    def __init__(self, window: int, done: threading.Event, total: int) -> None:
        self.window = window
        self.got = 0
        self.total = total
        self.done = done

    def initial_window_size(self) -> int:
        return self.window

    def process_read(self, slot, msg):
        self.got += msg.len
        slot.increment_read_window(msg.len)
        msg.release()
        if self.got >= self.total:
            self.done.set()


def test_middle_slot_with_exhausted_window_does_not_stall(lt):
    # The application window stays far above the 64 KiB threshold while the middle
    # slot's 16 KiB window runs out: gating on the caller's own window would stall here.
    total = 1 << 20
    done = threading.Event()
    sink = Sink(8 << 20, done, total)
    src = Source(total)

    def build():
        ch = Channel(lt.loop, back_pressure=True)
        ch.activate()
        ch.add_handler(src)
        ch.add_handler(Middle())
        ch.add_handler(sink)
        return ch

    ch = lt.call(build)
    assert done.wait(10), f"stalled after {sink.got} of {total} bytes"
    assert sink.got == total
    lt.call(ch.shutdown)


def test_window_exceeded_is_a_sender_error(lt):
    def build():
        ch = Channel(lt.loop, back_pressure=True)
        ch.activate()
        first = ch.add_handler(ChannelHandler())
        ch.add_handler(Sink(4, threading.Event(), 1))
        return ch, first

    ch, first = lt.call(build)
    lt.call(lambda: None)  # let the initial window grant land

    def send_too_much():
        msg = first.acquire_message(10)
        msg.len = 10
        try:
            first.send_message(msg, Direction.READ)
        finally:
            msg.release()

    from reseau_patch.io.channel import WindowExceededError
    with pytest.raises(WindowExceededError, match="10 bytes"):
        lt.call(send_too_much)
    lt.call(ch.shutdown)


def test_loop_only_slot_operations_raise_off_thread(lt):
    ch = lt.call(Channel, lt.loop)
    from reseau_patch.io.event_loop import LoopThreadError
    with pytest.raises(LoopThreadError):
        ch.add_handler(ChannelHandler())
    with pytest.raises(LoopThreadError):
        ChannelSlot(ch).set_handler(ChannelHandler())
    lt.call(ch.shutdown)


def test_handler_slot_reads_none_until_installed_without_a_base_dict():
    class NoSuperInit(ChannelHandler):
        def __init__(self) -> None:
            self.seen = 1  # a subclass without __slots__ gets its own dict

    class Slotted(ChannelHandler):
        __slots__ = ("slot", "x")

    bare = ChannelHandler()
    assert isinstance(bare, ChannelHandler)
    for h in (bare, NoSuperInit(), Slotted()):
        assert getattr(h, "slot", None) is None
    assert not hasattr(Slotted(), "__dict__")
    ch = Channel(EventLoop(), back_pressure=False)
    try:
        ch.activate()
        slot = ch.add_handler(bare)
        assert bare.slot is slot
    finally:
        ch.loop.close()
