"""Suite-wide fixtures: every test must leave nothing behind — no new fd, thread, live
greenlet, undestroyed channel, or armed timer on this thread's hub loop.

Mark a test ``@pytest.mark.allow_leaks`` to skip the check (say why in the test).
Also registers the ``soak`` marker (long load tests; ``RESEAU_SOAK_COUNT`` scales them).
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import time

import greenlet
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


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "soak: a long load test; RESEAU_SOAK_COUNT sets its size (CI runs it small)")


def _hub_loop_of_this_thread():
    """This thread's io EventLoop under an existing gevent hub on our loop, else None
    (never creates a hub: tests that do not use one must not get one)."""
    hub_local = sys.modules.get("gevent._hub_local")
    hub = hub_local.get_hub_if_exists() if hub_local is not None else None
    return getattr(getattr(hub, "loop", None), "io_loop", None), hub


def _live_objects() -> tuple[dict[int, str], dict[int, str]]:
    """``({id: repr} of live greenlets, {id: repr} of channels not destroyed)``.

    A greenlet counts when started and unfinished, runs in this thread (other threads'
    greenlets, such as gevent's process-wide threadpool workers, end with their thread,
    which the thread check covers), and is neither a hub nor the main greenlet. A channel
    counts until ``destroy()`` detached its handlers. One gc pass (a few ms) finds both.
    """
    channel_cls = getattr(sys.modules.get("reseau_patch.io.channel"), "Channel", None)
    hub_cls = getattr(sys.modules.get("gevent.hub"), "Hub", None)
    main = greenlet.getcurrent()
    while main.parent is not None:
        main = main.parent
    greenlets: dict[int, str] = {}
    channels: dict[int, str] = {}
    for obj in gc.get_objects():
        if isinstance(obj, greenlet.greenlet):
            if (obj and obj.parent is not None and not (hub_cls and isinstance(obj, hub_cls))
                    and _root(obj) is main):
                greenlets[id(obj)] = _describe_greenlet(obj)
        elif channel_cls is not None and isinstance(obj, channel_cls):
            if obj.first is not None:
                channels[id(obj)] = repr(obj)
    return greenlets, channels


def _root(g: greenlet.greenlet) -> greenlet.greenlet:
    while g.parent is not None:
        g = g.parent
    return g


def _describe_greenlet(g: greenlet.greenlet) -> str:
    frame = g.gr_frame
    where = ""
    while frame is not None:  # innermost frame of our code or the tests: most telling
        if "reseau_patch" in frame.f_code.co_filename or "tests" in frame.f_code.co_filename:
            where = f" at {frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}"
        frame = frame.f_back
    return f"{g!r}{where}"


def _armed_timers(io_loop) -> int:
    if io_loop is None or io_loop.closed:
        return 0
    return io_loop.pending_counts()["timers"]


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
    """Fail a test (at teardown) that leaves a new open fd, live thread, live greenlet,
    undestroyed channel or armed hub-loop timer behind."""
    if request.node.get_closest_marker("allow_leaks"):
        yield
        return
    fds_before = _open_fds()
    threads_before = set(threading.enumerate())
    greenlets_before, channels_before = _live_objects()
    io_loop, _hub = _hub_loop_of_this_thread()
    timers_before = _armed_timers(io_loop)
    yield
    io_loop, hub = _hub_loop_of_this_thread()
    # Greenlets and channels finish on the hub: let it run while we wait (not the OS).
    in_hub_thread = hub is not None and greenlet.getcurrent() is not hub
    deadline = time.monotonic() + LEAK_GRACE_S
    collected = False
    while True:
        new_fds, new_threads = _leaks(fds_before, threads_before)
        greenlets, channels = _live_objects()
        new_greenlets = {k: v for k, v in greenlets.items() if k not in greenlets_before}
        new_channels = {k: v for k, v in channels.items() if k not in channels_before}
        timers = _armed_timers(io_loop) - timers_before
        if not (new_fds or new_threads or new_greenlets or new_channels or timers > 0):
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
            if in_hub_thread:
                sys.modules["gevent"].sleep(0.02)
            else:
                time.sleep(0.02)
    lines = [f"test leaked resources (still there {LEAK_GRACE_S:g} s after teardown):"]
    for fd, target in sorted(new_fds.items()):
        lines.append(f"  fd {fd} -> {target}")
    for t in new_threads:
        lines.append(f"  thread {_describe_thread(t)}")
    for desc in new_greenlets.values():
        lines.append(f"  greenlet {desc}")
    for desc in new_channels.values():
        lines.append(f"  channel {desc}")
    if timers > 0:
        lines.append(f"  {timers} armed timer(s) on this thread's hub loop")
    lines.append("close/join them in the test, or mark it @pytest.mark.allow_leaks with a reason")
    pytest.fail("\n".join(lines), pytrace=False)


# ---------------------------------------------------------------- green tests (opt-in)
# Test folders whose tests run in greenlets of the main thread's hub (sockets, server,
# conformance, reliability) request these from their own autouse fixtures; io/ and hub/
# tests never see gevent through them.


@pytest.fixture(scope="session")
def green_hub():
    """The main thread's hub on the Reseau loop, made once: before the per-test leak check
    takes its first snapshot, so the hub's own fds are not counted as a leak."""
    import gevent

    import reseau_patch.sockets  # noqa: F401 - selects the Reseau loop for this thread's hub

    return gevent.get_hub()


@pytest.fixture
def run(green_hub):
    """``run(fn, *args, timeout=60)``: ``fn`` in a greenlet with a hard bound, re-raising
    what it raised; a greenlet still running at the bound is killed and the test fails."""
    import gevent

    def runner(fn, *args, timeout: float = 60.0):
        g = gevent.spawn(fn, *args)
        g.join(timeout)
        if not g.dead:
            g.kill(block=True, timeout=5)
            raise AssertionError(f"{fn.__name__} did not finish within {timeout} s")
        return g.get()

    return runner


@pytest.fixture
def hub_settles(green_hub):
    """After the test, give the hub up to 5 s of its own time until no fd opened during the
    test is still open: per-connection handlers finish their closes on the hub, and the leak
    check (which waits with the OS) would not run it."""
    import gevent

    before = set((_open_fds() or {}).items())
    yield
    deadline = time.monotonic() + 5
    gevent.sleep(0)
    while set((_open_fds() or {}).items()) - before and time.monotonic() < deadline:
        gevent.sleep(0.01)
