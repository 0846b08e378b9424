"""The system layer: ``getaddrinfo(3)`` on a small, bounded pool of worker threads.

Answers (and results of other blocking calls run through :meth:`SystemResolver.call`) hop
back to the requesting loop through its thread-safe queue (``EventLoop.post``).

The pool's threads, lock and job queue are the C originals captured at import (``_thread``,
``_queue``): after ``patch_all()`` the names in ``threading``/``queue`` are greenlet-based,
and a "thread" that is a greenlet would run the blocking ``getaddrinfo`` on the hub.
"""

from __future__ import annotations

import _queue
import _socket
import encodings.idna  # noqa: F401 - see below
import ipaddress
import os
import sys
from collections.abc import Callable
from typing import Any

from ..event_loop import EventLoop, os_thread
from .base import AF_INET, AF_INET6, BaseResolver, DNSError, HostAddress, LookupCallback, Reply

__all__ = ["SystemResolver", "WorkerPool"]

# getaddrinfo encodes a str host with the idna codec, whose first use imports
# encodings.idna. Imported here, not on a worker thread: an import takes importlib's module
# lock, which gevent's patched _thread makes a green lock, and a green lock touched on a
# worker thread builds a hub (and a loop's fds) for that thread that nothing destroys.
# The OS originals even when this module is first imported after gevent patched _thread.
_start_new_thread = os_thread.start_new_thread
_allocate_lock = os_thread.allocate_lock
_SimpleQueue = _queue.SimpleQueue
_Empty = _queue.Empty


class WorkerPool:
    """At most ``max_workers`` threads running blocking calls, FIFO.

    A thread idle for ``idle_timeout`` seconds exits, so a quiet process keeps no resolver
    threads: the default is short (50 ms) because code that waits for its threads to go
    away (CPython's test support does, after every test) would otherwise wait on ours.
    The threads are plain ``_thread`` threads, not ``threading.Thread`` objects: they are
    not in ``threading.enumerate()`` and nobody joins them; ``close()`` waits for them.

    Accounting: ``_waiting`` counts the threads blocked in ``get`` right now; ``submit``
    starts a thread when the queued jobs outnumber them. A job is never queued with no
    thread to run it. After ``fork()`` the child starts with no threads: the pool notices
    the new pid on the next ``submit``.
    """

    def __init__(self, max_workers: int = 4, idle_timeout: float = 0.05,
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
        self._jobs: Any = _SimpleQueue()
        self._lock = _allocate_lock()
        # One held lock per live thread: it leaves the list (under _lock) when it decides to
        # exit, and is released as it exits (what close() waits on).
        self._exits: list[Any] = []
        self._waiting = 0

    @property
    def threads(self) -> int:
        """Live worker threads."""
        with self._lock:
            return len(self._exits)

    def submit(self, job: Callable[[], None]) -> None:
        if self._pid != os.getpid():
            self._reset()  # forked: the parent's threads do not exist here
        with self._lock:
            if self._closed:
                raise RuntimeError("worker pool is closed")
            self._jobs.put(job)
            if self._jobs.qsize() > self._waiting and len(self._exits) < self.max_workers:
                exit_lock = _allocate_lock()
                exit_lock.acquire()
                self._exits.append(exit_lock)
                self._waiting += 1  # counted from now: it is about to wait
                try:
                    _start_new_thread(self._work, (exit_lock,))
                except BaseException:
                    self._waiting -= 1
                    self._leave(exit_lock)
                    exit_lock.release()
                    raise

    def _leave(self, exit_lock: Any) -> None:
        if exit_lock in self._exits:
            self._exits.remove(exit_lock)

    def _work(self, exit_lock: Any) -> None:
        jobs = self._jobs
        try:
            while True:
                try:
                    job = jobs.get(timeout=self.idle_timeout)
                except _Empty:
                    with self._lock:
                        if jobs.empty():
                            self._waiting -= 1
                            self._leave(exit_lock)
                            return
                    continue  # a job arrived as the wait ended: still counted as waiting
                with self._lock:
                    self._waiting -= 1
                    if job is None:
                        self._leave(exit_lock)
                        return
                try:
                    job()
                except BaseException:  # noqa: BLE001 - a worker outlives a bad job
                    sys.excepthook(*sys.exc_info())
                with self._lock:
                    self._waiting += 1
        finally:
            with self._lock:
                self._leave(exit_lock)
            exit_lock.release()

    def close(self, timeout: float = 10.0) -> None:
        """Finish queued jobs, then stop every thread (waits up to ``timeout`` for each)."""
        with self._lock:
            self._closed = True
            exits = list(self._exits)
            for _ in exits:
                self._jobs.put(None)
        for lk in exits:
            if lk.acquire(True, timeout):
                lk.release()


class SystemResolver(BaseResolver):
    """``getaddrinfo(host, None, family, SOCK_STREAM)`` on a bounded worker pool.

    Answers keep the system's order (RFC 6724 destination selection) and drop duplicates.
    A failure is a :class:`DNSError` with the C library's code and text; an empty answer
    is ``EAI_NONAME``. ``lookups`` counts the ``getaddrinfo`` calls made.
    """

    def __init__(self, max_workers: int = 4, *, idle_timeout: float = 0.05) -> None:
        self._pool = WorkerPool(max_workers, idle_timeout)
        self._count_lock = _allocate_lock()
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
