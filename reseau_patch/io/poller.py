"""Level-triggered readiness backends: epoll on Linux, ``poll(2)`` elsewhere.

Both expose the same four calls with events already translated to ``READ``/``WRITE``
bits, so :class:`~reseau_patch.io.event_loop.EventLoop` never sees backend flags.

Why level-triggered: with ``EPOLLET`` an edge that arrives while nobody listens is gone
for good, and every consumer must read to ``EAGAIN`` or re-arm itself. Reseau.jl spent a
month on such lost wake-ups (design brief §1.5, §10.3). Level-triggered readiness keeps
reporting until the condition clears, so the one rule left is: drop interest while a
consumer cannot take data, or the loop spins.
"""

from __future__ import annotations

import errno
import select

READ = 1
WRITE = 2
#: Reported together with READ/WRITE when the kernel flags an error or hang-up, so a
#: watcher waiting for either direction wakes and discovers the condition by reading.
ERROR = 4

_original_epoll = getattr(select, "epoll", None)
_original_poll = getattr(select, "poll", None)


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


class EpollPoller:
    """``epoll(7)`` in level-triggered mode. ``EPOLLHUP``/``EPOLLERR`` are always reported."""

    name = "epoll"
    _IN = select.EPOLLIN if hasattr(select, "EPOLLIN") else 1
    _OUT = select.EPOLLOUT if hasattr(select, "EPOLLOUT") else 4
    _ERR = (select.EPOLLERR | select.EPOLLHUP) if hasattr(select, "EPOLLERR") else 0x18
    _RDHUP = getattr(select, "EPOLLRDHUP", 0x2000)

    def __init__(self, epoll_cls: object) -> None:
        self._ep = epoll_cls()  # type: ignore[operator]  # CLOEXEC by default since 3.4
        # READ|WRITE -> epoll mask, as a table: register/modify run on every gevent wait.
        self._masks = tuple(self._mask(events) for events in range(4))
        # epoll's revents -> READ|WRITE|ERROR, filled as new combinations show up.
        self._bits: dict[int, int] = {}

    def fileno(self) -> int:
        return self._ep.fileno()

    def _mask(self, events: int) -> int:
        mask = 0
        if events & READ:
            # RDHUP: a peer's FIN is readable (EOF) even when no byte is pending.
            mask |= self._IN | self._RDHUP
        if events & WRITE:
            mask |= self._OUT
        return mask

    def _translate(self, ev: int) -> int:
        bits = 0
        if ev & (self._IN | self._RDHUP):
            bits |= READ
        if ev & self._OUT:
            bits |= WRITE
        if ev & self._ERR:
            bits |= READ | WRITE | ERROR
        self._bits[ev] = bits
        return bits

    def register(self, fd: int, events: int) -> None:
        """Add ``fd``; if the kernel already has it (a dup, or our stale entry), modify."""
        try:
            self._ep.register(fd, self._masks[events])
        except FileExistsError:
            self._ep.modify(fd, self._masks[events])

    def modify(self, fd: int, events: int) -> None:
        """Change interest; an fd closed and reused behind our back is re-added (ENOENT)."""
        try:
            self._ep.modify(fd, self._masks[events])
        except FileNotFoundError:
            self._ep.register(fd, self._masks[events])

    def unregister(self, fd: int) -> None:
        """Forget ``fd``. Already closed (EBADF) or already gone (ENOENT) is not an error."""
        try:
            self._ep.unregister(fd)
        except OSError as exc:
            if exc.errno not in (errno.EBADF, errno.ENOENT):
                raise

    def poll(self, timeout: float) -> list[tuple[int, int]]:
        """Wait at most ``timeout`` seconds (-1 = forever); returns ``(fd, READ|WRITE|ERROR)``."""
        table = self._bits
        out = []
        for fd, ev in self._ep.poll(timeout, 256):
            bits = table.get(ev)
            out.append((fd, self._translate(ev) if bits is None else bits))
        return out

    def close(self) -> None:
        self._ep.close()


class PollPoller:
    """``poll(2)`` fallback for platforms without epoll (same level-triggered contract)."""

    name = "poll"

    def __init__(self, poll_cls: object) -> None:
        self._p = poll_cls()  # type: ignore[operator]
        self._fd = -1

    def fileno(self) -> int:
        return self._fd

    @staticmethod
    def _mask(events: int) -> int:
        return (select.POLLIN if events & READ else 0) | (select.POLLOUT if events & WRITE else 0)

    def register(self, fd: int, events: int) -> None:
        self._p.register(fd, self._mask(events))

    modify = register

    def unregister(self, fd: int) -> None:
        try:
            self._p.unregister(fd)
        except KeyError:
            pass

    def poll(self, timeout: float) -> list[tuple[int, int]]:
        ms = None if timeout < 0 else int(timeout * 1000 + 0.999)
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

    def close(self) -> None:
        pass


def make_poller(backend: str | None = None) -> EpollPoller | PollPoller:
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
