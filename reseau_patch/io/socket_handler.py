"""The leftmost channel handler: moves bytes between a :class:`Socket` and the pipeline.

Reading (design brief §4, adapted to level-triggered readiness):

* Each readiness report reads up to ``min(max_read, downstream window)`` bytes (default
  :data:`MAX_READ_PER_EVENT`, 256 KiB), each ``recv`` into one pooled message of up to
  256 KiB (``MessagePool.acquire_read``), sent right as it is filled.
  Leftover data keeps the fd readable, so the next tick reports it again: that is the
  fairness rule (one connection cannot monopolise a tick) without a re-read task. A
  short read drained the kernel: it ends the turn (no ``recv`` that would only say EAGAIN).
* ``pause_reading``: the application handler (``TCPSocket`` on a plain channel) reads
  the fd itself, and this handler stays out of the way until ``resume_reading``.
* When the downstream window is 0, read interest is **dropped** — a level-triggered fd
  that nobody drains would wake the loop every tick. A window increment re-subscribes.
* The readiness mask is ignored: on a hang-up or error the handler still reads, so bytes
  that arrived just before the hang-up are delivered before EOF or the error.
* EOF (``recv`` → 0) is sent right as ``process_read_eof`` and read interest is dropped;
  the channel stays up for writing (half-close). A read error shuts the channel down.

Writing: each message goes to :meth:`Socket.write`; its completion releases it, runs
``msg.on_completion`` and, on error, shuts the channel down with that error.
"""

from __future__ import annotations

import _socket

from .channel import ChannelHandler, ChannelSlot, Direction
from .message import LARGE_FRAGMENT, IoMessage
from .socket import Socket

__all__ = ["MAX_READ_PER_EVENT", "SocketHandler"]

#: Most bytes read per readiness report: large enough that bulk transfers pay the loop's
#: per-event cost rarely, small enough to keep a tick short.
MAX_READ_PER_EVENT = LARGE_FRAGMENT


class SocketHandler(ChannelHandler):
    """Binds one connected :class:`Socket` to the left end of a channel."""

    __slots__ = ("socket", "max_read", "slot", "eof", "shutting_down", "read_paused",
                 "_write_shutdown_done", "bytes_read", "bytes_written")

    def __init__(self, socket: Socket, max_read: int = MAX_READ_PER_EVENT) -> None:
        self.socket = socket
        self.max_read = max_read
        self.slot: ChannelSlot | None = None
        self.eof = False
        self.shutting_down = False
        #: Set while the application handler reads the socket itself (TCPSocket's fast
        #: path): this handler then never reads, whatever the windows say.
        self.read_paused = False
        self._write_shutdown_done = False
        self.bytes_read = 0
        self.bytes_written = 0

    # ------------------------------------------------------------------ reading
    def trigger_read(self) -> None:
        self._want_read()

    def pause_reading(self) -> None:
        """Stop reading until :meth:`resume_reading`: the application reads the fd itself."""
        self.read_paused = True
        self.socket.unsubscribe_readable()

    def resume_reading(self) -> None:
        """Read again (from a fresh task, so nothing is delivered inside the caller)."""
        self.read_paused = False
        self.socket.loop.call_soon(self._want_read)

    def _want_read(self) -> None:
        if self.read_paused or self.eof or self.shutting_down or self.socket.closed:
            return
        if not self.socket.reading:
            # Try the kernel at once (this runs from a task, never inside a read), and
            # keep the subscription only if it would block (design: kernel first).
            self.socket.subscribe_readable(self._on_readable)
            self._on_readable(0)

    def _on_readable(self, revents: int) -> None:
        slot = self.slot
        if slot is None or self.shutting_down:
            self.socket.unsubscribe_readable()
            return
        window = slot.downstream_read_window()
        budget = min(self.max_read, window)
        if budget <= 0:
            # No consumer yet, or no window: stop listening until one opens.
            self.socket.unsubscribe_readable()
            return
        total = 0
        sock = self.socket
        pool = slot.channel.pool
        while total < budget:
            msg = pool.acquire_read(budget - total)
            limit = min(budget - total, len(msg.buf))
            try:
                n = sock.read_into(msg.buf, limit)
            except OSError as exc:
                msg.release()
                sock.unsubscribe_readable()
                slot.channel.shutdown(exc)
                return
            if n is None:  # drained: level-triggered readiness will call again
                msg.release()
                break
            if n == 0:
                msg.release()
                self.eof = True
                sock.unsubscribe_readable()
                slot.send_read_eof()
                break
            msg.len = n
            total += n
            short = n < limit
            slot.send_message(msg, Direction.READ)
            if short or self.shutting_down:
                break  # a short read drained the kernel: another recv would be EAGAIN
        self.bytes_read += total
        if total == window and total < self.max_read and not self.eof:
            sock.unsubscribe_readable()  # window used up; an increment re-subscribes

    def increment_read_window(self, slot: ChannelSlot, size: int) -> None:
        self._want_read()

    # ------------------------------------------------------------------ writing
    def process_write(self, slot: ChannelSlot, msg: IoMessage) -> None:
        n = msg.len
        if n == 0:
            msg.release()
            return
        try:
            self.socket.write(msg.data(), lambda err, _n: self._on_written(msg, n, err))
        except OSError as exc:
            # Closed under a queued writer: fail through the completion, never synchronously.
            self.socket.loop.call_soon(self._on_written, msg, n, exc)

    def _on_written(self, msg: IoMessage, n: int, err: BaseException | None) -> None:
        cb = msg.on_completion
        msg.release()
        if err is None:
            self.bytes_written += n
        if cb is not None:
            cb(err)
        if err is not None and self.slot is not None:
            self.slot.channel.shutdown(err)

    def process_write_eof(self, slot: ChannelSlot) -> None:
        if not self.socket.closed:
            self.socket.shutdown(_socket.SHUT_WR)

    # ------------------------------------------------------------------ shutdown
    def shutdown(self, slot: ChannelSlot, direction: Direction, error: BaseException | None,
                 abort: bool) -> None:
        self.shutting_down = True
        sock = self.socket
        if direction is Direction.READ:
            if not sock.closed:
                sock.unsubscribe_readable()
                if abort:
                    sock.close()
            slot.on_shutdown_complete(direction, error, abort)
            return
        if abort or sock.closed:
            sock.close()
            slot.channel.loop.call_soon(slot.on_shutdown_complete, direction, error, abort)
            return
        # Graceful: close only once everything queued before the shutdown is on the wire.
        def flushed(err: BaseException | None, _n: int) -> None:
            sock.close()
            slot.on_shutdown_complete(direction, error, abort)

        sock.when_flushed(flushed)

    def destroy(self) -> None:
        if not self.socket.closed and not self.socket.loop.closed:
            self.socket.close()
