"""``select``/``selectors`` for ``patch_all(select=True)``: the kernel's answers, waits that yield.

Every call first asks the kernel with a zero timeout, through the stdlib's own function
(so results, flags, limits and errors are the stdlib's: no event cap, ``POLLPRI``, regular
files, ``POLLNVAL`` / ``EBADF`` for closed fds). Only when nothing is ready does the caller
wait, and it waits cooperatively: the fds go into a private epoll set whose own fd is
watched on the *calling* thread's Reseau loop (the hub and the other greenlets keep
running), then the zero-timeout call is repeated.

Contract: a green ``poll``/``epoll`` object (and a selector built on one) holds no loop
state: it may be made in one thread and used from another, as the stdlib's may; a wait
parks on the loop of whichever thread calls it. A wait made by a greenlet that runs an
asyncio loop hands the thread's "running loop" slot back while parked (see
:mod:`.green_asyncio`), so another green thread can run its own loop meanwhile.

Sockets that hold bytes in user space — a TLS socket with decrypted data — expose
``_rp_pending()``; they count as readable even when their fd is not: in ``select``, in
``poll`` (registered as objects, not bare numbers) and in selectors.
``select.epoll``/``kqueue`` are never removed: trio and asyncio loops need them.
"""

from __future__ import annotations

import errno
import math
import operator
import select as _stdselect
import selectors as _stdselectors
import time
import weakref
from collections.abc import Iterable
from typing import Any

import gevent
from gevent import get_hub, getcurrent
from gevent._hub_local import get_hub_if_exists
from gevent.monkey import get_original

from . import green_asyncio

__all__ = ["DefaultSelector", "epoll", "install_selectors", "poll", "select"]

# The stdlib's own functions, whatever ran before us (a reload, or gevent.monkey).
_real_select = get_original("select", "select")
_real_poll = get_original("select", "poll")
_real_epoll = get_original("select", "epoll") if hasattr(_stdselect, "epoll") else None
_allocate_lock = get_original("_thread", "allocate_lock")

_EPOLL_BITS = 0
for _name in ("POLLIN", "POLLPRI", "POLLOUT", "POLLRDNORM", "POLLRDBAND", "POLLWRNORM",
              "POLLWRBAND", "POLLMSG", "POLLRDHUP"):
    _EPOLL_BITS |= getattr(_stdselect, _name, 0)  # same bit values as EPOLL* on Linux
_READ_BITS = _stdselect.POLLIN | getattr(_stdselect, "POLLRDNORM", 0)


def _buffered(obj: Any) -> bool:
    pending = getattr(obj, "_rp_pending", None)
    try:
        return bool(pending and pending())
    except OSError:
        return False


def _fileno(obj: Any) -> int:
    return obj if isinstance(obj, int) else obj.fileno()


# --------------------------------------------------------------------------- waiting
def _hub_loop() -> Any:
    """This thread's io loop, or None where nothing may park (in the hub, or a hub whose
    loop is not ours)."""
    from ..sockets.parking import current_io_loop, in_hub

    try:
        return None if in_hub() else current_io_loop()
    except RuntimeError:
        return None


def _wait_readable(fd: int, timeout: float | None, *, keep: bool = False) -> None:
    """Return when ``fd`` (an epoll set) is readable or ``timeout`` s passed.

    Parks on the calling thread's Reseau loop; blocks the thread only where nothing may
    park. Afterwards the loop forgets the fd (``closing_fd``) unless another waiter watches
    it, or ``keep`` is set: a long-lived set (a green :class:`epoll`) stays registered with
    this thread's loop between waits (two syscalls less per wait), and its ``close()``
    tells this thread's loop (:func:`_forget_here`).
    """
    from ..io.event_loop import READ, IOWatcher
    from ..sockets.parking import Parker

    loop = _hub_loop()
    if loop is None:
        _real_select([fd], [], [], timeout)
        return
    parker = Parker(fd, "wait for readiness")
    watcher = IOWatcher(loop, fd, READ, ref=False)  # the parked greenlet holds the ref
    token = green_asyncio.suspend_running_loop()
    try:
        watcher.start(parker.wake, rearm=True)  # a fresh fd may reuse a known number
        parker.park(loop, timeout)
    finally:
        watcher.stop()
        if not keep and not loop.watchers_for(fd):
            loop.closing_fd(fd)
        green_asyncio.resume_running_loop(token)


def _forget_here(fd: int) -> None:
    """``fd`` is about to be closed: drop it from this thread's loop, if it kept it.

    Another thread's loop that kept it (a set polled there, closed here) holds a stale
    entry the kernel already dropped with the close; that loop re-arms on reuse.
    """
    hub = get_hub_if_exists()
    loop = getattr(getattr(hub, "loop", None), "io_loop", None)
    if loop is not None and loop.is_loop_thread() and not loop.closed:
        loop.closing_fd(fd)


def _yield() -> None:
    """A scheduling point for a call that answers at once (gevent's select does the same):
    a loop that always finds work must not starve the other greenlets of its thread."""
    if getcurrent() is get_hub():
        return
    token = green_asyncio.suspend_running_loop()
    try:
        gevent.sleep(0)
    finally:
        green_asyncio.resume_running_loop(token)


def _wait_any(interest: Iterable[tuple[int, int]], timeout: float | None) -> None:
    """Wait until one of (fd, poll-style mask) may be ready, or ``timeout`` s passed."""
    ep = _real_epoll()
    try:
        for fd, mask in interest:
            try:
                ep.register(fd, mask & _EPOLL_BITS)
            except OSError as exc:
                # EPERM: a regular file, which poll reports ready at once and epoll refuses
                # (only an fd asked for nothing but POLLPRI gets here; it never fires).
                # EBADF: closed since the zero-timeout check, which reports it next round.
                if exc.errno not in (errno.EPERM, errno.EBADF):
                    raise
        _wait_readable(ep.fileno(), timeout)
    finally:
        ep.close()


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


_NS_MIN, _NS_MAX = -(1 << 63), (1 << 63) - 1  # _PyTime_t: int64 nanoseconds
_INT_MIN, _INT_MAX = -(1 << 31), (1 << 31) - 1


def _timeout_ns(timeout: Any, what: str, unit: int) -> int:
    """A timeout in seconds (``unit`` 10**9) or milliseconds (10**6), as nanoseconds, read
    as CPython's ``_PyTime_From(Milli)SecondsObject`` reads it (rounded away from zero),
    with its errors: a float (NaN: ValueError) or an ``__index__`` int, else TypeError."""
    if isinstance(timeout, float):
        if math.isnan(timeout):
            raise ValueError("Invalid value NaN (not a number)")
        d = timeout * unit
        if not -9.223372036854775808e18 <= d < 9.223372036854775808e18:
            raise OverflowError("timestamp out of range for platform time_t")
        return math.ceil(d) if d >= 0 else math.floor(d)
    try:
        n = operator.index(timeout)
    except TypeError:
        raise TypeError(f"timeout must be {what} or None") from None
    if not _NS_MIN <= n * unit <= _NS_MAX:
        raise OverflowError("timestamp too large to convert to C _PyTime_t")
    return n * unit


def _ms(ns: int, ceiling: bool) -> int:
    """Whole milliseconds for poll(2)/epoll_wait(2): ``OverflowError`` beyond a C int."""
    ms = -(-ns // 10**6) if ceiling or ns >= 0 else ns // 10**6
    if not _INT_MIN <= ms <= _INT_MAX:
        raise OverflowError("timeout is too large")
    return ms


def _as_list(objs: Any) -> list:
    try:
        it = iter(objs)
    except TypeError:
        raise TypeError("arguments 1-3 must be sequences") from None
    return list(it)


# --------------------------------------------------------------------------- select()
def select(rlist: Any, wlist: Any, xlist: Any, timeout: Any = None) -> tuple:
    """``select.select``: the stdlib's answer; a wait yields to the hub."""
    rlist, wlist, xlist = _as_list(rlist), _as_list(wlist), _as_list(xlist)
    seconds = None
    if timeout is not None:
        ns = _timeout_ns(timeout, "a float", 10**9)
        if ns < 0:
            raise ValueError("timeout must be non-negative")
        seconds = ns / 1e9
    deadline = _deadline(seconds)
    parked = False
    while True:
        r, w, x = _real_select(rlist, wlist, xlist, 0)
        early = [s for s in rlist if _buffered(s) and s not in r]
        if r or w or x or early or seconds == 0:
            if not parked:
                _yield()
            return early + r, w, x
        left = _remaining(deadline)
        if left == 0:
            return [], [], []
        interest: dict[int, int] = {}
        for objs, mask in ((rlist, _stdselect.POLLIN), (wlist, _stdselect.POLLOUT),
                           (xlist, _stdselect.POLLPRI)):
            for obj in objs:
                fd = _fileno(obj)
                interest[fd] = interest.get(fd, 0) | mask
        _wait_any(interest.items(), left)
        parked = True


# --------------------------------------------------------------------------- poll()
class poll:  # noqa: N801 - the stdlib's name
    """``select.poll()``: a real poll object asked with timeout 0; waits yield to the hub.

    Like the stdlib's, one ``poll()`` call at a time per object (``RuntimeError``
    otherwise); registration may happen from any thread, also during a wait.
    """

    __slots__ = ("_poll", "_fds", "_tls", "_polling", "_lock")

    def __init__(self) -> None:
        self._poll = _real_poll()
        self._fds: dict[int, int] = {}
        # fd -> weak reference to a registered object with ``_rp_pending`` (a TLS socket):
        # weak, because the stdlib's poll keeps only the fd, never the object alive.
        self._tls: dict[int, weakref.ref] = {}
        self._polling = False
        # Held for a flag flip only, never across a switch: the real lock, not the green
        # one patch_all installs (urllib3 makes a poll object per request).
        self._lock = _allocate_lock()

    def _track(self, fd: Any, eventmask: int) -> None:
        num = _fileno(fd)
        self._fds[num] = eventmask
        if hasattr(fd, "_rp_pending"):
            self._tls[num] = weakref.ref(fd)
        elif self._tls:
            self._tls.pop(num, None)

    def register(self, fd: Any, eventmask: int = _stdselect.POLLIN | _stdselect.POLLPRI
                 | _stdselect.POLLOUT) -> None:
        self._poll.register(fd, eventmask)
        self._track(fd, eventmask)

    def modify(self, fd: Any, eventmask: int) -> None:
        self._poll.modify(fd, eventmask)
        self._track(fd, eventmask)

    def unregister(self, fd: Any) -> None:
        self._poll.unregister(fd)
        num = _fileno(fd)
        self._fds.pop(num, None)
        self._tls.pop(num, None)

    def _buffered_ready(self, ready: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """``ready`` plus POLLIN for registered TLS sockets holding bytes in user space
        (asked for POLLIN or POLLRDNORM), first, as :func:`select` puts them."""
        early: dict[int, int] = {}
        for fd, ref in list(self._tls.items()):
            obj = ref()
            mask = self._fds.get(fd, 0)
            if obj is not None and mask & _READ_BITS and _buffered(obj):
                early[fd] = mask & _READ_BITS  # what the kernel reports for data
        if not early:
            return ready
        rest = []
        for fd, bits in ready:
            if fd in early:
                early[fd] |= bits
            else:
                rest.append((fd, bits))
        return list(early.items()) + rest

    def poll(self, timeout: Any = None) -> list[tuple[int, int]]:
        seconds = None
        if timeout is not None:
            ms = _ms(_timeout_ns(timeout, "an integer", 10**6), False)
            seconds = None if ms < 0 else ms / 1000.0
        with self._lock:
            if self._polling:
                raise RuntimeError("concurrent poll() invocation")
            self._polling = True
        parked = False
        try:
            deadline = _deadline(seconds)
            while True:
                ready = self._poll.poll(0)
                if self._tls:
                    ready = self._buffered_ready(ready)
                if ready or seconds == 0:
                    break
                left = _remaining(deadline)
                if left == 0:
                    break
                _wait_any(list(self._fds.items()), left)
                parked = True
        finally:
            self._polling = False
        if not parked:
            _yield()
        return ready


# --------------------------------------------------------------------------- epoll()
class epoll:  # noqa: N801 - the stdlib's name
    """``select.epoll()`` whose ``poll`` yields to the hub while nothing is ready.

    A wrapper (the C type cannot be subclassed) over a real epoll: the set lives in the
    kernel, so any thread may register or poll; a wait watches the epoll fd itself.
    """

    __slots__ = ("_ep", "__weakref__")

    def __init__(self, sizehint: int = -1, flags: int = 0) -> None:
        self._ep = _real_epoll(sizehint, flags)

    @classmethod
    def fromfd(cls, fd: int) -> epoll:
        self = cls.__new__(cls)
        self._ep = _real_epoll.fromfd(fd)
        return self

    @property
    def closed(self) -> bool:
        return self._ep.closed

    def close(self) -> None:
        if not self._ep.closed:
            _forget_here(self._ep.fileno())
        self._ep.close()

    def fileno(self) -> int:
        return self._ep.fileno()

    def register(self, fd: Any, eventmask: int = _stdselect.EPOLLIN | _stdselect.EPOLLPRI
                 | _stdselect.EPOLLOUT) -> None:
        self._ep.register(fd, eventmask)

    def modify(self, fd: Any, eventmask: int) -> None:
        self._ep.modify(fd, eventmask)

    def unregister(self, fd: Any) -> None:
        self._ep.unregister(fd)

    def poll(self, timeout: Any = None, maxevents: int = -1) -> list[tuple[int, int]]:
        seconds = None
        if timeout is not None:
            ms = _ms(_timeout_ns(timeout, "an integer", 10**9), True)
            seconds = None if ms < 0 else ms / 1000.0
        deadline = _deadline(seconds)
        parked = False
        while True:
            ready = self._ep.poll(0, maxevents)
            if ready or seconds == 0:
                if not parked:
                    _yield()
                return ready
            left = _remaining(deadline)
            if left == 0:
                return []
            _wait_readable(self._ep.fileno(), left, keep=True)
            parked = True

    def __enter__(self) -> epoll:
        if self._ep.closed:
            raise ValueError("I/O operation on closed epoll object")
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<green {self._ep!r}>"


# --------------------------------------------------------------------------- selectors
def _with_buffered(original: Any) -> Any:
    """Wrap a selector's ``select`` so TLS sockets with buffered plaintext count as readable.

    Only selectors that registered such a socket pay for the check (``_rp_buffered``).
    """

    def select(self: Any, timeout: float | None = None) -> list:
        tls = self.__dict__.get("_rp_buffered")
        if tls:
            early = []
            for fd in list(tls):
                key = self._fd_to_key.get(fd)  # current key: modify() may have replaced it
                if key is None:
                    del tls[fd]
                elif key.events & _stdselectors.EVENT_READ and _buffered(key.fileobj):
                    early.append((key, _stdselectors.EVENT_READ))
            if early:
                seen = {k.fd for k, _ in early}
                rest = original(self, 0)
                return early + [(k, ev) for k, ev in rest if k.fd not in seen]
        return original(self, timeout)

    select.__wrapped__ = original  # type: ignore[attr-defined]
    return select


def _tracking_register(original: Any) -> Any:
    def register(self: Any, fileobj: Any, events: int, data: Any = None) -> Any:
        key = original(self, fileobj, events, data)
        if hasattr(fileobj, "_rp_pending"):
            self.__dict__.setdefault("_rp_buffered", {})[key.fd] = True
        return key

    register.__wrapped__ = original  # type: ignore[attr-defined]
    return register


def _tracking_unregister(original: Any) -> Any:
    def unregister(self: Any, fileobj: Any) -> Any:
        key = original(self, fileobj)
        tls = self.__dict__.get("_rp_buffered")
        if tls:
            tls.pop(key.fd, None)
        return key

    unregister.__wrapped__ = original  # type: ignore[attr-defined]
    return unregister


def install_selectors(patch_item: Any) -> None:
    """Point the stdlib's selector classes at the cooperative primitives (via ``patch_item``).

    ``DefaultSelector`` stays the stdlib's own ``EpollSelector`` class (code checks that name
    and mocks ``selectors.EpollSelector._selector_cls``); its ``_selector_cls`` becomes the
    green :class:`epoll`. ``SelectSelector``/``PollSelector`` get the green ``select``/``poll``.
    """
    sel = _stdselectors
    base = sel._BaseSelectorImpl
    patch_item(base, "register", _tracking_register(base.register))
    patch_item(base, "unregister", _tracking_unregister(base.unregister))
    patch_item(sel.SelectSelector, "_select",
               lambda self, r, w, x, timeout=None: select(r, w, x, timeout))
    patch_item(sel.SelectSelector, "select", _with_buffered(sel.SelectSelector.select))
    if hasattr(sel, "PollSelector"):
        patch_item(sel.PollSelector, "_selector_cls", poll)
    if hasattr(sel, "_PollLikeSelector"):
        patch_item(sel._PollLikeSelector, "select",
                   _with_buffered(sel._PollLikeSelector.select))
    if hasattr(sel, "EpollSelector") and _real_epoll is not None:
        patch_item(sel.EpollSelector, "_selector_cls", epoll)
        patch_item(sel.EpollSelector, "select", _with_buffered(sel.EpollSelector.select))


DefaultSelector = getattr(_stdselectors, "EpollSelector", None) or _stdselectors.PollSelector


def select_items() -> dict[str, Any]:
    """What ``patch_select`` installs in the ``select`` module."""
    items: dict[str, Any] = {"select": select, "poll": poll}
    if _real_epoll is not None:
        items["epoll"] = epoll
    return items
