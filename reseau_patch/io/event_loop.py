"""The Reseau event loop: one per OS thread, level-triggered, callback driven.

Contract (who may call what, and in which order callbacks come):

* A loop belongs to one OS thread: the thread that created it, or the thread that last
  entered :meth:`EventLoop.run`. Every method marked *loop-only* raises
  :class:`LoopThreadError` when called from any other thread; the only calls other threads
  may make are :meth:`EventLoop.post`, :meth:`EventLoop.stop`, :meth:`EventLoop.call_sync`
  and reading :attr:`EventLoop.stats`.
* One *tick*: prepare hooks → poll → check hooks → IO callbacks (higher priority first) →
  callbacks posted from other threads → due timers → a **snapshot** of the run queue.
  Work queued while that snapshot runs waits for the next tick (aws-c-common semantics,
  design brief §1.3), so a callback that re-queues itself cannot starve IO.
* Idle hooks run at the end of a tick in which nothing else ran, and make the next poll
  non-blocking while any is active.
* A callback that raises is reported through :meth:`EventLoop.handle_error` and the loop
  goes on; nothing raised by a callback escapes :meth:`EventLoop.run` unless the error
  handler re-raises it.
* ``run()`` without ``forever=True`` returns when nothing *referenced* is left: no active
  ``ref=True`` watcher, timer or hook and no queued callback (libev's ``ev_run`` rule,
  which gevent's hub relies on).
"""

from __future__ import annotations

import errno
import heapq
import importlib.machinery
import importlib.util
import os
import posix
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from typing import Any

from .poller import ERROR, READ, WRITE, make_poller

# close(2) itself: after patch_all(os=True) ``os.close`` is gevent's, which defers the close
# to a check watcher of the caller's hub, and the loop closing its own fds may be that hub's.
_close_fd = posix.close

__all__ = [
    "ERROR",
    "READ",
    "WRITE",
    "EventLoop",
    "Hook",
    "IOWatcher",
    "LoopStats",
    "LoopThreadError",
    "TimerHandle",
    "os_lock",
]

MINPRI = -2
MAXPRI = 2
# Compiled, _monotonic is _event_loop_c.pxd's inline clock_gettime (no call into Python,
# no float object); Cython does not see this assignment through locals() (gevent's trick).
locals()["_monotonic"] = time.monotonic


def _fresh_thread_module() -> Any:
    """A new instance of the builtin ``_thread`` module (multi-phase init makes one per call).

    Why: the loop's own lock must block the OS thread (a green library's hub takes it, and a
    green lock would try to switch out of the hub), and thread ownership is per OS thread,
    not per greenlet. A green library may have replaced the imported module's attributes
    (gevent.monkey does) before this module is imported; a fresh instance has the C
    functions, and asking for it names no such library.
    """
    spec = importlib.machinery.BuiltinImporter.find_spec("_thread")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # initializes its state (the lock type lives there)
    return module


#: ``_thread`` with the OS originals, whatever has been patched (layers above use it too).
os_thread = _fresh_thread_module()
_get_ident = os_thread.get_ident
_allocate_lock = os_thread.allocate_lock


def os_lock() -> Any:
    """A lock that blocks the OS thread even when gevent has patched ``threading``.

    For state shared between threads and held only for a few dict operations, never
    across a greenlet switch (a green lock's Python-level ``acquire`` costs more than the
    work it guards on a cache hit)."""
    return _allocate_lock()


def _minus_priority(ready: tuple[IOWatcher, int]) -> int:
    return -ready[0].priority


class LoopThreadError(RuntimeError):
    """A loop-only operation was called from a thread that does not own the loop."""


class LoopStats:
    """Counters a loop keeps about itself; readable from any thread (values may lag).

    A plain class rather than a dataclass: the compiled loop types it (a C struct bumped
    every tick, see _event_loop_c.pxd)."""

    __slots__ = ("ticks", "callbacks_run", "timers_fired", "io_events", "wakeups",
                 "tick_latency_last", "tick_latency_max", "tick_latency_total", "extra")
    _COUNTERS = ("ticks", "callbacks_run", "timers_fired", "io_events", "wakeups",
                 "tick_latency_last", "tick_latency_max", "tick_latency_total")

    def __init__(self) -> None:
        self.ticks = 0
        self.callbacks_run = 0
        self.timers_fired = 0
        self.io_events = 0
        self.wakeups = 0
        self.tick_latency_last = 0.0
        self.tick_latency_max = 0.0
        self.tick_latency_total = 0.0
        self.extra: dict[str, int] = {}

    def snapshot(self) -> dict[str, float]:
        """A plain dict copy, for printing."""
        d: dict[str, float] = {k: getattr(self, k) for k in self._COUNTERS}
        d.update(self.extra)
        return d

    def __repr__(self) -> str:
        return f"LoopStats({', '.join(f'{k}={v!r}' for k, v in self.snapshot().items())})"


class Handle:
    """A queued callback. ``cancel()`` makes it a no-op if it has not run yet."""

    __slots__ = ("fn", "args", "cancelled")

    def __init__(self, fn: Callable[..., Any], args: tuple) -> None:
        self.fn = fn
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class TimerHandle:
    """A one-shot timer in the loop's heap. Cancel is O(1): the heap entry is skipped later."""

    __slots__ = ("when", "fn", "args", "cancelled", "ref", "_loop", "_seq", "_armed")

    def __init__(self, loop: EventLoop, when: float, fn: Callable[..., Any], args: tuple,
                 ref: bool) -> None:
        self._loop = loop
        self.when = when
        self.fn = fn
        self.args = args
        self.ref = ref
        self.cancelled = False
        self._armed = True
        self._seq = 0

    def __lt__(self, other: TimerHandle) -> bool:
        return (self.when, self._seq) < (other.when, other._seq)

    @property
    def active(self) -> bool:
        """True until the timer fires or is cancelled."""
        return self._armed

    def cancel(self) -> None:
        """Forget the timer; cheap, idempotent, loop-only."""
        if self._armed:
            if _get_ident() != self._loop._owner:
                self._loop.check_thread("TimerHandle.cancel")
            self._armed = False
            self.cancelled = True
            self._loop._timer_disarmed(self)


class IOWatcher:
    """Interest in readiness of one fd. Any number of watchers may share an fd.

    ``callback(revents)`` runs on the loop thread each tick the fd is ready for one of
    ``events`` (level-triggered: it keeps firing until the condition clears or the watcher
    stops). ``revents`` may carry :data:`ERROR` on a hang-up or socket error.
    """

    __slots__ = ("loop", "fd", "events", "callback", "priority", "ref", "active")

    def __init__(self, loop: EventLoop, fd: int, events: int, *, priority: int = 0,
                 ref: bool = True) -> None:
        if fd < 0:
            raise ValueError(f"fd must be non-negative, got {fd}")
        if events & ~(READ | WRITE):
            raise ValueError(f"events must be a mask of READ|WRITE, got {events!r}")
        self.loop = loop
        self.fd = fd
        self.events = events
        self.callback: Callable[[int], Any] | None = None
        self.priority = priority
        self.ref = ref
        self.active = False

    def start(self, callback: Callable[[int], Any], rearm: bool = False) -> None:
        """Begin watching (loop-only). Restarting an active watcher only swaps the callback.

        ``rearm=True`` re-sends the fd's interest mask to the kernel even when it looks
        unchanged (libev ``EV__IOFDSET``): pass it for a watcher new to this fd number,
        which may have been closed and reused since the loop last registered it.
        """
        self.callback = callback
        if self.active:
            return
        loop = self.loop
        entry = loop._fds.get(self.fd)
        # Fast path (every gevent wait on a socket): the watcher that parked this fd
        # restarts with the same mask, so the kernel registration is still right.
        if entry is not None and entry.parked_by is self and not rearm \
                and entry.mask == self.events and not entry.watchers \
                and _get_ident() == loop._owner and not loop._closed:
            loop._parked.discard(self.fd)
            entry.parked_by = None
            entry.watchers.append(self)
            self.active = True
            if self.ref:
                loop._refs += 1
            if self.priority:
                loop._io_priorities = True
            return
        loop._io_start(self, rearm)

    def stop(self) -> None:
        """Stop watching (loop-only); idempotent."""
        if self.active:
            loop = self.loop
            entry = loop._fds.get(self.fd)
            # Fast path: the fd's only watcher stops on a lazy loop: park the fd.
            if entry is not None and loop._lazy and entry.mask and \
                    len(entry.watchers) == 1 and entry.watchers[0] is self and \
                    _get_ident() == loop._owner:
                self.active = False
                if self.ref:
                    loop._refs -= 1
                entry.watchers.clear()
                loop._parked.add(self.fd)
                entry.parked_by = self
            else:
                loop._io_stop(self)
        self.callback = None

    def set_events(self, events: int) -> None:
        """Change the READ/WRITE mask, also while active (loop-only)."""
        if events == self.events:
            return
        if self.active:
            self.loop._io_stop(self)
            self.events = events
            self.loop._io_start(self)
        else:
            self.events = events


class Hook:
    """A prepare, check or idle hook: ``callback()`` runs at that point of every tick while
    started. Used by the gevent loop for its watchers of the same names."""

    __slots__ = ("loop", "kind", "callback", "ref", "active", "priority")

    def __init__(self, loop: EventLoop, kind: str, *, ref: bool = True, priority: int = 0) -> None:
        if kind not in ("prepare", "check", "idle"):
            raise ValueError(f"hook kind must be prepare, check or idle, got {kind!r}")
        self.loop = loop
        self.kind = kind
        self.callback: Callable[[], Any] | None = None
        self.ref = ref
        self.active = False
        self.priority = priority

    def start(self, callback: Callable[[], Any]) -> None:
        self.loop.check_thread("Hook.start")
        self.callback = callback
        if not self.active:
            self.active = True
            self.loop._hooks[self.kind].append(self)
            if self.ref:
                self.loop._refs += 1

    def stop(self) -> None:
        if self.active:
            self.loop.check_thread("Hook.stop")
            self.active = False
            self.loop._hooks[self.kind].remove(self)
            if self.ref:
                self.loop._refs -= 1
        self.callback = None


class _FdEntry:
    __slots__ = ("watchers", "mask", "parked_by")

    def __init__(self) -> None:
        self.watchers: list[IOWatcher] = []
        self.mask = 0
        self.parked_by: IOWatcher | None = None


def _default_error_report(context: object, exc: BaseException) -> None:
    sys.stderr.write(f"reseau_patch: error in event-loop callback {context!r}:\n")
    traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)


class EventLoop:
    """An epoll (or poll) event loop with a run queue, timers and a cross-thread queue."""

    MINPRI = MINPRI
    MAXPRI = MAXPRI
    #: Whether io.Socket watchers keep ``run()`` alive. The gevent loop turns this off:
    #: there a *parked greenlet* holds the reference (Parker), so an idle connection does
    #: not keep the hub from returning, exactly as an idle gevent socket does not.
    socket_watchers_ref = True

    def __init__(self, *, backend: str | None = None, lazy_unregister: bool = False) -> None:
        """``lazy_unregister``: when the last watcher of an fd stops, keep the fd in the
        kernel's interest set ("parked") so a restart with the same mask costs no syscall
        (libev does the same; gevent stops and restarts a socket's watcher around every
        blocking call). A parked fd that reports readiness is unregistered then; one that
        cannot be (closed while a dup lives on) makes the loop rebuild its poller."""
        self._lazy = lazy_unregister
        self._parked: set[int] = set()
        self._stale: set[int] = set()
        self._wake_r = self._wake_w = -1  # no fd to release yet (see __del__)
        self._poller = make_poller(backend)
        self.backend = self._poller.name
        self._owner = _get_ident()
        self._running = False
        self._stopping = False
        self._closed = False
        self._now = _monotonic()  # noqa: F821
        # Run queue: one deque per priority, index 0 = MAXPRI (runs first).
        self._queues: list[deque[Handle]] = [deque() for _ in range(MAXPRI - MINPRI + 1)]
        self._queued = 0
        self._timers: list[TimerHandle] = []
        self._timer_seq = 0
        self._timers_dead = 0
        self._fds: dict[int, _FdEntry] = {}
        self._io_priorities = False
        self._hooks: dict[str, list[Hook]] = {"prepare": [], "check": [], "idle": []}
        # The same lists, without a dict lookup per tick.
        self._prepare_hooks = self._hooks["prepare"]
        self._check_hooks = self._hooks["check"]
        self._idle_hooks = self._hooks["idle"]
        self._refs = 0
        self._did_work = False
        self.stats = LoopStats()
        #: Object with ``handle_error(context, type, value, tb)``; gevent's hub sets itself.
        self.error_handler: Any = None
        # Cross-thread queue and its wake-up fd (eventfd; a pipe where there is none).
        self._posted: deque[tuple[Callable[..., Any], tuple]] = deque()
        self._post_lock = _allocate_lock()
        self._open_wake_fds()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ thread rules
    def check_thread(self, what: str) -> None:
        """Raise :class:`LoopThreadError` naming ``what`` unless the caller is the loop's
        thread (for loop-only operations of the layers above)."""
        if _get_ident() != self._owner:
            raise LoopThreadError(
                f"{what} is loop-only: it must run on the thread that runs this EventLoop (thread "
                f"{self._owner}), not thread {_get_ident()}. With the sockets API, use a socket "
                "from the thread that created it; io-level code can hand the call over with "
                "loop.post(fn, ...)")

    def is_loop_thread(self) -> bool:
        """True when the caller may use loop-only operations."""
        return _get_ident() == self._owner

    @property
    def owner_thread(self) -> int:
        """``_thread.get_ident()`` of the thread that owns (runs) this loop."""
        return self._owner

    @property
    def running(self) -> bool:
        return self._running

    @property
    def closed(self) -> bool:
        return self._closed

    # ------------------------------------------------------------------ time
    def now(self) -> float:
        """The loop's cached monotonic time in seconds, refreshed once per tick."""
        return self._now

    def update_now(self) -> float:
        """Refresh and return the cached time."""
        self._now = _monotonic()  # noqa: F821
        return self._now

    # ------------------------------------------------------------------ run queue
    def call_soon(self, fn: Callable[..., Any], *args: Any, priority: int = 0) -> Handle:
        """Queue ``fn(*args)`` for the next snapshot of the run queue (loop-only)."""
        if _get_ident() != self._owner:
            self.check_thread("call_soon")
        h = Handle(fn, args)
        if not MINPRI <= priority <= MAXPRI:  # clamp like libev; never wrap the index
            priority = MINPRI if priority < MINPRI else MAXPRI
        self._queues[MAXPRI - priority].append(h)
        self._queued += 1
        return h

    def post(self, fn: Callable[..., Any], *args: Any) -> None:
        """Queue ``fn(*args)`` from any thread; wakes the loop on empty → non-empty only.

        Not async-signal-safe (it takes a lock): a signal handler must not call it.
        """
        with self._post_lock:
            if self._closed:
                raise RuntimeError("EventLoop is closed")
            first = not self._posted
            self._posted.append((fn, args))
            if first:
                self._wake()

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        except BlockingIOError:
            pass  # counter saturated / pipe full: the loop is awake anyway

    def wake(self) -> None:
        """Make a blocked poll return (any thread)."""
        self._wake()

    def call_sync(self, fn: Callable[..., Any], *args: Any, timeout: float = 10.0) -> Any:
        """Run ``fn(*args)`` on the loop thread and return its result (from another thread).

        On the loop thread itself it simply calls ``fn``.
        """
        if self.is_loop_thread():
            return fn(*args)
        done = threading.Event()
        box: list[Any] = []

        def run() -> None:
            try:
                box.append((True, fn(*args)))
            except BaseException as exc:  # noqa: BLE001 - handed back to the caller
                box.append((False, exc))
            done.set()

        self.post(run)
        if not done.wait(timeout):
            raise TimeoutError(f"loop did not run {fn!r} within {timeout} s")
        ok, value = box[0]
        if not ok:
            raise value
        return value

    # ------------------------------------------------------------------ timers
    def call_later(self, delay: float, fn: Callable[..., Any], *args: Any,
                   ref: bool = True) -> TimerHandle:
        """Run ``fn(*args)`` once, ``delay`` seconds after the cached now (loop-only)."""
        return self.call_at(self._now + max(0.0, delay), fn, *args, ref=ref)

    def call_at(self, when: float, fn: Callable[..., Any], *args: Any,
                ref: bool = True) -> TimerHandle:
        """Run ``fn(*args)`` once at loop time ``when`` (loop-only)."""
        if _get_ident() != self._owner:
            self.check_thread("call_at")
        t = TimerHandle(self, when, fn, args, ref)
        self._timer_seq += 1
        t._seq = self._timer_seq
        heapq.heappush(self._timers, t)
        if ref:
            self._refs += 1
        return t

    def _timer_disarmed(self, t: TimerHandle) -> None:
        if t.ref:
            self._refs -= 1
        self._timers_dead += 1
        # Lazy deletion keeps cancel O(1); compact when dead entries dominate.
        if self._timers_dead > 64 and self._timers_dead * 2 > len(self._timers):
            self._timers = [x for x in self._timers if x._armed]
            heapq.heapify(self._timers)
            self._timers_dead = 0

    # ------------------------------------------------------------------ io
    def _io_start(self, w: IOWatcher, rearm: bool = False) -> None:
        if _get_ident() != self._owner:
            self.check_thread("IOWatcher.start")
        if self._closed:
            raise RuntimeError("EventLoop is closed")
        entry = self._fds.get(w.fd)
        if entry is None:
            entry = self._fds[w.fd] = _FdEntry()
            if self._stale:
                self._stale.discard(w.fd)
        elif not entry.watchers:
            # Parked (lazy_unregister): the kernel still has it with entry.mask. Only the
            # watcher that parked it may skip the syscall; another object may be watching
            # a reused fd number the kernel no longer knows.
            self._parked.discard(w.fd)
            if entry.parked_by is not w or entry.mask != w.events:
                rearm = True
            entry.parked_by = None
        entry.watchers.append(w)
        w.active = True
        if w.ref:
            self._refs += 1
        if w.priority:
            self._io_priorities = True
        mask = entry.mask | w.events
        if len(entry.watchers) == 1 and rearm and entry.mask:
            mask = w.events  # a re-armed parked fd: only this watcher's interest
        if mask != entry.mask or (len(entry.watchers) == 1 and not entry.mask) or rearm:
            try:
                if entry.mask == 0:
                    self._poller.register(w.fd, mask)
                else:
                    self._poller.modify(w.fd, mask)
            except BaseException:
                entry.watchers.remove(w)
                w.active = False
                if w.ref:
                    self._refs -= 1
                if not entry.watchers:
                    del self._fds[w.fd]
                raise
            entry.mask = mask

    def _io_stop(self, w: IOWatcher) -> None:
        if _get_ident() != self._owner:
            self.check_thread("IOWatcher.stop")
        w.active = False
        if w.ref:
            self._refs -= 1
        entry = self._fds.get(w.fd)
        if entry is None:
            return
        try:
            entry.watchers.remove(w)
        except ValueError:
            return
        mask = 0
        for other in entry.watchers:
            mask |= other.events
        if not entry.watchers:
            if self._lazy and entry.mask:
                self._parked.add(w.fd)  # kernel registration kept (see __init__)
                entry.parked_by = w
                return
            del self._fds[w.fd]
            self._poller.unregister(w.fd)
        elif mask != entry.mask:
            try:
                self._poller.modify(w.fd, mask)
            except OSError as exc:
                # Closed already (after closing_fd, or behind our back): the kernel has
                # nothing to update, and stop() must not fail; a later start re-adds it.
                if exc.errno != errno.EBADF:
                    raise
                mask = 0
            entry.mask = mask

    def closing_fd(self, fd: int) -> bool:
        """``fd`` is about to be closed: take it out of the kernel's interest set (loop-only).

        Watchers stay active in our tables; the next start or stop on that fd number
        re-adds it to the kernel, which is what makes fd-number reuse safe (libev's
        ``EV__IOFDSET``). Returns True if watchers are still active on it.
        """
        self.check_thread("closing_fd")
        entry = self._fds.get(fd)
        if entry is None:
            return False
        self._poller.unregister(fd)
        entry.mask = 0
        if not entry.watchers:  # parked
            del self._fds[fd]
            self._parked.discard(fd)
            return False
        return True

    def rearm_fd(self, fd: int) -> None:
        """Re-send ``fd``'s interest mask to the kernel (loop-only; libev ``EV__IOFDSET``).

        Why: an fd closed and reused behind the loop's back while a watcher stayed active
        has silently left the epoll set; a new watcher with an unchanged mask would
        otherwise never be registered. Called when a watcher starts on an fd that already
        has watchers; a no-op otherwise.
        """
        entry = self._fds.get(fd)
        if entry is not None and entry.mask and len(entry.watchers) > 1:
            self._poller.modify(fd, entry.mask)

    @property
    def ctl_calls(self) -> int:
        """Kernel interest-set updates made so far (``epoll_ctl`` calls; loop-only view).

        For tests and statistics: a watcher restarted on its fd with the same mask should
        not add one (see ``lazy_unregister``)."""
        return self._poller.ctl_calls

    def fileno(self) -> int:
        """The poller's fd (epoll), or -1 for backends without one."""
        return self._poller.fileno()

    def after_fork(self) -> None:
        """In a forked child: make this loop independent of the parent's (loop-only).

        The epoll instance and the wake-up fd are kernel objects shared with the parent
        after ``fork()``; the child gets fresh ones, re-registers its fds, and the calling
        thread becomes the owner. Queued work and watchers are kept.
        """
        self._owner = _get_ident()
        self._post_lock = _allocate_lock()  # another thread may have held it at fork time
        old_poller = self._poller
        self._poller = make_poller(self.backend)
        old_poller.close()
        for fd in {self._wake_r, self._wake_w}:
            try:
                _close_fd(fd)
            except OSError:
                pass
        self._open_wake_fds()
        self._reregister_all()
        if self._posted:
            self._wake()

    def _reregister_all(self) -> None:
        """Put every watched fd into a fresh poller; parked ones are simply forgotten."""
        for fd in self._parked:
            self._fds.pop(fd, None)
        self._parked.clear()
        self._stale.clear()
        for fd, entry in list(self._fds.items()):
            if entry.mask:
                try:
                    self._poller.register(fd, entry.mask)
                except OSError:
                    entry.mask = 0  # closed meanwhile; the next start/stop re-adds it

    def _rebuild_poller(self) -> None:
        """A fresh epoll set: the only cure for an fd the kernel keeps reporting after it
        was closed here while a dup of it lives on (it can no longer be unregistered)."""
        old = self._poller
        self._poller = make_poller(self.backend)
        old.close()
        self._poller.register(self._wake_r, READ)
        self._reregister_all()

    def _unknown_fd_event(self, fd: int) -> None:
        """Readiness for an fd nobody watches (lazy_unregister only): a parked fd is
        unregistered now; an fd that still reports after that forces a poller rebuild."""
        if fd in self._parked:
            self._parked.discard(fd)
            self._fds.pop(fd, None)
            self._poller.unregister(fd)
            self._stale.add(fd)
        elif fd in self._stale:
            self._rebuild_poller()
        else:
            self._poller.unregister(fd)
            self._stale.add(fd)

    def adopt(self) -> None:
        """Make the calling thread the owner of this loop, which must not be running.

        For handing a quiescent loop to another thread, e.g. so gevent can destroy the
        hub of a thread that has finished from the main thread.
        """
        if self._running:
            raise RuntimeError("cannot adopt a running EventLoop")
        self._owner = _get_ident()

    def watchers_for(self, fd: int) -> list[IOWatcher]:
        """Active watchers of ``fd`` (loop-only; for diagnostics and the gevent loop)."""
        entry = self._fds.get(fd)
        return list(entry.watchers) if entry else []

    def forget_parked(self) -> None:
        """Unregister every parked fd now (lazy_unregister; e.g. before a leak check)."""
        for fd in list(self._parked):
            self._fds.pop(fd, None)
            self._poller.unregister(fd)
        self._parked.clear()

    # ------------------------------------------------------------------ refs
    def ref(self) -> None:
        """Count one more thing keeping :meth:`run` alive (libev ``ev_ref``)."""
        self._refs += 1

    def unref(self) -> None:
        """Undo one :meth:`ref` (libev ``ev_unref``)."""
        self._refs -= 1

    @property
    def activecnt(self) -> int:
        """Referenced active watchers, timers and hooks."""
        return self._refs

    def alive(self) -> bool:
        """Whether ``run()`` would keep going: refs held or callbacks queued."""
        return self._refs > 0 or self._queued > 0 or bool(self._posted)

    # ------------------------------------------------------------------ errors
    def handle_error(self, context: object, typ: type[BaseException], value: BaseException,
                     tb: object) -> None:
        """Report a callback's exception: to ``error_handler`` if set, else to stderr.

        Without an error handler, ``SystemExit`` and ``KeyboardInterrupt`` stop the loop
        and propagate out of ``run()``; all else is printed and the loop continues.
        """
        if self.error_handler is not None:
            self.error_handler.handle_error(context, typ, value, tb)
            return
        if not isinstance(value, Exception):
            raise value
        _default_error_report(context, value)

    def _call(self, fn: Callable[..., Any], args: tuple) -> None:
        try:
            fn(*args)
        except BaseException as exc:  # noqa: BLE001 - routed to handle_error
            self.handle_error(fn, type(exc), exc, exc.__traceback__)

    # ------------------------------------------------------------------ running
    def run(self, *, once: bool = False, nowait: bool = False, forever: bool = False,
            reentrant: bool = False) -> None:
        """Run ticks on the calling thread (which becomes the owner).

        ``once``: one tick, blocking if nothing is ready. ``nowait``: one non-blocking tick.
        ``forever``: ignore refs; run until :meth:`stop`. Otherwise run until :meth:`stop`
        or until nothing referenced is left. ``reentrant``: allow a nested run from inside
        a callback of this loop (gevent lets a greenlet run the loop while the hub
        greenlet is suspended in one of its callbacks, as libev's ``ev_run`` does); the
        outer run continues afterwards.
        """
        if self._running:
            if not reentrant:
                raise RuntimeError("EventLoop.run() re-entered: the loop is already running")
            self.check_thread("run (nested)")
            outer_stopping = self._stopping
            self._stopping = False
            try:
                self._run_ticks(once, nowait, forever)
            finally:
                self._stopping = outer_stopping
            return
        if self._closed:
            raise RuntimeError("EventLoop is closed")
        self._owner = _get_ident()
        self._running = True
        self._stopping = False
        try:
            self._run_ticks(once, nowait, forever)
        finally:
            self._running = False
            self._stopping = False

    def _run_ticks(self, once: bool, nowait: bool, forever: bool) -> None:
        if once or nowait:
            if forever or self.alive() or nowait:
                self._tick(block=not nowait)
            return
        while not self._stopping:
            # alive(), inlined: this test runs once per tick.
            if not forever and self._refs <= 0 and not self._queued and not self._posted:
                break
            self._tick(True)

    def stop(self) -> None:
        """Make :meth:`run` return after the current tick (any thread)."""
        if self.is_loop_thread():
            self._stopping = True
        else:
            self.post(self._set_stopping)

    def _set_stopping(self) -> None:
        self._stopping = True

    def _poll_timeout(self, block: bool) -> float:
        if not block or self._queued or self._idle_hooks or self._stopping:
            return 0.0
        timers = self._timers
        while timers and not timers[0]._armed:
            heapq.heappop(timers)
            self._timers_dead -= 1
        if timers:
            return max(0.0, timers[0].when - _monotonic())  # noqa: F821
        return -1.0

    def _tick(self, block: bool) -> None:
        stats = self.stats
        if self._prepare_hooks:
            for h in list(self._prepare_hooks):
                if h.active:
                    self._call(h.callback, ())
        if not block or self._queued or self._idle_hooks or self._stopping:
            timeout = 0.0  # _poll_timeout's first rule, without the call
        else:
            timeout = self._poll_timeout(True)
        events = self._poller.poll(timeout)
        start = self._now = _monotonic()  # noqa: F821
        stats.ticks += 1
        if self._check_hooks:
            for h in list(self._check_hooks):
                if h.active:
                    self._call(h.callback, ())
        did = bool(events)
        if events:
            if len(events) == 1:
                fd, bits = events[0]  # not *events[0]: compiled, that is a C call
                self._dispatch_one(fd, bits)
            else:
                self._dispatch_io(events)
        # Timers due now run in this tick, after IO, in deadline order. Only timers armed
        # before this phase: one a callback arms (a late repeating timer re-armed at "now")
        # waits for the next tick, as libev runs each timer at most once per iteration.
        if self._timers and self._timers[0].when <= start:
            fired = 0
            last_seq = self._timer_seq
            # Re-read self._timers every step: a callback's cancel() may compact the heap
            # into a new list, and popping the stale one would corrupt the dead count.
            while self._timers and self._timers[0].when <= start \
                    and self._timers[0]._seq <= last_seq:
                t = heapq.heappop(self._timers)
                if not t._armed:
                    self._timers_dead -= 1
                    continue
                t._armed = False
                if t.ref:
                    self._refs -= 1
                fired += 1
                self._call(t.fn, t.args)
            stats.timers_fired += fired
            did = did or fired > 0
        if self._queued:
            did = True
            self._run_snapshot()
        if not did and self._idle_hooks:
            for h in list(self._idle_hooks):
                if h.active:
                    self._call(h.callback, ())
        lat = _monotonic() - start  # noqa: F821
        stats.tick_latency_last = lat
        stats.tick_latency_total += lat
        if lat > stats.tick_latency_max:
            stats.tick_latency_max = lat

    def _dispatch_one(self, fd: int, bits: int) -> None:
        """The common tick: one ready fd. Same order and rules as :meth:`_dispatch_io`."""
        entry = self._fds.get(fd)
        if entry is None or len(entry.watchers) != 1 or fd == self._wake_r:
            self._dispatch_io([(fd, bits)])
            return
        self.stats.io_events += 1
        w = entry.watchers[0]
        if w.events & bits:
            fn = w.callback
            try:
                fn(bits & (w.events | ERROR))
            except BaseException as exc:  # noqa: BLE001 - routed to handle_error
                self.handle_error(fn, type(exc), exc, exc.__traceback__)

    def _dispatch_io(self, events: list[tuple[int, int]]) -> None:
        fds = self._fds
        wake_r = self._wake_r
        self.stats.io_events += len(events)
        ready: list[tuple[int, IOWatcher, int]] = []
        for fd, bits in events:
            if fd == wake_r:
                self._drain_posted()
                continue
            entry = fds.get(fd)
            if entry is None or not entry.watchers:
                if self._lazy:
                    self._unknown_fd_event(fd)
                continue
            for w in entry.watchers:
                if w.events & bits:
                    ready.append((w, bits & (w.events | ERROR)))
        if self._io_priorities and len(ready) > 1:
            ready.sort(key=_minus_priority)
        for w, bits in ready:
            # A watcher stopped by an earlier callback in this batch is skipped.
            if w.active:
                # Inlined self._call(): this is the hottest call site of the loop.
                fn = w.callback
                try:
                    fn(bits)
                except BaseException as exc:  # noqa: BLE001 - routed to handle_error
                    self.handle_error(fn, type(exc), exc, exc.__traceback__)

    def _drain_posted(self) -> None:
        try:
            while os.read(self._wake_r, 8):
                if self._wake_r == self._wake_w:
                    break  # eventfd: one read resets the counter
        except BlockingIOError:
            pass
        with self._post_lock:
            posted, self._posted = self._posted, deque()
        self.stats.wakeups += 1
        q = self._queues[MAXPRI - 0]  # posted work runs at the default priority
        for fn, args in posted:
            q.append(Handle(fn, args))
        self._queued += len(posted)

    def _run_snapshot(self) -> None:
        # Swap the queues out first: anything queued while these run waits a tick.
        queues = self._queues
        snapshot = []
        for i, q in enumerate(queues):
            if q:
                snapshot.append((i, q))
                queues[i] = deque()
        self._queued = 0
        n = 0
        call = self._call
        try:
            for _, q in snapshot:
                popleft = q.popleft
                while q:
                    h = popleft()
                    if not h.cancelled:
                        n += 1
                        call(h.fn, h.args)
        finally:
            self.stats.callbacks_run += n
            # Only non-empty if an exception (KeyboardInterrupt) escapes run(): keep the
            # rest of the snapshot, ahead of newer work, for the next run().
            for i, q in snapshot:
                if q:
                    self._queued += len(q)
                    q.extend(queues[i])
                    queues[i] = q

    # ------------------------------------------------------------------ thread helpers
    def start_thread(self, name: str = "reseau-loop") -> threading.Thread:
        """Run this loop forever on a new thread (which becomes its owner); returns it."""
        if self._thread is not None:
            raise RuntimeError("EventLoop already has a thread")
        started = threading.Event()

        def main() -> None:
            self._owner = _get_ident()
            started.set()
            self.run(forever=True)

        self._thread = threading.Thread(target=main, name=name, daemon=True)
        self._thread.start()
        started.wait(5)
        return self._thread

    def stop_thread(self, timeout: float = 10.0) -> None:
        """Stop the loop started by :meth:`start_thread`, join it and close the loop."""
        t = self._thread
        if t is None:
            return
        self.stop()
        t.join(timeout)
        if t.is_alive():
            raise TimeoutError(f"event-loop thread {t.name} did not stop within {timeout} s")
        self._thread = None
        self._owner = _get_ident()
        self.close()

    # ------------------------------------------------------------------ teardown
    def close(self) -> None:
        """Release the poller and wake-up fd; queued work is dropped (owner, not running)."""
        if self._closed:
            return
        if self._running:
            raise RuntimeError("cannot close a running EventLoop; stop() it first")
        self.check_thread("close")
        with self._post_lock:
            self._closed = True
            self._posted.clear()
        for q in self._queues:
            q.clear()
        self._queued = 0
        for t in self._timers:
            t._armed = False
        self._timers.clear()
        for entry in self._fds.values():
            for w in entry.watchers:
                w.active = False
        self._fds.clear()
        self._parked.clear()
        self._stale.clear()
        for kind in self._hooks.values():
            for h in kind:
                h.active = False
            kind.clear()
        self._refs = 0
        self._release_fds()

    def _open_wake_fds(self) -> None:
        # The wake-up fd of post(): an eventfd; a pipe where there is none.
        if hasattr(os, "eventfd"):
            self._wake_r = self._wake_w = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        else:
            self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._poller.register(self._wake_r, READ)

    def _release_fds(self) -> None:
        self._poller.close()
        for fd in {self._wake_r, self._wake_w}:
            if fd >= 0:
                _close_fd(fd)
        self._wake_r = self._wake_w = -1

    def __del__(self) -> None:
        # Freed without close(): gevent drops a finished thread-pool worker's hub that way.
        # Its epoll object closes itself when freed; the wake-up fd is a bare int and would
        # stay open. No thread rule here: nothing can be running a loop being freed.
        # (getattr: __init__ may have raised before either was set, e.g. a bad backend.)
        if not getattr(self, "_closed", True) and getattr(self, "_poller", None) is not None:
            self._closed = True
            try:
                self._release_fds()
            except OSError:
                pass

    def pending_counts(self) -> dict[str, int]:
        """Live handles by kind (loop-only view; used by leak checks and statistics)."""
        return {
            "fds": len(self._fds) - len(self._parked),
            "timers": sum(1 for t in self._timers if t._armed),
            "callbacks": self._queued,
            "posted": len(self._posted),
            "hooks": sum(len(v) for v in self._hooks.values()),
        }

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("running" if self._running else "idle")
        return (f"<EventLoop {self.backend} {state} owner={self._owner} refs={self._refs} "
                f"fds={len(self._fds) - len(self._parked)}>")


# Last statement: the Cython-compiled twin's names replace the ones above, unless pure
# Python is requested or it was not built (see io/accel.py).
from .accel import import_c_accel  # noqa: E402

import_c_accel(globals(), "reseau_patch.io._event_loop_c")
