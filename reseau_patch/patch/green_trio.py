"""trio under the patch: what trio checks about locks holds by construction.

trio's ``run_sync_soon`` queue (``EntryQueue``) needs the C ``_thread.RLock``: it is taken
from signal handlers and from other OS threads, only ever for a few assignments, never across
a wait (trio asserts ``lock.__class__.__module__ == "_thread"``). Made after
``patch_all(thread=True)``, ``threading.RLock`` is gevent's greenlet lock, so each new queue
gets the C lock it was written for instead — no module name is faked.

The wait of trio's ``EpollIOManager`` needs nothing here: it calls ``select.epoll()`` at
``trio.run()``, which is the green epoll of :mod:`.green_select` once ``select`` is patched.
"""

from __future__ import annotations

import _thread
from types import ModuleType

from .import_hooks import when_imported

__all__ = ["install"]


def _adapt_entry_queue(module: ModuleType) -> None:
    cls = getattr(module, "EntryQueue", None)
    if cls is None or getattr(cls.__init__, "__reseau__", False):
        return
    original = cls.__init__

    def __init__(self, *args: object, **kwargs: object) -> None:  # noqa: N807
        original(self, *args, **kwargs)
        if type(self.lock).__module__ != "_thread":
            self.lock = _thread.RLock()

    __init__.__reseau__ = True  # type: ignore[attr-defined]
    __init__.__wrapped__ = original  # type: ignore[attr-defined]
    cls.__init__ = __init__


def install() -> None:
    """Adapt trio now if imported, else when it is (idempotent)."""
    when_imported("trio._core._entry_queue", _adapt_entry_queue)
