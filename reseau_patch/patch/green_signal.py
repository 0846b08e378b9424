"""``signal.signal``/``getsignal`` for ``patch_all(signal=True)``: an exception raised by a
handler reaches the main greenlet, as it reaches the blocked call in the stdlib.

CPython runs a Python-level handler in the main thread, in whatever frame runs there. In
the stdlib that is the blocking call (``sendall`` waiting in ``poll()``), so the
handler's exception comes out of that call. Under greenlets the frame is often the hub's
(its ``epoll_wait``, a callback, a timer) or another greenlet's; gevent throws hub-level
errors into the main greenlet only from the poll, and an exception raised inside a loop
callback is merely printed. The wrapper installed here routes a handler's exception, from
any greenlet but the main one, through ``Hub.handle_system_error`` — into the main
greenlet, the one blocked in the call the stdlib would interrupt. It is thrown from a
loop callback queued with the loop's wake-up (``run_callback_threadsafe``), not from the
handler itself: a handler interrupted ``epoll_wait``, which PEP 475 resumes with the
timeout it computed before, so switching away from inside it would leave the hub waiting
on stale timers when it resumes.

``signal.pthread_kill`` (``thread=True`` only): ``threading.get_ident()`` then names a green
thread, not an OS thread, and passing it to ``pthread_kill(3)`` is undefined behaviour
(ESRCH at best, a hang or a crash at worst). An ident that is no live OS thread is taken
for a green thread of the thread that patched (the main thread), where it runs.

``signal.signal`` returns and ``signal.getsignal`` reports the caller's own handler, never
the wrapper. ``SIG_DFL``, ``SIG_IGN`` and ``default_int_handler`` are installed unwrapped
(KeyboardInterrupt already goes to the main greenlet). SIGCHLD keeps gevent's handling.
"""

from __future__ import annotations

import signal as _stdsignal
from typing import Any

__all__ = ["getsignal", "install", "install_pthread_kill", "pthread_kill", "signal"]

_state: dict[str, Any] = {"signal": None, "getsignal": None, "pthread_kill": None,
                          "main_ident": None}


class _MainGreenletHandler:
    """Calls ``handler``; its exception is raised in the main greenlet (see module doc)."""

    __slots__ = ("handler",)

    def __init__(self, handler: Any) -> None:
        self.handler = handler

    def __call__(self, signum: int, frame: Any) -> Any:
        try:
            return self.handler(signum, frame)
        except BaseException as exc:
            _raise_in_main_greenlet(exc)
        return None

    def __repr__(self) -> str:
        return f"<signal handler {self.handler!r} (raises in the main greenlet)>"


def _raise_in_main_greenlet(exc: BaseException) -> None:
    from gevent._hub_local import get_hub_if_exists
    from greenlet import getcurrent

    hub = get_hub_if_exists()
    if hub is None or getcurrent() is hub.parent:
        raise exc
    hub.loop.run_callback_threadsafe(hub.handle_system_error, type(exc), exc,
                                     exc.__traceback__)


def _unwrap(handler: Any) -> Any:
    return handler.handler if isinstance(handler, _MainGreenletHandler) else handler


def signal(signalnum: int, handler: Any) -> Any:
    """``signal.signal``; a callable handler's exceptions reach the main greenlet."""
    if callable(handler) and handler is not _stdsignal.default_int_handler \
            and signalnum != _stdsignal.SIGCHLD:
        handler = _MainGreenletHandler(handler)
    return _unwrap(_state["signal"](signalnum, handler))


def getsignal(signalnum: int) -> Any:
    """``signal.getsignal``: the handler the caller installed."""
    return _unwrap(_state["getsignal"](signalnum))


def pthread_kill(thread_id: int, signalnum: int) -> None:
    """``signal.pthread_kill``; a green thread's ident means the OS thread it runs in."""
    import sys

    if thread_id not in sys._current_frames():
        thread_id = _state["main_ident"]
    _state["pthread_kill"](thread_id, signalnum)


def install_pthread_kill() -> None:
    """For ``thread=True``: call from the thread that patches (its green threads' home)."""
    from gevent.monkey import get_original
    from gevent.monkey.api import patch_item

    if not hasattr(_stdsignal, "pthread_kill") or _stdsignal.pthread_kill is pthread_kill:
        return
    _state["main_ident"] = get_original("_thread", "get_ident")()
    _state["pthread_kill"] = _stdsignal.pthread_kill
    patch_item(_stdsignal, "pthread_kill", pthread_kill)


def install() -> None:
    """Wrap the current ``signal.signal``/``getsignal`` (gevent's, after patch_signal)."""
    from gevent.monkey.api import patch_item

    if _stdsignal.signal is signal:
        return
    _state["signal"] = _stdsignal.signal
    _state["getsignal"] = _stdsignal.getsignal
    patch_item(_stdsignal, "signal", signal)
    patch_item(_stdsignal, "getsignal", getsignal)
