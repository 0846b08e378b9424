"""``python -m reseau_patch io-demo``: an echo server and N clients on one io-level EventLoop.

Every client streams random bytes through a channel echo server on 127.0.0.1 and checks the
echo byte-exact by SHA-256; then everything is shut down in order (channels, listener, loop
thread) and the loop's statistics are printed. Exit status 0 only if every echo matched.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import threading
import time
from typing import Any

from .io.bootstrap import ClientBootstrap, ServerBootstrap, ServerListener
from .io.channel import Channel, ChannelHandler, ChannelSlot, Direction, message_pool_for
from .io.event_loop import EventLoop
from .io.message import IoMessage

__all__ = ["EchoClientHandler", "EchoHandler", "add_arguments", "main", "parse_size"]

#: Bytes a client keeps queued for writing at most; its echo comes back while it sends.
CLIENT_IN_FLIGHT = 256 * 1024
#: Read window of an echo connection: at most this much is read but not yet echoed out.
ECHO_WINDOW = 256 * 1024


class EchoHandler(ChannelHandler):
    """Server side: sends each read message straight back (no copy) and re-opens the read
    window once it is on the wire; shuts the channel down gracefully at the peer's EOF."""

    def __init__(self, window: int = ECHO_WINDOW) -> None:
        self.window = window

    def initial_window_size(self) -> int:
        return self.window

    def process_read(self, slot: ChannelSlot, msg: IoMessage) -> None:
        n = msg.len

        def written(err: BaseException | None) -> None:
            if err is None:
                slot.increment_read_window(n)

        msg.on_completion = written
        slot.send_message(msg, Direction.WRITE)

    def process_read_eof(self, slot: ChannelSlot) -> None:
        # A graceful shutdown flushes the queued echo before it closes the socket.
        slot.channel.shutdown()


class EchoClientHandler(ChannelHandler):
    """Client side: streams ``payload`` with at most ``in_flight`` bytes queued, half-closes
    once all of it is written, hashes what comes back and shuts down at the echo's EOF."""

    def __init__(self, payload: bytes, in_flight: int = CLIENT_IN_FLIGHT) -> None:
        self.payload = memoryview(payload)
        self.expected = hashlib.sha256(payload).digest()
        self.in_flight_max = in_flight
        self.sent = 0
        self.unacked = 0
        self.received = 0
        self.hasher = hashlib.sha256()
        self.error: BaseException | None = None
        self.matched: bool | None = None

    def start(self) -> None:
        """Begin sending (loop-only; called from the bootstrap's setup callback)."""
        assert self.slot is not None
        self._pump(self.slot)

    def _pump(self, slot: ChannelSlot) -> None:
        total = len(self.payload)
        while self.sent < total and self.unacked < self.in_flight_max:
            msg = slot.acquire_message(total - self.sent)
            n = msg.fill(self.payload[self.sent:])
            self.sent += n
            self.unacked += n
            msg.on_completion = lambda err, n=n: self._written(slot, n, err)
            slot.send_message(msg, Direction.WRITE)
        if self.sent == total and self.unacked == 0:
            self.sent += 1  # past the end: the EOF goes out once
            slot.send_write_eof()

    def _written(self, slot: ChannelSlot, n: int, err: BaseException | None) -> None:
        self.unacked -= n
        if err is not None:
            self.error = self.error or err  # the socket handler shuts the channel down
        elif not slot.channel.shutting_down:
            self._pump(slot)

    def process_read(self, slot: ChannelSlot, msg: IoMessage) -> None:
        self.hasher.update(msg.data())
        self.received += msg.len
        msg.release()

    def process_read_eof(self, slot: ChannelSlot) -> None:
        self.matched = self.hasher.digest() == self.expected
        slot.channel.shutdown()


class _Run:
    """The clients of one demo run and their outcome (touched on the loop thread only)."""

    def __init__(self, loop: EventLoop, clients: int, nbytes: int) -> None:
        self.loop = loop
        self.expected_clients = clients
        self.handlers = [EchoClientHandler(os.urandom(nbytes)) for _ in range(clients)]
        self.channels: set[Channel] = set()
        self.errors: list[BaseException] = []
        self.finished = 0
        self.all_done = threading.Event()

    def connect_all(self, port: int) -> None:
        boot = ClientBootstrap(self.loop)
        for handler in self.handlers:
            boot.connect("127.0.0.1", port, lambda ch, h=handler: h,
                         lambda ch, err, h=handler: self._setup(ch, err, h), self._shut_down)

    def _setup(self, channel: Channel | None, err: BaseException | None,
               handler: EchoClientHandler) -> None:
        if channel is None:
            self.errors.append(err or OSError("connect failed"))
            self._finish()
            return
        self.channels.add(channel)
        handler.start()

    def _shut_down(self, channel: Channel, err: BaseException | None) -> None:
        if err is not None:
            self.errors.append(err)
        self.channels.discard(channel)
        channel.destroy()
        self._finish()

    def _finish(self) -> None:
        self.finished += 1
        if self.finished == self.expected_clients:
            self.all_done.set()

    def abort(self, listener: ServerListener) -> None:
        """Shut every open channel down at once (loop-only; used after a timeout)."""
        for ch in list(self.channels) + list(listener.channels):
            ch.shutdown(TimeoutError("demo timed out"), abort=True)


def parse_size(text: str) -> int:
    """A byte count such as ``1048576``, ``64K``, ``1M`` or ``1G`` (binary multiples)."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    try:
        value = int(t[:-1]) * units[t[-1]] if t and t[-1] in units else int(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a byte count: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"byte count must be >= 0, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``demo`` subcommand's options."""
    parser.add_argument("--clients", type=_positive_int, default=50,
                        help="concurrent echo clients (default 50)")
    parser.add_argument("--bytes", type=parse_size, default=1 << 20, metavar="N",
                        help="random bytes each client sends, e.g. 65536, 64K, 1M (default 1M)")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="give up after this many seconds (default 60)")


def _print_mapping(title: str, values: dict[str, Any]) -> None:
    print(f"{title}:")
    for key, value in values.items():
        shown = f"{value:.6f}" if isinstance(value, float) else str(value)
        print(f"  {key:20} {shown}")


def main(args: argparse.Namespace) -> int:
    """Run the demo; returns the process exit status."""
    deadline = time.monotonic() + args.timeout
    loop = EventLoop()
    loop.start_thread(name="reseau-demo-loop")
    try:
        return _run(loop, args.clients, args.bytes, deadline)
    finally:
        loop.stop_thread()


def _run(loop: EventLoop, clients: int, nbytes: int, deadline: float) -> int:
    listener: ServerListener = loop.call_sync(
        lambda: ServerBootstrap(loop, back_pressure=True).listen(
            ("127.0.0.1", 0), lambda ch: EchoHandler(), lambda ch, err: None))
    host, port = listener.address[:2]
    print(f"reseau_patch io-demo: {clients} clients x {nbytes} bytes -> echo server {host}:{port} "
          f"(EventLoop backend {loop.backend})")

    run = _Run(loop, clients, nbytes)
    start = time.perf_counter()
    loop.call_sync(run.connect_all, port)
    completed = run.all_done.wait(max(0.0, deadline - time.monotonic()))
    elapsed = time.perf_counter() - start
    if not completed:
        print(f"TIMEOUT: {run.finished}/{clients} clients finished; aborting the rest")
        loop.call_sync(run.abort, listener)

    destroyed = threading.Event()
    listener.destroy(destroyed.set)  # waits for every accepted channel to shut down
    if not destroyed.wait(max(1.0, deadline - time.monotonic())):
        print("listener: accepted channels did not all shut down in time")

    handlers = run.handlers
    matched = sum(1 for h in handlers if h.matched)
    moved = sum(h.received for h in handlers)
    pool = message_pool_for(loop)
    print(f"round trips: {matched}/{clients} clients got a byte-exact echo (SHA-256)")
    failed = [(i, h) for i, h in enumerate(handlers) if not h.matched]
    for i, h in failed[:5]:
        why = h.error or ("no EOF" if h.matched is None else "digest mismatch")
        print(f"  client {i}: received {h.received}/{nbytes} bytes: {why}")
    if len(failed) > 5:
        print(f"  ... and {len(failed) - 5} more")
    for err in run.errors[:3]:
        print(f"  error: {err!r}")
    mbps = 2 * moved / elapsed / 1e6 if elapsed > 0 else 0.0
    print(f"throughput: {moved} bytes echoed in {elapsed:.3f} s = {moved / elapsed / 1e6:.1f} "
          f"MB/s each way ({mbps:.1f} MB/s through the server)")
    _print_mapping("loop stats", loop.stats.snapshot())
    counts = loop.call_sync(loop.pending_counts)
    counts["messages_outstanding"] = pool.outstanding
    _print_mapping("pending after shutdown", counts)
    ok = completed and matched == clients and not run.errors and destroyed.is_set()
    print("result: OK" if ok else "result: FAILED")
    return 0 if ok else 1
