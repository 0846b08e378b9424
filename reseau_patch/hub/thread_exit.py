"""End a real thread's hub, and close its loop, when that thread ends.

Why: a real thread that blocks on a patched object (``patch_all(thread=False)``, or any
thread that calls gevent) gets its own hub and Reseau loop: an epoll fd and a wake-up fd.
When the thread's function returns, its hub greenlet is still suspended inside
``loop.run()`` (it switched back to the thread's main greenlet to resume it), and nothing
would ever run it again: two fds and the hub's frames per finished thread. gevent's own
hubs leak the same way; a ``ThreadingHTTPServer`` (a thread per request) would run out of
fds after a few hundred requests. A hub that never ran is only a reference cycle, but
its fds would wait for a full garbage collection.

How: CPython drops a thread's ``_thread._local`` values on that thread as it ends
(``PyThreadState_Clear`` releases the thread's dict, and each local's per-thread dict goes
with it), with the GIL held and the thread's greenlets still switchable. A guard stored
there ends the hub greenlet the way ``Hub.destroy()`` does (``HubDestroyed`` thrown into it
breaks the loop; ``GreenletExit`` then ends ``Hub.run``) and destroys its loop. It reads no
other thread-local: the thread's dict is already gone, and touching one would make a new
dict that nobody frees.

Contract: :func:`watch` is called by each loop as it is made, on the thread that makes it;
:func:`attach` by the hub greenlet that runs it (``ReseauLoop.run``). The
guard holds both weakly; a hub destroyed or freed earlier is left alone, and so is a loop
another thread runs. Nothing runs while the interpreter finalizes (``exit_parking`` owns
that), nor on another thread (finalization clears the remaining threads' states from the
main thread).
"""

from __future__ import annotations

import sys
import weakref
from typing import Any

from gevent.monkey import get_original
from greenlet import GreenletExit

__all__ = ["ThreadExitGuard", "attach", "watch"]

_get_ident = get_original("_thread", "get_ident")
# The real per-OS-thread local: under patch_all(thread=True) ``_thread._local`` is green.
_local = get_original("_thread", "_local")()


def _none() -> None:
    return None


class ThreadExitGuard:
    """Ends one loop, and the hub running it, when the thread that made it ends."""

    __slots__ = ("_hub", "_loop", "_thread")

    def __init__(self, loop: Any) -> None:
        self._loop = weakref.ref(loop)
        self._hub: Any = _none
        self._thread = _get_ident()

    def attach(self, hub: Any) -> None:
        """``hub`` (a started hub greenlet) runs the loop: end it with the thread."""
        self._hub = weakref.ref(hub)

    @property
    def loop(self) -> Any:
        return self._loop()

    @property
    def live(self) -> bool:
        hub = self._hub()
        return self._loop() is not None or (hub is not None and not hub.dead)

    def __del__(self) -> None:
        if sys.is_finalizing() or _get_ident() != self._thread:
            return
        from gevent.exceptions import HubDestroyed, LoopExit

        hub, loop = self._hub(), self._loop()
        if loop is not None and loop.io_loop.owner_thread != self._thread:
            return  # handed to another thread, which runs it
        try:
            if hub is not None and not hub.dead:
                if hub.loop is not None:  # not destroyed yet
                    try:
                        hub.throw(HubDestroyed(True))  # the loop breaks; Hub.run throws LoopExit
                    except LoopExit:
                        pass
                if not hub.dead:
                    hub.throw(GreenletExit())  # Hub.run ends: its frames go
            if loop is not None:
                loop.destroy()
        except BaseException as exc:  # noqa: BLE001 - a destructor must not raise
            from .loop import _last_resort_report

            _last_resort_report("thread exit", exc)


def _guards() -> list[ThreadExitGuard]:
    guards: list[ThreadExitGuard] | None = getattr(_local, "guards", None)
    if guards is None:
        guards = _local.guards = []
    return guards


def watch(loop: Any) -> None:
    """Destroy ``loop`` (and the hub that will run it) when the calling thread ends.

    Only this thread's list holds the guard: a loop that held it too would keep it alive,
    in the loop's own reference cycle, past the thread's end."""
    guards = _guards()
    guards[:] = [g for g in guards if g.live]  # loops freed, hubs ended here earlier
    guards.append(ThreadExitGuard(loop))


def attach(loop: Any, hub: Any) -> None:
    """``hub``, running on the calling thread, runs ``loop``: end both with the thread."""
    guards = _guards()
    for guard in guards:
        if guard.loop is loop:
            break
    else:  # made on another thread
        guard = ThreadExitGuard(loop)
        guards.append(guard)
    guard.attach(hub)
