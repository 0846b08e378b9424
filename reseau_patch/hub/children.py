"""``loop.child(pid)`` and the child reaper behind ``install_sigchld``/``reset_sigchld``.

Reaping follows libev: once installed, every exited child is collected with
``waitpid(-1, WNOHANG)`` and its status goes to the watchers for that pid and to the pid-0
("any child") watchers; a status nobody watches is dropped, as with libev.

What *triggers* a reap:

* a ``pidfd`` (Linux ≥ 5.3) per watched pid, read-ready when that child exits. Why not a
  Python-level SIGCHLD handler: CPython then also writes the signal number to any
  ``signal.set_wakeup_fd`` fd, so a program that watches SIGCHLD through gevent's
  ``signal``/``set_wakeup_fd`` would see two bytes per exit instead of one (libev uses a
  C handler, which CPython never sees). With pidfds, SIGCHLD keeps its default disposition.
* while pid-0 watchers are active, a short timer as well (children we hold no pidfd for).
* without pidfd support, a Python-level SIGCHLD handler that wakes the loop (as signal
  watchers do) and a check hook that reaps.

What is reaped: ``waitpid(-1)`` only where that is the contract (pid-0 watchers, or the
SIGCHLD fallback, default loop only); otherwise each watched pid by itself. So a loop
never takes the exit status of a child that another loop, or code calling
``os.waitpid(pid)`` itself, is waiting for. With pidfds, a watcher for one pid works on
any loop, e.g. that of a real thread that forks (``thread=False``); "any child" watchers
and the SIGCHLD fallback stay default-loop only, as in libev.
"""

from __future__ import annotations

import _signal
import os
import posix
from typing import TYPE_CHECKING, Any

from ..io.event_loop import READ, Hook, IOWatcher, TimerHandle
from .watchers import LoopRefWatcher

if TYPE_CHECKING:
    from .loop import ReseauLoop

__all__ = ["ChildReaper", "ChildWatcher"]

#: Reap poll period while "any child" watchers are active.
ANY_CHILD_POLL = 0.05
_HAVE_PIDFD = hasattr(os, "pidfd_open")
# posix.* are the C functions: gevent's patch_os replaces os.waitpid/os.close.
_waitpid = posix.waitpid
_close = posix.close


class ChildReaper:
    """Collects exited children and notifies :class:`ChildWatcher` objects."""

    def __init__(self, loop: ReseauLoop) -> None:
        self._loop = loop
        self._ev = loop._ev
        self._watchers: dict[int, list[ChildWatcher]] = {}
        self._pidfds: dict[int, tuple[int, IOWatcher]] = {}
        self._installed = False
        self._use_signal = not _HAVE_PIDFD
        self._sigchld_pending = False
        self._prev_handler: Any = None
        self._hook: Hook | None = None
        self._any_timer: TimerHandle | None = None

    # -- install / reset
    def install(self) -> None:
        """Enable reaping (idempotent). Without pidfds, take over SIGCHLD (main thread)."""
        if self._installed:
            return
        self._installed = True
        if self._use_signal:
            self._prev_handler = _signal.signal(_signal.SIGCHLD, self._on_sigchld)
            self._hook = Hook(self._ev, "check", ref=False)
            self._hook.start(self._reap_if_signalled)

    def reset(self) -> None:
        """Give SIGCHLD back (gevent calls this when the user sets SIG_DFL/SIG_IGN)."""
        if not self._installed:
            return
        self._installed = False
        if self._use_signal:
            if self._hook is not None:
                self._hook.stop()
            try:
                _signal.signal(_signal.SIGCHLD, self._prev_handler or _signal.SIG_DFL)
            except (ValueError, TypeError):
                pass

    def _on_sigchld(self, _signum: int, _frame: object) -> None:
        self._sigchld_pending = True
        try:
            self._ev.wake()
        except OSError:
            pass

    def _reap_if_signalled(self) -> None:
        if self._sigchld_pending:
            self._sigchld_pending = False
            self.reap()

    # -- watchers
    def add(self, w: ChildWatcher) -> None:
        self._watchers.setdefault(w.pid, []).append(w)
        if self._use_signal:
            return
        if w.pid == 0:
            self._arm_any_timer()
        elif w.pid not in self._pidfds:
            try:
                pidfd = os.pidfd_open(w.pid)
            except OSError:
                # Gone already (or not ours): a reap on the next tick settles it.
                self._ev.call_soon(self.reap)
                return
            iow = IOWatcher(self._ev, pidfd, READ, ref=False)
            pid = w.pid
            iow.start(lambda _revents: self._on_pidfd(pid))
            self._pidfds[w.pid] = (pidfd, iow)

    def remove(self, w: ChildWatcher) -> None:
        lst = self._watchers.get(w.pid)
        if not lst or w not in lst:
            return
        lst.remove(w)
        if not lst:
            del self._watchers[w.pid]
            self._drop_pidfd(w.pid)

    def _drop_pidfd(self, pid: int) -> None:
        entry = self._pidfds.pop(pid, None)
        if entry is not None:
            pidfd, iow = entry
            iow.stop()
            _close(pidfd)

    def _on_pidfd(self, pid: int) -> None:
        self.reap()
        if pid in self._pidfds:
            # Readable but not reaped by us: someone else's waitpid() took it. Drop the
            # pidfd, or level-triggered readiness would spin the loop.
            self._drop_pidfd(pid)

    def _arm_any_timer(self) -> None:
        if self._any_timer is None or not self._any_timer.active:
            self._any_timer = self._ev.call_later(ANY_CHILD_POLL, self._any_tick, ref=False)

    def _any_tick(self) -> None:
        self._any_timer = None
        self.reap()
        if self._watchers.get(0):
            self._arm_any_timer()

    # -- reaping
    def reap(self) -> None:
        """Collect the exited children this loop may take; notify their watchers."""
        if not (self._use_signal or self._watchers.get(0)):
            for pid in list(self._watchers):
                self._reap_pid(pid)
            return
        while True:
            try:
                pid, status = _waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            except InterruptedError:
                continue
            if pid <= 0:
                break
            self._notify(pid, status)

    def _reap_pid(self, pid: int) -> None:
        while True:
            try:
                rpid, status = _waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                return  # not our child, or someone else's waitpid() took it
            except InterruptedError:
                continue
            break
        if rpid == pid:
            self._notify(pid, status)

    def _notify(self, pid: int, status: int) -> None:
        self._drop_pidfd(pid)
        for w in list(self._watchers.get(pid, ())) + list(self._watchers.get(0, ())):
            w._child_exited(pid, status)

    def after_fork(self) -> None:
        """The parent's children are not ours: forget their pidfds and watchers."""
        for pid in list(self._pidfds):
            self._drop_pidfd(pid)
        self._watchers.clear()

    def close(self) -> None:
        for pid in list(self._pidfds):
            self._drop_pidfd(pid)
        if self._any_timer is not None:
            self._any_timer.cancel()
        self.reset()


class ChildWatcher(LoopRefWatcher):
    """Watches one child (``pid > 0``, any loop where pidfds exist) or any child
    (``pid == 0``, default loop only).

    After the child exits, ``rpid``/``rstatus`` hold ``waitpid``'s answer and the callback
    runs; the watcher stays active (libev semantics) until stopped.
    """

    def __init__(self, loop: ReseauLoop, pid: int, trace: int = 0, ref: bool = True) -> None:
        if not loop.default and (pid <= 0 or not _HAVE_PIDFD):
            raise TypeError("child watchers for any child (pid 0) are only available on "
                            "the default loop" if _HAVE_PIDFD else
                            "child watchers are only available on the default loop")
        super().__init__(loop, ref)
        loop.install_sigchld()
        self._pid = pid
        self._trace = trace
        self.rpid: int | None = None
        self.rstatus: int = 0

    @property
    def pid(self) -> int:
        return self._pid

    def _activate(self) -> None:
        self.loop._children.add(self)
        super()._activate()

    def _deactivate(self) -> None:
        self.loop._children.remove(self)
        super()._deactivate()

    def _child_exited(self, pid: int, status: int) -> None:
        self.rpid = pid
        self.rstatus = status
        if self._active:
            self._invoke()

    def _format(self) -> str:
        return f" pid={self._pid} rstatus={self.rstatus}"
