"""Which families to use and in what order to try addresses (RFC 8305 §4)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import TypeVar

from .base import AF_INET, AF_INET6

__all__ = ["DEFAULT_POLICY", "ResolverPolicy", "interleave", "order_addresses"]

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class ResolverPolicy:
    """Address-family preferences: IPv6 first by default; either family can be disallowed."""

    prefer_ipv6: bool = True
    allow_ipv4: bool = True
    allow_ipv6: bool = True

    def __post_init__(self) -> None:
        if not (self.allow_ipv4 or self.allow_ipv6):
            raise ValueError("ResolverPolicy must allow at least one of IPv4 and IPv6")

    def families(self) -> tuple[int, ...]:
        """Allowed families, preferred first."""
        order = (AF_INET6, AF_INET) if self.prefer_ipv6 else (AF_INET, AF_INET6)
        return tuple(f for f in order if self.allows(f))

    def allows(self, family: int) -> bool:
        if family == AF_INET6:
            return self.allow_ipv6
        if family == AF_INET:
            return self.allow_ipv4
        return True  # unix paths and other families are not the policy's business

    @property
    def preferred(self) -> int:
        return self.families()[0]


DEFAULT_POLICY = ResolverPolicy()


def interleave(preferred: list[T], other: list[T], first_family_count: int = 1) -> list[T]:
    """``first_family_count`` of ``preferred``, then alternate one by one; leftovers last.

    RFC 8305 §4: the first address is of the preferred family, then families alternate,
    so a broken family costs at most one attempt delay before the other one is tried.
    """
    if first_family_count < 1:
        raise ValueError(f"first_family_count must be >= 1, got {first_family_count}")
    out = list(preferred[:first_family_count])
    rest_p, rest_o = preferred[first_family_count:], list(other)
    i = j = 0
    if rest_o:
        out.append(rest_o[0])
        j = 1
    while i < len(rest_p) or j < len(rest_o):
        if i < len(rest_p):
            out.append(rest_p[i])
            i += 1
        if j < len(rest_o):
            out.append(rest_o[j])
            j += 1
    return out


def order_addresses(addresses: Iterable[T] | None, policy: ResolverPolicy = DEFAULT_POLICY,
                    first_family_count: int = 1,
                    family_of: Callable[[T], int] = lambda a: a.family) -> list[T]:
    """Drop disallowed families, keep each family's own order, interleave (RFC 8305 §4)."""
    items = [a for a in addresses or () if policy.allows(family_of(a))]
    pref = policy.preferred
    firsts = [a for a in items if family_of(a) == pref]
    others = [a for a in items if family_of(a) != pref]
    if not firsts:
        return others
    return interleave(firsts, others, first_family_count)
