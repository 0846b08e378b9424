"""Host resolution for the bootstraps: composable layers over ``getaddrinfo``.

* :class:`SystemResolver` — ``getaddrinfo`` on a bounded worker pool (answers come back
  through the requesting loop's thread-safe queue);
* :class:`SingleFlightResolver` — one lookup in flight per name and family;
* :class:`CachingResolver` — TTL cache, negative caching, LRU bound, per-family lists,
  connection-failure demotion;
* :class:`StaticResolver` — fixed answers (tests, overrides);
* :func:`order_addresses` / :class:`ResolverPolicy` — RFC 8305 §4 family interleaving.

Every layer has ``lookup(loop, host, family, callback)`` (per-family answers, which Happy
Eyeballs needs) and the older ``resolve(loop, host, port, callback)`` giving
``[(family, sockaddr)]``; see :mod:`.base` for the threading contract. IP literals never
reach the system resolver.
"""

from __future__ import annotations

from ..event_loop import os_lock
from .base import (
    AF_INET,
    AF_INET6,
    AF_UNSPEC,
    Address,
    BaseResolver,
    DNSError,
    HostAddress,
    LookupCallback,
    ResolveCallback,
    Resolver,
    gai_message,
    literal_address,
    parse_literal,
)
from .layers import CachingResolver, SingleFlightResolver, StaticResolver
from .ordering import DEFAULT_POLICY, ResolverPolicy, interleave, order_addresses
from .system import SystemResolver, WorkerPool

__all__ = [
    "AF_INET",
    "AF_INET6",
    "AF_UNSPEC",
    "Address",
    "BaseResolver",
    "CachingResolver",
    "DEFAULT_POLICY",
    "DNSError",
    "HostAddress",
    "LookupCallback",
    "ResolveCallback",
    "Resolver",
    "ResolverPolicy",
    "SingleFlightResolver",
    "StaticResolver",
    "SystemResolver",
    "WorkerPool",
    "default_resolver",
    "find_system_resolver",
    "gai_message",
    "interleave",
    "literal_address",
    "make_resolver",
    "order_addresses",
    "parse_literal",
]


def make_resolver(system: BaseResolver | None = None, *, ttl: float = 30.0,
                  negative_ttl: float = 1.0, max_entries: int = 1024) -> CachingResolver:
    """The standard stack: caching over single-flight over ``system`` (a new
    :class:`SystemResolver` when None)."""
    return CachingResolver(SingleFlightResolver(system or SystemResolver()), ttl=ttl,
                           negative_ttl=negative_ttl, max_entries=max_entries)


_default: CachingResolver | None = None
_default_lock = os_lock()


def default_resolver() -> CachingResolver:
    """The process-wide resolver (caching → single-flight → system), shared by every loop."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = make_resolver()
    return _default


def find_system_resolver(resolver: object) -> SystemResolver:
    """The :class:`SystemResolver` at the bottom of a stack of layers (following
    ``inner``/``fallback``); the default stack's one when there is none."""
    for _ in range(32):
        if isinstance(resolver, SystemResolver):
            return resolver
        resolver = getattr(resolver, "inner", None) or getattr(resolver, "fallback", None)
        if resolver is None:
            break
    return default_resolver().inner.inner  # type: ignore[attr-defined, return-value]
