"""Blocking on top of the hub: park the current greenlet until a loop callback wakes it.

Contract: :class:`Parker` belongs to one object (a socket, a server) and one direction
(read, write, accept). Exactly one greenlet may be parked on it at a time; a second one
gets gevent's ``ConcurrentObjectUseError`` naming the object. Wake-ups come from loop
callbacks, which run in the hub greenlet of the thread that owns the channel's loop.
"""

from __future__ import annotations

from typing import Any

from gevent import get_hub, getcurrent
from gevent._hub_local import get_hub_if_exists
from gevent.exceptions import ConcurrentObjectUseError
from gevent.hub import Waiter

from ..hub import use_reseau_loop
from ..io.event_loop import EventLoop

__all__ = ["Parker", "current_io_loop", "in_hub", "TIMED_OUT"]

TIMED_OUT = object()


def current_io_loop() -> EventLoop:
    """The io EventLoop under this thread's hub; selects our loop if no hub exists yet.

    Every socket wait calls this: a thread whose hub already runs our loop gets it from
    the hub without touching gevent's config (``use_reseau_loop`` is a config write).
    """
    hub = get_hub_if_exists()
    if hub is not None:
        ev = getattr(hub.loop, "io_loop", None)
        if ev is not None:
            return ev
    use_reseau_loop()
    loop = get_hub().loop
    ev = getattr(loop, "io_loop", None)
    if ev is None:
        raise RuntimeError(f"this thread's gevent hub runs {type(loop).__name__}, not the "
                           "Reseau loop; reseau_patch.sockets needs the Reseau loop")
    return ev


def in_hub() -> bool:
    """Whether the caller is this thread's hub greenlet (where nothing may park)."""
    return getcurrent() is get_hub()


class Parker:
    """One parking spot: ``park(timeout)`` blocks the caller, ``wake(value)`` resumes it."""

    __slots__ = ("owner", "what", "waiter", "_loop")

    def __init__(self, owner: object, what: str) -> None:
        self.owner = owner
        self.what = what
        #: The parked greenlet's Waiter, None when nobody is parked (read it, never set it).
        self.waiter: Waiter | None = None
        self._loop: EventLoop | None = None

    @property
    def waiting(self) -> bool:
        return self.waiter is not None

    def park(self, loop: EventLoop, timeout: float | None) -> Any:
        """Block until woken; returns the wake value, or :data:`TIMED_OUT`."""
        if self.waiter is not None:
            raise ConcurrentObjectUseError(
                f"another greenlet is already waiting to {self.what} on {self.owner!r}")
        hub = get_hub()
        if getcurrent() is hub:
            raise RuntimeError(f"cannot block to {self.what} inside the hub (a loop callback)")
        waiter = self.waiter = Waiter(hub)
        self._loop = loop
        # A timer runs nothing around it: the switch may be direct.
        timer = (loop.call_later(timeout, self.wake_now, TIMED_OUT) if timeout is not None
                 else None)
        loop.ref()  # a parked greenlet keeps the hub's loop running (its watchers may not)
        try:
            return waiter.get()
        finally:
            loop.unref()
            if self.waiter is waiter:  # (a queued wake lets another greenlet park first)
                self.waiter = None
            if timer is not None:
                timer.cancel()

    def wake(self, value: Any = None) -> None:
        """Resume the parked greenlet, if any (loop thread).

        The switch is queued, not done here: the caller is usually a handler in the middle
        of a read or shutdown sequence, and the woken greenlet must not run inside it.
        """
        waiter, self.waiter = self.waiter, None
        if waiter is not None:
            self._loop.call_soon(waiter.switch, value)

    def wake_now(self, value: Any = None) -> bool:
        """Resume the parked greenlet at once (hub only), as gevent's watcher callbacks do;
        False if none was parked.

        Only for callbacks that run nothing else around them: an fd-readiness report or a
        timer, not a handler sequence (use :meth:`wake` there). The woken greenlet runs
        until it parks again, then the loop goes on with this tick.
        """
        waiter, self.waiter = self.waiter, None
        if waiter is None:
            return False
        waiter.switch(value)
        return True
