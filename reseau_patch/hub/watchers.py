"""gevent watcher objects backed by :mod:`reseau_patch.io.event_loop` primitives.

Contract shared by every watcher (gevent's de-facto one, see ``gevent._interfaces.IWatcher``):

* ``start(callback, *args)`` raises ``TypeError`` for a non-callable; ``callback`` and
  ``args`` are ``None`` whenever the watcher is not started (gevent's ``hub.wait`` relies
  on it to detect concurrent use).
* ``ref=False`` means an active watcher does not keep ``loop.run()`` alive. It maps onto
  the per-handle ``ref`` of the EventLoop object; changing it while active adjusts the
  loop's count so the later stop stays balanced.
* ``close()`` stops the watcher but keeps it restartable (gevent's ThreadPool restarts a
  closed fork watcher).
* An exception from a callback goes to ``loop.handle_error(watcher, ...)`` and never
  escapes into the EventLoop.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from math import floor as _floor
from typing import TYPE_CHECKING, Any

from gevent._interfaces import IWatcher
from zope.interface import implementer

from ..io.event_loop import Hook, TimerHandle
from .io_watcher import IoWatcher

if TYPE_CHECKING:
    from .loop import ReseauLoop

__all__ = [
    "AsyncWatcher",
    "CheckWatcher",
    "ForkWatcher",
    "IdleWatcher",
    "IoWatcher",
    "LoopRefWatcher",
    "PrepareWatcher",
    "TimerWatcher",
    "Watcher",
]


@implementer(IWatcher)
class Watcher:
    """Base class: callback/args validation, ref bookkeeping, context manager."""

    _active = False

    def __init__(self, loop: ReseauLoop, ref: bool = True, priority: int | None = None) -> None:
        self.loop = loop
        self._ref = bool(ref)
        self._priority = priority or 0
        self._callback: Callable[..., Any] | None = None
        self._args: tuple | None = None

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
        handle = self._handle()
        if handle is not None:
            # Keep the loop's count balanced: the handle's stop/fire undoes per handle.ref.
            if self._active:
                ev = self.loop._ev
                ev.ref() if value else ev.unref()
            handle.ref = value

    @property
    def priority(self) -> int:
        return self._priority

    @priority.setter
    def priority(self, value: int) -> None:
        if self._active:
            raise ValueError("Cannot change priority of an active watcher")
        self._priority = value

    def _handle(self) -> Any:
        """The EventLoop object carrying this watcher's ref (None if none yet)."""
        return None

    # -- lifecycle
    def start(self, callback: Callable[..., Any], *args: Any) -> None:
        if callback is None or not callable(callback):
            raise TypeError(f"Expected callable, not {callback!r}")
        self._callback = callback
        self._args = args
        if not self._active:
            self._activate()
            self._active = True

    def stop(self) -> None:
        if self._active:
            self._active = False
            self._deactivate()
        self._callback = None
        self._args = None

    def close(self) -> None:
        self.stop()

    def _activate(self) -> None:
        raise NotImplementedError

    def _deactivate(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Watcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- invocation
    def _invoke(self) -> None:
        """Run the callback; errors go to the gevent loop's handle_error."""
        cb = self._callback
        if cb is None:
            return
        try:
            cb(*self._args)
        except BaseException:  # noqa: BLE001 - nothing may escape into the loop
            self.loop.handle_error(self, *sys.exc_info())

    def _format(self) -> str:
        return ""

    def __repr__(self) -> str:
        state = " active" if self._active else ""
        cb = f" callback={self._callback!r}" if self._callback is not None else ""
        return f"<{type(self).__name__} at 0x{id(self):x}{state}{cb}{self._format()}>"


class LoopRefWatcher(Watcher):
    """Base for watchers with no EventLoop handle: they hold one ``EventLoop.ref()`` while
    active and referenced."""

    @Watcher.ref.setter
    def ref(self, value: bool) -> None:
        value = bool(value)
        if value != self._ref and self._active:
            ev = self.loop._ev
            ev.ref() if value else ev.unref()
        self._ref = value

    def _activate(self) -> None:
        if self._ref:
            self.loop._ev.ref()

    def _deactivate(self) -> None:
        if self._ref:
            self.loop._ev.unref()


class TimerWatcher(Watcher):
    """``loop.timer(after, repeat)`` on the EventLoop's timer heap.

    A one-shot timer is inactive while its callback runs and is stopped afterwards unless
    the callback restarted it. A repeating timer re-arms at ``deadline + repeat`` (never in
    the past) before its callback runs, like libev.
    """

    def __init__(self, loop: ReseauLoop, after: float = 0.0, repeat: float = 0.0,
                 ref: bool = True, priority: int | None = None) -> None:
        if repeat < 0.0:
            raise ValueError(f"repeat must be positive or zero: {repeat!r}")
        super().__init__(loop, ref, priority)
        self._after = after
        self._repeat = repeat
        self._h: TimerHandle | None = None
        self._fire_cb = self._fire
        self._on_grid = True

    def _handle(self) -> TimerHandle | None:
        return self._h if self._active else None

    @property
    def after(self) -> float:
        return self._after

    @property
    def repeat(self) -> float:
        return self._repeat

    @property
    def at(self) -> float:
        """Loop time of the next expiry (0.0 when inactive)."""
        return self._h.when if self._active and self._h is not None else 0.0

    def start(self, callback: Callable[..., Any], *args: Any, update: bool | None = None) -> None:
        if update is None:
            update = self.loop.starting_timer_may_update_loop_time
        if update:
            self.loop.update_now()
        self._on_grid = not update
        if self._active:
            # gevent restarts some timers while active: re-arm from now.
            self._cancel()
            self._active = False
        super().start(callback, *args)

    def again(self, callback: Callable[..., Any], *args: Any, update: bool | None = None) -> None:
        """libev ``ev_timer_again``: restart at ``now + repeat``; start if inactive."""
        if not self._active:
            self.start(callback, *args, update=update)
            return
        if callback is None or not callable(callback):
            raise TypeError(f"Expected callable, not {callback!r}")
        if update is None:
            update = self.loop.starting_timer_may_update_loop_time
        if update:
            self.loop.update_now()
        self._on_grid = not update
        self._callback = callback
        self._args = args
        self._cancel()
        if self._repeat:
            self._arm(self._repeat)
        else:
            self._active = False
            self._callback = self._args = None

    def _arm(self, delay: float) -> None:
        ev = self.loop._ev
        now = ev.now()
        if self._on_grid:
            # Started from the cached (possibly stale) loop time: the deadline sits on
            # libuv's millisecond grid (libuv truncates its loop time to ms), so it may
            # fire up to 1 ms early (approx_timer_resolution). Why: next to an fd that is
            # always ready, a short timer still gets its turn (gevent's test_resolution).
            # With update=True (gevent's Timeout) the fresh time is used exactly.
            now = _floor(now * 1000.0) / 1000.0
        self._h = ev.call_at(now + delay, self._fire_cb, ref=self._ref)

    def _cancel(self) -> None:
        h = self._h
        if h is not None:
            h.cancel()

    def _activate(self) -> None:
        self._arm(self._after)

    def _deactivate(self) -> None:
        self._cancel()

    def _fire(self) -> None:
        repeat = self._repeat
        if repeat:
            ev = self.loop._ev
            when = self._h.when + repeat
            now = ev.now()
            self._h = ev.call_at(when if when > now else now, self._fire_cb, ref=self._ref)
            self._invoke()
            return
        self._active = False
        h = self._h
        self._invoke()
        if not self._active and self._h is h:
            # Not restarted by the callback: a finished one-shot timer is stopped.
            self._callback = None
            self._args = None

    def _format(self) -> str:
        return f" after={self._after} repeat={self._repeat}"


class _HookWatcher(Watcher):
    """prepare / check / idle: an EventLoop :class:`Hook` of the same kind."""

    _kind = ""

    def __init__(self, loop: ReseauLoop, ref: bool = True, priority: int | None = None) -> None:
        super().__init__(loop, ref, priority)
        self._h = Hook(loop._ev, self._kind, ref=self._ref, priority=self._priority)
        self._run_cb = self._invoke

    def _handle(self) -> Hook:
        return self._h

    def _activate(self) -> None:
        self._h.ref = self._ref
        self._h.start(self._run_cb)

    def _deactivate(self) -> None:
        self._h.stop()


class PrepareWatcher(_HookWatcher):
    """Runs before each poll."""

    _kind = "prepare"


class CheckWatcher(_HookWatcher):
    """Runs after each poll (gevent defers fd closes to one)."""

    _kind = "check"


class IdleWatcher(_HookWatcher):
    """Runs when a tick did nothing else; makes the next poll non-blocking while active."""

    _kind = "idle"


class AsyncWatcher(LoopRefWatcher):
    """``loop.async_()``: ``send()`` from any thread runs the callback on the loop thread.

    Sends coalesce until the callback runs. Delivery rides on the EventLoop's thread-safe
    ``post()`` (lock + one wake-up write), so ``send()`` is not async-signal-safe.
    """

    def __init__(self, loop: ReseauLoop, ref: bool = True, priority: int | None = None) -> None:
        super().__init__(loop, ref, priority)
        self._sent = False
        self._deliver_cb = self._deliver

    @property
    def pending(self) -> bool:
        return self._sent

    def _activate(self) -> None:
        self._sent = False
        super()._activate()

    def send(self) -> None:
        if self._sent:
            return
        self._sent = True
        try:
            self.loop._ev.post(self._deliver_cb)
        except RuntimeError:
            self._sent = False  # loop closed: nothing to wake

    def send_ignoring_arg(self, _ignored: object) -> None:
        """``send()`` usable as a one-argument callback (gevent's Semaphore uses it)."""
        self.send()

    def _deliver(self) -> None:
        self._sent = False
        if self._active:
            self._invoke()


class ForkWatcher(LoopRefWatcher):
    """``loop.fork()``: runs in the child, on the tick after ``loop.reinit()``."""

    def _activate(self) -> None:
        self.loop._fork_watchers.add(self)
        super()._activate()

    def _deactivate(self) -> None:
        self.loop._fork_watchers.discard(self)
        super()._deactivate()
