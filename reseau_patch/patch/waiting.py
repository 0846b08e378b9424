"""Waiting for fd readiness on the calling thread's Reseau loop, cancellable by close().

Contract: :class:`FdWaits` belongs to one patched socket and holds no reference to it (the
socket holds the FdWaits: a back reference would put every socket in a reference cycle, freed
only by the cyclic gc, with its ResourceWarning in some later code).
``wait(fd, events, deadline, owner)`` parks the calling greenlet on *its own thread's* io loop
(so a socket handed to another thread keeps working there: a quiet socket holds no loop state
anywhere). ``cancel_all()`` may be called from any thread: each waiter's own loop wakes it
with ``OSError(EBADF)``.

Hot path (every EAGAIN of every patched socket): the io watcher's and the timer's
callbacks run in the hub greenlet and switch straight to the parked greenlet, as gevent's
own waits do; only ``cancel_all`` queues its wake-up (it may run outside the hub).
"""

from __future__ import annotations

import errno

from gevent import getcurrent
from gevent._hub_local import get_hub_if_exists
from gevent.hub import Waiter

from ..io.event_loop import READ, WRITE, EventLoop, IOWatcher, os_lock
from ..sockets.parking import TIMED_OUT, current_io_loop

__all__ = ["CLOSED", "FdWaits", "READ", "WRITE", "timed_out"]

CLOSED = object()
#: Guards every FdWaits' two wait slots (held for a few attribute operations, never across
#: a switch; an OS lock, as a patched threading.Lock would switch). One for all sockets:
#: a lock per socket cost ~40 bytes each and contention here is nil.
_LOCK = os_lock()


def timed_out() -> TimeoutError:
    """What the stdlib raises when a socket timeout expires."""
    return TimeoutError("timed out")


class FdWaits:
    """The waits currently parked on one socket's fd, by direction."""

    # Per direction (read, write): the current wait, and the last io watcher, reused
    # while the fd and the thread's loop are the same: restarting the watcher that parked
    # the fd costs no epoll_ctl (a new watcher object must re-arm: the number may have
    # been reused). Stopped, it holds no callback; the loop keeps at most a parked kernel
    # registration. Plain slots, no lists or per-socket lock: ~250 bytes per idle socket.
    # A wait holds nothing that refers back to the socket once it ends: the waiter and the
    # timer go, a stopped watcher drops its callback.
    __slots__ = ("_rwait", "_wwait", "_rwatch", "_wwatch")

    def __init__(self) -> None:
        self._rwait: Waiter | None = None  # (its hub's loop wakes it)
        self._wwait: Waiter | None = None
        self._rwatch: IOWatcher | None = None
        self._wwatch: IOWatcher | None = None

    def wait(self, fd: int, events: int, deadline: float | None, owner: object) -> None:
        """Park until ``fd`` is ready for ``events``; raise on timeout or close.

        ``deadline`` is on the ``time.monotonic()`` clock (the loop's clock); ``owner`` (the
        socket) only names the socket in errors."""
        hub = get_hub_if_exists()
        loop = getattr(hub.loop, "io_loop", None) if hub is not None else None
        if loop is None:
            loop = current_io_loop()  # no hub yet, or another loop: select ours or explain
            hub = get_hub_if_exists()
        if getcurrent() is hub:
            what = "read from" if events == READ else "write to"
            raise RuntimeError(f"cannot block to {what} {owner!r} inside the hub "
                               "(a loop callback)")
        waiter = Waiter(hub)
        reading = events == READ  # READ or WRITE, never both
        with _LOCK:
            if (self._rwait if reading else self._wwait) is not None:
                from gevent.exceptions import ConcurrentObjectUseError

                what = "read from" if reading else "write to"
                raise ConcurrentObjectUseError(
                    f"another greenlet is already waiting to {what} {owner!r}")
            if reading:
                self._rwait = waiter
            else:
                self._wwait = waiter
        watcher = self._rwatch if reading else self._wwatch
        if watcher is None or watcher.loop is not loop or watcher.fd != fd or watcher.active:
            watcher = IOWatcher(loop, fd, events, ref=False)  # the parked greenlet holds the ref
            if reading:
                self._rwatch = watcher
            else:
                self._wwatch = watcher
        timer = None
        try:
            watcher.start(waiter.switch)  # in the hub: resumes us with the revents
            if deadline is not None:
                timer = loop.call_at(deadline, waiter.switch, TIMED_OUT)
            loop.ref()  # a parked greenlet keeps its hub's loop running
            try:
                result = waiter.get()
            finally:
                loop.unref()
        finally:
            watcher.stop()
            if timer is not None:
                timer.cancel()
            with _LOCK:
                if reading:
                    if self._rwait is waiter:
                        self._rwait = None
                elif self._wwait is waiter:
                    self._wwait = None
        if result is TIMED_OUT:
            raise timed_out()
        if result is CLOSED:
            raise OSError(errno.EBADF, "File descriptor was closed in another greenlet")

    def cancel_all(self) -> None:
        """Wake every waiter with EBADF (any thread), before the fd is closed."""
        with _LOCK:
            waits = [w for w in (self._rwait, self._wwait) if w is not None]
            self._rwait = self._wwait = None
        for waiter in waits:
            # Queued, not switched: the caller may be a greenlet, and only the hub may
            # switch a Waiter. A waiter that woke meanwhile ignores the late value.
            loop: EventLoop = waiter.hub.loop.io_loop
            if loop.is_loop_thread():
                loop.call_soon(waiter.switch, CLOSED)
            else:
                try:
                    loop.post(waiter.switch, CLOSED)
                except RuntimeError:
                    pass  # that loop is gone, and its waiter with it

    @property
    def busy(self) -> bool:
        return self._rwait is not None or self._wwait is not None

