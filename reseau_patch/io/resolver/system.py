"""The system layer: ``getaddrinfo(3)`` on a small, bounded pool of worker threads.

Answers (and results of other blocking calls run through :meth:`SystemResolver.call`) hop
back to the requesting loop through its thread-safe queue (``EventLoop.post``).
"""

from __future__ import annotations

import _socket
import ipaddress
import os
import queue
import threading
from collections.abc import Callable
from typing import Any

from ..event_loop import EventLoop
from .base import AF_INET, AF_INET6, BaseResolver, DNSError, HostAddress, LookupCallback, Reply

__all__ = ["SystemResolver", "WorkerPool"]


class WorkerPool:
    """At most ``max_workers`` threads running blocking calls; a thread idle for
    ``idle_timeout`` seconds exits, so a quiet process keeps no resolver threads.

    Jobs run in submission order (FIFO). After ``fork()`` the child starts with no
    threads: the pool notices the new pid on the next ``submit``.
    """

    def __init__(self, max_workers: int = 4, idle_timeout: float = 1.0,
                 name: str = "reseau-resolver") -> None:
        if max_workers < 1:
            raise ValueError(f"max_workers must be >= 1, got {max_workers}")
        self.max_workers = max_workers
        self.idle_timeout = idle_timeout
        self.name = name
        self._reset()
        self._closed = False

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads: set[threading.Thread] = set()
        self._idle = 0

    def submit(self, job: Callable[[], None]) -> None:
        if self._pid != os.getpid():
            self._reset()  # forked: the parent's threads do not exist here
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


class SystemResolver(BaseResolver):
    """``getaddrinfo(host, None, family, SOCK_STREAM)`` on a bounded worker pool.

    Answers keep the system's order (RFC 6724 destination selection) and drop duplicates.
    A failure is a :class:`DNSError` with the C library's code and text; an empty answer
    is ``EAI_NONAME``. ``lookups`` counts the ``getaddrinfo`` calls made.
    """

    def __init__(self, max_workers: int = 4, *, idle_timeout: float = 1.0) -> None:
        self._pool = WorkerPool(max_workers, idle_timeout)
        self._count_lock = threading.Lock()
        self.lookups = 0

    def _lookup(self, reply: Reply, host: str, family: int) -> None:
        with self._count_lock:
            self.lookups += 1

        def work() -> None:
            try:
                infos = _socket.getaddrinfo(host, None, family, _socket.SOCK_STREAM)
            except _socket.gaierror as exc:
                reply(None, DNSError(host, exc.errno, exc.strerror))
                return
            except Exception as exc:  # noqa: BLE001 - UnicodeError for bad IDNA, ...
                reply(None, exc)
                return
            reply(_addresses(host, infos) or None,
                  None if infos else DNSError(host, getattr(_socket, "EAI_NONAME", -2)))

        self._pool.submit(work)

    def call(self, loop: EventLoop | None, callback: LookupCallback,
             fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the pool; ``callback(result, None)`` or ``(None, exc)`` is
        delivered like a lookup answer (on ``loop``'s thread, exactly once)."""
        reply = Reply(loop, callback)

        def work() -> None:
            try:
                result = fn(*args)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                reply(None, exc)
                return
            reply(result, None)

        self._pool.submit(work)

    def close(self) -> None:
        """Stop the worker threads (waits for lookups in flight)."""
        self._pool.close()


def _addresses(host: str, infos: list) -> list[HostAddress]:
    out: list[HostAddress] = []
    seen: set[tuple[int, str, int]] = set()
    for fam, _t, _p, _c, sa in infos:
        if fam not in (AF_INET, AF_INET6):
            continue
        text, scope = sa[0], (sa[3] if fam == AF_INET6 else 0)
        text = str(ipaddress.ip_address(text.partition("%")[0]))  # canonical form
        key = (fam, text, scope)
        if key not in seen:
            seen.add(key)
            out.append(HostAddress(text, fam, host, scope))
    return out
