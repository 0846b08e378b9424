"""Cancellation (gevent.Timeout, Greenlet.kill) through the sockets API: whatever phase a
connect, read, write or accept is in, nothing it made outlives it — no fd, channel, timer
or greenlet (the suite's leak fixture checks the last three after every test too)."""

from __future__ import annotations

import json
import socket as stdsocket
from contextlib import ExitStack

import gevent
import pytest

from reseau_patch import sockets as S
from reseau_patch.io.resolver import StaticResolver
from reseau_patch.io.resolver.layers import BaseResolver

ROUNDS = 20


def _cancel_by(how: str, fn, *args, **kw) -> None:
    """Run ``fn`` and cancel it after 0.05 s: by ``gevent.Timeout`` or by killing it."""
    if how == "timeout":
        with pytest.raises(gevent.Timeout):
            with gevent.Timeout(0.05):
                fn(*args, **kw)
        return
    g = gevent.spawn(fn, *args, **kw)
    gevent.sleep(0.05)
    assert not g.dead, f"{fn.__name__} finished before it could be cancelled: {g.value!r}"
    g.kill(block=True, timeout=5)
    assert g.dead


@pytest.mark.parametrize("how", ["timeout", "kill"])
def test_cancelled_connects_to_a_full_backlog_leave_no_fd(run, tools, how):
    # Found: 20 cancelled connects left 20 fds open and still connecting.
    with tools.full_backlog() as addr:
        def body():
            before = tools.open_fds()
            for _ in range(ROUNDS):
                _cancel_by(how, S.connect, *addr)
            assert tools.settle(before) == {}
        run(body)


@pytest.mark.parametrize("how", ["timeout", "kill"])
def test_cancelled_tls_handshakes_leave_no_fd(run, tools, how):
    # Found: the same 20 fds around the TLS handshake phase.
    with tools.silent_server() as addr:
        def body():
            before = tools.open_fds()
            for _ in range(ROUNDS):
                _cancel_by(how, S.connect, *addr, tls=True, server_name="localhost")
            assert tools.settle(before) == {}
        run(body)


class _HangingResolver(BaseResolver):
    """Holds every lookup until ``answer_all()``: a resolve that is slow to come back."""

    def __init__(self, ip: str) -> None:
        self.ip = ip
        self.replies: list = []

    def _lookup(self, reply, host, family):
        self.replies.append((reply, family))

    def answer_all(self) -> None:
        from reseau_patch.io.resolver.base import parse_literal
        replies, self.replies = self.replies, []
        for reply, family in replies:
            lit = parse_literal(self.ip)
            reply([lit] if family in (0, lit.family) else None,
                  None if family in (0, lit.family) else OSError("no such family"))


@pytest.mark.parametrize("how", ["timeout", "kill"])
def test_cancel_during_resolve_starts_no_connect_later(run, tools, how):
    srv = S.listen(0)
    port = srv.getsockname()[1]
    resolver = _HangingResolver("127.0.0.1")

    def body():
        before = tools.open_fds()
        _cancel_by(how, S.connect, "slow.test", port, resolver=resolver)
        assert resolver.replies, "the lookup was never asked"
        resolver.answer_all()  # the answer comes after the caller gave up
        assert tools.settle(before) == {}
        srv.settimeout(0.2)
        with pytest.raises(TimeoutError):
            srv.accept()  # nothing connected on behalf of the cancelled call
    try:
        run(body)
    finally:
        srv.close()


def _two_blackholes(tools, stack: ExitStack) -> int:
    """A port on which 127.0.0.2 and 127.0.0.3 both drop SYNs (full backlogs)."""
    for _ in range(20):
        probe = stdsocket.socket()
        probe.bind(("127.0.0.2", 0))
        port = probe.getsockname()[1]
        probe.close()
        try:
            stack.enter_context(tools.full_backlog("127.0.0.2", port))
            stack.enter_context(tools.full_backlog("127.0.0.3", port))
        except OSError:
            stack.close()
            continue
        return port
    pytest.skip("no port free on both 127.0.0.2 and 127.0.0.3")


@pytest.mark.parametrize("when", [0.05, 0.17, 0.3], ids=["attempt1", "attempt2", "attempt3"])
def test_cancel_during_each_happy_eyeballs_attempt(run, tools, when):
    resolver = StaticResolver({"multi.test": ["127.0.0.2", "127.0.0.3", "127.0.0.2"]})
    with ExitStack() as stack:
        port = _two_blackholes(tools, stack)

        def body():
            before = tools.open_fds()
            g = gevent.spawn(S.connect, "multi.test", port, resolver=resolver,
                             happy_eyeballs_delay=0.1)
            gevent.sleep(when)
            assert not g.dead
            g.kill(block=True, timeout=5)
            with pytest.raises(gevent.Timeout):
                with gevent.Timeout(when):
                    S.connect("multi.test", port, resolver=resolver, happy_eyeballs_delay=0.1)
            assert tools.settle(before) == {}
        run(body)


@pytest.mark.parametrize("how", ["timeout", "kill"])
def test_cancelled_read_leaves_the_socket_usable(run, tools, how):
    srv = S.listen(0)

    def body():
        c = S.connect(*srv.getsockname())
        s = srv.accept()
        _cancel_by(how, c.read, 1)
        s.write(b"after")
        assert c.read(5) == b"after"  # nothing lost, nothing doubled by the cancel
        c.close()
        s.close()
    try:
        run(body)
    finally:
        srv.close()


@pytest.mark.parametrize("how", ["timeout", "kill"])
def test_cancelled_write_against_a_stalled_reader_leaves_no_fd(run, tools, how):
    srv = S.listen(0)

    def body():
        before = tools.open_fds()
        c = S.connect(*srv.getsockname())
        s = srv.accept()
        blob = b"x" * (64 << 20)  # far beyond socket buffers and the write high water
        _cancel_by(how, c.write, blob)
        s.close()  # the peer gives up too, so close() has nobody to flush to
        c.settimeout(5)
        c.close()
        assert tools.settle(before) == {}
    try:
        run(body)
    finally:
        srv.close()


@pytest.mark.parametrize("how", ["timeout", "kill"])
def test_cancelled_accept_keeps_the_server_serving(run, tools, how):
    srv = S.listen(0)

    def body():
        _cancel_by(how, srv.accept)
        c = S.connect(*srv.getsockname())
        s = srv.accept()
        c.write(b"ok")
        assert s.read(2) == b"ok"
        c.close()
        s.close()
    try:
        run(body)
    finally:
        srv.close()


def test_patched_socket_ssl_and_create_connection_cancellation(tools):
    """The patched socket/ssl/create_connection, cancelled in every phase (a fresh
    interpreter: patch_all cannot run here). Clean before this work too: kept so."""
    proc = tools.run_scenario("patched_cancel.py", timeout=110)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["leaked"] == {} and out["failures"] == []


@pytest.mark.parametrize("how", ["timeout", "kill"])
def test_cancelled_getaddrinfo_leaves_nothing_and_ignores_the_late_answer(run, how):
    resolver = _HangingResolver("127.0.0.1")

    def body():
        _cancel_by(how, S.getaddrinfo, "slow.test", resolver=resolver)
        assert resolver.replies
        resolver.answer_all()  # wakes nobody: the caller is gone
        gevent.sleep(0.01)
        assert S.getaddrinfo("127.0.0.1", resolver=resolver) == S.ip("127.0.0.1")
    run(body)
