"""Happy Eyeballs v2 (RFC 8305): race connection attempts over a host's addresses.

Contract:

* A :class:`HappyEyeballs` lives on one loop; every method and callback runs on that
  loop's thread. ``on_done(socket, None)`` or ``on_done(None, error)`` runs **exactly
  once**, never inside :meth:`HappyEyeballs.start`.
* Resolution (§3): AAAA and A are asked separately. An answer of the preferred family
  starts connecting at once; an answer of the other family first waits up to
  ``resolution_delay`` for the preferred one. Answers arriving after attempts began are
  merged into the not-yet-tried addresses.
* Attempts (§5): one at a time, the next after ``attempt_delay`` or at once when an attempt
  fails, while earlier attempts keep running. The first connected socket wins; every other
  attempt is closed and its result ignored.
* Failure: when every address failed and no answer is outstanding, the error is the one
  ``socket.create_connection`` raises — the last address's error — or, with
  ``all_errors=True``, ``ExceptionGroup("create_connection failed", errors)`` in address
  order. Resolution failures report the lookup's ``DNSError``.
* Each failed attempt is reported to ``resolver.record_connection_failure`` and the winner
  to ``record_connection_success``, so caches learn which addresses work.
"""

from __future__ import annotations

import dataclasses
import errno
from collections.abc import Callable
from typing import Any

from .event_loop import EventLoop, TimerHandle
from .resolver import (
    AF_INET,
    AF_INET6,
    DEFAULT_POLICY,
    HostAddress,
    ResolverPolicy,
    interleave,
    literal_address,
    order_addresses,
)
from .socket import Socket, SocketDomain, SocketOptions, os_error

__all__ = ["HappyEyeballsConfig", "HappyEyeballs", "MIN_ATTEMPT_DELAY", "MAX_ATTEMPT_DELAY"]

#: RFC 8305 §5/§8: the connection attempt delay stays within 100 ms – 2 s.
MIN_ATTEMPT_DELAY = 0.1
MAX_ATTEMPT_DELAY = 2.0

DoneCallback = Callable[[Socket | None, BaseException | None], Any]


@dataclasses.dataclass(frozen=True)
class HappyEyeballsConfig:
    """Knobs of RFC 8305. ``attempt_delay`` is clamped into 100 ms – 2 s (§5)."""

    attempt_delay: float = 0.25
    resolution_delay: float = 0.05
    first_family_count: int = 1
    all_errors: bool = False
    policy: ResolverPolicy = DEFAULT_POLICY

    def __post_init__(self) -> None:
        delay = float(self.attempt_delay)
        if delay != delay:  # NaN
            raise ValueError("attempt_delay must be a number, got nan")
        object.__setattr__(self, "attempt_delay",
                           min(MAX_ATTEMPT_DELAY, max(MIN_ATTEMPT_DELAY, delay)))
        if not 0 <= self.resolution_delay <= MAX_ATTEMPT_DELAY:
            raise ValueError(f"resolution_delay must be 0-2 s, got {self.resolution_delay!r}")
        if self.first_family_count < 1:
            raise ValueError(f"first_family_count must be >= 1, got {self.first_family_count}")


@dataclasses.dataclass(frozen=True)
class Target:
    """One address to try: family, sockaddr, and the resolver record it came from."""

    family: int
    sockaddr: object
    address: HostAddress | None = None


class HappyEyeballs:
    """One connection request. Build it, then call :meth:`start` or :meth:`start_targets`."""

    def __init__(self, loop: EventLoop, options: SocketOptions, on_done: DoneCallback, *,
                 config: HappyEyeballsConfig | None = None, resolver: Any = None) -> None:
        self.loop = loop
        self.options = options
        self.config = config or HappyEyeballsConfig()
        self.resolver = resolver
        self._on_done: DoneCallback | None = on_done
        self._port = 0
        self._pending: list[Target] = []          # not tried yet, in order
        self._attempts: dict[Socket, int] = {}    # in flight → attempt index
        self._errors: list[tuple[int, BaseException]] = []
        self._tried = 0
        self._last_start = 0.0
        self._timer: TimerHandle | None = None
        self._outstanding: set[int] = set()       # families still being resolved
        self._answers: dict[int, list[HostAddress]] = {}
        self._lookup_errors: dict[int, BaseException] = {}
        self._resolution_timer: TimerHandle | None = None
        self._started = False
        self.done = False
        #: Every socket this request created, in attempt order (diagnostics and tests).
        self.sockets: list[Socket] = []

    # ------------------------------------------------------------------ resolution
    def start(self, host: str, port: int) -> None:
        """Resolve ``host`` and race its addresses (loop-only)."""
        self.loop.check_thread("HappyEyeballs.start")
        self._port = port
        lit = literal_address(host, port)
        if lit is not None:
            self.start_targets([Target(f, sa) for f, sa in lit])
            return
        resolver = self.resolver
        if not hasattr(resolver, "lookup"):
            # A resolver with only the older ``resolve`` seam: one ordered answer.
            resolver.resolve(self.loop, host, port, self._on_resolved_all)
            return
        families = self.config.policy.families()
        self._outstanding = set(families)
        for fam in families:
            try:
                resolver.lookup(self.loop, host, fam,
                                lambda addrs, err, fam=fam: self._on_answer(fam, addrs, err))
            except Exception as exc:  # noqa: BLE001 - bad host type and such: one answer
                self._outstanding.clear()
                self._finish(None, exc)
                return

    def _on_resolved_all(self, addrs: list | None, err: BaseException | None) -> None:
        if self.done:
            return
        if err is not None or not addrs:
            self._finish(None, err or os_error(errno.EADDRNOTAVAIL, "no addresses"))
            return
        self.start_targets([Target(f, sa) for f, sa in addrs])

    def _on_answer(self, family: int, addrs: list[HostAddress] | None,
                   err: BaseException | None) -> None:
        self._outstanding.discard(family)
        if self.done:
            return
        if err is not None or not addrs:
            if err is not None:
                self._lookup_errors[family] = err
        else:
            self._answers[family] = addrs
        if self._started:
            if addrs:
                self._merge(addrs)
            self._continue()
            return
        preferred = self.config.policy.preferred
        if not self._outstanding:
            self._begin()
        elif self._answers.get(preferred):
            self._begin()  # §3: the preferred family answered: go now
        elif self._answers and self._resolution_timer is None:
            # §3: the other family answered first; give the preferred one a moment.
            self._resolution_timer = self.loop.call_later(self.config.resolution_delay,
                                                          self._resolution_delay_over)

    def _resolution_delay_over(self) -> None:
        self._resolution_timer = None
        if not self.done and not self._started:
            self._begin()

    def _begin(self) -> None:
        if self._resolution_timer is not None:
            self._resolution_timer.cancel()
            self._resolution_timer = None
        addrs = [a for fam in self.config.policy.families() for a in self._answers.get(fam, ())]
        if not addrs:
            if not self._outstanding:
                self._finish(None, self._lookup_error())
            return
        ordered = order_addresses(addrs, self.config.policy, self.config.first_family_count)
        self.start_targets([Target(a.family, a.sockaddr(self._port), a) for a in ordered])

    def _lookup_error(self) -> BaseException:
        errs = self._lookup_errors
        # Both families failed: report IPv4's error when there is one (the family every
        # name has, so its error is the most telling: "no such name" over "no AAAA").
        return (errs.get(AF_INET) or errs.get(AF_INET6) or next(iter(errs.values()), None)
                or os_error(errno.EADDRNOTAVAIL, "no addresses"))

    def _merge(self, addrs: list[HostAddress]) -> None:
        """§3/§4: late answers join the untried addresses, families interleaved."""
        new = [Target(a.family, a.sockaddr(self._port), a) for a in addrs
               if self.config.policy.allows(a.family)]
        if not new:
            return
        fam = new[0].family
        same = [t for t in self._pending if t.family == fam] + new
        other = [t for t in self._pending if t.family != fam]
        if fam == self.config.policy.preferred or not other:
            self._pending = interleave(same, other)
        else:
            self._pending = interleave(other, same)

    # ------------------------------------------------------------------ attempts
    def start_targets(self, targets: list[Target]) -> None:
        """Race an already ordered list of targets (loop-only)."""
        self.loop.check_thread("HappyEyeballs.start_targets")
        self._started = True
        self._pending.extend(targets)
        self._next_attempt()

    def _next_attempt(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._pending and not self.done:
            target = self._pending.pop(0)
            index = self._tried
            self._tried += 1
            if self._launch(target, index):
                self._last_start = self.loop.now()
                break
        self._arm_timer()
        self._continue()

    def _arm_timer(self) -> None:
        # §5: the next attempt starts one attempt delay after the last one started,
        # unless an attempt fails first.
        if self._timer is None and self._pending and self._attempts and not self.done:
            when = self._last_start + self.config.attempt_delay
            self._timer = self.loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if not self.done:
            self._next_attempt()

    def _launch(self, target: Target, index: int) -> bool:
        """Start one connect; False if it failed synchronously (error recorded)."""
        opts = self.options
        if opts.domain != target.family:
            opts = dataclasses.replace(opts, domain=SocketDomain(target.family))
        try:
            sock = Socket(self.loop, opts)
        except OSError as exc:
            self._failed(target, index, exc)
            return False
        self.sockets.append(sock)
        self._attempts[sock] = index
        try:
            sock.connect(target.sockaddr,
                         lambda err: self._on_connected(sock, target, index, err))
        except (OSError, ValueError, TypeError, OverflowError) as exc:
            self._attempts.pop(sock, None)
            sock.close()
            self._failed(target, index, exc)
            return False
        return True

    def _on_connected(self, sock: Socket, target: Target, index: int,
                      err: OSError | None) -> None:
        self._attempts.pop(sock, None)
        if self.done:
            if err is None:
                sock.close()  # a loser that connected after the winner
            return
        if err is not None:
            self._failed(target, index, err)
            # §5: a failed attempt starts the next one at once.
            if self._pending:
                self._next_attempt()
            else:
                self._continue()
            return
        if target.address is not None and self.resolver is not None:
            _feedback(self.resolver, "record_connection_success", target.address)
        self._finish(sock, None)

    def _failed(self, target: Target, index: int, err: BaseException) -> None:
        self._errors.append((index, err))
        if target.address is not None and self.resolver is not None:
            _feedback(self.resolver, "record_connection_failure", target.address)

    def _continue(self) -> None:
        """Start the next attempt if nothing runs; fail once nothing is left to wait for."""
        if self.done:
            return
        if self._pending:
            if not self._attempts:
                self._next_attempt()  # nothing in flight: no reason to wait
            else:
                self._arm_timer()
            return
        if not self._started or self._attempts or self._outstanding:
            return
        if self._resolution_timer is not None:
            return
        if not self._errors:
            self._finish(None, self._lookup_error())
            return
        errors = [e for _, e in sorted(self._errors, key=lambda ie: ie[0])]
        if self.config.all_errors:
            self._finish(None, ExceptionGroup("create_connection failed", errors))
        else:
            self._finish(None, errors[-1])

    # ------------------------------------------------------------------ completion
    def cancel(self) -> None:
        """Abandon the request: close every attempt; ``on_done`` is not called (loop-only)."""
        self._on_done = None
        self._finish(None, None)

    def _finish(self, sock: Socket | None, err: BaseException | None) -> None:
        if self.done:
            return
        self.done = True
        for t in (self._timer, self._resolution_timer):
            if t is not None:
                t.cancel()
        self._timer = self._resolution_timer = None
        self._pending.clear()
        for loser in list(self._attempts):
            loser.close()
        self._attempts.clear()
        cb, self._on_done = self._on_done, None
        if cb is not None:
            # Never inside start(): completions are at least one loop hop away.
            self.loop.call_soon(cb, sock, err)
        elif sock is not None:
            sock.close()


def _feedback(resolver: Any, method: str, address: HostAddress) -> None:
    fn = getattr(resolver, method, None)
    if fn is not None:
        fn(address)
