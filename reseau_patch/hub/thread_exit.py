"""Run a function when the calling OS thread ends: what closes a finished thread's loop.

CPython drops a thread's values of a ``_thread._local`` when that thread's state is
cleared: on the ending thread, holding the GIL, before ``Thread.join()`` returns (the
local keeps a weak reference to a per-thread sentinel, whose death removes that thread's
dict; Modules/_threadmodule.c). So the finalizer of a value stored there is a thread-exit
hook. Daemon threads cut off at interpreter exit never get there, and neither does the
main thread (hooks do nothing once the interpreter is finalizing).

Why: under ``patch_all(thread=False)`` each real thread that waits on a socket gets a hub
and a loop (an epoll fd and an eventfd). Nothing can run on them once the thread is gone,
yet the hub stays referenced (its greenlet is suspended in the dead thread), so a program
that starts a thread per request (``socketserver.ThreadingMixIn``) leaked two fds per
thread, as gevent's libev hub does.

Contract: :func:`at_thread_exit` may be called from any thread, for that thread; the
functions run in registration order, each at most once; an exception one raises is
reported as unraisable (``sys.unraisablehook``) and does not stop the others.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from ..io.event_loop import os_thread

__all__ = ["at_thread_exit"]


class _Call:
    """Calls ``fn`` when dropped: an exception is reported by CPython as unraisable from
    this finalizer, so it never stops the caller."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[], object]) -> None:
        self.fn = fn

    def __del__(self) -> None:
        self.fn()


class _Hooks:
    __slots__ = ("fns",)

    def __init__(self) -> None:
        self.fns: list[Callable[[], object]] = []

    def __del__(self, _finalizing: Callable[[], bool] = sys.is_finalizing) -> None:
        fns, self.fns = self.fns, []
        if _finalizing():
            return
        for fn in fns:
            _Call(fn)  # made and dropped at once: runs fn, reporting what it raises


# The OS module's local (the patched threading.local would be per greenlet).
_per_thread = os_thread._local()


def at_thread_exit(fn: Callable[[], object]) -> None:
    """Call ``fn()`` on this OS thread when it ends (see the module docstring)."""
    try:
        hooks = _per_thread.hooks
    except AttributeError:
        hooks = _per_thread.hooks = _Hooks()
    hooks.fns.append(fn)
