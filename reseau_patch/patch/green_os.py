"""``os.fork``/``os.waitpid``/``os.close`` for ``patch_all(os=True)``: gevent's, made safe
for forks in real threads (``thread=False``), and a close that closes.

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

gevent's ``os.close`` always defers the close to the hub's next check phase (so that
watchers on the fd are woken first, gevent issue 2100). The fd then stays open after
``os.close`` returns: ``os.close(w); os.read(r, n)`` on a pipe never sees EOF (the process
hangs), and a real thread that closes an fd and ends leaks it (its hub never runs again).
Here the close happens at once unless a watcher of the calling thread's loop is active on
the fd; only then is it deferred, to right after those watchers have been woken.
"""

from __future__ import annotations

import errno
import operator
import os as _stdos
import posix
from typing import Any

__all__ = ["close", "fork", "install", "waitpid"]

_state: dict[str, Any] = {}
#: fds whose close waits for their watchers to be woken (see ``close``).
_closing: set[int] = set()


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


def close(fd: int) -> None:
    """``os.close``: at once, unless a watcher of this thread's loop is active on ``fd``."""
    from gevent._hub_local import get_hub_if_exists

    fd = operator.index(fd)  # the stdlib's TypeError for a non-integer
    if fd in _closing:  # closed already, the kernel just has not heard yet
        raise OSError(errno.EBADF, _stdos.strerror(errno.EBADF))
    hub = get_hub_if_exists()
    closing_fd = getattr(hub.loop, "closing_fd", None) if hub is not None else None
    # closing_fd takes the fd out of the loop's epoll set and, if watchers are active on
    # it, wakes them from a check hook started now (libev feeds them an event).
    if closing_fd is None or not closing_fd(fd):
        posix.close(fd)
        return
    _closing.add(fd)
    check = hub.loop.check()  # started after the wake-up hook: runs right after it

    def close_now() -> None:
        check.close()
        _closing.discard(fd)
        try:
            posix.close(fd)
        except OSError:
            pass  # closed meanwhile by its owner (a socket object, say)

    check.start(close_now)


def install() -> None:
    """Wrap the current ``os.fork``/``os.waitpid`` (gevent's, after patch_os); replace
    gevent's ``os.close``."""
    from gevent.monkey.api import patch_item

    if _stdos.fork is fork:
        return
    _state["fork"] = _stdos.fork
    _state["waitpid"] = _stdos.waitpid
    patch_item(_stdos, "fork", fork)
    patch_item(_stdos, "waitpid", waitpid)
    patch_item(_stdos, "close", close)
