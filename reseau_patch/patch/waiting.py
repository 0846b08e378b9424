"""Waiting for fd readiness on the calling thread's Reseau loop, cancellable by close().

Contract: :class:`FdWaits` belongs to one patched socket. ``wait(fd, events, deadline)``
parks the calling greenlet on *its own thread's* io loop (so a socket handed to another
thread keeps working there: a quiet socket holds no loop state anywhere). ``cancel_all()``
may be called from any thread: each waiter's own loop wakes it with ``OSError(EBADF)``.
"""

from __future__ import annotations

import errno
import threading
import time

from ..io.event_loop import READ, WRITE, EventLoop, IOWatcher
from ..sockets.parking import TIMED_OUT, Parker, current_io_loop

__all__ = ["CLOSED", "FdWaits", "READ", "WRITE", "timed_out"]

CLOSED = object()


def timed_out() -> TimeoutError:
    """What the stdlib raises when a socket timeout expires."""
    return TimeoutError("timed out")


class _Wait:
    __slots__ = ("loop", "parker")

    def __init__(self, loop: EventLoop, parker: Parker) -> None:
        self.loop = loop
        self.parker = parker


class FdWaits:
    """The waits currently parked on one socket's fd, by direction."""

    __slots__ = ("owner", "_waits", "_lock")

    def __init__(self, owner: object) -> None:
        self.owner = owner
        self._waits: dict[int, _Wait] = {}
        self._lock = threading.Lock()

    def wait(self, fd: int, events: int, deadline: float | None) -> None:
        """Park until ``fd`` is ready for ``events``; raise on timeout or close."""
        loop = current_io_loop()
        what = "read from" if events == READ else "write to"
        parker = Parker(self.owner, what)
        w = _Wait(loop, parker)
        with self._lock:
            if events in self._waits:
                from gevent.exceptions import ConcurrentObjectUseError

                raise ConcurrentObjectUseError(
                    f"another greenlet is already waiting to {what} {self.owner!r}")
            self._waits[events] = w
        watcher = IOWatcher(loop, fd, events, ref=False)  # the parked greenlet holds the ref
        try:
            watcher.start(parker.wake)
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            result = parker.park(loop, timeout)
        finally:
            watcher.stop()
            with self._lock:
                if self._waits.get(events) is w:
                    del self._waits[events]
        if result is TIMED_OUT:
            raise timed_out()
        if result is CLOSED:
            raise OSError(errno.EBADF, "File descriptor was closed in another greenlet")

    def cancel_all(self) -> None:
        """Wake every waiter with EBADF (any thread), before the fd is closed."""
        with self._lock:
            waits = list(self._waits.values())
            self._waits.clear()
        for w in waits:
            if w.loop.is_loop_thread():
                w.parker.wake(CLOSED)
            else:
                try:
                    w.loop.post(w.parker.wake, CLOSED)
                except RuntimeError:
                    pass  # that loop is gone, and its waiter with it

    @property
    def busy(self) -> bool:
        return bool(self._waits)

