"""A finished OS thread's hub loop closes with the thread (``hub/thread_exit.py``).

Under ``patch_all(thread=False)`` every real thread that waits on a socket gets its own
hub and loop; before this, each finished thread left its loop's epoll fd and eventfd open.
"""

from __future__ import annotations

import os
import sys
import threading

import gevent

from reseau_patch.hub.thread_exit import at_thread_exit

WAIT_S = 10.0


def _fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def _in_thread(body) -> None:
    t = threading.Thread(target=body)
    t.start()
    t.join(WAIT_S)
    assert not t.is_alive()


def test_hooks_run_in_order_when_the_thread_ends_before_join_returns():
    seen: list[str] = []

    def body():
        at_thread_exit(lambda: seen.append("first"))
        at_thread_exit(lambda: seen.append("second"))
        seen.append("body")

    _in_thread(body)
    assert seen == ["body", "first", "second"]


def test_a_failing_hook_is_reported_and_the_next_still_runs(monkeypatch):
    reported: list[BaseException] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: reported.append(u.exc_value))
    seen: list[str] = []

    def body():
        at_thread_exit(lambda: 1 / 0)
        at_thread_exit(lambda: seen.append("next"))

    _in_thread(body)
    assert seen == ["next"]
    assert [type(e) for e in reported] == [ZeroDivisionError]


def test_a_thread_hub_loop_is_closed_with_its_thread():
    loops = []

    def body():
        hub = gevent.get_hub()
        gevent.sleep(0.001)  # the hub greenlet now sits suspended inside its loop's run()
        loops.append(hub.loop.io_loop)
        assert loops[0].running

    before = _fds()
    _in_thread(body)
    assert loops[0].closed
    assert _fds() <= before


def test_a_loop_destroyed_before_its_thread_ends_is_left_alone():
    loops = []

    def body():
        hub = gevent.get_hub()
        loops.append(hub.loop.io_loop)
        hub.destroy(destroy_loop=True)

    before = _fds()
    _in_thread(body)
    assert loops[0].closed
    assert _fds() <= before
