"""``loop.stat(path, interval)``: a file-status watcher that polls with an EventLoop timer.

The callback runs when ``os.stat(path)`` changes (any of inode, mode, link count,
owner, size, mtime, ctime), including appearing and disappearing. ``attr`` is the latest
result, ``prev`` the one before; both are ``None`` while the file does not exist
(libev reports ``st_nlink == 0`` for that).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ..io.event_loop import TimerHandle
from .watchers import LoopRefWatcher

if TYPE_CHECKING:
    from .loop import ReseauLoop

__all__ = ["StatWatcher"]

#: Period used when the caller passes 0 or a negative interval (libev picks a default too).
DEFAULT_INTERVAL = 0.1
#: Lower bound, so a tiny interval cannot turn the poll into a busy loop.
MIN_INTERVAL = 0.01


def _stat(path: bytes) -> os.stat_result | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st if st.st_nlink else None


def _key(st: os.stat_result | None) -> tuple | None:
    if st is None:
        return None
    return (st.st_dev, st.st_ino, st.st_mode, st.st_nlink, st.st_uid, st.st_gid,
            st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class StatWatcher(LoopRefWatcher):
    """Polls ``path`` every ``interval`` seconds while started."""

    def __init__(self, loop: ReseauLoop, path: str | bytes, interval: float = 0.0,
                 ref: bool = True, priority: int | None = None) -> None:
        super().__init__(loop, ref, priority)
        self._path = path
        self._paths = os.fsencode(path)
        self._interval = interval
        self._attr: os.stat_result | None = None
        self._prev: os.stat_result | None = None
        self._timer: TimerHandle | None = None

    @property
    def path(self) -> str | bytes:
        return self._path

    @property
    def interval(self) -> float:
        return self._interval

    @property
    def attr(self) -> os.stat_result | None:
        return self._attr

    @property
    def prev(self) -> os.stat_result | None:
        return self._prev

    def _activate(self) -> None:
        if self._interval <= 0:
            self._interval = DEFAULT_INTERVAL
        self._attr = _stat(self._paths)
        super()._activate()
        self._arm()

    def _deactivate(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super()._deactivate()

    def _arm(self) -> None:
        # The timer itself is unreferenced: the watcher holds the ref (LoopRefWatcher).
        self._timer = self.loop._ev.call_later(max(self._interval, MIN_INTERVAL), self._poll,
                                               ref=False)

    def _poll(self) -> None:
        if not self._active:
            return
        self._arm()
        st = _stat(self._paths)
        if _key(st) != _key(self._attr):
            self._prev, self._attr = self._attr, st
            self._invoke()
