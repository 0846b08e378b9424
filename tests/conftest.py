"""Suite-wide fixtures: every test must leave no new fd and no new thread behind.

Mark a test ``@pytest.mark.allow_leaks`` to skip the check (say why in the test).
"""

from __future__ import annotations

import gc
import os
import threading
import time

import pytest

_FD_DIR = "/proc/self/fd"
#: How long a test's threads and fds get to go away after its teardown.
LEAK_GRACE_S = 2.0


def _open_fds() -> dict[int, str] | None:
    """``{fd: readlink target}`` of this process, or None where /proc is not mounted.

    The directory listing itself uses an fd that is closed by the time we readlink it, so
    entries that no longer resolve are dropped instead of being reported.
    """
    try:
        names = os.listdir(_FD_DIR)
    except OSError:
        return None
    fds: dict[int, str] = {}
    for name in names:
        try:
            fds[int(name)] = os.readlink(f"{_FD_DIR}/{name}")
        except (OSError, ValueError):
            continue
    return fds


def _describe_thread(t: threading.Thread) -> str:
    target = getattr(t, "_target", None)
    where = f" target={getattr(target, '__qualname__', target)!r}" if target else ""
    return f"{t.name!r} (ident={t.ident}, daemon={t.daemon}{where})"


def _leaks(fds_before: dict[int, str] | None,
           threads_before: set[threading.Thread]) -> tuple[dict[int, str], list[threading.Thread]]:
    """The fds and threads that exist now but did not before.

    An fd counts as new when its number is new or now names a different file (a pytest fd
    closed during the test and its number reused by a leak is still a leak). Sets, not counts:
    fds pytest itself closed in between are not mistaken for released leaks.
    """
    new_threads = [t for t in threading.enumerate()
                   if t not in threads_before and t.is_alive()]
    new_fds: dict[int, str] = {}
    if fds_before is not None:
        now = _open_fds() or {}
        new_fds = {fd: target for fd, target in now.items() if fds_before.get(fd) != target}
    return new_fds, new_threads


@pytest.fixture(autouse=True)
def _no_leaked_fds_or_threads(request: pytest.FixtureRequest):
    """Fail a test (at teardown) that leaves a new open fd or live thread behind."""
    if request.node.get_closest_marker("allow_leaks"):
        yield
        return
    fds_before = _open_fds()
    threads_before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + LEAK_GRACE_S
    collected = False
    while True:
        new_fds, new_threads = _leaks(fds_before, threads_before)
        if not new_fds and not new_threads:
            return
        if time.monotonic() >= deadline:
            break
        if not collected:
            # Reference cycles (tracebacks holding frames holding sockets) free on gc.
            gc.collect()
            collected = True
            continue
        for t in new_threads:
            t.join(min(0.05, max(0.0, deadline - time.monotonic())))
        if not new_threads:
            time.sleep(0.02)
    lines = [f"test leaked resources (still there {LEAK_GRACE_S:g} s after teardown):"]
    for fd, target in sorted(new_fds.items()):
        lines.append(f"  fd {fd} -> {target}")
    for t in new_threads:
        lines.append(f"  thread {_describe_thread(t)}")
    lines.append("close/join them in the test, or mark it @pytest.mark.allow_leaks with a reason")
    pytest.fail("\n".join(lines), pytrace=False)
