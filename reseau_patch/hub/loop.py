"""The gevent loop class running on a :class:`reseau_patch.io.event_loop.EventLoop`.

Select it with ``GEVENT_LOOP=reseau_patch.hub.loop.ReseauLoop`` (or
``gevent.config.loop = ...``, or :func:`reseau_patch.hub.use_reseau_loop`) before gevent
creates its hub.

Mapping onto the EventLoop (there is no second loop here):

======================  ==============================================================
gevent                  EventLoop
======================  ==============================================================
``io``                  :class:`IOWatcher` (many per fd; level-triggered; the loop is
                        built with ``lazy_unregister=True``, see ``EventLoop``)
``timer``               ``call_at`` / :class:`TimerHandle`
``prepare/check/idle``  :class:`Hook` of that kind
``run_callback``        one drain queued with ``call_soon`` + a prepare hook
                        (see ``callbacks.py``)
``*_threadsafe/async_`` ``post()`` (thread-safe queue + wake-up fd)
``signal``/``child``    Python-level handler + ``wake()``; pidfds (``children.py``)
``ref``/``unref``       ``ref()``/``unref()`` and each handle's ``ref``
``run(nowait, once)``   ``run(nowait=, once=)``
======================  ==============================================================

This module becomes ``gevent.core`` (gevent copies its globals, so ``__all__`` is
required) and is imported *during* ``import gevent``: it must not import ``gevent.hub``.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from functools import partial
from typing import Any

from gevent._ffi.loop import EVENTS
from gevent._interfaces import ILoop
from gevent.exceptions import HubDestroyed
from greenlet import getcurrent
from zope.interface import implementer

from ..io.event_loop import MAXPRI, MINPRI, READ, WRITE, EventLoop, Hook
from . import exit_parking, thread_exit
from .callbacks import CallbackQueue, callback
from .children import ChildReaper, ChildWatcher
from .signals import SignalDispatcher, SignalWatcher
from .stat import StatWatcher
from .watchers import (
    AsyncWatcher,
    CheckWatcher,
    ForkWatcher,
    IdleWatcher,
    IoWatcher,
    PrepareWatcher,
    TimerWatcher,
)

__all__ = [
    "EVENTS",
    "GEVENT_CORE_EVENTS",
    "READ",
    "WRITE",
    "ReseauLoop",
    "callback",
    "embeddable_backends",
    "get_header_version",
    "get_version",
    "loop",
    "recommended_backends",
    "supported_backends",
]

GEVENT_CORE_EVENTS = EVENTS


def get_version() -> str:
    """Version string gevent's tests and ``gevent.core`` users print."""
    from .. import __version__

    return f"reseau_patch {__version__}"


get_header_version = get_version


def supported_backends() -> list[str]:
    """Poller backends this loop can use (``GEVENT_BACKEND`` / ``flags``)."""
    return ["epoll", "poll"] if hasattr(__import__("select"), "epoll") else ["poll"]


recommended_backends = supported_backends


def embeddable_backends() -> list[str]:
    return []


def _backend_from_flags(flags: object) -> str | None:
    """Map libev-style ``flags`` (``GEVENT_BACKEND``) onto a poller name; None = best."""
    names = flags if isinstance(flags, (list, tuple)) else str(flags or "").split(",")
    for name in names:
        name = str(name).strip().lower()
        if name in ("epoll", "poll"):
            return name
    return None


def _last_resort_report(context: object, exc: BaseException) -> None:
    """Print an error that even the error handler could not take; never raises."""
    try:
        stream = sys.__stderr__ or sys.stderr
        stream.write(f"reseau_patch.hub: unhandled error in {context!r}:\n")
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=stream)
    except BaseException:  # noqa: BLE001, S110 - the last resort must not raise
        pass


@implementer(ILoop)
class ReseauLoop:
    """gevent's loop contract (``gevent._interfaces.ILoop``) on one Reseau EventLoop."""

    MAXPRI = MAXPRI
    MINPRI = MINPRI
    #: epoll_wait has millisecond granularity.
    approx_timer_resolution = 0.001
    #: True only while run_callback callbacks run (gevent's rule for ``timer.start``).
    starting_timer_may_update_loop_time = False
    #: Set by gevent's Hub to itself; receives ``handle_error(context, type, value, tb)``.
    error_handler: Any = None

    def __init__(self, flags: object = None, default: bool | None = None) -> None:
        backend = _backend_from_flags(flags)
        self._explicit_backend = backend is not None
        # lazy_unregister: gevent stops and restarts a socket's watcher around every
        # blocking call; keeping the kernel registration saves two epoll_ctl per wait.
        self._ev = EventLoop(backend=backend, lazy_unregister=True)
        #: The io EventLoop this gevent loop runs on (channels share it with greenlets); a
        #: plain attribute, read on every blocking call. Read-only by contract.
        self.io_loop: EventLoop = self._ev
        exit_parking.track(self._ev)  # no SIGSEGV when a daemon thread's hub wakes at exit
        # Destroyed when this thread ends, with the hub that runs it (attached in run()).
        thread_exit.watch(self)
        self._hub_attached = False
        # Errors the EventLoop itself catches come back through our handle_error.
        self._ev.error_handler = self
        # Channel sockets under the hub: greenlets parked on them hold the loop alive.
        self._ev.socket_watchers_ref = False
        self._default = True if default is None else bool(default)
        self._destroyed = False
        self._close_after_run = False
        self._break_requested = False
        self._pid = os.getpid()
        self._callbacks = CallbackQueue(self)
        self.run_callback = self._callbacks.add  # type: ignore[method-assign] # hot path
        # Every blocking socket call makes an io watcher: no Python frame in between.
        self.io = partial(IoWatcher, self)  # type: ignore[method-assign]
        self._signals = SignalDispatcher(self)
        self._children = ChildReaper(self)
        self._fork_watchers: set[ForkWatcher] = set()

    # ------------------------------------------------------------------ identity
    @property
    def default(self) -> bool:
        return self._default and not self._destroyed

    @property
    def ptr(self) -> int:
        """Truthy and unique while the loop lives; 0 once destroyed."""
        return 0 if self._destroyed else id(self._ev)

    @property
    def backend(self) -> str:
        """The poller named through ``flags``/``GEVENT_BACKEND``, else ``"default"`` (the
        best one here; like libuv, a backend we do not have is not an error)."""
        return self._ev.backend if self._explicit_backend else "default"

    backend_int = 0
    sigfd = -1
    origflags = ""
    origflags_int = 0

    @property
    def iteration(self) -> int:
        return self._ev.stats.ticks

    @property
    def depth(self) -> int:
        return 1 if self._ev.running else 0

    @property
    def activecnt(self) -> int:
        return self._ev.activecnt

    @property
    def pendingcnt(self) -> int:
        return len(self._callbacks)

    def fileno(self) -> int | None:
        return None if self._destroyed else self._ev.fileno()

    def verify(self) -> None:
        """libev consistency check; nothing to verify here."""

    # ------------------------------------------------------------------ time
    def now(self) -> float:
        return self._ev.now()

    def update_now(self) -> None:
        self._ev.update_now()

    def update(self) -> None:
        """Deprecated alias of :meth:`update_now` (gevent keeps it too)."""
        import warnings

        warnings.warn("'update' is deprecated; use 'update_now'", DeprecationWarning,
                      stacklevel=2)
        self.update_now()

    # ------------------------------------------------------------------ running
    def run(self, nowait: bool = False, once: bool = False) -> None:
        """Run until nothing referenced is left, ``break_()``, or one iteration.

        Nothing escapes: an exception out of the poll (KeyboardInterrupt from a signal
        handler) goes to ``handle_error(None, ...)``, i.e. into gevent's main greenlet.
        """
        if self._destroyed:
            raise ValueError("operation on destroyed loop")
        ev = self._ev
        # Nested: another greenlet runs the loop while the hub greenlet is suspended in
        # one of its callbacks (libev allows it; gevent's tests do it).
        nested = ev.running
        if os.getpid() != self._pid:
            self.reinit()  # forked without gevent.reinit(): don't share the parent's epoll
        if not self._hub_attached:
            hub = getcurrent()
            if getattr(hub, "loop", None) is self:  # run by its hub, not by a test
                self._hub_attached = True
                thread_exit.attach(self, hub)
        self._break_requested = False
        try:
            while True:
                try:
                    ev.run(once=once, nowait=nowait, reentrant=nested)
                    return
                except BaseException:  # noqa: BLE001 - see docstring
                    t, v, tb = sys.exc_info()
                    self.handle_error(None, t, v, tb)
                    del t, v, tb
                    if once or nowait or self._break_requested or self._destroyed:
                        return
        finally:
            if self._close_after_run and not nested:
                self._close_after_run = False
                self._close_ev()

    def break_(self, how: object = None) -> None:
        """Make ``run()`` return after the current iteration."""
        self._break_requested = True
        if not self._ev.closed:
            self._ev.stop()

    def ref(self) -> None:
        self._ev.ref()

    def unref(self) -> None:
        self._ev.unref()

    # ------------------------------------------------------------------ errors
    def handle_error(self, context: object, type: type[BaseException] | None,  # noqa: A002
                     value: BaseException | None, tb: object) -> None:
        """gevent's routing: HubDestroyed breaks the loop; the rest goes to
        ``error_handler.handle_error`` (the Hub). Never raises."""
        if type is not None and issubclass(type, HubDestroyed):
            self._callbacks.clear()
            self.break_()
            return
        try:
            handler = self.error_handler
            if handler is not None:
                getattr(handler, "handle_error", handler)(context, type, value, tb)
            else:
                self._default_handle_error(context, type, value, tb)
        except HubDestroyed:
            self._callbacks.clear()
            self.break_()
        except BaseException as exc:  # noqa: BLE001 - nothing may escape run()
            _last_resort_report(context, exc)

    def _default_handle_error(self, context: object, type: type[BaseException] | None,  # noqa: A002
                              value: BaseException | None, tb: object) -> None:
        # Without a hub: print; a system error (Ctrl-C, SystemExit) also stops the loop.
        traceback.print_exception(type, value, tb)
        if value is not None and not isinstance(value, Exception):
            self.break_()

    # ------------------------------------------------------------------ callbacks
    def run_callback(self, func: Callable[..., Any], *args: Any) -> callback:
        """Run ``func(*args)`` soon on the loop (loop thread); FIFO, before blocking.

        (Shadowed per instance by the queue's bound ``add``, which does exactly this.)"""
        return self._callbacks.add(func, *args)

    def run_callback_threadsafe(self, func: Callable[..., Any], *args: Any) -> callback:
        """Like :meth:`run_callback`, from any thread; wakes the loop."""
        return self._callbacks.add_threadsafe(func, *args)

    # ------------------------------------------------------------------ watchers
    def io(self, fd: int, events: int, ref: bool = True, priority: int | None = None) -> IoWatcher:
        """(Shadowed per instance by ``partial(IoWatcher, self)``, which does exactly this.)"""
        return IoWatcher(self, fd, events, ref, priority)

    def timer(self, after: float, repeat: float = 0.0, ref: bool = True,
              priority: int | None = None) -> TimerWatcher:
        return TimerWatcher(self, after, repeat, ref, priority)

    def signal(self, signum: int, ref: bool = True, priority: int | None = None) -> SignalWatcher:
        return SignalWatcher(self, signum, ref, priority)

    def idle(self, ref: bool = True, priority: int | None = None) -> IdleWatcher:
        return IdleWatcher(self, ref, priority)

    def prepare(self, ref: bool = True, priority: int | None = None) -> PrepareWatcher:
        return PrepareWatcher(self, ref, priority)

    def check(self, ref: bool = True, priority: int | None = None) -> CheckWatcher:
        return CheckWatcher(self, ref, priority)

    def fork(self, ref: bool = True, priority: int | None = None) -> ForkWatcher:
        return ForkWatcher(self, ref, priority)

    def async_(self, ref: bool = True, priority: int | None = None) -> AsyncWatcher:
        return AsyncWatcher(self, ref, priority)

    def child(self, pid: int, trace: int = 0, ref: bool = True) -> ChildWatcher:
        return ChildWatcher(self, pid, trace, ref)

    def stat(self, path: str | bytes, interval: float = 0.0, ref: bool = True,
             priority: int | None = None) -> StatWatcher:
        return StatWatcher(self, path, interval, ref, priority)

    def install_sigchld(self) -> None:
        """Start reaping children (gevent.subprocess / os.waitpid call this)."""
        if self.default:
            self._children.install()

    def reset_sigchld(self) -> None:
        """Stop reaping and give SIGCHLD back to whoever had it."""
        self._children.reset()

    # ------------------------------------------------------------------ fds
    def closing_fd(self, fd: int) -> bool:
        """``fd`` is about to be closed: wake its active watchers first (libev feeds them an
        event) and return True if there were any, so the caller defers the real close to a
        check watcher. The wake-up runs from a check hook started now, i.e. before that
        caller's check watcher."""
        ev = self._ev
        watchers = ev.watchers_for(fd)
        ev.closing_fd(fd)  # forget it in the kernel now (also if parked): reuse comes soon
        if not watchers:
            return False
        hook = Hook(ev, "check", ref=False)
        # Like libev's pending feed, the next poll must not block: an active idle hook keeps
        # its timeout at 0. (A queued no-op would not: a closer running in this tick's io or
        # timer phase is followed by its queued phase, which would drain the no-op.)
        nudge = Hook(ev, "idle", ref=False)

        def feed() -> None:
            hook.stop()
            nudge.stop()
            for w in watchers:
                if w.active and w.callback is not None:
                    w.callback(w.events)

        nudge.start(nudge.stop)
        hook.start(feed)
        return True

    # ------------------------------------------------------------------ lifecycle
    def reinit(self) -> None:
        """After ``fork()`` in the child: own epoll/wake-up fds; fork watchers run next."""
        if os.getpid() != self._pid:
            self._pid = os.getpid()
            self._ev.after_fork()
            self._children.after_fork()
        if self._fork_watchers:
            # A one-shot prepare hook: libev runs fork watchers first thing next iteration.
            hook = Hook(self._ev, "prepare", ref=False)
            hook.start(lambda: self._run_fork_watchers(hook))

    def _run_fork_watchers(self, hook: Hook) -> None:
        hook.stop()
        for w in list(self._fork_watchers):
            if w.active:
                w._invoke()

    def destroy(self) -> None:
        """Release the EventLoop's fds; the loop object is unusable afterwards."""
        if self._destroyed:
            return
        self._destroyed = True
        self._callbacks.clear()
        try:
            self._signals.close()
            self._children.close()
        except BaseException as exc:  # noqa: BLE001
            _last_resort_report("destroy", exc)
        if self._ev.running:
            self._close_after_run = True
            self._ev.stop()
        else:
            self._close_ev()

    def _close_ev(self) -> None:
        ev = self._ev
        try:
            if not ev.is_loop_thread() and not ev.running:
                ev.adopt()  # gevent may destroy a finished thread's hub from elsewhere
            ev.close()
        except RuntimeError as exc:
            _last_resort_report("destroy", exc)

    # ------------------------------------------------------------------ repr
    def _format(self) -> str:
        if self._destroyed:
            return "destroyed"
        parts = ["default" if self._default else "", f"backend={self._ev.backend}",
                 f"ref={self._ev.activecnt}", f"fileno={self._ev.fileno()}",
                 f"callbacks={len(self._callbacks)}"]
        return " ".join(p for p in parts if p)

    def debug(self) -> list[str]:
        """Lines describing the loop's state (gevent's LoopExit / test timeouts print them)."""
        if self._destroyed:
            return ["destroyed"]
        return [self._format(), repr(self._ev), repr(self._ev.pending_counts())]

    def __repr__(self) -> str:
        return (f"<{type(self).__module__}.{type(self).__name__} at 0x{id(self):x} "
                f"{self._format()}>")


# ``async`` is a keyword: gevent's loops expose the old name through setattr too.
setattr(ReseauLoop, "async", ReseauLoop.async_)  # noqa: B010

#: gevent reads ``gevent.core.loop`` (this module is gevent.core when selected).
loop = ReseauLoop
