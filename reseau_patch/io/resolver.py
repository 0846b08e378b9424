"""Host resolution for the bootstraps: ``getaddrinfo`` off the loop thread.

Contract: ``resolve(loop, host, port, callback)`` returns at once; ``callback(addresses,
error)`` runs later **on ``loop``'s thread**, exactly once, with a list of
``(family, sockaddr)`` or a ``socket.gaierror``. IP literals and unix paths never reach
the system resolver. Caching, single-flight and Happy Eyeballs ordering belong to the
resolver issue; this module is the pluggable seam and the plain system lookup.
"""

from __future__ import annotations

import _socket
import ipaddress
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from .event_loop import EventLoop
from .socket import check_port

__all__ = ["Address", "Resolver", "SystemResolver", "literal_address"]

Address = tuple[int, object]  # (address family, sockaddr)
ResolveCallback = Callable[[list[Address] | None, BaseException | None], None]


class Resolver(Protocol):
    """Anything a bootstrap can ask for addresses."""

    def resolve(self, loop: EventLoop, host: str, port: int,
                callback: ResolveCallback) -> None: ...


def literal_address(host: str, port: int) -> list[Address] | None:
    """The address list for an IP literal, or None if ``host`` is a name."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if ip.version == 6:
        scope = host.split("%", 1)[1] if "%" in host else None
        sid = _socket.if_nametoindex(scope) if scope and not scope.isdigit() else int(scope or 0)
        return [(_socket.AF_INET6, (str(ip), port, 0, sid))]
    return [(_socket.AF_INET, (str(ip), port))]


class SystemResolver:
    """``getaddrinfo(3)`` on a small, bounded worker pool; answers hop back via ``post``."""

    def __init__(self, max_workers: int = 4) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._max_workers = max_workers
        self._lock = threading.Lock()
        self.lookups = 0

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._max_workers,
                                                thread_name_prefix="reseau-resolver")
            return self._pool

    def resolve(self, loop: EventLoop, host: str, port: int, callback: ResolveCallback) -> None:
        check_port(port)
        lit = literal_address(host, port)
        if lit is not None:
            loop.call_soon(callback, lit, None) if loop.is_loop_thread() else loop.post(
                callback, lit, None)
            return
        self.lookups += 1

        def work() -> None:
            try:
                infos = _socket.getaddrinfo(host, port, 0, _socket.SOCK_STREAM)
                result = [(fam, addr) for fam, _t, _p, _c, addr in infos]
                loop.post(callback, result, None)
            except _socket.gaierror as exc:
                # The stdlib's gaierror, with the name that failed in the message.
                err = _socket.gaierror(exc.errno, f"{exc.strerror} ({host!r})")
                loop.post(callback, None, err)
            except OSError as exc:
                loop.post(callback, None, exc)

        self._executor().submit(work)

    def close(self) -> None:
        """Stop the worker threads (waits for lookups in flight)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)


_default: SystemResolver | None = None


def default_resolver() -> SystemResolver:
    """The process-wide system resolver."""
    global _default
    if _default is None:
        _default = SystemResolver()
    return _default
