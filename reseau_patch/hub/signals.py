"""``loop.signal(signum)``: Python-level signal handlers that wake the EventLoop.

How a signal reaches a watcher: CPython's C handler marks the signal; its Python-level
handler (ours) runs in the main thread at the next bytecode boundary — if the hub is
blocked in ``epoll_wait`` that call fails with EINTR and PEP 475 runs the handler before
retrying. Our handler only records the number and calls ``EventLoop.wake()`` (one write to
the wake-up fd, no lock: ``EventLoop.post`` takes a lock and could deadlock against the
code the handler interrupted). A check hook, started only while signal watchers exist,
then runs the watchers on the loop thread right after the poll.
"""

from __future__ import annotations

import _signal
from typing import TYPE_CHECKING, Any

from ..io.event_loop import Hook
from .watchers import LoopRefWatcher

if TYPE_CHECKING:
    from .loop import ReseauLoop

__all__ = ["SignalDispatcher", "SignalWatcher"]

_NSIG = getattr(_signal, "NSIG", 65)


class SignalDispatcher:
    """Per gevent loop: installed handlers, pending signal numbers, the dispatching hook."""

    def __init__(self, loop: ReseauLoop) -> None:
        self._loop = loop
        self._watchers: dict[int, list[SignalWatcher]] = {}
        self._previous: dict[int, Any] = {}
        self._pending: set[int] = set()
        self._hook = Hook(loop._ev, "check", ref=False)

    def handler(self, signum: int, _frame: object) -> None:
        """The Python-level handler: record and wake, nothing else (see module doc)."""
        self._pending.add(signum)
        try:
            self._loop._ev.wake()
        except OSError:
            pass

    def add(self, w: SignalWatcher) -> None:
        lst = self._watchers.get(w.signum)
        if lst is None:
            # Raises ValueError outside the main thread, like signal.signal itself.
            self._previous[w.signum] = _signal.signal(w.signum, self.handler)
            lst = self._watchers[w.signum] = []
            if not self._hook.active:
                self._hook.start(self._dispatch)
        lst.append(w)

    def remove(self, w: SignalWatcher) -> None:
        lst = self._watchers.get(w.signum)
        if not lst or w not in lst:
            return
        lst.remove(w)
        if not lst:
            del self._watchers[w.signum]
            prev = self._previous.pop(w.signum, _signal.SIG_DFL)
            try:
                _signal.signal(w.signum, prev if prev is not None else _signal.SIG_DFL)
            except (ValueError, OSError, TypeError):
                pass
            if not self._watchers and self._hook.active:
                self._hook.stop()

    def _dispatch(self) -> None:
        if not self._pending:
            return
        pending = sorted(self._pending)
        self._pending.clear()
        for signum in pending:
            for w in list(self._watchers.get(signum, ())):
                if w.active:
                    w._invoke()

    def close(self) -> None:
        for lst in list(self._watchers.values()):
            for w in list(lst):
                w.stop()
        self._pending.clear()


class SignalWatcher(LoopRefWatcher):
    """Runs its callback on the loop thread after ``signum`` was delivered."""

    def __init__(self, loop: ReseauLoop, signum: int, ref: bool = True,
                 priority: int | None = None) -> None:
        if signum < 1 or signum >= _NSIG:
            raise ValueError(f"illegal signal number: {signum!r}")
        super().__init__(loop, ref, priority)
        self.signum = signum

    def _activate(self) -> None:
        self.loop._signals.add(self)
        super()._activate()

    def _deactivate(self) -> None:
        self.loop._signals.remove(self)
        super()._deactivate()

    def _format(self) -> str:
        return f" signum={self.signum}"
