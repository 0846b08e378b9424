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
import queue
import threading
from collections.abc import Callable
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


class WorkerPool:
    """At most ``max_workers`` threads running blocking calls; a thread idle for
    ``idle_timeout`` seconds exits, so a quiet process keeps no resolver threads."""

    def __init__(self, max_workers: int = 4, idle_timeout: float = 1.0,
                 name: str = "reseau-resolver") -> None:
        if max_workers < 1:
            raise ValueError(f"max_workers must be >= 1, got {max_workers}")
        self.max_workers = max_workers
        self.idle_timeout = idle_timeout
        self.name = name
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads: set[threading.Thread] = set()
        self._idle = 0
        self._closed = False

    def submit(self, job: Callable[[], None]) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("worker pool is closed")
            self._jobs.put(job)
            if self._idle:
                self._idle -= 1  # a waiting worker takes it
            elif len(self._threads) < self.max_workers:
                t = threading.Thread(target=self._work, daemon=True,
                                     name=f"{self.name}-{len(self._threads)}")
                self._threads.add(t)
                t.start()

    def _work(self) -> None:
        me = threading.current_thread()
        while True:
            try:
                job = self._jobs.get(timeout=self.idle_timeout)
            except queue.Empty:
                with self._lock:
                    if self._jobs.empty():
                        self._threads.discard(me)
                        self._idle = max(0, self._idle - 1)
                        return
                continue
            if job is None:
                with self._lock:
                    self._threads.discard(me)
                return
            job()
            with self._lock:
                self._idle += 1

    def close(self, timeout: float = 10.0) -> None:
        """Finish queued jobs, then stop every thread."""
        with self._lock:
            self._closed = True
            threads = list(self._threads)
            for _ in threads:
                self._jobs.put(None)
        for t in threads:
            t.join(timeout)


class SystemResolver:
    """``getaddrinfo(3)`` on a small, bounded worker pool; answers hop back via ``post``."""

    def __init__(self, max_workers: int = 4) -> None:
        self._pool = WorkerPool(max_workers)
        self.lookups = 0

    def resolve(self, loop: EventLoop, host: str, port: int, callback: ResolveCallback) -> None:
        check_port(port)
        lit = literal_address(host, port)
        if lit is not None:
            if loop.is_loop_thread():
                loop.call_soon(callback, lit, None)
            else:
                loop.post(callback, lit, None)
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

        self._pool.submit(work)

    def close(self) -> None:
        """Stop the worker threads (waits for lookups in flight)."""
        self._pool.close()


_default: SystemResolver | None = None


def default_resolver() -> SystemResolver:
    """The process-wide system resolver."""
    global _default
    if _default is None:
        _default = SystemResolver()
    return _default
