"""gevent's resolver on :mod:`reseau_patch.io.resolver`.

Select it with ``GEVENT_RESOLVER=reseau_patch.hub.resolver.Resolver`` (:data:`RESOLVER_PATH`)
or ``use_reseau_loop(resolver=True)``. It works under any gevent loop.

Contract: every method blocks only the calling greenlet and returns what the stdlib
``socket`` function of the same name returns for the same arguments, raising the same
exceptions (``socket.gaierror`` with the C library's code and text, ``TypeError``,
``UnicodeError``, ...):

* plain host names go through the shared io resolver (cached, single-flight,
  ``getaddrinfo`` on worker threads), and the result tuples are built by the C library
  itself from the numeric answers, so service names, ``socktype``/``proto`` expansion and
  ``AI_PASSIVE`` behave exactly as in the stdlib;
* anything that needs no name service (``None``, IP literals, ``AI_NUMERICHOST``, bad
  argument types) is answered by ``_socket`` directly;
* what the cache cannot represent (``AI_CANONNAME`` and other flags, aliases, reverse
  lookups) runs the ``_socket`` function itself on the resolver's worker threads.

Cache hits are a dictionary lookup: ``getaddrinfo`` memoizes its result per argument
tuple together with the cached addresses it was built from, and serves it again while the
io cache (:meth:`CachingResolver.peek`) still holds those very addresses in that order —
no greenlet switch, no C library call. The module-level :func:`getaddrinfo` is what
``patch_all()`` installs as ``socket.getaddrinfo``: the same, in the stdlib's shape
(``AddressFamily``/``SocketKind`` enums), memoized too.

Answers cross from the worker thread to the hub through a ``loop.async_()`` watcher, the
one gevent primitive every loop implements for that (and which keeps the loop alive).
"""

from __future__ import annotations

import _socket
import ipaddress
import socket as _stdsocket
from collections.abc import Callable
from typing import Any

from gevent._hub_local import get_hub
from gevent.monkey import get_original

from ..io.resolver import (
    AF_INET,
    AF_INET6,
    AF_UNSPEC,
    BaseResolver,
    DNSError,
    default_resolver,
    find_system_resolver,
)

__all__ = ["Resolver", "getaddrinfo"]

#: Flags the cached path reproduces exactly (AI_PASSIVE is ignored for a non-None host).
_CACHEABLE_FLAGS = _socket.AI_PASSIVE | getattr(_socket, "AI_NUMERICSERV", 0)
_MAX_NAME = 253
#: Memoized getaddrinfo results kept per resolver (the memo is dropped when it is full).
MEMO_MAX = 256
_AddressFamily = _stdsocket.AddressFamily
_SocketKind = _stdsocket.SocketKind


def _plain_name(host: object) -> str | None:
    """``host`` when it is an ordinary ASCII DNS name the cache may answer, else None."""
    if not isinstance(host, str) or not 0 < len(host) <= _MAX_NAME or "\0" in host:
        return None
    if not host.isascii() or host == "<broadcast>" or _is_numeric(host):
        return None
    return host


_os_lock = get_original("_thread", "allocate_lock")


class Resolver:
    """A gevent resolver (``gevent.resolver.AbstractResolver`` interface) over the io
    resolver; ``resolver`` defaults to the process-wide :func:`default_resolver`."""

    def __init__(self, hub: Any = None, resolver: BaseResolver | None = None) -> None:
        if hub is None:
            hub = get_hub()
        self.hub = hub
        self.resolver = resolver or default_resolver()
        self._system = find_system_resolver(self.resolver)
        # Argument tuple -> (addresses it was built from, int tuples, enum tuples).
        self._memo: dict[tuple, tuple[list, list[tuple], list[tuple]]] = {}
        self._peek = getattr(self.resolver, "peek", None)  # a caching layer has one
        # Like gevent's thread resolver: a failed lookup is the caller's business, not
        # something for the hub to print.
        if _socket.gaierror not in hub.NOT_ERROR:
            hub.NOT_ERROR += (_socket.gaierror, _socket.herror)

    def __repr__(self) -> str:
        return f"<{type(self).__module__}.{type(self).__name__} at 0x{id(self):x} " \
               f"resolver={self.resolver!r}>"

    def close(self) -> None:
        """Nothing to release: the io resolver is shared by the whole process."""

    def _on_fork(self) -> None:
        """The worker pool and single-flight layer notice a fork by themselves."""

    # ------------------------------------------------------------------ waiting
    def _wait(self, start: Callable[[Callable[[Any, BaseException | None], None]], None]) -> Any:
        """Call ``start(done)``; block this greenlet until ``done`` runs (any thread)."""
        box: list[tuple[Any, BaseException | None]] = []
        # The OS lock, never the patched one: ``done`` runs on a resolver worker thread, and
        # a green lock touched there would build a hub (and a loop's fds) for that thread.
        lock = _os_lock()
        armed: list[Any] = []  # the watcher to send() to, while this greenlet waits

        def done(value: Any, err: BaseException | None) -> None:
            with lock:
                box.append((value, err))
                if armed:
                    armed[0].send()  # thread-safe wake-up of the hub

        start(done)
        if not box:
            from gevent.hub import Waiter

            hub = self.hub
            watcher = hub.loop.async_()
            waiter = Waiter(hub)
            watcher.start(waiter.switch, None)
            try:
                with lock:
                    ready = bool(box)
                    if not ready:
                        armed.append(watcher)
                if not ready:
                    waiter.get()
            finally:
                with lock:
                    armed.clear()
                watcher.stop()
                watcher.close()
        value, err = box[0]
        if err is not None:
            raise err
        return value

    def _lookup(self, host: str, family: int) -> list:
        def start(done: Callable[[Any, BaseException | None], None]) -> None:
            self.resolver.lookup(None, host, family, done)

        try:
            return self._wait(start)
        except DNSError as exc:
            raise exc.as_gaierror() from None

    def _blocking(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` on the resolver's worker threads."""
        return self._wait(lambda done: self._system.call(None, done, fn, *args))

    # ------------------------------------------------------------------ the API
    def gethostbyname(self, hostname: str, family: int = AF_INET) -> str:
        name = _plain_name(hostname)
        if name is not None and family in (AF_INET, AF_INET6):
            return self._lookup(name, family)[0].numeric_host
        if family != AF_INET:
            return self.getaddrinfo(hostname, 0, family)[0][4][0]
        if not isinstance(hostname, (str, bytes, bytearray)) or _is_numeric(hostname):
            return _socket.gethostbyname(hostname)  # no name service: cannot block
        return self._blocking(_socket.gethostbyname, hostname)

    def gethostbyname_ex(self, hostname: str, family: int = AF_INET) -> tuple:
        # Aliases and the canonical name are not in the cache: ask the C library.
        return self._blocking(_socket.gethostbyname_ex, hostname)

    def getaddrinfo(self, host: Any, port: Any, family: int = 0, socktype: int = 0,
                    proto: int = 0, flags: int = 0) -> list[tuple]:
        if self._peek is not None:
            # Types are part of the key: 80.0 == 80, but the C library refuses a float.
            key = (host, port, family, socktype, proto, flags, type(port), type(family),
                   type(socktype), type(proto), type(flags))
            try:
                hit = self._memo.get(key)
            except TypeError:  # unhashable: the slow path raises what the C library does
                hit = None
            if hit is not None and self._peek(host, family) == hit[0]:
                return list(hit[1])
        return self._getaddrinfo(host, port, family, socktype, proto, flags)[0]

    def getaddrinfo_enums(self, host: Any, port: Any, family: int = 0, socktype: int = 0,
                          proto: int = 0, flags: int = 0) -> list[tuple]:
        """:meth:`getaddrinfo` with the stdlib's ``AddressFamily``/``SocketKind`` enums in
        the tuples, exactly as ``socket.getaddrinfo`` returns them."""
        if self._peek is not None:
            key = (host, port, family, socktype, proto, flags, type(port), type(family),
                   type(socktype), type(proto), type(flags))
            try:
                hit = self._memo.get(key)
            except TypeError:
                hit = None
            if hit is not None and self._peek(host, family) == hit[0]:
                return list(hit[2])
        out, enums = self._getaddrinfo(host, port, family, socktype, proto, flags)
        return enums if enums is not None else _with_enums(out)

    def _getaddrinfo(self, host: Any, port: Any, family: int, socktype: int, proto: int,
                     flags: int) -> tuple[list[tuple], list[tuple] | None]:
        """(int tuples, enum tuples when the answer was memoized, else None)."""
        name = _plain_name(host)
        if name is None or not isinstance(flags, int) or flags & ~_CACHEABLE_FLAGS \
                or family not in (AF_UNSPEC, AF_INET, AF_INET6):
            if host is None or not isinstance(host, (str, bytes, bytearray)) \
                    or _is_numeric(host) \
                    or (isinstance(flags, int) and flags & _socket.AI_NUMERICHOST):
                # No name service involved: cannot block, answer here.
                return _socket.getaddrinfo(host, port, family, socktype, proto, flags), None
            return self._blocking(_socket.getaddrinfo, host, port, family, socktype, proto,
                                  flags), None
        # Arguments other than the host are checked first, exactly as the C library does
        # (bad types, unknown services), before any name is looked up.
        probe = "::1" if family == AF_INET6 else "127.0.0.1"
        _socket.getaddrinfo(probe, port, family, socktype, proto,
                            flags | _socket.AI_NUMERICHOST)
        out: list[tuple] = []
        addrs = self._lookup(name, family)
        for addr in addrs:
            out.extend(_socket.getaddrinfo(addr.numeric_host, port, addr.family, socktype,
                                           proto, flags | _socket.AI_NUMERICHOST))
        if self._peek is None:
            return out, None
        enums = _with_enums(out)
        memo = self._memo
        if len(memo) >= MEMO_MAX:
            memo.clear()  # names in use come back at once: a bound, not an LRU
        memo[(host, port, family, socktype, proto, flags, type(port), type(family),
              type(socktype), type(proto), type(flags))] = (addrs, out, enums)
        return list(out), list(enums)

    def gethostbyaddr(self, ip_address: str) -> tuple:
        return self._blocking(_socket.gethostbyaddr, ip_address)

    def getnameinfo(self, sockaddr: tuple, flags: int) -> tuple:
        return self._blocking(_socket.getnameinfo, sockaddr, flags)


def _enum(value: int, enum_class: Any) -> Any:
    """The stdlib's ``socket._intenum_converter``: the enum member, or the int itself."""
    try:
        return enum_class(value)
    except ValueError:
        return value


def _with_enums(infos: list[tuple]) -> list[tuple]:
    return [(_enum(af, _AddressFamily), _enum(kind, _SocketKind), proto, canon, sa)
            for af, kind, proto, canon, sa in infos]


def getaddrinfo(host: Any, port: Any, family: int = 0, type: int = 0,  # noqa: A002
                proto: int = 0, flags: int = 0) -> list[tuple]:
    """``socket.getaddrinfo`` for ``patch_all()``: this thread's hub resolver, answers in
    the stdlib's shape. A cache hit is a dictionary lookup and never switches greenlets."""
    resolver = get_hub().resolver
    enums = getattr(resolver, "getaddrinfo_enums", None)
    if enums is not None:
        return enums(host, port, family, type, proto, flags)
    from gevent.socket import getaddrinfo as gevent_getaddrinfo  # another resolver class

    return gevent_getaddrinfo(host, port, family, type, proto, flags)


def _is_numeric(host: object) -> bool:
    """IP literal text (str or bytes), answered without any name service."""
    if isinstance(host, (bytes, bytearray)):
        try:
            host = bytes(host).decode("ascii")
        except UnicodeDecodeError:
            return False
    if not isinstance(host, str) or "\0" in host:
        return False
    try:
        ipaddress.ip_address(host.partition("%")[0])
        return True
    except ValueError:
        pass
    try:
        _socket.inet_aton(host)  # "127.1", "0x7f.1": numeric forms getaddrinfo accepts
        return True
    except OSError:
        return False
