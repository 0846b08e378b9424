"""The Sockets DNS surface and the Happy Eyeballs knobs of ``connect``."""

from __future__ import annotations

import ipaddress
import socket as stdsocket
import time

import pytest

import reseau_patch.sockets as S
from reseau_patch.io.resolver import CachingResolver, StaticResolver

IPv4Address, IPv6Address = ipaddress.IPv4Address, ipaddress.IPv6Address


def test_getalladdrinfo_and_getaddrinfo(run):
    def body():
        assert S.getalladdrinfo("localhost") == [IPv4Address("127.0.0.1")]
        assert S.getaddrinfo("localhost") == IPv4Address("127.0.0.1")
        assert S.getaddrinfo("localhost", None) == IPv4Address("127.0.0.1")
        assert S.getaddrinfo("0:0::1", IPv6Address) == IPv6Address("::1")
        assert S.getalladdrinfo(IPv4Address("127.0.0.2")) == [IPv4Address("127.0.0.2")]
        # 'localhost' has no IPv6 address here: the stdlib's error, as a DNSError.
        with pytest.raises(stdsocket.gaierror) as std:
            stdsocket.getaddrinfo("localhost", None, stdsocket.AF_INET6)
        with pytest.raises(S.DNSError) as ours:
            S.getaddrinfo("localhost", IPv6Address)
        assert ours.value.args == std.value.args and ours.value.host == "localhost"
    run(body)


def test_failing_name_raises_dns_error(run):
    def body():
        with pytest.raises(S.DNSError) as info:
            S.getalladdrinfo("nonexistent.invalid")
        err = info.value
        assert isinstance(err, stdsocket.gaierror)
        assert err.host == "nonexistent.invalid" and err.code == stdsocket.EAI_NONAME
        assert "nonexistent.invalid" in str(err)
        with pytest.raises(TypeError):
            S.getalladdrinfo(123)
        with pytest.raises(TypeError):
            S.getaddrinfo("localhost", str)
    run(body)


def test_lookups_park_only_the_calling_greenlet(run):
    import gevent

    def body():
        resolver = StaticResolver({"many.test": ["127.0.0.5"]})
        jobs = [gevent.spawn(S.getaddrinfo, "many.test", resolver=resolver)
                for _ in range(20)]
        gevent.joinall(jobs, timeout=10, raise_error=True)
        assert {j.value for j in jobs} == {IPv4Address("127.0.0.5")}
    run(body)


def test_getnameinfo(run):
    def body():
        expected = stdsocket.getnameinfo(("127.0.0.1", 0), stdsocket.NI_NAMEREQD)[0]
        assert S.getnameinfo(IPv4Address("127.0.0.1")) == expected
        assert S.getnameinfo("127.0.0.1") == expected
        with pytest.raises(ValueError):
            S.getnameinfo("not an ip")
    run(body)


def _proc_ipv6() -> set[IPv6Address]:
    out = set()
    try:
        with open("/proc/net/if_inet6") as f:
            for line in f:
                hexaddr = line.split()[0]
                out.add(IPv6Address(int(hexaddr, 16)))
    except OSError:
        pass
    return out


def test_getipaddrs_and_getipaddr():
    everything = S.getipaddrs(loopback=True)
    assert IPv4Address("127.0.0.1") in everything
    assert all(not a.is_loopback for a in S.getipaddrs())
    assert all(a.version == 4 for a in S.getipaddrs(IPv4Address, loopback=True))
    v6 = S.getipaddrs(IPv6Address, loopback=True)
    assert all(a.version == 6 for a in v6)
    proc = _proc_ipv6()
    if proc:  # Linux: the kernel's own list agrees (scopes aside)
        assert {IPv6Address(str(a).partition("%")[0]) for a in v6} == proc
    non_loop = S.getipaddrs()
    if non_loop:
        first = S.getipaddr()
        v4 = [a for a in non_loop if a.version == 4]
        assert first == (v4[0] if v4 else non_loop[0])
    else:
        with pytest.raises(OSError, match="No networking interface"):
            S.getipaddr()


def test_islinklocaladdr():
    assert S.islinklocaladdr("169.254.10.1")
    assert S.islinklocaladdr(IPv6Address("fe80::1"))
    assert S.islinklocaladdr("febf::1")
    assert not S.islinklocaladdr("fec0::1")
    assert not S.islinklocaladdr(IPv4Address("10.0.0.1"))
    with pytest.raises(ValueError):
        S.islinklocaladdr("nope")


def test_connect_happy_eyeballs_knobs(run):
    """First address drops SYNs; the second is connected after the attempt delay."""
    dead = stdsocket.socket()
    dead.bind(("127.0.0.2", 0))
    port = dead.getsockname()[1]
    live = stdsocket.socket()
    try:
        live.bind(("127.0.0.3", port))
    except OSError:
        live.close()
        dead.close()
        pytest.skip("port taken on 127.0.0.3")
    dead.listen(0)
    live.listen(8)
    fillers = []
    for _ in range(3):
        f = stdsocket.socket()
        f.setblocking(False)
        f.connect_ex(("127.0.0.2", port))
        fillers.append(f)
    time.sleep(0.05)
    resolver = CachingResolver(StaticResolver({"he.test": ["127.0.0.2", "127.0.0.3"]}))

    def body():
        t0 = time.monotonic()
        with S.connect("he.test", port, resolver=resolver, happy_eyeballs_delay=0.3) as c:
            elapsed = time.monotonic() - t0
            assert c.getpeername() == (IPv4Address("127.0.0.3"), port)
            assert 0.25 <= elapsed < 0.3 + 1.5
        refused = S.listenany("127.0.0.1")
        rport = refused[0]
        refused[1].close()
        both = StaticResolver({"no.test": ["127.0.0.1", "127.0.0.1"]})
        with pytest.raises(ConnectionRefusedError):
            S.connect("no.test", rport, resolver=both)
        with pytest.raises(ExceptionGroup) as group:
            S.connect("no.test", rport, resolver=both, all_errors=True)
        assert len(group.value.exceptions) == 2
        with pytest.raises(S.DNSError):
            S.connect("nonexistent.invalid", 80)

    try:
        run(body)
    finally:
        for f in fillers:
            f.close()
        dead.close()
        live.close()
