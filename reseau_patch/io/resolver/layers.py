"""Resolver layers that wrap another: single-flight, caching, and fixed (static) answers.

Each is a :class:`~.base.BaseResolver` (same ``lookup`` contract) and is safe to share
between loops and threads: state is guarded by a lock, answers are delivered to each
requester's own loop.
"""

from __future__ import annotations

import _socket
import dataclasses
import ipaddress
import itertools
import math
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping

from ..event_loop import os_lock
from .base import (
    AF_INET,
    AF_INET6,
    AF_UNSPEC,
    BaseResolver,
    DNSError,
    HostAddress,
    Reply,
    parse_literal,
)

__all__ = ["CachingResolver", "SingleFlightResolver", "StaticResolver"]

_EAI_NONAME = getattr(_socket, "EAI_NONAME", -2)


def _key(host: str) -> str:
    return host.lower()  # DNS names are case-insensitive (RFC 4343)


def _fresh_error(err: BaseException) -> BaseException:
    return err.copy() if isinstance(err, DNSError) else err


class SingleFlightResolver(BaseResolver):
    """At most one lookup in flight per (name, family): later askers join the first.

    Every joined requester gets its own copy of the answer, on its own loop.
    """

    def __init__(self, inner: BaseResolver) -> None:
        self.inner = inner
        self._lock = os_lock()  # taken on resolver worker threads too
        self._inflight: dict[tuple[str, int], list[Reply]] = {}
        self._pid = os.getpid()
        self.coalesced = 0

    def _lookup(self, reply: Reply, host: str, family: int) -> None:
        key = (_key(host), family)
        with self._lock:
            if self._pid != os.getpid():  # forked: the parent's lookups never finish here
                self._inflight.clear()
                self._pid = os.getpid()
            waiters = self._inflight.get(key)
            if waiters is not None:
                waiters.append(reply)
                self.coalesced += 1
                return
            self._inflight[key] = [reply]

        def done(addrs: list[HostAddress] | None, err: BaseException | None) -> None:
            with self._lock:
                waiters = self._inflight.pop(key, [])
            for i, w in enumerate(waiters):
                if err is not None:
                    w(None, err if i == 0 else _fresh_error(err))
                else:
                    w(list(addrs), None)

        self.inner.lookup(None, host, family, done)

    def record_connection_failure(self, address: HostAddress) -> None:
        self.inner.record_connection_failure(address)

    def record_connection_success(self, address: HostAddress) -> None:
        self.inner.record_connection_success(address)

    def close(self) -> None:
        self.inner.close()


@dataclasses.dataclass
class _Answer:
    addresses: list[HostAddress]
    error: BaseException | None
    expiry: float


@dataclasses.dataclass
class _Demotion:
    until: float
    failures: int
    seq: int


class _Entry:
    __slots__ = ("answers", "demoted")

    def __init__(self) -> None:
        self.answers: dict[int, _Answer] = {}
        self.demoted: dict[tuple[int, str], _Demotion] = {}


class CachingResolver(BaseResolver):
    """Answers cached per (name, family) for ``ttl`` seconds, failures for ``negative_ttl``.

    * An AF_UNSPEC answer also fills the per-family slots for the families it contains.
    * At most ``max_entries`` names are kept (least recently used goes first).
    * :meth:`record_connection_failure` demotes an address to the end of its answers
      until the answer it came from expires; demoted addresses are still returned (fewest
      failures, oldest demotion first), so the last good address is never lost.
    * When a refresh fails, the expired answer keeps being served (re-tried after
      ``negative_ttl``): a DNS outage does not evict the last good addresses.
    * ``clock`` is injectable for tests; ``hits``/``misses`` count cache decisions.
    """

    def __init__(self, inner: BaseResolver, *, ttl: float = 30.0, negative_ttl: float = 1.0,
                 max_entries: int = 1024, clock: Callable[[], float] = time.monotonic) -> None:
        if ttl <= 0 or negative_ttl < 0:
            raise ValueError(f"ttl must be > 0 and negative_ttl >= 0, got {ttl}, {negative_ttl}")
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries}")
        self.inner = inner
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self.max_entries = max_entries
        self.clock = clock
        self._lock = os_lock()  # held for dict operations only; a hit must not switch
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._seq = itertools.count()
        self.hits = 0
        self.misses = 0

    # ------------------------------------------------------------------ lookups
    def _lookup(self, reply: Reply, host: str, family: int) -> None:
        key = _key(host)
        now = self.clock()
        with self._lock:
            entry = self._entries.get(key)
            answer = entry.answers.get(family) if entry is not None else None
            if answer is not None and answer.expiry > now:
                self._entries.move_to_end(key)
                self.hits += 1
                if answer.error is not None:
                    result, err = None, _fresh_error(answer.error)
                else:
                    result, err = self._ordered(entry, answer, now), None
            else:
                self.misses += 1
                result = err = None
                answer = None
        if answer is not None:
            reply(result, err)
            return

        def done(addrs: list[HostAddress] | None, error: BaseException | None) -> None:
            reply(*self._store(key, family, addrs, error))

        self.inner.lookup(None, host, family, done)

    def peek(self, host: str, family: int) -> list[HostAddress] | None:
        """The fresh cached addresses of ``host`` for ``family``, in the order a lookup
        would give them, or None when a lookup is needed (absent, expired, or a cached
        failure). Synchronous, any thread, no callback, no lock: the cache-hit fast path
        for callers that memoize what they build from an answer (equal lists => same
        answer; a refresh or a demotion gives a different one). The list is shared:
        read it, never modify it. A hit does not refresh the name's LRU position."""
        # Lock-free: each read below is one atomic dict/attribute access under the GIL,
        # and writers replace answers (never mutate their address lists).
        entry = self._entries.get(host.lower())
        if entry is None:
            return None
        answer = entry.answers.get(family)
        if answer is None or answer.error is not None or answer.expiry <= self.clock():
            return None
        self.hits += 1
        if not entry.demoted:
            return answer.addresses
        with self._lock:
            return self._ordered(entry, answer, self.clock())

    def _store(self, key: str, family: int, addrs: list[HostAddress] | None,
               err: BaseException | None) -> tuple[list[HostAddress] | None, BaseException | None]:
        now = self.clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                entry = self._entries[key] = _Entry()
                while len(self._entries) > self.max_entries:
                    self._entries.popitem(last=False)
            else:
                self._entries.move_to_end(key)
            if err is None:
                expiry = now + self.ttl
                fresh = [dataclasses.replace(a, expiry=expiry) for a in addrs]
                entry.answers[family] = answer = _Answer(fresh, None, expiry)
                if family == AF_UNSPEC:
                    for fam in (AF_INET, AF_INET6):
                        part = [a for a in fresh if a.family == fam]
                        if part:
                            entry.answers[fam] = _Answer(part, None, expiry)
                return self._ordered(entry, answer, now), None
            old = entry.answers.get(family)
            if old is not None and old.addresses:
                # Serve stale: keep the last good answer, ask again after negative_ttl.
                old.expiry = now + self.negative_ttl
                return self._ordered(entry, old, now), None
            if isinstance(err, _socket.gaierror):
                entry.answers[family] = _Answer([], err, now + self.negative_ttl)
            return None, err

    def _ordered(self, entry: _Entry, answer: _Answer, now: float) -> list[HostAddress]:
        demoted = entry.demoted
        if not demoted:
            return list(answer.addresses)
        for k in [k for k, d in demoted.items() if d.until <= now]:
            del demoted[k]  # promotion: the demotion lasted as long as the record
        good = [a for a in answer.addresses if (a.family, a.address) not in demoted]
        bad = [a for a in answer.addresses if (a.family, a.address) in demoted]
        bad.sort(key=lambda a: (demoted[a.family, a.address].failures,
                                demoted[a.family, a.address].seq))
        return good + bad

    # ------------------------------------------------------------------ feedback
    def record_connection_failure(self, address: HostAddress) -> None:
        """Demote ``address`` (of ``address.host``) until its record expires."""
        now = self.clock()
        k = (address.family, address.address)
        with self._lock:
            entry = self._entries.get(_key(address.host))
            if entry is None:
                return
            until = max((ans.expiry for ans in entry.answers.values()
                         if any((a.family, a.address) == k for a in ans.addresses)),
                        default=-math.inf)
            if until <= now:
                until = now + self.ttl
            d = entry.demoted.get(k)
            if d is not None and d.until > now:
                d.failures += 1
            else:
                entry.demoted[k] = _Demotion(until, 1, next(self._seq))

    def record_connection_success(self, address: HostAddress) -> None:
        """Lift a demotion of ``address`` at once."""
        with self._lock:
            entry = self._entries.get(_key(address.host))
            if entry is not None:
                entry.demoted.pop((address.family, address.address), None)

    # ------------------------------------------------------------------ admin
    def purge(self, host: str | None = None) -> None:
        """Forget ``host`` (every name when None)."""
        with self._lock:
            if host is None:
                self._entries.clear()
            else:
                self._entries.pop(_key(host), None)

    def cached_hosts(self) -> list[str]:
        """Names with an entry, least recently used first."""
        with self._lock:
            return list(self._entries)

    def close(self) -> None:
        self.inner.close()


class StaticResolver(BaseResolver):
    """Fixed answers: ``{name: [ip, ...]}``; other names go to ``fallback`` or fail with
    ``EAI_NONAME``. Used by tests and for host overrides. ``lookups`` counts answers given.
    """

    def __init__(self, answers: Mapping[str, Iterable[str | ipaddress.IPv4Address
                                                  | ipaddress.IPv6Address]] | None = None,
                 *, fallback: BaseResolver | None = None) -> None:
        self.fallback = fallback
        self._lock = os_lock()  # taken on resolver worker threads too
        self._table: dict[str, list[HostAddress]] = {}
        self.lookups = 0
        for host, ips in (answers or {}).items():
            self.set(host, ips)

    def set(self, host: str, ips: Iterable[str | ipaddress.IPv4Address
                                           | ipaddress.IPv6Address]) -> None:
        """Answer ``host`` with ``ips`` (in this order) from now on."""
        addrs = []
        for ip in ips:
            lit = parse_literal(str(ip))
            if lit is None:
                raise ValueError(f"not an IP address: {ip!r}")
            addrs.append(dataclasses.replace(lit, host=host))
        with self._lock:
            self._table[_key(host)] = addrs

    def remove(self, host: str) -> None:
        with self._lock:
            self._table.pop(_key(host), None)

    def _lookup(self, reply: Reply, host: str, family: int) -> None:
        with self._lock:
            addrs = self._table.get(_key(host))
            self.lookups += 1
        if addrs is None:
            if self.fallback is not None:
                self.fallback.lookup(None, host, family, reply)
            else:
                reply(None, DNSError(host, _EAI_NONAME))
            return
        sel = [dataclasses.replace(a, host=host) for a in addrs
               if family in (AF_UNSPEC, a.family)]
        reply(sel or None, None if sel else DNSError(host, _EAI_NONAME))

    def close(self) -> None:
        if self.fallback is not None:
            self.fallback.close()
