"""``loop.run_callback``: gevent's FIFO callback queue, drained from the EventLoop run queue.

Why one drain handle instead of one ``call_soon`` per callback: the EventLoop runs a
*snapshot* of its run queue per tick, so a callback queued by a callback would wait for a
whole poll. gevent's hub (``sleep(0)``, ``Greenlet.start``, ``Event.set``) expects
callbacks queued while callbacks run to run in the same pass, bounded by the switch
interval. So the first ``run_callback`` schedules one drain with ``call_soon``; the drain
runs the queue until empty or until ``sys.getswitchinterval()`` has passed (then it
re-schedules itself, which makes the next poll non-blocking).

Why also a prepare hook while callbacks are pending: libev runs gevent's callbacks
*before* it polls, so they precede the check watchers of the next iteration (gevent's
``Event.set`` relies on it). The EventLoop runs its queue after the check hooks, so a
drain queued from the run-queue phase is also started from the prepare phase.

Compiled as ``reseau_patch.hub._callbacks_c`` (typed by ``_callbacks_c.pxd``; see
io/accel.py): ``sleep(0)`` and every greenlet switch run through :meth:`CallbackQueue.add`
and :meth:`CallbackQueue._drain`. Loop thread only, except :meth:`add_threadsafe`.
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Callable
from time import monotonic
from typing import TYPE_CHECKING, Any

from gevent._interfaces import ICallback
from zope.interface import classImplements

from ..io.event_loop import Handle, Hook, LoopThreadError

if TYPE_CHECKING:
    from .loop import ReseauLoop

__all__ = ["CallbackQueue", "callback"]


#: How many callbacks run between two looks at the clock (gevent's libev value).
CHECK_EVERY = 50


class callback:  # noqa: N801 - gevent's name for it (gevent.core.callback)
    """What ``loop.run_callback`` returns: gevent's ICallback, as ``gevent._ffi.callback``.

    ``pending`` until it starts running; truthy while pending or running (gevent decides
    from ``bool()`` whether to schedule another); ``stop()`` before it runs cancels it."""

    __slots__ = ("callback", "args")

    def __init__(self, cb: Callable[..., Any], args: tuple) -> None:
        self.callback = cb
        self.args = args

    def stop(self) -> None:
        self.callback = None
        self.args = None

    def close(self) -> None:
        self.stop()

    def __bool__(self) -> bool:
        return self.args is not None

    @property
    def pending(self) -> bool:
        return self.callback is not None

    def __repr__(self) -> str:
        parts = [f"<{type(self).__name__} at 0x{id(self):x}"]
        if self.callback is not None:
            parts.append(f"pending callback={self.callback!r}")
        if self.args is not None:
            parts.append(f"args={self.args!r}")
        if self.callback is None and self.args is None:
            parts.append("stopped")
        return " ".join(parts) + ">"


# Not a decorator: Cython allows none on an extension type.
classImplements(callback, ICallback)


class CallbackQueue:
    """The pending ``run_callback`` objects of one gevent loop."""

    def __init__(self, loop: ReseauLoop) -> None:
        self._loop = loop
        self._ev = loop._ev
        self._queue: deque[callback] = deque()
        # Bound once: the deque is never replaced (clear() empties it), and a stored
        # method is a call without an attribute lookup on every sleep(0).
        self._append = self._queue.append
        self._scheduled = False
        self._drain_cb = self._drain
        self._handle: Handle | None = None
        # Unreferenced: the queued drain handle is what keeps the loop alive.
        self._prepare = Hook(self._ev, "prepare", ref=False)

    def __len__(self) -> int:
        return len(self._queue)

    def clear(self) -> None:
        self._queue.clear()

    def add(self, func: Callable[..., Any], *args: Any) -> callback:
        """Queue ``func(*args)``; returns gevent's ICallback object (loop thread).

        This bound method *is* ``loop.run_callback`` (one frame on gevent's hottest path).
        """
        cb = callback(func, args)
        self._append(cb)
        if not self._scheduled:
            self._schedule()
        return cb

    def add_threadsafe(self, func: Callable[..., Any], *args: Any) -> callback:
        """Queue from any thread: the append happens on the loop thread via ``post()``."""
        cb = callback(func, args)
        self._ev.post(self._append_posted, cb)
        return cb

    def _append_posted(self, cb: callback) -> None:
        self._queue.append(cb)
        if not self._scheduled:
            self._schedule()

    def _schedule(self) -> None:
        self._scheduled = True
        ev = self._ev
        try:
            self._handle = ev.call_soon(self._drain_cb)
        except LoopThreadError:
            # gevent code sometimes queues onto a hub owned by another thread.
            ev.post(self._drain_cb)
            return
        if not self._prepare.active:
            self._prepare.start(self._drain_cb)

    def _drain(self) -> None:
        handle = self._handle
        if handle is not None:
            # Whichever of the queued handle and the prepare hook runs first drains.
            handle.cancel()
            self._handle = None
        queue = self._queue
        loop = self._loop
        popleft = queue.popleft
        countdown = CHECK_EVERY
        deadline = 0.0
        loop.starting_timer_may_update_loop_time = True
        try:
            while queue:
                countdown -= 1
                if not countdown:
                    countdown = CHECK_EVERY
                    now = monotonic()
                    if not deadline:
                        deadline = now + sys.getswitchinterval()
                    elif now >= deadline:
                        break  # leave the rest for the next tick; IO gets a turn
                cb = popleft()
                func = cb.callback
                if func is None:
                    continue  # stopped before it ran
                args = cb.args
                cb.callback = None  # "pending" is over once it starts
                try:
                    func(*args)
                except BaseException:  # noqa: BLE001 - routed to the hub
                    loop.handle_error(cb, *sys.exc_info())
                cb.args = None  # "running" is over
        finally:
            loop.starting_timer_may_update_loop_time = False
            self._scheduled = False
            if queue:
                self._schedule()
            elif self._prepare.active:
                self._prepare.stop()


# Last statement: the Cython-compiled twin's names replace the ones above, unless pure
# Python is requested or it was not built (see io/accel.py).
from ..io.accel import import_c_accel  # noqa: E402

import_c_accel(globals(), "reseau_patch.hub._callbacks_c")
