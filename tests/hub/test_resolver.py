"""gevent's resolver on the io resolver: same results and exceptions as the stdlib.

No outside DNS exists here, so only 'localhost', numeric addresses and names that fail
are looked up.
"""

from __future__ import annotations

import json
import os
import socket as stdsocket
import subprocess
import sys
from pathlib import Path

import pytest

from reseau_patch.hub import RESOLVER_PATH
from reseau_patch.hub.resolver import Resolver
from reseau_patch.io.resolver import SystemResolver, make_resolver

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def resolver():
    """One hub (whatever loop this process selected) and our resolver on it, made before
    the per-test leak check takes its snapshot."""
    import gevent

    # A private stack whose worker threads exit 50 ms after their last job, so the leak
    # check after each test does not wait for the default pool's 1 s idle timeout.
    stack = make_resolver(SystemResolver(max_workers=2, idle_timeout=0.05))
    return Resolver(hub=gevent.get_hub(), resolver=stack)


def outcome(fn, *args):
    try:
        return ("ok", fn(*args))
    except Exception as exc:  # noqa: BLE001 - compared below
        return ("raised", type(exc), exc.args)


def same(ours_fn, std_fn, *args):
    std = outcome(std_fn, *args)
    ours = outcome(ours_fn, *args)
    assert ours == std, f"{ours_fn.__name__}{args!r}: ours {ours!r} != stdlib {std!r}"


S = stdsocket
GETADDRINFO_CASES = [
    ("localhost", 80),
    ("localhost", "http"),
    ("localhost", "80"),
    ("localhost", None),
    ("LOCALHOST", 443),
    ("localhost", 80, S.AF_INET),
    ("localhost", 80, S.AF_INET6),
    ("localhost", 80, 0, S.SOCK_STREAM),
    ("localhost", 80, 0, S.SOCK_DGRAM, 0),
    ("localhost", 80, 0, 0, S.IPPROTO_TCP),
    ("localhost", 80, 0, 0, 0, S.AI_PASSIVE),
    ("localhost", 80, 0, 0, 0, S.AI_NUMERICHOST),
    ("localhost", 80, 0, 0, 0, S.AI_CANONNAME),
    ("localhost", "http", 0, 0, 0, S.AI_NUMERICSERV),
    ("localhost", 70000),
    ("localhost", "nosuchservice"),
    ("localhost", 1.5),
    ("localhost", 80, 99),
    ("localhost", 80, 0, 0, 0, "x"),
    ("127.0.0.1", 80),
    ("127.0.0.1", 80, S.AF_INET6),
    ("127.1", 80),
    ("::1", 80),
    ("0:0::1", 443, S.AF_INET6),
    (None, 80),
    (None, 80, 0, 0, 0, S.AI_PASSIVE),
    (None, None),
    (b"localhost", 80),
    ("", 80),
    (123, 80),
    ("nonexistent.invalid", 80),
    ("nonexistent.invalid", "nosuchservice"),
    ("nonexistent.invalid", 80, S.AF_INET),
]


@pytest.mark.parametrize("args", GETADDRINFO_CASES, ids=repr)
def test_getaddrinfo_matches_stdlib(resolver, args):
    # gevent.socket.getaddrinfo converts the ints to enums afterwards; compare as ints.
    def std(*a):
        return [(int(f), int(t), p, c, sa) for f, t, p, c, sa in stdsocket.getaddrinfo(*a)]

    def ours(*a):
        return [(int(f), int(t), p, c, sa) for f, t, p, c, sa in resolver.getaddrinfo(*a)]

    ours.__name__ = "getaddrinfo"
    same(ours, std, *args)


def test_getaddrinfo_second_call_is_cached(resolver):
    resolver.getaddrinfo("localhost", 80)
    hits = resolver.resolver.hits
    resolver.getaddrinfo("localhost", 81)
    assert resolver.resolver.hits == hits + 1


@pytest.mark.parametrize("host", ["localhost", "LocalHost", "127.0.0.1", "127.1", "",
                                  "<broadcast>", b"localhost", 1, "nonexistent.invalid",
                                  "l\x00x", "a" * 300, None], ids=repr)
def test_gethostbyname_matches_stdlib(resolver, host):
    same(resolver.gethostbyname, stdsocket.gethostbyname, host)


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "nonexistent.invalid", 5],
                         ids=repr)
def test_gethostbyname_ex_matches_stdlib(resolver, host):
    same(resolver.gethostbyname_ex, stdsocket.gethostbyname_ex, host)


@pytest.mark.parametrize("ip", ["127.0.0.1", "localhost", None], ids=repr)
def test_gethostbyaddr_matches_stdlib(resolver, ip):
    same(resolver.gethostbyaddr, stdsocket.gethostbyaddr, ip)


@pytest.mark.parametrize("args", [
    (("127.0.0.1", 80), 0),
    (("127.0.0.1", 80), S.NI_NUMERICHOST | S.NI_NUMERICSERV),
    (("localhost", 80), 0),
    (("127.0.0.1",), 0),
    (("127.0.0.1", 80), "x"),
    (("nonexistent.invalid", 80), 0),
], ids=repr)
def test_getnameinfo_matches_stdlib(resolver, args):
    same(resolver.getnameinfo, stdsocket.getnameinfo, *args)


def test_resolver_presents_itself_like_gevents(resolver):
    import gevent

    hub = gevent.get_hub()
    assert stdsocket.gaierror in hub.NOT_ERROR
    assert Resolver().hub is hub  # hub=None means this thread's hub
    resolver.close()  # shared io resolver: close is a no-op and the resolver keeps working
    assert resolver.gethostbyname("localhost") == "127.0.0.1"
    assert RESOLVER_PATH == "reseau_patch.hub.resolver.Resolver"


_CHILD = r"""
import json, socket, sys
mode = sys.argv[1]
if mode == "select":
    from reseau_patch.hub import use_reseau_loop
    use_reseau_loop(resolver=True)
import gevent, gevent.socket
hub = gevent.get_hub()
out = {
    "loop": type(hub.loop).__module__ + "." + type(hub.loop).__name__,
    "resolver": type(hub.resolver).__module__ + "." + type(hub.resolver).__name__,
    "same": repr(gevent.socket.getaddrinfo("localhost", 80)) == repr(
        socket.getaddrinfo("localhost", 80)),
    "value": repr(gevent.socket.getaddrinfo("localhost", 80)),
}
try:
    gevent.socket.getaddrinfo("nonexistent.invalid", 80)
except socket.gaierror as exc:
    out["error"] = [type(exc).__name__] + list(exc.args)
print(json.dumps(out))
"""


def _child(env_extra: dict[str, str], mode: str = "env") -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEVENT_")}
    env.update(env_extra)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, "-c", _CHILD, mode], env=env, cwd=str(ROOT),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("loop", ["reseau_patch.hub.loop.ReseauLoop", None],
                         ids=["reseau-loop", "gevent-default-loop"])
def test_gevent_hub_uses_our_resolver_in_a_subprocess(loop):
    env = {"GEVENT_RESOLVER": RESOLVER_PATH}
    if loop:
        env["GEVENT_LOOP"] = loop
    out = _child(env)
    assert out["resolver"] == RESOLVER_PATH
    if loop:
        assert out["loop"] == loop
    assert out["same"], out["value"]
    assert out["error"] == ["gaierror", -2, "Name or service not known"]


def test_use_reseau_loop_resolver_true_selects_it():
    out = _child({}, mode="select")
    assert out["resolver"] == RESOLVER_PATH
    assert out["loop"] == "reseau_patch.hub.loop.ReseauLoop"
    assert out["same"]


# ---------------------------------------------------------------- the cache-hit fast path
@pytest.mark.parametrize("args", GETADDRINFO_CASES, ids=repr)
def test_getaddrinfo_enums_is_the_stdlibs_also_when_memoized(resolver, args):
    """The shape ``socket.getaddrinfo`` has after patch_all(): enums and all, twice (the
    second call is served from the memo where the answer is cacheable)."""
    from reseau_patch.hub import resolver as hub_resolver

    def ours(*a):
        return resolver.getaddrinfo_enums(*a)

    ours.__name__ = "getaddrinfo_enums"
    std = outcome(stdsocket.getaddrinfo, *args)
    for _ in range(2):
        got = outcome(ours, *args)
        assert got == std
        if got[0] == "ok":  # enum members, not just equal ints
            assert [(type(f), type(t)) for f, t, *_ in got[1]] == \
                [(type(f), type(t)) for f, t, *_ in std[1]]
    assert hub_resolver.getaddrinfo is not None


def test_cached_getaddrinfo_switches_no_greenlet_and_asks_no_c_library(resolver, monkeypatch):
    import greenlet

    from reseau_patch.hub import resolver as hub_resolver

    want = resolver.getaddrinfo_enums("localhost", 443, 0, stdsocket.SOCK_STREAM)
    calls = []
    real = hub_resolver._socket.getaddrinfo
    monkeypatch.setattr(hub_resolver._socket, "getaddrinfo",
                        lambda *a: calls.append(a) or real(*a))
    switches = []
    old = greenlet.settrace(lambda event, args: switches.append(event))
    try:
        for _ in range(100):
            assert resolver.getaddrinfo_enums("localhost", 443, 0, stdsocket.SOCK_STREAM) \
                == want
            assert resolver.getaddrinfo("localhost", 443, 0, stdsocket.SOCK_STREAM) == want
    finally:
        greenlet.settrace(old)
    assert switches == [] and calls == []


def test_memoized_answers_follow_the_cache(resolver):
    """A purge, a refreshed answer and a demotion each change what the memo serves."""
    import gevent

    from reseau_patch.io.resolver import CachingResolver, StaticResolver

    static = StaticResolver({"svc.test": ["127.0.0.2", "127.0.0.3"]})
    cache = CachingResolver(static)
    ours = Resolver(hub=gevent.get_hub(), resolver=cache)

    def hosts() -> list[str]:
        return [sa[0] for *_, sa in ours.getaddrinfo("svc.test", 80, 0, stdsocket.SOCK_STREAM)]

    assert hosts() == ["127.0.0.2", "127.0.0.3"]
    first = cache.peek("svc.test", 0)[0]
    cache.record_connection_failure(first)  # demoted: last until its record expires
    assert hosts() == ["127.0.0.3", "127.0.0.2"]
    cache.record_connection_success(first)
    assert hosts() == ["127.0.0.2", "127.0.0.3"]
    static.set("svc.test", ["127.0.0.4"])
    assert hosts() == ["127.0.0.2", "127.0.0.3"]  # cached until the TTL or a purge
    cache.purge("svc.test")
    assert hosts() == ["127.0.0.4"]
    got = ours.getaddrinfo("svc.test", 80)
    got.clear()  # the caller owns the list it got
    assert hosts() == ["127.0.0.4"]


def test_a_memoized_int_port_does_not_answer_for_a_float_port(resolver):
    resolver.getaddrinfo_enums("localhost", 80)
    std = outcome(stdsocket.getaddrinfo, "localhost", 80.0)
    assert std[0] == "raised"
    assert outcome(resolver.getaddrinfo_enums, "localhost", 80.0) == std
    assert outcome(resolver.getaddrinfo, "localhost", 80.0) == std


def test_peek_is_none_when_a_lookup_is_needed():
    from reseau_patch.io.resolver import CachingResolver, StaticResolver

    now = [100.0]
    cache = CachingResolver(StaticResolver({"a.test": ["127.0.0.2"]}), ttl=5.0,
                            clock=lambda: now[0])
    assert cache.peek("a.test", 0) is None
    got = []
    cache.lookup(None, "a.test", 0, lambda addrs, err: got.append((addrs, err)))
    assert got and got[0][1] is None
    assert [a.numeric_host for a in cache.peek("A.TEST", 0)] == ["127.0.0.2"]
    cache.lookup(None, "missing.test", 0, lambda addrs, err: got.append((addrs, err)))
    assert got[-1][1] is not None and cache.peek("missing.test", 0) is None  # negative
    now[0] += 5.0
    assert cache.peek("a.test", 0) is None  # expired
