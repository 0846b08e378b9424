"""asyncio's "running loop" per green thread: handed back while a loop's greenlet waits.

asyncio keeps the running loop per OS thread (C ``_asyncio``: the thread-state dict; the
pure-Python fallback: a ``threading.local`` made before any patch). Green threads share
one OS thread, so a loop running in one green thread would be "running" in all of them
(``asyncio.run() cannot be called from a running event loop``).

A loop only gives up its greenlet in its selector's wait, and under the patch that wait is
ours (:mod:`.green_select`). So the wait brackets the park: :func:`suspend_running_loop`
takes the thread's slot (setting it to None) and :func:`resume_running_loop` puts it back
when the greenlet resumes. Whatever runs meanwhile — another green thread's
``asyncio.run()``, a ``to_thread`` worker — sees its own value. Switches that involve no
loop cost nothing: no greenlet trace function, no wrapper around asyncio's getters, and
both implementations are covered because the bracket goes through
``asyncio.events._get_running_loop``/``_set_running_loop``, whichever one asyncio bound.

Limit: a loop callback that blocks on green I/O *outside* the selector (a synchronous
``requests.get`` inside a coroutine) keeps the slot while parked.

The policy's "current event loop" (``set_event_loop``/``get_event_loop`` outside a running
loop) is per thread too, in ``BaseDefaultEventLoopPolicy._Local``, a ``threading.local``
made when asyncio was imported — often before the patch. :func:`install` (thread=True)
makes it per green thread: new policies get a greenlet-local ``_Local``, and the existing
policy's value moves to the main green thread.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

from .import_hooks import when_imported

__all__ = ["add_slot", "install", "resume_running_loop", "suspend_running_loop"]


#: Other per-OS-thread "running loop" slots to bracket the same way (trio's run context when
#: trio was imported before the patch): (take, give_back) pairs; empty costs nothing.
_other_slots: list[tuple[Callable[[], Any], Callable[[Any], None]]] = []


def add_slot(take: Callable[[], Any], give_back: Callable[[Any], None]) -> None:
    """Bracket another per-thread slot: ``take()`` clears it and returns what
    ``give_back(value)`` restores when the waiting greenlet resumes."""
    if (take, give_back) not in _other_slots:
        _other_slots.append((take, give_back))


def suspend_running_loop() -> Any:
    """Clear this OS thread's running asyncio loop (and registered slots); return what to
    give back (or None)."""
    events = sys.modules.get("asyncio.events")
    loop = None
    if events is not None:
        loop = events._get_running_loop()
        if loop is not None:
            events._set_running_loop(None)
    if _other_slots:
        return loop, [take() for take, _ in _other_slots]
    return loop


def resume_running_loop(token: Any) -> None:
    """Give what :func:`suspend_running_loop` took back to this greenlet."""
    if type(token) is tuple:
        loop, others = token
        for (_, give_back), value in zip(_other_slots, others, strict=False):
            give_back(value)
    else:
        loop = token
    if loop is not None:
        sys.modules["asyncio.events"]._set_running_loop(loop)


def _adapt_policy(events: ModuleType) -> None:
    from gevent.local import local

    base = getattr(events, "BaseDefaultEventLoopPolicy", None)
    if base is None or issubclass(base._Local, local):
        return

    class _Local(local):
        _loop = None
        _set_called = False

    old_local_cls = base._Local
    base._Local = _Local
    policy = events._event_loop_policy
    if isinstance(policy, base) and isinstance(policy._local, old_local_cls):
        moved = _Local()  # this thread's value becomes the calling (main) green thread's
        moved._loop = policy._local._loop
        moved._set_called = policy._local._set_called
        policy._local = moved


def install() -> None:
    """Per-green-thread event loop policy state, now or when asyncio is imported."""
    when_imported("asyncio.events", _adapt_policy)
