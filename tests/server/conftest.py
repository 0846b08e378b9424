"""Server tests run in greenlets of the main thread's hub, on the Reseau loop."""

from __future__ import annotations

import os
import time

import pytest

import reseau_patch.sockets  # noqa: F401 - selects the Reseau loop for this thread's hub


@pytest.fixture(scope="session", autouse=True)
def _hub():
    """Create the hub once, before the per-test leak check takes its snapshot."""
    import gevent

    yield gevent.get_hub()


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


def _fds() -> set[tuple[int, str]]:
    out = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            out.add((int(name), os.readlink(f"/proc/self/fd/{name}")))
        except OSError:
            continue
    return out


@pytest.fixture(autouse=True)
def _let_hub_finish(_hub):
    """Give the hub up to 5 s to run the closes of handlers a test left finishing."""
    import gevent

    before = _fds()
    yield
    deadline = time.monotonic() + 5
    gevent.sleep(0)
    while _fds() - before and time.monotonic() < deadline:
        gevent.sleep(0.01)
