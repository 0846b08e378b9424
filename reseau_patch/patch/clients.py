"""Happy Eyeballs (RFC 8305) for clients that connect address by address.

``socket.create_connection`` under the patch already races addresses (:mod:`.netfuncs`).
Clients that loop over ``getaddrinfo`` themselves — urllib3, and so requests — wait a full
connect timeout on a black-holed first address. :func:`race` runs their own per-address
attempt, one more every :data:`ATTEMPT_DELAY` seconds or as soon as the previous one
failed; the first socket connected wins, every other attempt is cancelled and its socket
closed, and when all fail the error of the *last* address is raised, as the sequential loop
would. :func:`install` adapts ``urllib3.util.connection.create_connection``,
websocket-client's ``_open_socket`` and redis-py's ``Connection._connect``, whether imported
before or after ``patch_all()``.

Contract: attempts run in greenlets of the calling thread's hub; the caller's own greenlet
waits. Killing the caller (``gevent.Timeout``, ``kill``) kills every attempt and closes
every socket they made.
"""

from __future__ import annotations

import socket as _stdsocket
import sys
from collections.abc import Callable, Sequence
from types import ModuleType, TracebackType
from typing import Any, TypeVar

from .import_hooks import when_imported

__all__ = ["ATTEMPT_DELAY", "RaceStats", "install", "interleave_families", "race"]

#: RFC 8305 §5 "Connection Attempt Delay" (recommended 250 ms).
ATTEMPT_DELAY = 0.25

T = TypeVar("T")


class RaceStats:
    """What the last :func:`race` of this process did (tests assert on the path taken)."""

    started: list[Any] = []
    winner: Any = None


def interleave_families(infos: Sequence[tuple]) -> list[tuple]:
    """RFC 8305 §4: alternate address families, starting with the first one's family."""
    by_family: dict[int, list[tuple]] = {}
    for info in infos:
        by_family.setdefault(info[0], []).append(info)
    queues = list(by_family.values())
    out: list[tuple] = []
    while any(queues):
        for q in queues:
            if q:
                out.append(q.pop(0))
    return out


def race(candidates: Sequence[T], attempt: Callable[[T], Any],
         delay: float = ATTEMPT_DELAY) -> Any:
    """Return ``attempt(c)`` of the first candidate whose attempt succeeds.

    ``attempt`` must close what it opened when it raises (also on ``GreenletExit``).
    A socket returned by an attempt that lost the race is closed here.
    """
    import gevent
    from gevent.queue import Empty, Queue

    started: list[Any] = []
    RaceStats.started = started
    RaceStats.winner = None
    if len(candidates) == 1:
        started.append(candidates[0])
        result = attempt(candidates[0])
        RaceStats.winner = candidates[0]
        return result
    results: Queue = Queue()
    greenlets: list[gevent.Greenlet] = []

    def run(index: int, cand: T) -> None:
        try:
            value = attempt(cand)
        except Exception as exc:  # an OSError usually; reported, never lost
            results.put((index, None, exc))
            return
        except BaseException:  # killed (the race is decided or cancelled)
            _close_sockets_in(sys.exc_info()[2])
            raise
        results.put((index, value, None))

    def start(index: int) -> None:
        started.append(candidates[index])
        greenlets.append(gevent.spawn(run, index, candidates[index]))

    errors: dict[int, BaseException] = {}
    winner: Any = None
    start(0)
    try:
        while len(errors) < len(started) or len(started) < len(candidates):
            nxt = len(started)
            try:
                index, value, err = results.get(timeout=delay if nxt < len(candidates)
                                                else None)
            except Empty:
                start(nxt)
                continue
            if err is None:
                winner = value
                RaceStats.winner = candidates[index]
                return value
            errors[index] = err
            if len(errors) == len(started) and nxt < len(candidates):
                start(nxt)  # no attempt left in flight: the next one starts now (§5)
        raise errors[max(errors)]
    finally:
        gevent.killall([g for g in greenlets if not g.dead], block=True)
        while not results.empty():  # a loser that connected before it was killed
            _, value, _ = results.get_nowait()
            if value is not None and value is not winner:
                value.close()


def _close_sockets_in(tb: TracebackType | None) -> None:
    """Close the sockets a killed attempt left open in its frames (below ``tb``'s own).

    websocket-client's and redis-py's per-address code closes its socket on ``OSError`` only,
    not on the ``GreenletExit`` that ends a losing attempt: left open, that socket would be
    finalized unclosed whenever the hub lets the exception go, with a ResourceWarning in
    code that never saw it. Such a socket is the attempt's own: it made it, no one else
    has it yet.
    """
    tb = tb.tb_next if tb is not None else None
    while tb is not None:
        for value in list(tb.tb_frame.f_locals.values()):
            if isinstance(value, _stdsocket.socket) and value.fileno() >= 0:
                try:
                    value.close()
                except OSError:
                    pass
        tb = tb.tb_next


# --------------------------------------------------------------------------- urllib3
def _adapt_urllib3(mod: ModuleType) -> None:
    """Replace ``urllib3.util.connection.create_connection`` with a racing twin.

    Same signature, same steps per address (socket options, then timeout, then bind, then
    connect), same errors (``LocationParseError``, ``gaierror``, the last address's
    ``OSError``, "getaddrinfo returns an empty list"). Names are looked up in urllib3's
    module at call time, so tests that mock ``socket.getaddrinfo`` or ``socket.socket``
    there still drive it.
    """
    original = mod.create_connection
    if getattr(original, "__reseau__", False):
        return
    default_timeout = mod._DEFAULT_TIMEOUT

    def create_connection(address: tuple[str, int], timeout: Any = default_timeout,
                          source_address: tuple[str, int] | None = None,
                          socket_options: Any = None) -> _stdsocket.socket:
        host, port = address
        if host.startswith("["):
            host = host.strip("[]")
        family = mod.allowed_gai_family()
        try:
            host.encode("idna")
        except UnicodeError:
            raise mod.LocationParseError(f"'{host}', label empty or too long") from None
        sk = mod.socket
        infos = list(sk.getaddrinfo(host, port, family, sk.SOCK_STREAM))
        if not infos:
            raise OSError("getaddrinfo returns an empty list")

        def attempt(res: tuple) -> _stdsocket.socket:
            af, socktype, proto, _canonname, sa = res
            sock = None
            try:
                sock = sk.socket(af, socktype, proto)
                mod._set_socket_options(sock, socket_options)
                if timeout is not default_timeout:
                    sock.settimeout(timeout)
                if source_address:
                    sock.bind(source_address)
                sock.connect(sa)
                return sock
            except BaseException:
                if sock is not None:
                    sock.close()
                raise

        return race(interleave_families(infos), attempt)

    create_connection.__reseau__ = True  # type: ignore[attr-defined]
    create_connection.__wrapped__ = original  # type: ignore[attr-defined]
    create_connection.__doc__ = original.__doc__
    mod.create_connection = create_connection


# --------------------------------------------------------------------------- websocket-client
def _adapt_websocket(mod: ModuleType) -> None:
    """Race ``websocket._http._open_socket(addrinfo_list, sockopt, timeout)`` per address.

    Each attempt is websocket-client's own function given a one-address list, so its socket
    options, timeout, refused-connection retry and ``remote_ip`` annotation are unchanged.
    """
    original = mod._open_socket
    if getattr(original, "__reseau__", False):
        return

    def _open_socket(addrinfo_list: Any, sockopt: Any, timeout: Any) -> Any:
        infos = list(addrinfo_list)
        if len(infos) < 2:
            return original(infos, sockopt, timeout)
        return race(interleave_families(infos),
                    lambda info: original([info], sockopt, timeout))

    _open_socket.__reseau__ = True  # type: ignore[attr-defined]
    _open_socket.__wrapped__ = original  # type: ignore[attr-defined]
    mod._open_socket = _open_socket


# --------------------------------------------------------------------------- redis-py
def _adapt_redis(mod: ModuleType) -> None:
    """Race ``redis.connection.Connection._connect`` (TCP; ``SSLConnection`` calls it too).

    redis-py resolves and connects in one method. Each attempt runs that very method on a
    shallow copy of the connection whose ``host`` is one resolved address, so its socket
    options (TCP_NODELAY, keepalive), connect timeout and socket timeout are its own; the
    method reads the connection's settings and writes none of them.
    """
    import copy

    cls = getattr(mod, "Connection", None)
    original = getattr(cls, "_connect", None)
    if original is None or getattr(original, "__reseau__", False):
        return

    def _connect(self: Any) -> Any:
        sk = mod.socket
        infos = list(sk.getaddrinfo(self.host, self.port, self.socket_type, sk.SOCK_STREAM))
        if len(infos) < 2:
            return original(self)

        def attempt(info: tuple) -> Any:
            clone = copy.copy(self)
            clone.host = info[4][0]
            return original(clone)

        return race(interleave_families(infos), attempt)

    _connect.__reseau__ = True  # type: ignore[attr-defined]
    _connect.__wrapped__ = original  # type: ignore[attr-defined]
    cls._connect = _connect


def install() -> None:
    """Adapt urllib3, websocket-client and redis-py now if imported, else at their import
    (idempotent)."""
    when_imported("urllib3.util.connection", _adapt_urllib3)
    when_imported("websocket._http", _adapt_websocket)
    when_imported("redis.connection", _adapt_redis)
