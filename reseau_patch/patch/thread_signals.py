"""Green threads are threads for ``signal``: only the main thread may set handlers.

With ``patch_all(thread=True)`` a ``threading.Thread`` runs as a greenlet of the main OS
thread, so ``signal.signal`` and ``signal.set_wakeup_fd`` would succeed in it, where the
stdlib raises ``ValueError`` in any thread but the main one. Code decides on that answer:
trio and anyio probe ``signal.signal`` to learn whether they run in the main thread, and a
trio loop in a green thread would otherwise take over ``set_wakeup_fd`` (and SIGINT) from
the main thread. So from a thread started with ``threading.Thread`` (other than the main
one) both raise as the stdlib does. Plain greenlets (``gevent.spawn``) and the hub are not
threads and keep gevent's behaviour.
"""

from __future__ import annotations

import functools
import signal as _stdsignal
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["install"]

_MESSAGE = "{} only works in main thread of the main interpreter"


def _in_other_thread() -> bool:
    current = threading.current_thread()
    return current is not threading.main_thread() and not isinstance(
        current, threading._DummyThread)


def _main_thread_only(fn: Callable[..., Any], name: str) -> Callable[..., Any]:
    @functools.wraps(fn)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        if _in_other_thread():
            raise ValueError(_MESSAGE.format(name))
        return fn(*args, **kwargs)

    guarded.__reseau__ = True  # type: ignore[attr-defined]
    return guarded


def install(patch_item: Callable[[Any, str, Any], None]) -> None:
    """Guard ``signal.signal``/``set_wakeup_fd`` as they are now (gevent's or the stdlib's)."""
    for name, label in (("signal", "signal"), ("set_wakeup_fd", "set_wakeup_fd")):
        current = getattr(_stdsignal, name)
        if not getattr(current, "__reseau__", False):
            patch_item(_stdsignal, name, _main_thread_only(current, label))
