"""``os.fork``/``os.waitpid`` for ``patch_all(os=True)``: gevent's, made safe for forks in
real threads (``thread=False``).

gevent's ``fork`` starts a child watcher on the *forking* thread's loop, and its
``waitpid`` then waits on that loop from whichever thread calls it: a server thread that
forks (``socketserver.ForkingMixIn``) and a main thread that reaps (``server_close()``)
end in ``LoopExit``, because the watcher lives on a loop the waiting thread does not run.

Here a fork in a thread whose hub runs a non-default loop is not watched (it still
re-initialises gevent in the child), and ``waitpid(pid)`` for a child nobody watches,
without ``WNOHANG``, waits for the exit cooperatively on the *calling* thread's loop
through a pidfd (readable when the child exits; it does not reap), then reaps with the
real ``waitpid``. The status goes to whoever asks, as without gevent. Main-thread forks
keep gevent's behaviour (SIGCHLD handlers, ``waitpid(-1)`` of watched children).
"""

from __future__ import annotations

import os as _stdos
import posix
from typing import Any

__all__ = ["fork", "install", "waitpid"]

_state: dict[str, Any] = {}


def _on_default_loop() -> bool:
    from gevent.hub import get_hub

    # The hub is created if needed: a real thread's first hub runs a non-default loop.
    return bool(getattr(get_hub().loop, "default", True))


def fork(*args: Any, **kwargs: Any) -> int:
    """gevent's watched fork on the default loop; elsewhere gevent's unwatched one."""
    if _on_default_loop():
        return _state["fork"](*args, **kwargs)
    from gevent.os import fork_gevent

    return fork_gevent()


def waitpid(pid: int, options: int) -> tuple[int, int]:
    """gevent's ``waitpid``; a child nobody watches is awaited through a pidfd."""
    from gevent import os as gos

    if pid > 0 and not options & _stdos.WNOHANG and pid not in gos._watched_children \
            and hasattr(_stdos, "pidfd_open"):
        _wait_for_exit(pid)
    return _state["waitpid"](pid, options)


def _wait_for_exit(pid: int) -> None:
    from gevent.hub import get_hub

    try:
        fd = _stdos.pidfd_open(pid)
    except OSError:
        return  # not a process of ours (any more): the real waitpid says what it is
    try:
        hub = get_hub()
        watcher = hub.loop.io(fd, 1)  # READ: the pidfd polls readable once the child exits
        try:
            hub.wait(watcher)
        finally:
            watcher.close()
    finally:
        posix.close(fd)  # the watcher is gone: no need for gevent's deferred close


def install() -> None:
    """Wrap the current ``os.fork``/``os.waitpid`` (gevent's, after patch_os)."""
    from gevent.monkey.api import patch_item

    if _stdos.fork is fork:
        return
    _state["fork"] = _stdos.fork
    _state["waitpid"] = _stdos.waitpid
    patch_item(_stdos, "fork", fork)
    patch_item(_stdos, "waitpid", waitpid)
