"""``select``/``selectors`` for ``patch_all(select=True)``.

Readiness comes from gevent's implementations running on our loop (plain sockets keep
their bytes in the kernel, so the fd tells the truth). Sockets that *do* hold bytes in
user space — a TLS channel with decrypted data — expose ``_rp_pending()``; those count
as readable even when their fd is not. ``select.epoll``/``kqueue`` are never removed:
trio and asyncio loops in real threads need them.
"""

from __future__ import annotations

import selectors as _stdselectors
from typing import Any

import gevent.select as _gselect
import gevent.selectors as _gselectors

__all__ = ["DefaultSelector", "ReseauSelector", "poll", "select"]


def _buffered(obj: Any) -> bool:
    pending = getattr(obj, "_rp_pending", None)
    try:
        return bool(pending and pending())
    except OSError:
        return False


def select(rlist: Any, wlist: Any, xlist: Any, timeout: float | None = None) -> tuple:
    """``select.select`` that also reports sockets with bytes buffered in a channel."""
    early = [s for s in rlist if _buffered(s)]
    if early:
        r, w, x = _gselect.select(rlist, wlist, xlist, 0)
        return early + [s for s in r if s not in early], w, x
    return _gselect.select(rlist, wlist, xlist, timeout)


poll = getattr(_gselect, "poll", None)


class ReseauSelector(_gselectors.GeventSelector):
    """gevent's selector on our loop, plus channel-buffered readability."""

    def select(self, timeout: float | None = None) -> list:
        early = []
        for key in self.get_map().values():
            if key.events & _stdselectors.EVENT_READ and _buffered(key.fileobj):
                early.append((key, _stdselectors.EVENT_READ))
        if early:
            rest = super().select(0)
            seen = {k.fd for k, _ in early}
            return early + [(k, ev) for k, ev in rest if k.fd not in seen]
        return super().select(timeout)


DefaultSelector = ReseauSelector
