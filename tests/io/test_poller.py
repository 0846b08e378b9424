"""io/poller.py: the readiness backends, pure and compiled (the compiled EpollPoller waits
with its own epoll_wait: these tests pin what it must share with select.epoll)."""

from __future__ import annotations

import errno
import select
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from reseau_patch.io import poller as poller_mod
from reseau_patch.io.poller import ERROR, READ, WRITE, make_poller

BACKENDS = ["epoll", "poll"] if hasattr(select, "epoll") else ["poll"]
WAIT = 10.0  # upper bound of every wait here; only there so a bug fails instead of hanging


@pytest.fixture(params=BACKENDS)
def poller(request: pytest.FixtureRequest) -> Iterator[poller_mod.Poller]:
    p = make_poller(request.param)
    yield p
    p.close()


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def test_readiness_is_translated_to_read_write_bits(poller, pair) -> None:
    a, b = pair
    poller.register(a.fileno(), READ | WRITE)
    assert poller.poll(WAIT) == [(a.fileno(), WRITE)]
    b.send(b"x")
    assert poller.poll(WAIT) == [(a.fileno(), READ | WRITE)]
    poller.modify(a.fileno(), READ)
    assert poller.poll(WAIT) == [(a.fileno(), READ)]
    poller.unregister(a.fileno())
    assert poller.poll(0) == []


def test_hang_up_reports_both_directions_and_error(poller, pair) -> None:
    a, b = pair
    poller.register(a.fileno(), READ)
    b.close()
    [(fd, bits)] = poller.poll(WAIT)
    assert fd == a.fileno()
    assert bits == READ | WRITE | ERROR  # epoll: RDHUP|HUP; poll: POLLIN|POLLHUP


def test_a_timeout_beyond_the_kernels_int_of_milliseconds_does_not_overflow(poller,
                                                                            pair) -> None:
    """A timer 30 days away used to make select.epoll.poll raise OverflowError."""
    a, _ = pair
    poller.register(a.fileno(), WRITE)
    assert poller.poll(30 * 86400.0) == [(a.fileno(), WRITE)]


def test_unregister_of_a_closed_or_unknown_fd_is_not_an_error(poller) -> None:
    a, b = socket.socketpair()
    poller.register(a.fileno(), READ)
    fd = a.fileno()
    a.close()
    b.close()
    poller.unregister(fd)
    poller.unregister(fd)


def test_unregister_of_a_number_reused_by_an_unpollable_file_is_not_an_error(
        poller, tmp_path) -> None:
    """The fd was closed and its number reused by a file epoll cannot hold (EPERM)."""
    a, b = socket.socketpair()
    poller.register(a.fileno(), READ)
    fd = a.fileno()
    a.close()
    b.close()
    with open(tmp_path / "f", "wb") as f:
        assert f.fileno() == fd  # the lowest free number: the one just closed
        poller.unregister(fd)


def test_closed_epoll_poller_raises_what_select_epoll_raises(pair) -> None:
    if "epoll" not in BACKENDS:
        pytest.skip("no epoll")
    p = make_poller("epoll")
    p.close()
    for call in (lambda: p.poll(0), lambda: p.register(pair[0].fileno(), READ),
                 lambda: p.modify(pair[0].fileno(), READ)):
        with pytest.raises(ValueError, match="closed epoll object"):
            call()


def test_epoll_register_twice_modifies_and_modify_of_an_unknown_fd_adds(pair) -> None:
    """The kernel already has the fd (a dup, a stale entry) or has forgotten it (closed
    and reused): both calls still leave the interest the caller asked for."""
    if "epoll" not in BACKENDS:
        pytest.skip("no epoll")
    a, b = pair
    p = make_poller("epoll")
    try:
        p.register(a.fileno(), READ)
        p.register(a.fileno(), WRITE)  # EEXIST -> MOD
        assert p.poll(WAIT) == [(a.fileno(), WRITE)]
        p.unregister(a.fileno())
        p.modify(b.fileno(), WRITE)  # ENOENT -> ADD
        assert p.poll(WAIT) == [(b.fileno(), WRITE)]
        assert p.ctl_calls == 6  # each fallback is a second call
    finally:
        p.close()


def test_epoll_refuses_a_regular_file_with_the_kernels_error(tmp_path) -> None:
    if "epoll" not in BACKENDS:
        pytest.skip("no epoll")
    p = make_poller("epoll")
    path = tmp_path / "f"
    path.write_bytes(b"")
    try:
        with open(path, "rb") as f:
            with pytest.raises(PermissionError) as info:  # EPERM: files are always ready
                p.register(f.fileno(), READ)
            assert info.value.errno == errno.EPERM
    finally:
        p.close()


def test_ctl_calls_count_kernel_registration_calls(poller, pair) -> None:
    a, _ = pair
    n = poller.ctl_calls
    poller.register(a.fileno(), READ)
    poller.modify(a.fileno(), WRITE)
    poller.unregister(a.fileno())
    assert poller.ctl_calls - n == 3


def test_compiled_waits_limits_match_the_pure_ones() -> None:
    """_poller_c.pxd spells MAX_EVENTS and MAX_TIMEOUT as C literals."""
    pxd = (Path(poller_mod.__file__).parent / "_poller_c.pxd").read_text()
    assert f"evs[{poller_mod.MAX_EVENTS}]" in pxd
    assert f"epoll_wait(poller._epfd, evs, {poller_mod.MAX_EVENTS}, ms)" in pxd
    assert f"timeout > {poller_mod.MAX_TIMEOUT}" in pxd


class _Boom(Exception):
    pass


def _signal_main_from_a_thread(then: threading.Event | None, send: socket.socket | None,
                               handled: threading.Event) -> threading.Thread:
    main = threading.main_thread().ident

    def helper() -> None:
        handled.wait(0.05)  # most often lands inside the wait (EINTR); either way is fine
        signal.pthread_kill(main, signal.SIGUSR1)
        if then is not None and send is not None and then.wait(WAIT):
            send.send(b"x")

    return threading.Thread(target=helper)  # started by the caller, just before the wait


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(),
                    reason="signal handlers run in the main thread")
def test_a_signal_handler_runs_during_the_wait_and_the_wait_goes_on(poller, pair) -> None:
    """PEP 475: an interrupted wait runs the handler, then waits for the time left."""
    a, b = pair
    poller.register(a.fileno(), READ)
    ran = threading.Event()
    old = signal.signal(signal.SIGUSR1, lambda *_: ran.set())
    try:
        t = _signal_main_from_a_thread(ran, b, threading.Event())
        t.start()
        events = poller.poll(WAIT)
        t.join(WAIT)
    finally:
        signal.signal(signal.SIGUSR1, old)
    assert ran.is_set()
    assert events == [(a.fileno(), READ)]


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(),
                    reason="signal handlers run in the main thread")
def test_a_signal_handler_that_raises_ends_the_wait_with_its_exception(poller, pair) -> None:
    a, _ = pair
    poller.register(a.fileno(), READ)

    def boom(*_: object) -> None:
        raise _Boom("from the handler")

    old = signal.signal(signal.SIGUSR1, boom)
    try:
        t = _signal_main_from_a_thread(None, None, threading.Event())
        with pytest.raises(_Boom):
            t.start()  # the handler may run before the wait starts: it raises here then
            poller.poll(WAIT)
        t.join(WAIT)
    finally:
        signal.signal(signal.SIGUSR1, old)
