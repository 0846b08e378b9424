"""End a real thread's hub, and close its loop, when that thread ends.

Why: a real thread that blocks on a patched object (``patch_all(thread=False)``, or any
thread that calls gevent) gets its own hub and Reseau loop: an epoll fd and a wake-up fd.
When the thread's function returns, its hub greenlet is still suspended inside
``loop.run()`` (it switched back to the thread's main greenlet to resume it), and nothing
would ever run it again: two fds and the hub's frames per finished thread. gevent's own
hubs leak the same way; a ``ThreadingHTTPServer`` (a thread per request) would run out of
fds after a few hundred requests.

How: CPython drops a thread's ``_thread._local`` values on that thread as it ends
(``PyThreadState_Clear`` releases the thread's dict, and each local's per-thread dict goes
with it), with the GIL held and the thread's greenlets still switchable. A guard stored
there ends the hub greenlet the way ``Hub.destroy()`` does (``HubDestroyed`` thrown into it
breaks the loop; ``GreenletExit`` then ends ``Hub.run``) and destroys its loop. It reads no
other thread-local: the thread's dict is already gone, and touching one would make a new
dict that nobody frees.

Contract: :func:`watch` is called by the hub greenlet itself (``ReseauLoop.run``). The
guard holds the hub weakly; a hub destroyed or freed earlier is left alone. Nothing runs
while the interpreter finalizes (``exit_parking`` owns that), nor on another thread
(finalization clears the remaining threads' states from the main thread).
"""

from __future__ import annotations

import sys
import weakref
from typing import Any

from gevent.monkey import get_original
from greenlet import GreenletExit

__all__ = ["watch"]

_get_ident = get_original("_thread", "get_ident")
# The real per-OS-thread local: under patch_all(thread=True) ``_thread._local`` is green.
_local = get_original("_thread", "_local")()


class _HubGuard:
    """Ends one hub on its thread's exit (see the module docstring)."""

    __slots__ = ("_hub", "_thread")

    def __init__(self, hub: Any) -> None:
        self._hub = weakref.ref(hub)
        self._thread = _get_ident()

    @property
    def live(self) -> bool:
        hub = self._hub()
        return hub is not None and not (hub.dead and hub.loop is None)

    def __del__(self) -> None:
        hub = self._hub()
        if hub is None or sys.is_finalizing() or _get_ident() != self._thread:
            return
        from gevent.exceptions import HubDestroyed, LoopExit

        loop = hub.loop  # None once Hub.destroy() ran
        try:
            if not hub.dead and loop is not None:
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


def watch(hub: Any) -> None:
    """Call from ``hub`` (the running hub greenlet): end it when this OS thread ends."""
    guards: list[_HubGuard] | None = getattr(_local, "guards", None)
    if guards is None:
        guards = _local.guards = []
    else:  # hubs destroyed earlier on this thread (gevent's thread pool does that)
        guards[:] = [g for g in guards if g.live]
    guards.append(_HubGuard(hub))
