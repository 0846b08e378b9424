"""gevent's ``loop.io(fd, events)`` watcher on an :class:`~reseau_patch.io.event_loop.IOWatcher`.

Its own module because it is the hottest object of the hub (every blocking socket call
makes, starts, stops and closes one): it is compiled as ``reseau_patch.hub._io_watcher_c``,
typed by ``_io_watcher_c.pxd`` as a final extension type with C calls into the compiled
IOWatcher (see io/accel.py). So it stands alone rather than subclassing ``watchers.Watcher``,
and spells out the same contract (``gevent._interfaces.IWatcher``; see watchers.py):
``callback``/``args`` are None whenever it is not started; ``ref=False`` does not keep
``loop.run()`` alive; ``close()`` stops it and it stays restartable; a callback's exception
goes to ``loop.handle_error(watcher, ...)`` and stops the watcher. Loop thread only.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gevent._ffi.loop import EVENTS
from gevent._interfaces import IWatcher
from zope.interface import classImplements

from ..io.event_loop import IOWatcher

if TYPE_CHECKING:
    from .loop import ReseauLoop

__all__ = ["IoWatcher"]

_READ_WRITE = 3
_get_inheritable = os.get_inheritable  # one fcntl(F_GETFD): cheapest validity check


class IoWatcher:
    """``loop.io(fd, events)``: level-triggered readiness, any number per fd.

    ``start(cb, *args, pass_events=True)`` passes the ready READ/WRITE mask first. A
    callback that raises stops its watcher (otherwise level-triggering would call it again
    immediately; gevent's Cython loop does the same).
    """

    def __init__(self, loop: ReseauLoop, fd: int, events: int, ref: bool = True,
                 priority: int | None = None) -> None:
        if fd < 0:
            raise ValueError(f"fd must be non-negative: {fd!r}")
        if events & ~_READ_WRITE:
            raise ValueError(f"illegal event mask: {events!r}")
        # A closed fd raises OSError(EBADF) here, as with libev: gevent's select.poll
        # turns that into POLLNVAL and its selectors into ValueError.
        _get_inheritable(fd)
        self.loop = loop
        self._ref = ref = bool(ref)
        self._priority = priority = priority or 0
        self._active = False
        self._callback = None
        self._args = None
        self._w = IOWatcher(loop.io_loop, fd, events, priority=priority, ref=ref)
        self._fresh = True  # first start re-sends the kernel mask (fd-reuse safety)

    # -- properties gevent reads and writes
    @property
    def callback(self) -> Callable[..., Any] | None:
        return self._callback

    @callback.setter
    def callback(self, cb: Callable[..., Any] | None) -> None:
        if cb is not None and not callable(cb):
            raise TypeError(f"Expected callable, not {cb!r}")
        self._callback = cb

    @property
    def args(self) -> tuple | None:
        return self._args

    @args.setter
    def args(self, args: tuple | None) -> None:
        if args is not None and not isinstance(args, tuple):
            raise TypeError(f"args must be a tuple or None, got {args!r}")
        self._args = args

    @property
    def active(self) -> bool:
        return self._active

    @property
    def pending(self) -> bool:
        return False

    @property
    def ref(self) -> bool:
        return self._ref

    @ref.setter
    def ref(self, value: bool) -> None:
        value = bool(value)
        if value == self._ref:
            return
        self._ref = value
        if self._active:
            # Keep the loop's count balanced: the IOWatcher's stop undoes per its ref.
            ev = self._w.loop
            ev.ref() if value else ev.unref()
        self._w.ref = value

    @property
    def priority(self) -> int:
        return self._priority

    @priority.setter
    def priority(self, value: int) -> None:
        if self._active:
            raise ValueError("Cannot change priority of an active watcher")
        self._priority = value
        self._w.priority = value or 0

    @property
    def fd(self) -> int:
        return self._w.fd

    @fd.setter
    def fd(self, fd: int) -> None:
        if self._active:
            raise AttributeError("io watcher attribute 'fd' is read-only while watcher is active")
        if fd < 0:
            raise ValueError(f"fd must be non-negative: {fd!r}")
        self._w.fd = fd
        self._fresh = True

    @property
    def events(self) -> int:
        return self._w.events

    @events.setter
    def events(self, events: int) -> None:
        if self._active:
            raise AttributeError(
                "io watcher attribute 'events' is read-only while watcher is active")
        if events & ~_READ_WRITE:
            raise ValueError(f"illegal event mask: {events!r}")
        self._w.events = events

    @property
    def events_str(self) -> str:
        e = self._w.events
        return "|".join(n for b, n in ((1, "READ"), (2, "WRITE")) if e & b)

    # -- lifecycle
    def start(self, callback: Callable[..., Any], *args: Any, pass_events: bool = False) -> None:
        if callback is None or not callable(callback):
            raise TypeError(f"Expected callable, not {callback!r}")
        if pass_events:
            args = (EVENTS, *args)
        self._callback = callback
        self._args = args
        if not self._active:
            # A watcher new to its fd re-sends the kernel mask (libev EV__IOFDSET): the
            # number may have been closed and reused behind the loop's back.
            # A fresh bound method, not one kept on self: the IOWatcher drops it on stop,
            # so no reference cycle outlives the wait and the watcher dies by refcount.
            self._w.start(self._on_ready, self._fresh)
            self._fresh = False
            self._active = True

    def stop(self) -> None:
        if self._active:
            self._active = False
            try:
                self._w.stop()
            except OSError:
                pass  # fd already closed: the kernel forgot it, our tables are updated
        self._callback = None
        self._args = None

    def close(self) -> None:
        """Stop; gevent closes every wait's watcher right after stopping it."""
        self.stop()

    def __enter__(self) -> IoWatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _on_ready(self, revents: int) -> None:
        cb = self._callback
        if cb is None:
            return
        args = self._args
        if args and args[0] is EVENTS:
            args = ((revents & _READ_WRITE) or _READ_WRITE, *args[1:])
        try:
            cb(*args)
        except BaseException:  # noqa: BLE001 - nothing may escape into the loop
            self.stop()
            self.loop.handle_error(self, *sys.exc_info())

    def __repr__(self) -> str:
        state = " active" if self._active else ""
        cb = f" callback={self._callback!r}" if self._callback is not None else ""
        return (f"<{type(self).__name__} at 0x{id(self):x}{state}{cb} fd={self._w.fd} "
                f"events={self.events_str}>")


# Not a class decorator: Cython allows none on an extension type (zope records the
# declaration for a type it cannot set attributes on).
classImplements(IoWatcher, IWatcher)


# Last statement: the Cython-compiled twin's names replace the ones above, unless pure
# Python is requested or it was not built (see io/accel.py).
from ..io.accel import import_c_accel  # noqa: E402

import_c_accel(globals(), "reseau_patch.hub._io_watcher_c")
