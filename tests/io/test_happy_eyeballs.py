"""Happy Eyeballs v2 (RFC 8305) in ClientBootstrap, on loopback only.

"Unreachable" is simulated with a ``listen(0)`` listener whose one queue slot is taken:
further SYNs are dropped, so a connect to it hangs. 127.0.0.2 and 127.0.0.3 are usable
loopback addresses here.
"""

from __future__ import annotations

import os
import socket as stdsocket
import threading
import time
from contextlib import contextmanager

import pytest

from reseau_patch.io.bootstrap import ClientBootstrap
from reseau_patch.io.channel import ChannelHandler
from reseau_patch.io.happy_eyeballs import HappyEyeballsConfig
from reseau_patch.io.resolver import (
    AF_INET,
    AF_INET6,
    BaseResolver,
    CachingResolver,
    DNSError,
    StaticResolver,
    parse_literal,
)

SLACK = 1.5  # generous: loaded CI machines


def _socket_fds() -> set[int]:
    out = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                out.add(int(name))
        except OSError:
            continue
    return out


@contextmanager
def blackhole_and_server():
    """(port, accepting listener): 127.0.0.2:port drops SYNs, 127.0.0.3:port accepts."""
    for _ in range(20):
        dead = stdsocket.socket()
        dead.bind(("127.0.0.2", 0))
        port = dead.getsockname()[1]
        live = stdsocket.socket()
        try:
            live.bind(("127.0.0.3", port))
        except OSError:
            live.close()
            dead.close()
            continue
        break
    else:
        pytest.skip("could not find a port free on both 127.0.0.2 and 127.0.0.3")
    dead.listen(0)
    live.listen(16)
    fillers = []
    try:
        for _ in range(3):
            f = stdsocket.socket()
            f.setblocking(False)
            f.connect_ex(("127.0.0.2", port))
            fillers.append(f)
        time.sleep(0.05)
        yield port, live
    finally:
        for f in fillers:
            f.close()
        dead.close()
        live.close()


def _refused_port(host: str = "127.0.0.1") -> int:
    s = stdsocket.socket()
    s.bind((host, 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Conn:
    """Runs one ClientBootstrap.connect and collects setup / shutdown."""

    def __init__(self, lt, resolver, **he) -> None:
        self.lt = lt
        self.setup = threading.Event()
        self.shut = threading.Event()
        self.result: tuple = ()
        self.boot = ClientBootstrap(lt.loop, resolver=resolver,
                                    happy_eyeballs=HappyEyeballsConfig(**he))

    def connect(self, host: str, port: int) -> tuple:
        t0 = time.monotonic()
        self.boot.connect(host, port, lambda ch: ChannelHandler(), self._on_setup,
                          lambda ch, e: self.shut.set())
        assert self.setup.wait(10), "on_setup did not run"
        ch, err = self.result
        return ch, err, time.monotonic() - t0

    def _on_setup(self, ch, err) -> None:
        assert not self.setup.is_set(), "on_setup ran twice"
        self.result = (ch, err)
        self.setup.set()

    def peer(self, ch):
        return self.lt.call(lambda: ch.first.handler.socket.remote_address())

    def close(self, ch) -> None:
        self.lt.call(ch.shutdown, None, True)
        assert self.shut.wait(10)


def test_silent_first_address_loses_to_second_after_attempt_delay(lt):
    with blackhole_and_server() as (port, live):
        resolver = CachingResolver(StaticResolver({"he.test": ["127.0.0.2", "127.0.0.3"]}))
        conn = Conn(lt, resolver, attempt_delay=0.25)
        before = _socket_fds()
        ch, err, elapsed = conn.connect("he.test", port)
        assert err is None, err
        assert conn.peer(ch) == ("127.0.0.3", port)
        assert 0.2 <= elapsed < 0.25 + SLACK
        # The first attempt's socket is already closed: only the winner is new.
        assert len(_socket_fds() - before) == 1
        server_side, _ = live.accept()
        server_side.close()
        conn.close(ch)


def test_refused_first_address_tries_the_next_at_once(lt):
    live = stdsocket.socket()
    live.bind(("127.0.0.3", 0))
    live.listen(4)
    port = live.getsockname()[1]
    try:
        resolver = CachingResolver(StaticResolver({"he.test": ["127.0.0.2", "127.0.0.3"]}))
        # A 2 s attempt delay: connecting well before it proves the refusal moved on.
        conn = Conn(lt, resolver, attempt_delay=2.0)
        ch, err, elapsed = conn.connect("he.test", port)
        assert err is None, err
        assert conn.peer(ch) == ("127.0.0.3", port)
        assert elapsed < 1.0
        # The refusal was fed back: the refused address now sorts last.
        box = []
        resolver.lookup(None, "he.test", AF_INET, lambda a, e: box.append(a))
        assert [a.address for a in box[0]] == ["127.0.0.3", "127.0.0.2"]
        conn.close(ch)
    finally:
        live.close()


def test_all_refused_raises_the_last_error_like_create_connection(lt):
    port = _refused_port("127.0.0.2")
    resolver = StaticResolver({"he.test": ["127.0.0.2", "127.0.0.3"]})
    ch, err, _ = Conn(lt, resolver).connect("he.test", port)
    assert ch is None
    with pytest.raises(OSError) as std:
        stdsocket.create_connection(("127.0.0.3", port), timeout=5)
    assert type(err) is type(std.value) is ConnectionRefusedError
    assert err.args == std.value.args


def test_all_refused_with_all_errors_gives_an_exception_group(lt):
    port = _refused_port("127.0.0.2")
    resolver = StaticResolver({"he.test": ["127.0.0.2", "127.0.0.3"]})
    ch, err, _ = Conn(lt, resolver, all_errors=True).connect("he.test", port)
    assert ch is None
    assert isinstance(err, ExceptionGroup)
    assert err.message == "create_connection failed"
    assert [type(e) for e in err.exceptions] == [ConnectionRefusedError] * 2


def test_connect_addresses_races_a_given_list(lt):
    with blackhole_and_server() as (port, live):
        got = threading.Event()
        out = []

        def on_setup(ch, err):
            out.append((ch, err))
            got.set()

        boot = ClientBootstrap(lt.loop, happy_eyeballs=HappyEyeballsConfig(attempt_delay=0.1))
        lt.call(boot.connect_addresses,
                [(AF_INET, ("127.0.0.2", port)), (AF_INET, ("127.0.0.3", port))],
                lambda ch: ChannelHandler(), on_setup)
        assert got.wait(10)
        ch, err = out[0]
        assert err is None
        assert lt.call(lambda: ch.first.handler.socket.remote_address()) == ("127.0.0.3", port)
        lt.call(ch.shutdown, None, True)


class DelayedFamilies(BaseResolver):
    """Answers A and AAAA for one name after per-family delays (on the caller's loop)."""

    def __init__(self, delays: dict[int, float], answers: dict[int, list[str]]) -> None:
        self.delays = delays
        self.answers = answers
        self.asked: list[int] = []

    def lookup(self, loop, host, family, callback):
        self.asked.append(family)
        addrs = [parse_literal(a) for a in self.answers.get(family, [])]
        err = None if addrs else DNSError(host, -2)
        loop.call_later(self.delays.get(family, 0.0), callback, addrs or None, err)


@contextmanager
def dual_stack_server():
    """A port listening on both 127.0.0.1 and ::1."""
    for _ in range(20):
        v6 = stdsocket.socket(stdsocket.AF_INET6)
        v6.setsockopt(stdsocket.IPPROTO_IPV6, stdsocket.IPV6_V6ONLY, 1)
        v6.bind(("::1", 0))
        port = v6.getsockname()[1]
        v4 = stdsocket.socket()
        try:
            v4.bind(("127.0.0.1", port))
        except OSError:
            v4.close()
            v6.close()
            continue
        break
    else:
        pytest.skip("no port free on both ::1 and 127.0.0.1")
    v4.listen(8)
    v6.listen(8)
    try:
        yield port
    finally:
        v4.close()
        v6.close()


def test_aaaa_shortly_after_a_is_awaited_and_preferred(lt):
    with dual_stack_server() as port:
        resolver = DelayedFamilies({AF_INET: 0.0, AF_INET6: 0.01},
                                   {AF_INET: ["127.0.0.1"], AF_INET6: ["::1"]})
        conn = Conn(lt, resolver, resolution_delay=0.5)
        ch, err, _ = conn.connect("dual.test", port)
        assert err is None
        assert conn.peer(ch)[0] == "::1"
        assert sorted(resolver.asked) == sorted([AF_INET, AF_INET6])
        conn.close(ch)


def test_late_aaaa_does_not_hold_up_a(lt):
    with dual_stack_server() as port:
        resolver = DelayedFamilies({AF_INET: 0.0, AF_INET6: 3.0},
                                   {AF_INET: ["127.0.0.1"], AF_INET6: ["::1"]})
        conn = Conn(lt, resolver)  # resolution delay 50 ms
        ch, err, elapsed = conn.connect("dual.test", port)
        assert err is None
        assert conn.peer(ch)[0] == "127.0.0.1"
        assert elapsed < 2.0
        conn.close(ch)
        # Let the late AAAA answer arrive (ignored: the request is over).
        time.sleep(0.05)


def test_failed_aaaa_lookup_falls_back_to_a(lt):
    with dual_stack_server() as port:
        resolver = DelayedFamilies({}, {AF_INET: ["127.0.0.1"]})
        conn = Conn(lt, resolver)
        ch, err, _ = conn.connect("dual.test", port)
        assert err is None and conn.peer(ch)[0] == "127.0.0.1"
        conn.close(ch)


def test_both_lookups_failing_reports_the_dns_error(lt):
    resolver = DelayedFamilies({}, {})
    ch, err, _ = Conn(lt, resolver).connect("nothing.test", 80)
    assert ch is None and isinstance(err, stdsocket.gaierror) and err.errno == -2


def test_policy_limits_the_families_asked(lt):
    from reseau_patch.io.resolver import ResolverPolicy

    with dual_stack_server() as port:
        resolver = DelayedFamilies({}, {AF_INET: ["127.0.0.1"], AF_INET6: ["::1"]})
        conn = Conn(lt, resolver, policy=ResolverPolicy(allow_ipv6=False))
        ch, err, _ = conn.connect("dual.test", port)
        assert err is None and conn.peer(ch)[0] == "127.0.0.1"
        assert resolver.asked == [AF_INET]
        conn.close(ch)


def test_attempt_delay_is_clamped_to_rfc_bounds():
    assert HappyEyeballsConfig(attempt_delay=0.001).attempt_delay == 0.1
    assert HappyEyeballsConfig(attempt_delay=60).attempt_delay == 2.0
    assert HappyEyeballsConfig().attempt_delay == 0.25
    with pytest.raises(ValueError):
        HappyEyeballsConfig(first_family_count=0)
    with pytest.raises(ValueError):
        HappyEyeballsConfig(resolution_delay=-1)


def test_interleaved_attempt_order_v6_first(lt):
    """Every address refused: the attempt order shows RFC 8305 §4 interleaving."""
    order = []
    port = _refused_port()

    class Recording(StaticResolver):
        def record_connection_failure(self, address):
            order.append(address.address)

    resolver = Recording({"mix.test": ["127.0.0.1", "127.0.0.2", "::1"]})
    _, err, _ = Conn(lt, resolver, all_errors=True).connect("mix.test", port)
    assert isinstance(err, ExceptionGroup) and len(err.exceptions) == 3
    # Refusals are immediate, so attempts follow the list order one after another.
    assert order == ["::1", "127.0.0.1", "127.0.0.2"]


def test_resolver_with_only_resolve_still_works(lt):
    class OldStyle:
        def resolve(self, loop, host, port, callback):
            loop.call_soon(callback, [(AF_INET, ("127.0.0.1", port))], None)

    srv = stdsocket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    try:
        conn = Conn(lt, OldStyle())
        ch, err, _ = conn.connect("old.test", srv.getsockname()[1])
        assert err is None and conn.peer(ch) == srv.getsockname()
        conn.close(ch)
    finally:
        srv.close()


def test_bad_host_type_reports_through_on_setup_once(lt):
    ch, err, _ = Conn(lt, StaticResolver()).connect(12345, 80)
    assert ch is None and isinstance(err, TypeError)
