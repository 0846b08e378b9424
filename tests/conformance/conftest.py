"""Conformance tests run TCPSocket kinds in greenlets of this thread's hub (Reseau loop)."""

from __future__ import annotations

import os
import sys
import time

import pytest

import reseau_patch.sockets  # noqa: F401 - selects the Reseau loop for this thread's hub

sys.path.insert(0, os.path.dirname(__file__))  # stream_suite, also for the scenarios


@pytest.fixture(scope="session", autouse=True)
def _hub():
    """Create the hub once, before the per-test leak check takes its snapshot."""
    import gevent

    return gevent.get_hub()


@pytest.fixture
def run():
    """Run ``fn`` in a greenlet with a hard bound, re-raising what it raised."""
    import gevent

    def runner(fn, *args, timeout: float = 60.0):
        g = gevent.spawn(fn, *args)
        g.join(timeout)
        if not g.dead:
            g.kill(block=True, timeout=5)
            raise AssertionError(f"{fn.__name__} did not finish within {timeout} s")
        return g.get()

    return runner


@pytest.fixture(autouse=True)
def _let_hub_finish(_hub):
    """Give the hub time to finish closes started by a test before the leak check."""
    import gevent

    def fds() -> set[str]:
        return set(os.listdir("/proc/self/fd"))

    before = fds()
    yield
    deadline = time.monotonic() + 5
    gevent.sleep(0)
    while fds() - before and time.monotonic() < deadline:
        gevent.sleep(0.01)
