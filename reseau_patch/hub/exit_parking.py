"""Keep daemon threads' hubs asleep while the interpreter finalizes.

Why: after ``atexit`` CPython marks itself finalizing, and a daemon thread that then tries
to take the GIL back (its hub's ``epoll_wait`` returned) is ended with ``pthread_exit``,
which unwinds the C stack. A hub thread's stack runs through greenlet's stack switches, and
unwinding through those crashes the process (SIGSEGV at exit; greenlet documents the
forced-unwind hazard for threads in greenlets that release the GIL). gevent's libev hub is
C without unwind tables, so the unwinding stops there; ours is Python's ``select.epoll``.

So at exit (non-daemon threads are already joined) every hub loop still running in another
thread is woken with a posted call that parks that thread for good in a lock acquire that
holds no GIL and never returns; the process then ends around it. The exit waits at most
:data:`PARK_WAIT` seconds for them.
"""

from __future__ import annotations

import atexit
import sys
import time
import weakref
from typing import TYPE_CHECKING, Any

from gevent.monkey import get_original

if TYPE_CHECKING:
    from ..io.event_loop import EventLoop

__all__ = ["PARK_WAIT", "track"]

#: Longest wait at exit for other threads' hubs to park.
PARK_WAIT = 1.0

_loops: weakref.WeakSet[EventLoop] = weakref.WeakSet()
_allocate_lock = get_original("_thread", "allocate_lock")
_get_ident = get_original("_thread", "get_ident")
_registered = False


def track(loop: EventLoop) -> None:
    """Park ``loop``'s thread at interpreter exit if it is not the exiting thread."""
    global _registered
    _loops.add(loop)
    if not _registered:
        _registered = True
        atexit.register(_park_all)


def _park_all() -> None:
    me = _get_ident()
    # A thread that ended while its hub was suspended inside loop.run() (a real thread's
    # main greenlet returned) leaves a loop marked running: nobody would ever take the
    # posted call, and the exit would wait PARK_WAIT for nothing.
    alive = sys._current_frames().keys()
    acks = []
    for loop in list(_loops):
        owner = loop.owner_thread
        if loop.closed or not loop.running or owner == me or owner not in alive:
            continue
        ack = _allocate_lock()  # raw locks: threading may be patched into greenlets
        ack.acquire()
        try:
            loop.post(_park_forever, ack)
        except RuntimeError:  # closed meanwhile
            continue
        acks.append(ack)
    deadline = time.monotonic() + PARK_WAIT
    for ack in acks:
        ack.acquire(timeout=max(0.0, deadline - time.monotonic()))


def _park_forever(ack: Any) -> None:
    never = _allocate_lock()
    never.acquire()
    ack.release()
    never.acquire()  # never released: this thread sleeps, without the GIL, until exit
