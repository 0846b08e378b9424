"""trio under the patch: what trio checks about locks holds by construction.

trio's ``run_sync_soon`` queue (``EntryQueue``) needs the C ``_thread.RLock``: it is taken
from signal handlers and from other OS threads, only ever for a few assignments, never across
a wait (trio asserts ``lock.__class__.__module__ == "_thread"``). Made after
``patch_all(thread=True)``, ``threading.RLock`` is gevent's greenlet lock, so each new queue
gets the C lock it was written for instead — no module name is faked.

The wait of trio's ``EpollIOManager`` needs nothing here: it calls ``select.epoll()`` at
``trio.run()``, which is the green epoll of :mod:`.green_select` once ``select`` is patched.

trio imported *before* ``patch_all()`` captured the unpatched classes: its run context is a
real ``threading.local`` (one per OS thread, so every green thread would see a trio run
going on in any of them) and ``from_thread``'s reply queue a real ``SimpleQueue`` (whose
``get`` blocks the OS thread, hub included). The run context then joins the slots that a
loop's wait hands back while parked (:func:`.green_asyncio.add_slot`), and each new reply
queue is the patched ``queue.SimpleQueue``.
"""

from __future__ import annotations

import _thread
import queue
from types import ModuleType
from typing import Any

from . import green_asyncio
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


def _adapt_run_context(module: ModuleType) -> None:
    ctx = getattr(module, "GLOBAL_RUN_CONTEXT", None)
    if ctx is None or not isinstance(ctx, _thread._local):
        return  # made after the patch: already one per green thread

    def take() -> dict[str, Any] | None:
        d = ctx.__dict__
        if not d:
            return None
        saved = dict(d)
        d.clear()
        return saved

    def give_back(saved: dict[str, Any] | None) -> None:
        if saved is not None:
            ctx.__dict__.update(saved)

    green_asyncio.add_slot(take, give_back)


def _adapt_reply_queues(module: ModuleType) -> None:
    for name in ("Run", "RunSync"):
        cls = getattr(module, name, None)
        if cls is None or getattr(cls.__init__, "__reseau__", False):
            continue
        original = cls.__init__

        def __init__(self: Any, *args: object, _original: Any = original,  # noqa: N807
                     **kwargs: object) -> None:
            _original(self, *args, **kwargs)
            current = queue.SimpleQueue  # looked up now: the patched class under the patch
            if type(self.queue) is not current:
                object.__setattr__(self, "queue", current())  # attrs frozen class

        __init__.__reseau__ = True  # type: ignore[attr-defined]
        __init__.__wrapped__ = original  # type: ignore[attr-defined]
        cls.__init__ = __init__


def install() -> None:
    """Adapt trio now if imported, else when it is (idempotent)."""
    when_imported("trio._core._entry_queue", _adapt_entry_queue)
    when_imported("trio._core._run_context", _adapt_run_context)
    when_imported("trio._threads", _adapt_reply_queues)
