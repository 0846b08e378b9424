"""The resolver layers (brief §9.5 scenarios): system, single-flight, caching, static,
ordering. Only 'localhost', literals and failing names are ever sent to getaddrinfo."""

from __future__ import annotations

import pickle
import socket as stdsocket
import threading

import pytest

from reseau_patch.io.resolver import (
    AF_INET,
    AF_INET6,
    AF_UNSPEC,
    BaseResolver,
    CachingResolver,
    DNSError,
    HostAddress,
    ResolverPolicy,
    SingleFlightResolver,
    StaticResolver,
    SystemResolver,
    make_resolver,
    order_addresses,
    parse_literal,
)

V6_1, V6_2 = "2001:db8::1", "2001:db8::2"
V4_1, V4_2 = "192.0.2.1", "192.0.2.2"


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Scripted(BaseResolver):
    """A counting stand-in for the system layer.

    ``answers`` is a list consumed one per call (the last one repeats); an entry is a list
    of IP strings or an exception. With ``hold=True`` calls wait for :meth:`release`.
    """

    def __init__(self, *answers, hold: bool = False) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[str, int]] = []
        self.hold = hold
        self.held: list = []

    def _lookup(self, reply, host, family):
        self.calls.append((host, family))
        if self.hold:
            self.held.append((reply, host, family))
        else:
            self._answer(reply, host, family)

    def _answer(self, reply, host, family):
        ans = self.answers[0] if len(self.answers) == 1 else self.answers.pop(0)
        if isinstance(ans, BaseException):
            reply(None, ans)
            return
        addrs = [HostAddress(a.address, a.family, host) for a in map(parse_literal, ans)
                 if family in (AF_UNSPEC, a.family)]
        reply(addrs, None)

    def release(self) -> None:
        held, self.held = self.held, []
        for item in held:
            self._answer(*item)


def get(resolver, host, family=AF_UNSPEC):
    """A synchronous lookup (loop=None; the scripted layers answer inline)."""
    box = []
    resolver.lookup(None, host, family, lambda a, e: box.append((a, e)))
    assert len(box) == 1, "answer not delivered exactly once"
    addrs, err = box[0]
    if err is not None:
        raise err
    return [a.address for a in addrs]


def test_cache_hit_makes_no_second_system_lookup(lt, box):
    system = SystemResolver(max_workers=1)
    resolver = make_resolver(system)
    try:
        for _ in range(2):
            got = box()
            lt.call(resolver.lookup, lt.loop, "localhost", AF_INET,
                    lambda a, e, got=got: got.set((a, e, lt.loop.is_loop_thread())))
            addrs, err, on_loop = got.wait()
            assert err is None and on_loop
            assert [a.address for a in addrs] == ["127.0.0.1"]
        assert system.lookups == 1
        assert resolver.hits == 1 and resolver.misses == 1
    finally:
        resolver.close()


def test_ttl_expiry_refreshes_and_last_good_answer_is_never_evicted():
    clock = Clock()
    system = Scripted([V6_1, V4_1], [V6_2, V4_2], DNSError("h.test", -3))
    cache = CachingResolver(system, ttl=2.0, negative_ttl=0.5, clock=clock)
    assert get(cache, "h.test") == [V6_1, V4_1]
    clock.t += 1.5
    assert get(cache, "h.test") == [V6_1, V4_1]          # still fresh
    assert len(system.calls) == 1
    clock.t += 0.6                                        # 2.1 s: expired
    assert get(cache, "h.test") == [V6_2, V4_2]
    assert len(system.calls) == 2
    clock.t += 2.1                                        # expired again; DNS now fails
    assert get(cache, "h.test") == [V6_2, V4_2]           # served stale, not evicted
    assert len(system.calls) == 3
    assert get(cache, "h.test") == [V6_2, V4_2]           # and not re-asked at once
    assert len(system.calls) == 3
    clock.t += 0.6
    get(cache, "h.test")
    assert len(system.calls) == 4                         # re-tried after negative_ttl


def test_unspec_answer_fills_family_slots():
    system = Scripted([V6_1, V4_1, V4_2])
    cache = CachingResolver(system, clock=Clock())
    assert get(cache, "h.test") == [V6_1, V4_1, V4_2]
    assert get(cache, "h.test", AF_INET) == [V4_1, V4_2]
    assert get(cache, "h.test", AF_INET6) == [V6_1]
    assert len(system.calls) == 1
    assert get(cache, "H.TEST", AF_INET) == [V4_1, V4_2]  # names are case-insensitive
    assert len(system.calls) == 1


def test_100_concurrent_lookups_make_one_system_lookup(lt):
    system = Scripted(["127.0.0.1"], hold=True)
    resolver = CachingResolver(SingleFlightResolver(system))
    results = []
    done = threading.Event()

    def on_answer(addrs, err):
        results.append((addrs, err, lt.loop.is_loop_thread()))
        if len(results) == 100:
            done.set()

    def ask_all():
        for _ in range(100):
            resolver.lookup(lt.loop, "many.test", AF_INET, on_answer)
        assert results == []  # never answered inside lookup()

    lt.call(ask_all)
    assert system.calls == [("many.test", AF_INET)]
    system.release()
    assert done.wait(10)
    assert all(err is None and on_loop and [a.address for a in addrs] == ["127.0.0.1"]
               for addrs, err, on_loop in results)
    assert len(system.calls) == 1
    # Copies, not one shared list.
    assert len({id(addrs) for addrs, _, _ in results}) == 100


def test_single_flight_is_per_name_and_family():
    system = Scripted([V6_1, V4_1], hold=True)
    sf = SingleFlightResolver(system)
    out = []
    for host, fam in [("a.test", AF_INET), ("a.test", AF_INET6), ("b.test", AF_INET),
                      ("a.test", AF_INET)]:
        sf.lookup(None, host, fam, lambda a, e, k=(host, fam): out.append((k, a)))
    assert len(system.calls) == 3 and sf.coalesced == 1
    system.release()
    assert len(out) == 4
    # A failure reaches every waiter, each with its own exception object.
    system.answers = [DNSError("c.test", -2)]
    errs = []
    for _ in range(3):
        sf.lookup(None, "c.test", AF_INET, lambda a, e: errs.append(e))
    system.release()
    assert len(errs) == 3 and len({id(e) for e in errs}) == 3
    assert all(isinstance(e, DNSError) and e.errno == -2 for e in errs)


def test_connection_failure_demotes_then_promotes():
    clock = Clock()
    system = Scripted([V6_1, V4_1, V6_2, V4_2])
    cache = CachingResolver(system, ttl=10.0, clock=clock)
    assert get(cache, "h.test", AF_INET6) == [V6_1, V6_2]
    addr1 = HostAddress(V6_1, AF_INET6, "h.test")
    addr2 = HostAddress(V6_2, AF_INET6, "h.test")
    cache.record_connection_failure(addr1)
    assert get(cache, "h.test", AF_INET6) == [V6_2, V6_1]     # demoted, still returned
    cache.record_connection_failure(addr2)
    # Every address failed once: the one demoted first comes back first.
    assert get(cache, "h.test", AF_INET6) == [V6_1, V6_2]
    cache.record_connection_failure(addr1)
    assert get(cache, "h.test", AF_INET6) == [V6_2, V6_1]     # fewer failures first
    cache.record_connection_success(addr1)
    assert get(cache, "h.test", AF_INET6) == [V6_1, V6_2]     # success lifts demotion
    cache.record_connection_failure(addr1)
    assert get(cache, "h.test", AF_INET6) == [V6_2, V6_1]
    clock.t += 10.5                                           # the record expired
    assert get(cache, "h.test", AF_INET6) == [V6_1, V6_2]     # promoted again
    assert len(system.calls) == 2
    # Failures for unknown names are ignored.
    cache.record_connection_failure(HostAddress(V4_1, AF_INET, "other.test"))


def test_negative_answers_are_cached_briefly():
    clock = Clock()
    system = Scripted(DNSError("bad.test", -2), ["127.0.0.1"])
    cache = CachingResolver(system, negative_ttl=1.0, clock=clock)
    for _ in range(3):
        with pytest.raises(DNSError) as info:
            get(cache, "bad.test")
        assert info.value.errno == -2 and info.value.host == "bad.test"
    assert len(system.calls) == 1
    clock.t += 1.01
    assert get(cache, "bad.test") == ["127.0.0.1"]
    assert len(system.calls) == 2


def test_non_dns_errors_are_not_cached():
    system = Scripted(UnicodeError("label too long"), ["127.0.0.1"])
    cache = CachingResolver(system, clock=Clock())
    with pytest.raises(UnicodeError):
        get(cache, "x.test")
    assert get(cache, "x.test") == ["127.0.0.1"]


def test_lru_bound_on_names():
    system = Scripted(["127.0.0.1"])
    cache = CachingResolver(system, max_entries=2, clock=Clock())
    get(cache, "a.test")
    get(cache, "b.test")
    get(cache, "a.test")                 # a is now most recent
    get(cache, "c.test")                 # evicts b
    assert cache.cached_hosts() == ["a.test", "c.test"]
    get(cache, "b.test")
    assert [h for h, _ in system.calls] == ["a.test", "b.test", "c.test", "b.test"]


@pytest.mark.parametrize("text, canonical", [
    ("0:0::1", "::1"),
    ("::1", "::1"),
    ("0:0:0:0:0:0:0:1", "::1"),
    ("fd00:ec2:0:0:0:0:0:23", "fd00:ec2::23"),
    ("127.0.0.1", "127.0.0.1"),
])
def test_ipv6_canonical_forms_and_literals_bypass_the_system(text, canonical):
    system = Scripted(AssertionError("a literal reached the system resolver"))
    resolver = make_resolver(system)
    assert get(resolver, text) == [canonical]
    assert system.calls == []


def test_literals_and_family_mismatch_match_getaddrinfo():
    system = Scripted(AssertionError("a literal reached the system resolver"))
    resolver = make_resolver(system)
    assert get(resolver, "::1", AF_INET6) == ["::1"]
    with pytest.raises(stdsocket.gaierror) as ours:
        get(resolver, "127.0.0.1", AF_INET6)
    with pytest.raises(stdsocket.gaierror) as std:
        stdsocket.getaddrinfo("127.0.0.1", None, AF_INET6)
    assert ours.value.args == std.value.args
    assert system.calls == []
    lit = parse_literal("fe80::1%1")
    assert lit.scope_id == 1 and lit.sockaddr(80) == ("fe80::1", 80, 0, 1)
    assert parse_literal("example.test") is None


def test_system_resolver_localhost_and_failure_match_stdlib(lt, box):
    system = SystemResolver(max_workers=2)
    try:
        got = box()
        lt.call(system.lookup, lt.loop, "localhost", AF_UNSPEC, lambda a, e: got.set((a, e)))
        addrs, err = got.wait()
        std = {sa[0] for *_, sa in stdsocket.getaddrinfo("localhost", None, 0,
                                                          stdsocket.SOCK_STREAM)}
        assert err is None and {a.address for a in addrs} == std
        bad = box()
        lt.call(system.lookup, lt.loop, "nonexistent.invalid", AF_UNSPEC,
                lambda a, e: bad.set((a, e)))
        addrs, err = bad.wait()
        with pytest.raises(stdsocket.gaierror) as std_err:
            stdsocket.getaddrinfo("nonexistent.invalid", None)
        assert addrs is None and isinstance(err, DNSError)
        assert err.args == std_err.value.args and err.host == "nonexistent.invalid"
        assert "nonexistent.invalid" in str(err)
        assert system.lookups == 2
    finally:
        system.close()


def test_lookup_holds_a_loop_reference_until_answered(lt, box):
    system = Scripted(["127.0.0.1"], hold=True)
    got = box()

    def ask():
        before = lt.loop.activecnt
        system.lookup(lt.loop, "ref.test", AF_INET, lambda a, e: got.set(lt.loop.activecnt))
        return before, lt.loop.activecnt

    before, during = lt.call(ask)
    assert during == before + 1
    system.release()
    assert got.wait() == before


def test_resolve_gives_ordered_sockaddrs(lt, box):
    resolver = StaticResolver({"mix.test": [V4_1, V4_2, V6_1]})
    got = box()
    lt.call(resolver.resolve, lt.loop, "mix.test", 443, lambda a, e: got.set((a, e)))
    addrs, err = got.wait()
    assert err is None
    assert addrs == [(AF_INET6, (V6_1, 443, 0, 0)), (AF_INET, (V4_1, 443)),
                     (AF_INET, (V4_2, 443))]
    with pytest.raises(OverflowError, match="70000"):
        resolver.resolve(lt.loop, "mix.test", 70000, lambda a, e: None)


def test_static_resolver_family_filter_and_fallback():
    fallback = StaticResolver({"other.test": ["127.0.0.9"]})
    static = StaticResolver({"s.test": ["127.0.0.2", "::1"]}, fallback=fallback)
    assert get(static, "s.test") == ["127.0.0.2", "::1"]
    assert get(static, "S.test", AF_INET6) == ["::1"]
    assert get(static, "other.test") == ["127.0.0.9"]
    static.set("s.test", ["127.0.0.3"])
    assert get(static, "s.test") == ["127.0.0.3"]
    with pytest.raises(DNSError):
        get(static, "s.test", AF_INET6)
    with pytest.raises(DNSError):
        get(StaticResolver(), "missing.test")
    with pytest.raises(ValueError):
        StaticResolver({"x": ["not-an-ip"]})


def test_order_addresses_interleaves_families():
    def addrs(*texts):
        return [parse_literal(t) for t in texts]

    mixed = addrs(V4_1, V4_2, V6_1, V6_2)
    text = lambda xs: [a.address for a in xs]  # noqa: E731
    assert text(order_addresses(mixed)) == [V6_1, V4_1, V6_2, V4_2]
    assert text(order_addresses(mixed, first_family_count=2)) == [V6_1, V6_2, V4_1, V4_2]
    assert text(order_addresses(mixed, ResolverPolicy(prefer_ipv6=False))) == \
        [V4_1, V6_1, V4_2, V6_2]
    assert text(order_addresses(mixed, ResolverPolicy(allow_ipv6=False))) == [V4_1, V4_2]
    assert text(order_addresses(addrs(V4_1, V4_2))) == [V4_1, V4_2]
    assert text(order_addresses(addrs(V6_1, V4_1, V4_2, "192.0.2.3"))) == \
        [V6_1, V4_1, V4_2, "192.0.2.3"]
    with pytest.raises(ValueError):
        ResolverPolicy(allow_ipv4=False, allow_ipv6=False)


def test_dns_error_is_a_gaierror_that_names_the_host():
    err = DNSError("x.test", -2)
    assert isinstance(err, stdsocket.gaierror)
    assert err.errno == err.code == -2 and err.args == (-2, "Name or service not known")
    assert "x.test" in str(err)
    again = pickle.loads(pickle.dumps(err))
    assert (again.host, again.code, again.args) == ("x.test", -2, err.args)
    assert type(err.as_gaierror()) is stdsocket.gaierror
