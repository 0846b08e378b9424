"""One stream conformance suite, in the spirit of ``trio.testing.check_two_way_stream``.

Every stream kind (TCPSocket plain/direct/TLS, the patched socket, the patched SSL socket)
supplies a *pair factory*: ``make(window=None, back_pressure=True) -> (a, b)``, two
connected :class:`Endpoint`\\ s. ``window`` is the kind's receive-buffer knob (TCPSocket's
``read_buffer_capacity``; kinds without one ignore it), ``back_pressure`` its flow-control
switch. The checks below only use the endpoint methods and ``gevent`` (which both the
in-process hub and a patched interpreter run), so the same functions run in pytest and in
the patched subprocess scenarios. Every wait is bounded by the caller's greenlet timeout
and by the amount of data (every transfer is finite).
"""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import gevent
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


class Endpoint(Protocol):
    #: False for kinds whose stdlib counterpart has no half-close (an SSL socket).
    half_close: bool

    def send(self, data: bytes) -> None:
        """Send all of ``data`` (may park under back-pressure)."""

    def recv(self, n: int) -> bytes:
        """At least one and at most ``n`` bytes; ``b""`` once the peer ended its stream."""

    def close_write(self) -> None:
        """Flush, then half-close: the peer reads EOF, this side may still read."""

    def close(self) -> None:
        """Release the stream (idempotent)."""


PairFactory = Callable[..., tuple[Endpoint, Endpoint]]


def recv_all(ep: Endpoint, chunk: int = 65536) -> bytes:
    """Everything up to EOF."""
    out = bytearray()
    while True:
        data = ep.recv(chunk)
        if not data:
            return bytes(out)
        out += data


def recv_exactly(ep: Endpoint, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        data = ep.recv(n - len(out))
        assert data, f"EOF after {len(out)} of {n} bytes"
        out += data
    return bytes(out)


# ------------------------------------------------------------------ fixed checks
def check_echo_both_ways(make: PairFactory) -> None:
    """Each side sends, the other echoes it back; both directions in turn."""
    a, b = make()
    try:
        for src, dst in ((a, b), (b, a)):
            for msg in (b"x", b"hello world", os.urandom(70_000)):
                src.send(msg)
                got = recv_exactly(dst, len(msg))
                assert got == msg
                dst.send(got)
                assert recv_exactly(src, len(msg)) == msg
    finally:
        a.close()
        b.close()


def check_half_close_both_ways(make: PairFactory) -> None:
    """After a's close_write, b reads EOF and can still send to a; then the reverse."""
    a, b = make()
    try:
        if not a.half_close:
            return
        a.send(b"from a")
        a.close_write()
        assert recv_all(b) == b"from a"
        assert b.recv(10) == b""  # EOF stays EOF
        b.send(b"from b after a's half-close")
        b.close_write()
        assert recv_all(a) == b"from b after a's half-close"
    finally:
        a.close()
        b.close()


def check_eof_after_close(make: PairFactory) -> None:
    """Data sent before close arrives, then EOF (every later recv too)."""
    a, b = make()
    try:
        a.send(b"last words")
        if a.half_close:
            a.close_write()
        a.close()
        assert recv_all(b) == b"last words"
        assert b.recv(1) == b""
    finally:
        a.close()
        b.close()


def check_writes_then_close(make: PairFactory) -> None:
    """Several small writes, then close at once (no half-close): every byte arrives
    before EOF, however the writes were framed (TLS: one record each)."""
    a, b = make()
    try:
        for piece in (b"x", b"y", b"zz"):
            a.send(piece)
        a.close()
        assert recv_all(b, 1) == b"xyzz"
    finally:
        a.close()
        b.close()


def check_large_transfer_sha256(make: PairFactory, size: int = 8 << 20,
                                window: int | None = None) -> None:
    """``size`` bytes each way at once (both sides writing and reading), SHA-256 checked."""
    a, b = make(window=window)
    try:
        digests = {}

        def sender(ep: Endpoint, tag: str) -> None:
            h = hashlib.sha256()
            block = os.urandom(1 << 20)
            sent = 0
            i = 0
            while sent < size:
                chunk = (i.to_bytes(8, "big") + block[8:])[: size - sent]
                h.update(chunk)
                ep.send(chunk)
                sent += len(chunk)
                i += 1
            digests[tag] = h.hexdigest()
            if ep.half_close:
                ep.close_write()

        def receiver(ep: Endpoint, tag: str) -> None:
            h = hashlib.sha256()
            n = 0
            while n < size:
                data = ep.recv(256 * 1024)
                assert data, f"{tag}: EOF after {n} of {size} bytes"
                h.update(data)
                n += len(data)
            digests[tag] = h.hexdigest()

        jobs = [gevent.spawn(sender, a, "a>"), gevent.spawn(sender, b, "b>"),
                gevent.spawn(receiver, b, ">b"), gevent.spawn(receiver, a, ">a")]
        gevent.joinall(jobs, raise_error=True)
        assert digests["a>"] == digests[">b"]
        assert digests["b>"] == digests[">a"]
    finally:
        a.close()
        b.close()


# ------------------------------------------------------------------ random patterns
@dataclass
class Pattern:
    """One random transfer: what the writer sends in which pieces, how the reader reads,
    where it stops reading for a while (back-pressure toggles), and the receive window."""

    writes: list[int]
    reads: list[int]
    stalls: list[int]  # after the i-th read, yield this many times before reading again
    window: int | None
    back_pressure: bool
    seed: int


def patterns(max_total: int = 1 << 20) -> st.SearchStrategy[Pattern]:
    sizes = st.one_of(st.integers(1, 64), st.integers(1, 20_000), st.integers(1, 300_000))
    return st.builds(
        Pattern,
        writes=st.lists(sizes, min_size=1, max_size=24).filter(lambda w: sum(w) <= max_total),
        reads=st.lists(sizes, min_size=1, max_size=8),
        stalls=st.lists(st.integers(0, 20), max_size=8),
        window=st.one_of(st.none(), st.integers(1, 2048), st.integers(16_384, 600_000)),
        back_pressure=st.booleans(),
        seed=st.integers(0, 2**32 - 1),
    )


def run_pattern(make: PairFactory, p: Pattern) -> None:
    """Every byte the writer sends arrives once, in order, whatever the sizes and stalls."""
    a, b = make(window=p.window, back_pressure=p.back_pressure)
    try:
        rnd = random.Random(p.seed)
        payload = rnd.randbytes(sum(p.writes))

        def writer() -> None:
            off = 0
            for n in p.writes:
                a.send(payload[off:off + n])
                off += n
            if a.half_close:
                a.close_write()
            else:
                a.close()

        w = gevent.spawn(writer)
        reader = gevent.getcurrent()
        # A writer that fails must fail the check, not leave the reader waiting forever.
        w.link_exception(lambda g: reader.throw(g.exception))
        got = bytearray()
        i = 0
        floor = -(-len(payload) // 4000)  # at most ~4000 reads: every example is bounded
        while len(got) < len(payload):
            want = max(p.reads[i % len(p.reads)], floor)
            data = b.recv(want)
            assert data, f"EOF after {len(got)} of {len(payload)} bytes"
            assert len(data) <= want
            got += data
            for _ in range(p.stalls[i % len(p.stalls)] if p.stalls else 0):
                gevent.sleep(0)
            i += 1
        assert b.recv(1) == b""  # nothing more than was sent
        w.get()
        assert bytes(got) == payload
    finally:
        a.close()
        b.close()


def random_transfers(make: PairFactory, max_examples: int = 25,
                     max_total: int = 1 << 20) -> Callable[[], None]:
    """A hypothesis test of :func:`run_pattern` over ``make``; call it to run."""

    @settings(deadline=None, max_examples=max_examples, database=None,
              suppress_health_check=list(HealthCheck))
    @given(patterns(max_total))
    def check(p: Pattern) -> None:
        run_pattern(make, p)

    return check


ALL_CHECKS = (check_echo_both_ways, check_half_close_both_ways, check_eof_after_close,
              check_writes_then_close)
