"""Level-triggered readiness backends: epoll on Linux, ``poll(2)`` elsewhere.

Both expose the same calls (:class:`Poller`) with events already translated to ``READ``/
``WRITE`` bits, so :class:`~reseau_patch.io.event_loop.EventLoop` never sees backend flags.
Contract: a poller belongs to its loop's thread (no locking); ``poll`` returns a new list
of ``(fd, bits)`` the caller owns; ``register``/``modify``/``unregister`` act on the
kernel at once (the loop decides when a change is worth a syscall, see ``EventLoop``).

Why level-triggered: with ``EPOLLET`` an edge that arrives while nobody listens is gone
for good, and every consumer must read to ``EAGAIN`` or re-arm itself. Reseau.jl spent a
month on such lost wake-ups (design brief §1.5, §10.3). Level-triggered readiness keeps
reporting until the condition clears, so the one rule left is: drop interest while a
consumer cannot take data, or the loop spins.

Compiled as ``reseau_patch.io._poller_c`` (typed by ``_poller_c.pxd``, see io/accel.py):
there ``EpollPoller.poll`` calls ``epoll_wait(2)`` itself (GIL released) into a C array,
the one place where the compiled module runs other code than this file's. It is one loop
tick's fixed cost, and ``select.epoll.poll`` builds a list of tuples we would rebuild.
"""

from __future__ import annotations

import errno
import os
import select

READ = 1
WRITE = 2
#: Reported together with READ/WRITE when the kernel flags an error or hang-up, so a
#: watcher waiting for either direction wakes and discovers the condition by reading.
ERROR = 4
#: Events taken per ``epoll_wait``; more ready fds are reported by the next tick.
MAX_EVENTS = 256
#: Longest single wait in seconds. epoll_wait/poll take an int of milliseconds (about
#: 24.8 days): a timer further away than that wakes the loop early, which then re-waits.
MAX_TIMEOUT = 2_000_000.0

_original_epoll = getattr(select, "epoll", None)
_original_poll = getattr(select, "poll", None)

_EPOLLIN = getattr(select, "EPOLLIN", 0x001)
_EPOLLOUT = getattr(select, "EPOLLOUT", 0x004)
_EPOLLERR_HUP = getattr(select, "EPOLLERR", 0x008) | getattr(select, "EPOLLHUP", 0x010)
_EPOLLRDHUP = getattr(select, "EPOLLRDHUP", 0x2000)


def _originals() -> tuple[object, object]:
    """Backend constructors that survive gevent's ``patch_select`` (which deletes epoll)."""
    epoll, poll = _original_epoll, _original_poll
    if epoll is None or poll is None:
        try:
            from gevent.monkey import get_original

            epoll = epoll or get_original("select", "epoll")
            poll = poll or get_original("select", "poll")
        except (ImportError, AttributeError):
            pass
    return epoll, poll


def _epoll_mask(events: int) -> int:
    """READ|WRITE -> the epoll interest mask."""
    mask = 0
    if events & READ:
        # RDHUP: a peer's FIN is readable (EOF) even when no byte is pending.
        mask |= _EPOLLIN | _EPOLLRDHUP
    if events & WRITE:
        mask |= _EPOLLOUT
    return mask


def _epoll_bits(ev: int) -> int:
    """epoll's revents -> READ|WRITE|ERROR."""
    bits = 0
    if ev & (_EPOLLIN | _EPOLLRDHUP):
        bits |= READ
    if ev & _EPOLLOUT:
        bits |= WRITE
    if ev & _EPOLLERR_HUP:
        bits |= READ | WRITE | ERROR
    return bits


def _epoll_wait_py(poller: EpollPoller, timeout: float) -> list[tuple[int, int]]:
    """``epoll_wait`` through ``select.epoll`` (what ``EpollPoller.poll`` runs when pure)."""
    if timeout > MAX_TIMEOUT:
        timeout = MAX_TIMEOUT
    table = poller._bits
    out = []
    for fd, ev in poller._ep.poll(timeout, MAX_EVENTS):
        bits = table.get(ev)
        if bits is None:
            bits = table[ev] = _epoll_bits(ev)
        out.append((fd, bits))
    return out


_CTL_ADD = 1  # EPOLL_CTL_ADD, _DEL, _MOD (sys/epoll.h; the same on every Linux arch)
_CTL_DEL = 2
_CTL_MOD = 3


def _epoll_ctl_py(poller: EpollPoller, op: int, fd: int, mask: int) -> int:
    """``epoll_ctl`` through ``select.epoll``: 0, or the errno it failed with (a closed
    poller raises ValueError, as select.epoll does)."""
    try:
        if op == _CTL_ADD:
            poller._ep.register(fd, mask)
        elif op == _CTL_MOD:
            poller._ep.modify(fd, mask)
        else:
            poller._ep.unregister(fd)
    except OSError as exc:
        return exc.errno
    return 0


# gevent's pure-Python-mode trick: Cython does not see assignments through locals(), so
# compiled, these names are _poller_c.pxd's inline C functions (epoll_wait into a C array
# with the GIL released; epoll_ctl); pure, they are the functions above.
locals()["_epoll_wait"] = _epoll_wait_py
locals()["_epoll_ctl"] = _epoll_ctl_py


class Poller:
    """What the loop calls; one subclass per backend. ``ctl_calls`` counts the kernel
    registration calls made (for tests and statistics: the loop avoids them when it can)."""

    name = "?"

    def __init__(self) -> None:
        self.ctl_calls = 0

    def fileno(self) -> int:
        """The kernel object's fd, or -1 when the backend has none."""
        return -1

    def register(self, fd: int, events: int) -> None:
        raise NotImplementedError

    def modify(self, fd: int, events: int) -> None:
        raise NotImplementedError

    def unregister(self, fd: int) -> None:
        raise NotImplementedError

    def poll(self, timeout: float) -> list[tuple[int, int]]:
        """Wait at most ``timeout`` seconds (-1 = forever); returns ``(fd, READ|WRITE|ERROR)``."""
        raise NotImplementedError

    def close(self) -> None:
        pass


class EpollPoller(Poller):
    """``epoll(7)`` in level-triggered mode. ``EPOLLHUP``/``EPOLLERR`` are always reported."""

    name = "epoll"

    def __init__(self, epoll_cls: object) -> None:
        self.ctl_calls = 0
        self._ep = epoll_cls()  # type: ignore[operator]  # CLOEXEC by default since 3.4
        self._epfd = self._ep.fileno()
        # READ|WRITE -> epoll mask, as a table: register/modify run on every gevent wait.
        self._masks = tuple(_epoll_mask(events) for events in range(4))
        # epoll's revents -> READ|WRITE|ERROR, filled as new combinations show up (pure).
        self._bits: dict[int, int] = {}

    def fileno(self) -> int:
        return self._ep.fileno()

    # _epoll_ctl: bound through locals() above (a C call when compiled), hence the noqa.
    def register(self, fd: int, events: int) -> None:
        """Add ``fd``; if the kernel already has it (a dup, or our stale entry), modify."""
        mask = self._masks[events]
        self.ctl_calls += 1
        err = _epoll_ctl(self, _CTL_ADD, fd, mask)  # noqa: F821
        if err == errno.EEXIST:
            self.ctl_calls += 1
            err = _epoll_ctl(self, _CTL_MOD, fd, mask)  # noqa: F821
        if err:
            raise OSError(err, os.strerror(err))

    def modify(self, fd: int, events: int) -> None:
        """Change interest; an fd closed and reused behind our back is re-added (ENOENT)."""
        mask = self._masks[events]
        self.ctl_calls += 1
        err = _epoll_ctl(self, _CTL_MOD, fd, mask)  # noqa: F821
        if err == errno.ENOENT:
            self.ctl_calls += 1
            err = _epoll_ctl(self, _CTL_ADD, fd, mask)  # noqa: F821
        if err:
            raise OSError(err, os.strerror(err))

    def unregister(self, fd: int) -> None:
        """Forget ``fd``. Already closed (EBADF), already gone (ENOENT), or by now a file that
        epoll cannot hold at all (EPERM: the number was closed and reused for a regular file
        or /dev/null) is not an error: it is not in the set either way."""
        self.ctl_calls += 1
        err = _epoll_ctl(self, _CTL_DEL, fd, 0)  # noqa: F821
        if err and err != errno.EBADF and err != errno.ENOENT and err != errno.EPERM:
            raise OSError(err, os.strerror(err))

    def poll(self, timeout: float) -> list[tuple[int, int]]:
        """Wait at most ``timeout`` seconds (-1 = forever); returns ``(fd, READ|WRITE|ERROR)``.

        A signal handler that raises interrupts the wait with its exception; any other
        interrupted wait resumes with the time left (PEP 475), as ``select.epoll`` does."""
        if self._epfd < 0:
            raise ValueError("I/O operation on closed epoll object")
        return _epoll_wait(self, timeout)  # noqa: F821 - see locals() above

    def close(self) -> None:
        self._epfd = -1
        self._ep.close()


class PollPoller(Poller):
    """``poll(2)`` fallback for platforms without epoll (same level-triggered contract)."""

    name = "poll"

    def __init__(self, poll_cls: object) -> None:
        self.ctl_calls = 0
        self._p = poll_cls()  # type: ignore[operator]

    @staticmethod
    def _mask(events: int) -> int:
        return (select.POLLIN if events & READ else 0) | (select.POLLOUT if events & WRITE else 0)

    def register(self, fd: int, events: int) -> None:
        self.ctl_calls += 1
        self._p.register(fd, self._mask(events))

    def modify(self, fd: int, events: int) -> None:
        self.register(fd, events)

    def unregister(self, fd: int) -> None:
        self.ctl_calls += 1
        try:
            self._p.unregister(fd)
        except KeyError:
            pass

    def poll(self, timeout: float) -> list[tuple[int, int]]:
        ms = None if timeout < 0 else int(min(timeout, MAX_TIMEOUT) * 1000 + 0.999)
        out = []
        for fd, ev in self._p.poll(ms):
            bits = 0
            if ev & select.POLLIN:
                bits |= READ
            if ev & select.POLLOUT:
                bits |= WRITE
            if ev & (select.POLLERR | select.POLLHUP | select.POLLNVAL):
                bits |= READ | WRITE | ERROR
            out.append((fd, bits))
        return out


def make_poller(backend: str | None = None) -> Poller:
    """The best backend here, or the one named (``"epoll"`` / ``"poll"``)."""
    epoll, poll = _originals()
    if backend not in (None, "epoll", "poll"):
        raise ValueError(f"unknown poller backend {backend!r}; expected 'epoll' or 'poll'")
    if backend in (None, "epoll") and epoll is not None:
        return EpollPoller(epoll)
    if backend == "epoll":
        raise OSError(errno.ENOSYS, "epoll is not available on this platform")
    if poll is None:
        raise OSError(errno.ENOSYS, "neither epoll nor poll is available")
    return PollPoller(poll)


# Last statement: the Cython-compiled twin's names replace the ones above, unless pure
# Python is requested or it was not built (see io/accel.py).
from .accel import import_c_accel  # noqa: E402

import_c_accel(globals(), "reseau_patch.io._poller_c")
