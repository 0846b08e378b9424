"""Resolver vocabulary shared by every layer: addresses, errors, delivery, the base class.

Contract of :meth:`BaseResolver.lookup` (every layer implements it):

* ``lookup(loop, host, family, callback)`` returns at once; ``callback(addresses, error)``
  runs **exactly once**, with a non-empty ``list[HostAddress]`` and ``None``, or ``None``
  and an exception (a :class:`DNSError` for name-service failures).
* With an :class:`EventLoop` the callback runs **on that loop's thread, never inside the
  ``lookup`` call** (at least one loop hop later); while the answer is outstanding the
  lookup holds a reference on the loop when it was asked on the loop's thread, so a loop
  run "until nothing is left" (gevent's hub) waits for it.
* With ``loop=None`` the callback may run on any thread, including synchronously inside
  ``lookup``. Layers use this among themselves; the thread hop happens once, at the top.
* IP literals are answered by every layer itself: they never reach the system resolver.
"""

from __future__ import annotations

import _socket
import ctypes
import dataclasses
import ipaddress
import math
from collections.abc import Callable
from typing import Any, Protocol

from ..event_loop import EventLoop
from ..socket import check_port

__all__ = [
    "AF_INET",
    "AF_INET6",
    "AF_UNSPEC",
    "Address",
    "BaseResolver",
    "DNSError",
    "HostAddress",
    "LookupCallback",
    "Reply",
    "ResolveCallback",
    "Resolver",
    "gai_message",
    "literal_address",
    "parse_literal",
]

AF_UNSPEC = _socket.AF_UNSPEC
AF_INET = _socket.AF_INET
AF_INET6 = _socket.AF_INET6
_FAMILIES = (AF_UNSPEC, AF_INET, AF_INET6)

Address = tuple[int, object]  # (address family, sockaddr)
ResolveCallback = Callable[[list[Address] | None, BaseException | None], None]
LookupCallback = Callable[[list["HostAddress"] | None, BaseException | None], None]

_GAI_FALLBACK = {
    getattr(_socket, "EAI_NONAME", -2): "Name or service not known",
    getattr(_socket, "EAI_AGAIN", -3): "Temporary failure in name resolution",
    getattr(_socket, "EAI_FAIL", -4): "Non-recoverable failure in name resolution",
    getattr(_socket, "EAI_FAMILY", -6): "ai_family not supported",
    getattr(_socket, "EAI_ADDRFAMILY", -9): "Address family for hostname not supported",
}
_gai_strerror: Any = None


def gai_message(code: int) -> str:
    """The C library's text for an ``EAI_*`` code (what ``socket.gaierror`` carries)."""
    global _gai_strerror
    if _gai_strerror is None:
        try:
            fn = ctypes.CDLL(None).gai_strerror
            fn.restype = ctypes.c_char_p
            fn.argtypes = [ctypes.c_int]
            _gai_strerror = fn
        except (OSError, AttributeError):
            _gai_strerror = False
    if _gai_strerror:
        text = _gai_strerror(code)
        if text:
            return text.decode("utf-8", "replace")
    return _GAI_FALLBACK.get(code, f"name resolution error {code}")


class DNSError(_socket.gaierror):
    """A name-service failure for ``host``: a ``socket.gaierror`` with ``host`` and ``code``.

    ``args`` are the stdlib's ``(code, reason)``, so code comparing against what
    ``socket.getaddrinfo`` raised still matches; ``str()`` also names the host.
    """

    def __init__(self, host: str, code: int, reason: str | None = None) -> None:
        reason = reason or gai_message(code)
        super().__init__(code, reason)
        self.host = host
        self.code = code
        self.reason = reason

    def __str__(self) -> str:
        return f"[Errno {self.code}] {self.reason}: {self.host!r}"

    def __reduce__(self) -> tuple:
        return (type(self), (self.host, self.code, self.reason))

    def copy(self) -> DNSError:
        """A fresh instance (a cached failure must not share tracebacks between raisers)."""
        return type(self)(self.host, self.code, self.reason)

    def as_gaierror(self) -> _socket.gaierror:
        """The plain ``socket.gaierror`` the stdlib would have raised."""
        return _socket.gaierror(self.code, self.reason)


@dataclasses.dataclass(frozen=True)
class HostAddress:
    """One resolved address of ``host``.

    ``address`` is the canonical text (``"0:0::1"`` becomes ``"::1"``); ``expiry`` is the
    resolver clock time after which a cache no longer trusts it (infinite when uncached).
    """

    address: str
    family: int
    host: str
    scope_id: int = 0
    expiry: float = dataclasses.field(default=math.inf, compare=False)

    def sockaddr(self, port: int) -> tuple:
        """The ``_socket`` address tuple for ``port``."""
        if self.family == AF_INET6:
            return (self.address, port, 0, self.scope_id)
        return (self.address, port)

    @property
    def ip(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        """The address as an ``ipaddress`` object (with its scope for link-local IPv6)."""
        if self.family == AF_INET6 and self.scope_id:
            return ipaddress.IPv6Address(f"{self.address}%{self.scope_id}")
        return ipaddress.ip_address(self.address)

    @property
    def numeric_host(self) -> str:
        """Text ``getaddrinfo(..., AI_NUMERICHOST)`` accepts (with ``%scope`` if any)."""
        if self.family == AF_INET6 and self.scope_id:
            return f"{self.address}%{self.scope_id}"
        return self.address


def parse_literal(host: str) -> HostAddress | None:
    """The address of an IP literal (canonical form), or None when ``host`` is a name."""
    if not isinstance(host, str):
        return None
    text, _, scope = host.partition("%")
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if ip.version == 4:
        return None if scope else HostAddress(str(ip), AF_INET, host)
    sid = 0
    if scope:
        if scope.isdigit():
            sid = int(scope)
        else:
            try:
                sid = _socket.if_nametoindex(scope)
            except OSError:
                return None  # unknown interface: let getaddrinfo report it
    return HostAddress(str(ip), AF_INET6, host, sid)


def literal_address(host: str, port: int) -> list[Address] | None:
    """The address list for an IP literal, or None if ``host`` is a name."""
    lit = parse_literal(host)
    if lit is None:
        return None
    return [(lit.family, lit.sockaddr(port))]


class Reply:
    """Deliver one answer to ``callback`` on ``loop``'s thread, exactly once.

    Created where the request is made: on the loop thread it takes a loop reference
    (released just before the callback runs) so the loop does not exit while waiting.
    Calling the reply from any thread is allowed; with ``loop=None`` it calls through.
    """

    __slots__ = ("loop", "callback", "_ref")

    def __init__(self, loop: EventLoop | None, callback: LookupCallback) -> None:
        self.loop = loop
        self.callback = callback
        self._ref = False
        if loop is not None and loop.is_loop_thread():
            loop.ref()
            self._ref = True

    def __call__(self, value: Any, error: BaseException | None) -> None:
        loop = self.loop
        if loop is None:
            self.callback(value, error)
        elif loop.is_loop_thread():
            loop.call_soon(self._run, value, error)
        else:
            try:
                loop.post(self._run, value, error)
            except RuntimeError:
                pass  # the requesting loop is closed: nobody is waiting any more

    def _run(self, value: Any, error: BaseException | None) -> None:
        if self._ref:
            self._ref = False
            self.loop.unref()
        self.callback(value, error)


class Resolver(Protocol):
    """Anything a bootstrap can ask for addresses (the original, family-less seam)."""

    def resolve(self, loop: EventLoop, host: str, port: int,
                callback: ResolveCallback) -> None: ...


def check_family(family: int) -> int:
    if family not in _FAMILIES:
        raise ValueError(f"family must be AF_UNSPEC, AF_INET or AF_INET6, got {family!r}")
    return family


class BaseResolver:
    """Common front of every layer: argument checks, literal bypass, ``resolve``.

    Subclasses implement :meth:`_lookup`, which receives a ready :class:`Reply`.
    """

    def lookup(self, loop: EventLoop | None, host: str, family: int,
               callback: LookupCallback) -> None:
        """Addresses of ``host`` for ``family`` (AF_UNSPEC: both); see the module contract."""
        if not isinstance(host, str):
            raise TypeError(f"host must be a str, got {type(host).__name__} {host!r}")
        check_family(family)
        reply = Reply(loop, callback)
        lit = parse_literal(host)
        if lit is not None:
            if family in (AF_UNSPEC, lit.family):
                reply([lit], None)
            else:
                reply(None, DNSError(host, getattr(_socket, "EAI_ADDRFAMILY", -9)))
            return
        try:
            self._lookup(reply, host, family)
        except Exception as exc:  # noqa: BLE001 - a layer's failure is the caller's answer
            reply(None, exc)

    def _lookup(self, reply: Reply, host: str, family: int) -> None:
        raise NotImplementedError

    def resolve(self, loop: EventLoop, host: str, port: int, callback: ResolveCallback) -> None:
        """``callback([(family, sockaddr)], None)`` in RFC 8305 §4 order, or ``(None, err)``,
        on ``loop``'s thread, exactly once."""
        from .ordering import order_addresses

        check_port(port)

        def done(addrs: list[HostAddress] | None, err: BaseException | None) -> None:
            if err is not None:
                callback(None, err)
            else:
                callback([(a.family, a.sockaddr(port)) for a in order_addresses(addrs)], None)

        self.lookup(loop, host, AF_UNSPEC, done)

    def record_connection_failure(self, address: HostAddress) -> None:
        """A connection to ``address`` failed (a caching layer demotes it)."""

    def record_connection_success(self, address: HostAddress) -> None:
        """A connection to ``address`` worked (a caching layer lifts a demotion)."""

    def close(self) -> None:
        """Release threads (idempotent)."""
