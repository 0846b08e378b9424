"""Fixtures for io/ tests: an EventLoop running on its own thread, and a way to wait."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from reseau_patch.io.event_loop import EventLoop

WAIT_S = 10.0  # upper bound for any single wait in these tests


class LoopThread:
    """An EventLoop on a background thread, with helpers to run code on it."""

    def __init__(self) -> None:
        self.loop = EventLoop()
        self.loop.start_thread("test-loop")

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` on the loop thread and return its result."""
        return self.loop.call_sync(fn, *args, timeout=WAIT_S)

    def close(self) -> None:
        self.loop.stop_thread()


class Box:
    """A one-shot result slot filled from a loop callback."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.values: list[Any] = []

    def set(self, *values: Any) -> None:
        self.values.append(values if len(values) != 1 else values[0])
        self.event.set()

    def wait(self, timeout: float = WAIT_S) -> Any:
        assert self.event.wait(timeout), "callback did not run in time"
        return self.values[0]


@pytest.fixture
def lt() -> Iterator[LoopThread]:
    t = LoopThread()
    try:
        yield t
    finally:
        t.close()


@pytest.fixture
def box() -> type[Box]:
    return Box
