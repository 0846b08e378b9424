"""``queue`` classes for ``patch_all(queue=True)``: gevent's, with two stdlib fidelities.

* ``Empty``/``Full`` are looked up in :mod:`queue` *when raised*, so code that swaps them
  (``mock.patch.object(queue, "Empty", ...)``) still catches what our queues raise.
* ``Queue(0)`` means unbounded, silently, as in the stdlib (gevent warns).
"""

from __future__ import annotations

import queue as _stdqueue
from typing import Any

import gevent.queue as _gq

__all__ = ["LifoQueue", "PriorityQueue", "Queue", "SimpleQueue"]

_Empty = _stdqueue.Empty
_Full = _stdqueue.Full


def _unbounded(maxsize: Any) -> Any:
    return None if maxsize is not None and maxsize <= 0 else maxsize


class _StdlibErrors:
    """Re-raise gevent's Empty/Full as whatever ``queue.Empty``/``Full`` are now."""

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        try:
            return super().get(block, timeout)  # type: ignore[misc]
        except _Empty:
            raise _stdqueue.Empty from None

    def get_nowait(self) -> Any:
        return self.get(False)

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        try:
            super().put(item, block, timeout)  # type: ignore[misc]
        except _Full:
            raise _stdqueue.Full from None

    def put_nowait(self, item: Any) -> None:
        self.put(item, False)


class SimpleQueue(_StdlibErrors, _gq.SimpleQueue):
    def __init__(self, maxsize: Any = None, items: Any = (), *args: Any, **kw: Any) -> None:
        super().__init__(_unbounded(maxsize), items, *args, **kw)


class Queue(_StdlibErrors, _gq.Queue):
    def __init__(self, maxsize: Any = 0, items: Any = (), *args: Any, **kw: Any) -> None:
        super().__init__(_unbounded(maxsize), items, *args, **kw)


class LifoQueue(_StdlibErrors, _gq.LifoQueue):
    def __init__(self, maxsize: Any = 0, items: Any = (), *args: Any, **kw: Any) -> None:
        super().__init__(_unbounded(maxsize), items, *args, **kw)


class PriorityQueue(_StdlibErrors, _gq.PriorityQueue):
    def __init__(self, maxsize: Any = 0, items: Any = (), *args: Any, **kw: Any) -> None:
        super().__init__(_unbounded(maxsize), items, *args, **kw)
