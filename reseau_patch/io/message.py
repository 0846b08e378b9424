"""Channel messages and the per-loop pool of 16 KiB buffers they live in.

Ownership: whoever holds an :class:`IoMessage` owns it. Passing it to
``slot.send_message`` hands ownership on; the last holder calls ``release()`` (the socket
handler does so after the write completes, the application after consuming a read).
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["LARGE_FRAGMENT", "MAX_FRAGMENT", "IoMessage", "MessagePool"]

#: Size of the pooled messages handlers write from (aws-c-io's
#: ``g_aws_channel_max_fragment_size``).
MAX_FRAGMENT = 16 * 1024
#: Largest pooled read buffer: the socket handler reads and the TLS handler decrypts bulk
#: data in messages this big, so a channel pays its per-message cost once per 256 KiB.
LARGE_FRAGMENT = 256 * 1024
_SMALL = 128


class IoMessage:
    """A buffer of ``capacity`` bytes of which the first ``len`` are valid."""

    __slots__ = ("buf", "len", "on_completion", "_pool")

    def __init__(self, capacity: int, pool: MessagePool | None = None) -> None:
        self.buf = bytearray(capacity)
        self.len = 0
        #: Write messages only: ``on_completion(err)`` once the bytes reached the kernel.
        self.on_completion: Callable[[BaseException | None], None] | None = None
        self._pool = pool

    @classmethod
    def owning(cls, data: bytes) -> IoMessage:
        """A write message that owns ``data`` as it is (no pool, no copy): for a sender
        that already has its bytes in one object (ciphertext, a large write)."""
        msg = cls(0)
        msg.buf = data  # type: ignore[assignment]
        msg.len = len(data)
        return msg

    @property
    def capacity(self) -> int:
        return len(self.buf)

    def data(self) -> memoryview:
        """The valid bytes (a view: copy before releasing the message)."""
        return memoryview(self.buf)[: self.len]

    def fill(self, data: bytes | memoryview) -> int:
        """Append as much of ``data`` as fits; returns how many bytes were taken."""
        n = min(len(data), len(self.buf) - self.len)
        self.buf[self.len : self.len + n] = data[:n]
        self.len += n
        return n

    def release(self) -> None:
        """Give the buffer back to its pool (idempotent per acquisition)."""
        pool, self._pool = self._pool, None
        self.on_completion = None
        if pool is not None:
            pool._give_back(self)


class MessagePool:
    """Free lists of 256 KiB, 16 KiB and 128-byte buffers, kept at most ``ideal`` deep each
    (``ideal // 8`` for the large ones).

    Loop-only, like the channels that use it: no lock is taken.
    """

    def __init__(self, fragment: int = MAX_FRAGMENT, ideal: int = 64) -> None:
        self.fragment = fragment
        self.ideal = ideal
        self._big: list[IoMessage] = []
        self._small: list[IoMessage] = []
        self._large: list[IoMessage] = []
        self.outstanding = 0

    def acquire(self, size_hint: int) -> IoMessage:
        """A message with capacity ``min(size_hint, fragment)`` (at least 1) and len 0."""
        if size_hint <= _SMALL:
            free, cap = self._small, _SMALL
        else:
            free, cap = self._big, self.fragment
        msg = free.pop() if free else IoMessage(cap)
        msg._pool = self
        msg.len = 0
        self.outstanding += 1
        want = max(1, min(size_hint, cap))
        if want != cap:
            # Hand out exactly what was asked for without losing the pooled buffer.
            msg = _Slice(msg, want)
        return msg

    def acquire_large(self, size_hint: int) -> IoMessage:
        """A message with capacity ``min(size_hint, LARGE_FRAGMENT)`` (a 16 KiB or smaller
        one from :meth:`acquire` when that is enough) and len 0."""
        if size_hint <= self.fragment:
            return self.acquire(size_hint)
        free = self._large
        msg = free.pop() if free else IoMessage(LARGE_FRAGMENT)
        msg._pool = self
        msg.len = 0
        self.outstanding += 1
        if size_hint < LARGE_FRAGMENT:
            msg = _Slice(msg, size_hint)
        return msg

    def acquire_read(self, size_hint: int) -> IoMessage:
        """A whole pooled buffer (len 0) of at least ``min(size_hint, LARGE_FRAGMENT)``
        bytes, maybe more: for a reader that limits its own read (``recv_into(buf, n)``)
        and so needs no exactly-sized view (:meth:`acquire_large` makes one per call)."""
        if size_hint <= _SMALL:
            free, cap = self._small, _SMALL
        elif size_hint <= self.fragment:
            free, cap = self._big, self.fragment
        else:
            free, cap = self._large, LARGE_FRAGMENT
        msg = free.pop() if free else IoMessage(cap)
        msg._pool = self
        msg.len = 0
        self.outstanding += 1
        return msg

    def _give_back(self, msg: IoMessage) -> None:
        self.outstanding -= 1
        if isinstance(msg, _Slice):
            msg = msg.parent
        size = len(msg.buf)
        if size == LARGE_FRAGMENT:
            if len(self._large) < max(1, self.ideal // 8):
                msg.len = 0
                self._large.append(msg)
            return
        free = self._small if size == _SMALL else self._big
        if len(free) < self.ideal:
            msg.len = 0
            free.append(msg)


class _Slice(IoMessage):
    """A pooled buffer limited to a smaller capacity (a read capped by a window)."""

    __slots__ = ("parent",)

    def __init__(self, parent: IoMessage, capacity: int) -> None:  # noqa: D107
        self.parent = parent
        self.buf = memoryview(parent.buf)[:capacity]  # type: ignore[assignment]
        self.len = 0
        self.on_completion = None
        self._pool = parent._pool
        parent._pool = None
