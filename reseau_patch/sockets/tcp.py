"""``TCPSocket``: the rightmost channel handler and a blocking IO object in one.

Contract:

* **Thread.** A ``TCPSocket`` lives on the io loop under one thread's gevent hub; its
  blocking methods run in greenlets of that thread (another thread gets
  ``LoopThreadError``). The handler half (``process_read``, ``shutdown``, ...) runs in the
  hub, inside loop callbacks, and never blocks.
* **Reading.** Bytes arrive into one contiguous buffer. A read parks the greenlet until
  data, EOF, an error or the deadline. With back-pressure on, the channel may deliver at
  most ``read_buffer_capacity`` bytes ahead of the reader: consuming ``n`` bytes grants
  ``n`` back to the socket handler, so a slow reader holds at most its window (plus the
  message in flight) in memory. A read that needs more than the capacity (``read(n)``
  with a larger ``n``, ``read()`` to EOF, a long ``readline``/``peek``) grows the window
  for itself, so no read pattern waits for bytes the window keeps out; afterwards the
  buffer returns to its capacity.
* **Reset.** Every byte the peer's kernel saw acknowledged before a reset (RST) is read
  first, once; then each read raises ``ConnectionResetError`` (the error stays). Plain
  (direct or channel) and TLS sockets behave alike; a TLS peer that closes without
  close_notify ends the stream with ``ssl.SSLEOFError`` after its data.
* **Writing.** ``write`` chunks into pooled messages and returns once they are queued;
  past :data:`WRITE_HIGH_WATER` bytes in flight it parks until the socket drains. A write
  error is sticky: it is raised by that call if it is already known, else by the next
  ``write``/``flush``, never dropped.
* **Direct mode** (the fast path). When the channel is exactly ``[SocketHandler, self]``
  the socket handler is paused and this socket uses the fd itself: a read with nothing
  buffered is one ``recv_into`` into the caller's buffer, waiting for readiness (the io
  socket's read watcher, owned by the parked reader; its report switches to the reader
  directly, as gevent's watchers do) only on EAGAIN; bytes stay in the kernel until a
  reader asks, so the receive buffer holds at most what a ``peek``/``readline``/
  ``read(n)`` needed, and none while idle. A write with nothing queued is one ``send``; only the
  remainder goes through the channel (in messages of up to 256 KiB), and the next write
  parks until that remainder drained, so order is kept and at most one write's
  remainder is ever queued (non-blocking writes and writes from the hub keep the
  :data:`WRITE_HIGH_WATER` rule instead). ``tlsupgrade`` leaves direct mode for good: the buffered
  bytes go to the TLS handler and the socket handler reads again.
* **Direct TLS mode.** When the channel is exactly ``[SocketHandler, TlsHandler, self]``,
  the first call after a successful handshake (``connect``/``accept``/``tlsupgrade``)
  takes the engine over (``TlsHandler.begin_direct``: plaintext the handler still held is
  buffered first) and pauses the socket handler. A read takes what the engine already
  decrypted, else reads the kernel in 64–256 KiB pieces into the engine, decrypting
  straight into the caller's buffer (``readinto`` with nothing buffered; every whole
  record the engine holds, not one per call) or into the receive buffer (up to what the
  read asked for, at least 16 KiB); it parks on the fd's readiness only on EAGAIN. A
  write encrypts (256 KiB per engine call) and sends what the kernel takes; the rest is
  queued through the TLS handler and the next write waits for it, as in plain direct
  mode. The handler keeps writing close_notify:
  ``closewrite`` first drains the engine's plaintext into the buffer (OpenSSL's shutdown
  would discard records it reads). Peer close_notify is EOF; EOF without it is
  ``ssl.SSLEOFError``; a reset is ``ConnectionResetError``, each after the data. Any other
  chain (a handler between) stays on the channel path. :attr:`mode` tells which path runs.
* **One reader and one writer** at a time; a second concurrent one gets gevent's
  ``ConcurrentObjectUseError``.
* **Deadlines.** ``settimeout(t)``: each blocking call raises ``TimeoutError`` after ``t``
  seconds (``0`` means non-blocking: ``BlockingIOError``; ``None`` waits forever).
* **Close.** ``close()`` flushes queued writes (bounded by the timeout, else 30 s, then
  aborts), shuts the channel down and waits for it. Afterwards every IO call raises
  ``OSError(EBADF)``. ``closewrite()`` half-closes: the peer sees EOF, reads go on.
* **Names.** ``getsockname``/``getpeername`` ask the kernel while the fd is open; when the
  channel shuts down (the fd closes) the answers of that moment are kept. After a reset
  ``getpeername`` raises ``OSError(ENOTCONN)``, as the stdlib's does.
"""

from __future__ import annotations

import _socket
import enum
import errno
import functools
import ssl
import time
from typing import Any

from ..io.channel import UNBOUNDED, Channel, ChannelHandler, ChannelSlot, Direction
from ..io.event_loop import EventLoop
from ..io.message import MAX_FRAGMENT, IoMessage
from ..io.socket import Socket, os_error
from ..io.socket_handler import SocketHandler
from ..io.tls import TlsHandler, TlsState
from ..io.tls_engine import BIO_STEP, RECV_STEP, TlsEngine
from .addresses import IPAddr, sockaddr_to_inetaddr
from .parking import TIMED_OUT, Parker, in_hub

__all__ = ["DEFAULT_READ_CAPACITY", "TCPSocket", "WRITE_HIGH_WATER"]

DEFAULT_READ_CAPACITY = 256 * 1024
WRITE_HIGH_WATER = 1 << 20
CLOSE_FLUSH_DEFAULT = 30.0
_C = _socket.socket  # unbound C methods, as io/socket.py uses them
_DIRECT_RECV_MAX = 256 * 1024  # largest single recv into the buffer in direct mode
_QUEUE_CHUNK = 256 * 1024  # largest write message sent into the channel


class _State(enum.Enum):
    CONNECTED = "connected"
    CLOSING = "closing"
    CLOSED = "closed"


def _recv_or_none(raw: _socket.socket, size: int) -> bytes | None:
    """``recv``, or None when it would block. Caught here, not in the caller: a frame that
    catches an exception gets a frame object, kept while that frame parks (~250 bytes per
    idle reader)."""
    try:
        return _C.recv(raw, size)
    except (BlockingIOError, InterruptedError):
        return None


def _ebadf() -> OSError:
    return os_error(errno.EBADF, "socket is closed")


class _Unparked:
    """A :class:`TCPSocket`'s write or close parker before any greenlet waited there: none
    is waiting, so waking it does nothing (a Parker each cost ~64 bytes per idle
    connection). Shared; never parked on."""

    __slots__ = ()
    waiting = False

    def wake(self, value: Any = None) -> None:
        pass


_UNPARKED = _Unparked()


_CONNECTED = _State.CONNECTED
#: The receive buffer before any byte arrived, and after a reader emptied it to park.
_NO_BUFFER = b""


class TCPSocket(ChannelHandler):
    """A connected TCP (or unix) stream on a channel. Built by ``connect``/``accept``."""

    # Slots: an instance dict of these ~35 fields cost ~1.3 KiB per idle connection (the
    # base class's dict stays empty: ~40 bytes).
    __slots__ = ("_loop", "read_buffer_capacity", "back_pressure", "_want", "_need",
                 "channel", "slot", "_buf", "_pos", "_end", "_eof", "_read_error",
                 "_write_error", "_in_flight", "_write_closed", "_state", "_shut_down",
                 "_timeout", "_reader", "_writer", "_closer", "_sockname", "_peername",
                 "max_buffered", "_direct", "_dsh", "_dsock", "_draw", "_tls_try", "_tlsh",
                 "_eng", "host", "__weakref__")

    def __init__(self, loop: EventLoop, *, read_buffer_capacity: int = DEFAULT_READ_CAPACITY,
                 back_pressure: bool = True) -> None:
        if read_buffer_capacity <= 0:
            raise ValueError(f"read_buffer_capacity must be > 0, got {read_buffer_capacity}")
        self._loop = loop
        #: The host name given to ``connect`` (``tlsupgrade``'s default server name).
        self.host: str | None = None
        self.read_buffer_capacity = read_buffer_capacity
        self.back_pressure = back_pressure
        self._want = 0  # how much the current read would like (direct recv size)
        #: Bytes the current read needs buffered before it can return (-1: to EOF). A need
        #: above the capacity grows the window for that read only (see _grant_for).
        self._need = 1
        self.channel: Channel | None = None
        self.slot: ChannelSlot | None = None
        # Received bytes are _buf[_pos:_end]; the bytearray keeps its size between reads
        # (shrinking and regrowing it costs a realloc and fresh pages per bulk message).
        # It is _NO_BUFFER, shared, until bytes arrive: an idle connection allocates none.
        self._buf: bytearray | bytes = _NO_BUFFER
        self._pos = 0
        self._end = 0
        self._eof = False
        self._read_error: BaseException | None = None
        self._write_error: BaseException | None = None
        self._in_flight = 0
        self._write_closed = False
        self._state = _State.CONNECTED
        self._shut_down = False
        self._timeout: float | None = None
        self._reader = Parker(self, "read")
        # Made when a greenlet first waits to write or to close (_write_parker...).
        self._writer: Parker | _Unparked = _UNPARKED
        self._closer: Parker | _Unparked = _UNPARKED
        # Kept only once the channel shuts down (its fd closes): until then, asked of the
        # kernel (two tuples per idle connection otherwise).
        self._sockname: Any = None
        self._peername: Any = None
        #: Largest number of bytes ever held in the receive buffer (for back-pressure tests).
        self.max_buffered = 0
        # Direct mode (see the module docstring): the paused socket handler, its io socket
        # and that socket's ``_socket.socket``.
        self._direct = False
        self._dsh: SocketHandler | None = None
        self._dsock: Socket | None = None
        self._draw: _socket.socket | None = None
        # Direct TLS mode: the chain is [SocketHandler, TlsHandler, self] (_tls_try: enter
        # at the next call once negotiated), then the TLS handler and the engine we drive.
        self._tls_try = False
        self._tlsh: TlsHandler | None = None
        self._eng: TlsEngine | None = None

    # ================================================================ handler half
    def attach(self, channel: Channel) -> TCPSocket:
        """Bootstrap hook: called with the new channel before this handler is installed."""
        self.channel = channel
        return self

    def initial_window_size(self) -> int:
        self._maybe_go_direct()  # set_handler asks this once we are linked into the chain
        return self.read_buffer_capacity if self.back_pressure else UNBOUNDED

    def process_read(self, slot: ChannelSlot, msg: IoMessage) -> None:
        self._append(msg.data())
        msg.release()
        held = self._end - self._pos
        if held > self.max_buffered:
            self.max_buffered = held
        self._reader.wake()

    def process_read_eof(self, slot: ChannelSlot) -> None:
        self._eof = True
        self._reader.wake()

    def shutdown(self, slot: ChannelSlot, direction: Direction, error: BaseException | None,
                 abort: bool) -> None:
        if direction is Direction.READ and self._peername is None and self._state is _CONNECTED:
            # The fd closes in the write direction: keep the addresses for the caller who
            # asks after the connection went down (a live one asks the kernel; after
            # close() nobody may ask).
            self._sockname = self._kernel_address(False)
            self._peername = self._kernel_address(True)
        if error is not None:
            if self._read_error is None and not self._eof:
                self._read_error = error
            if self._write_error is None:
                self._write_error = error
        if direction is Direction.READ:
            self._reader.wake()
        else:
            self._writer.wake()
        slot.on_shutdown_complete(direction, error, abort)

    def on_channel_shutdown(self, channel: Channel, error: BaseException | None) -> None:
        """The channel finished shutting down (wired by connect/accept)."""
        self._shut_down = True
        self._reader.wake()
        self._writer.wake()
        self._closer.wake()

    def _on_written(self, n: int, err: BaseException | None) -> None:
        self._in_flight -= n
        if err is not None and self._write_error is None:
            self._write_error = err
        if self._writer.waiting and (err is not None or self._in_flight <= WRITE_HIGH_WATER // 2
                                     or self._in_flight == 0):
            self._writer.wake()

    # ================================================================ blocking half
    def _write_parker(self) -> Parker:
        if self._writer is _UNPARKED:
            self._writer = Parker(self, "write")
        return self._writer

    def _close_parker(self) -> Parker:
        if self._closer is _UNPARKED:
            self._closer = Parker(self, "close")
        return self._closer

    def _check_thread(self, what: str) -> None:
        if not self._loop.is_loop_thread():
            self._loop.check_thread(f"TCPSocket.{what}")

    def _deadline(self) -> float | None:
        return None if self._timeout is None else time.monotonic() + self._timeout

    def _park(self, parker: Parker, deadline: float | None) -> None:
        if deadline is None:
            parker.park(self._loop, None)
            return
        remaining = deadline - time.monotonic()
        if self._timeout == 0:
            raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")
        if remaining <= 0 or parker.park(self._loop, remaining) is TIMED_OUT:
            raise TimeoutError(errno.ETIMEDOUT, f"timed out after {self._timeout} s")

    def _available(self) -> int:
        return self._end - self._pos

    def _room(self, n: int) -> None:
        """Make ``_buf[_end:_end + n]`` writable (no view of the buffer may be alive)."""
        end = self._end
        buf = self._buf
        if buf is _NO_BUFFER:
            self._buf = bytearray(n)
            return
        if end + n > len(buf):
            pos = self._pos
            if pos:  # move what is held to the front (same-size slice: a memmove)
                held = end - pos
                buf[:held] = buf[pos:end]
                self._pos, self._end = 0, held
                end = held
            if end + n > len(buf):
                buf.extend(bytes(max(end + n - len(buf), len(buf))))

    def _drop_empty_buffer(self) -> None:
        """Before parking for the kernel with nothing buffered: give the receive buffer's
        memory back (an idle connection holds none; a streaming reader rarely parks).
        No view of the buffer may be alive."""
        if self._pos == self._end and self._buf:
            self._buf = _NO_BUFFER
            self._pos = self._end = 0

    def _append(self, data: bytes | bytearray | memoryview) -> None:
        n = len(data)
        self._room(n)
        end = self._end
        self._buf[end:end + n] = data
        self._end = end + n

    def _wait_more(self, deadline: float | None) -> bool:
        """Wait for bytes beyond those buffered; False once no more can come.

        A read error is raised only when nothing is buffered: bytes that arrived before a
        reset are delivered first, as ``recv`` does.
        """
        if self._state is not _State.CONNECTED:
            raise _ebadf()
        if self._eof:
            return False
        if self._read_error is not None:
            if self._available():
                return False
            raise self._read_error
        if self._shut_down:
            return False
        if self._direct:
            return self._fill_direct(deadline)
        if self._tls_try:
            self._try_tls_direct()
        if self._eng is not None:
            return self._fill_tls(deadline)
        need = self._need
        self._grant_for(self._available() + self.read_buffer_capacity if need < 0 else need)
        self._park(self._reader, deadline)
        return True

    def _wait_readable(self, deadline: float | None) -> bool:
        """Block until at least one byte is buffered; False at EOF."""
        if self._state is not _State.CONNECTED:
            raise _ebadf()
        while not self._available():
            if not self._wait_more(deadline):
                return False
        return True

    def _take(self, n: int) -> bytes:
        pos = self._pos
        with memoryview(self._buf) as mv:
            out = bytes(mv[pos:min(pos + n, self._end)])
        self._consumed(len(out))
        return out

    def _consumed(self, n: int) -> None:
        self._pos += n
        if self._pos == self._end:
            self._pos = self._end = 0
            if len(self._buf) > max(4 * self.read_buffer_capacity, 1 << 20):
                self._buf = _NO_BUFFER  # a big read is over: give its memory back
        if n:
            self._grant_for(0)

    def _grant_for(self, need: int) -> None:
        """Keep the read credit (bytes buffered + window the channel may still use) at
        ``max(capacity, need)``. Consuming tops it up to the capacity; a read that needs
        more than the capacity grows it for itself (else it would wait for bytes the
        window never lets in); credit granted once is used up before more is granted, so
        the buffer shrinks back to the capacity after such a read."""
        slot = self.slot
        if (not self.back_pressure or self._direct or self._eng is not None or slot is None
                or self._shut_down):
            return
        credit = self._available() + slot.window + slot.pending_increment
        short = max(self.read_buffer_capacity, need) - credit
        if short > 0:
            slot.increment_read_window(short)

    # ---------------------------------------------------------------- direct mode
    def _maybe_go_direct(self) -> None:
        """Enter direct mode if the channel is exactly ``[SocketHandler, self]``."""
        slot = self.slot
        left = slot.left if slot is not None else None
        sh = left.handler if left is not None else None
        if isinstance(sh, TlsHandler) and slot.right is None:
            self._tls_try = True  # _try_tls_direct checks the rest once negotiated
            return
        if (self._direct or left is None or slot.right is not None or left.left is not None
                or not isinstance(sh, SocketHandler)):
            return
        self._dsh, self._dsock, self._draw = sh, sh.socket, sh.socket.raw
        self._direct = True
        sh.pause_reading()

    def _leave_direct(self) -> None:
        """Hand reading back to the socket handler (``tlsupgrade``); for good."""
        self._direct = False
        self._dsock.unsubscribe_readable()  # our readiness watcher, if still on
        if self._reader.waiting:  # a reader parked on readiness: it re-checks the mode
            self._reader.wake()
        self._dsh.resume_reading()

    def _direct_ready(self) -> bool:
        """Whether a direct ``recv`` may run now: nothing buffered, nothing ended.

        The socket handler's ``shutting_down`` stands for the channel's shutdown and the
        fd's close (both run through it); readinto spells this check out inline."""
        return (self._direct and self._pos == self._end and not self._eof
                and self._read_error is None and self._state is _CONNECTED
                and not self._dsh.shutting_down)

    def _recv_failed(self, exc: OSError) -> None:
        """A direct read failed: the connection is broken, as when the handler's read fails."""
        if self._read_error is None:
            self._read_error = exc
        if self._write_error is None:
            self._write_error = exc
        self.slot.channel.shutdown(exc)

    def _got_eof(self) -> None:
        self._eof = True
        self._dsh.eof = True  # the kernel has nothing more: the handler must never read

    def _park_readable(self, deadline: float | None) -> None:
        """Park the reader until the fd is readable (or a wake, the deadline, a close)."""
        reader = self._reader
        if reader.waiter is not None:
            self._park(reader, deadline)  # raises ConcurrentObjectUseError
        if deadline is None and self._timeout is not None:
            deadline = time.monotonic() + self._timeout
        sock = self._dsock
        # The watcher stays on after a wake-up: a reader that comes back to wait finds it
        # still registered (no epoll_ctl pair per wait); a report nobody waits for turns
        # it off (_on_fd_readable).
        sock.subscribe_readable(self._on_fd_readable)
        try:
            if deadline is None:
                reader.park(self._loop, None)
            else:
                self._park(reader, deadline)
        except BaseException:
            if self._direct or self._eng is not None:
                sock.unsubscribe_readable()
            raise

    def _on_fd_readable(self, revents: int) -> None:
        # Only the parked reader runs on this report (a direct switch).
        if not self._reader.wake_now():
            self._dsock.unsubscribe_readable()  # level-triggered: nobody to tell

    def _fill_direct(self, deadline: float | None, block: bool = True) -> bool:
        """One ``recv`` into the buffer (parking on EAGAIN if ``block``); False at EOF."""
        if self._dsh.shutting_down or self._dsock.closed:
            if block:  # the channel is going down: its shutdown wakes us
                self._park(self._reader, deadline)
            return True
        avail = self._available()
        size = min(max(self._want - avail, MAX_FRAGMENT), _DIRECT_RECV_MAX)
        try:
            data = _recv_or_none(self._draw, size)
        except OSError as exc:
            self._recv_failed(exc)
            if avail:
                return False
            raise
        if data is None:
            # Parked outside the except block: an idle reader keeps no exception alive.
            if block:
                self._drop_empty_buffer()
                self._park_readable(deadline)
            return True
        if not data:
            self._got_eof()
            return False
        self._append(data)
        held = avail + len(data)
        if held > self.max_buffered:
            self.max_buffered = held
        return True

    # ---------------------------------------------------------------- direct TLS mode
    def _try_tls_direct(self) -> None:
        """Enter direct TLS mode if the chain is ``[SocketHandler, TlsHandler, self]`` and
        the handshake succeeded; while it runs, try again at the next call."""
        slot = self.slot
        left = slot.left if slot is not None else None
        tls = left.handler if left is not None else None
        if (not isinstance(tls, TlsHandler) or slot.right is not None
                or self._state is not _State.CONNECTED or self._shut_down):
            self._tls_try = False
            return
        if tls.state is TlsState.IDLE or tls.state is TlsState.HANDSHAKING:
            return  # the channel carries the handshake
        self._tls_try = False
        first = left.left
        sh = first.handler if first is not None else None
        # channel.shutting_down, not only the handler's flag: a read error in the handler
        # (a reset) requests the shutdown at once but runs it from a task, and the kernel
        # reports a reset only once (the next recv gives EOF, which would lose it).
        if (not isinstance(sh, SocketHandler) or first.left is not None or sh.shutting_down
                or slot.channel.shutting_down or sh.eof or sh.socket.closed or self._eof
                or self._read_error is not None):
            return
        plain = tls.begin_direct()
        if plain is None:
            return  # the stream ended or failed in the handler: the channel reports it
        sh.pause_reading()
        if plain:
            self._append(plain)
            self.max_buffered = max(self.max_buffered, self._available())
        self._dsh, self._dsock, self._draw = sh, sh.socket, sh.socket.raw
        self._tlsh, self._eng = tls, tls.engine

    def _tls_ready(self) -> bool:
        """Whether a direct TLS read into the caller's buffer may run now."""
        return (self._eng is not None and self._pos == self._end
                and self._state is _State.CONNECTED and not self._eof
                and self._read_error is None and not self._shut_down
                and not self._dsh.shutting_down and not self._dsock.closed)

    def _tls_pull(self, view: memoryview, deadline: float | None, block: bool = True,
                  recv: bool = True) -> int | None:
        """Decrypt into ``view``: what the engine holds first, else one large kernel read
        into the engine (``recv``), parking on EAGAIN (``block``). Returns the bytes
        decrypted, 0 after the peer's close_notify, -1 when it would wait, None when the
        connection changed while parked (the caller re-checks). Errors are recorded
        (sticky, channel shut down) and raised."""
        eng = self._eng
        while True:
            try:
                # Nothing decrypted nor received: the read could only say "want read"
                # (an exception costs ~2 us), so go straight to the kernel.
                if eng.incoming_pending() or eng.pending() or eng.eof_received:
                    n = eng.read_into(view, len(view))
                else:
                    n = -1
            except ssl.SSLWantReadError:
                n = -1
            except ssl.SSLZeroReturnError:
                n = 0
            except (ssl.SSLError, OSError) as exc:  # SSLEOFError (truncation), bad record
                try:
                    self._tls_out()  # our alert, if OpenSSL wrote one
                except OSError:
                    pass
                self._recv_failed(exc)
                raise
            if n > 0 and n < len(view) and eng.incoming_pending():
                n = self._tls_more(view, n)  # several records per call
            if eng.outgoing_pending():
                self._tls_out()  # reading may answer the peer (TLS 1.3 KeyUpdate)
            if n >= 0:
                if n == 0:
                    self._eof = True
                    self._tlsh.peer_closed = True
                return n
            if recv and self._tls_recv():
                continue
            if not (block and recv):
                return -1
            if deadline is None and self._timeout is not None:
                deadline = time.monotonic() + self._timeout
            self._park_readable(deadline)
            if not self._tls_alive():
                return None

    def _tls_more(self, view: memoryview, got: int) -> int:
        """After ``got`` bytes: decrypt the further records the engine already holds into
        the rest of ``view``. An end or error met here is recorded for the next read."""
        eng = self._eng
        size = len(view)
        while got < size and eng.incoming_pending():
            try:
                n = eng.read_into(view[got:], size - got)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                n = 0
            except (ssl.SSLError, OSError) as exc:
                self._recv_failed(exc)  # raised by the next read, after these bytes
                break
            if not n:
                self._eof = True
                self._tlsh.peer_closed = True
                break
            got += n
        return got

    def _tls_alive(self) -> bool:
        return (self._state is _State.CONNECTED and not self._eof and self._read_error is None
                and not self._shut_down and not self._dsh.shutting_down
                and not self._dsock.closed)

    def _tls_recv(self) -> bool:
        """One kernel read (several records) into the engine; False on EAGAIN.

        Always ``RECV_STEP`` (whole records: fewer partial ones left behind, each costs
        OpenSSL a "want read" round), never more: the incoming BIO keeps its peak."""
        try:
            data = _C.recv(self._draw, RECV_STEP)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as exc:  # a reset: the engine already gave every whole record
            self._recv_failed(exc)
            raise
        if data:
            self._eng.receive_data(data)
        else:
            self._eng.receive_eof()  # close_notify or SSLEOFError comes from the engine
            self._dsh.eof = True
        return True

    def _fill_tls(self, deadline: float | None, block: bool = True) -> bool:
        """Decrypt into the buffer (parking on EAGAIN if ``block``); False at EOF or when
        an error ends the bytes buffered so far (the next read raises it)."""
        if self._dsh.shutting_down or self._dsock.closed:
            if block:  # the channel is going down: its shutdown wakes us
                self._park(self._reader, deadline)
            return True
        avail = self._available()
        size = min(max(self._want - avail, MAX_FRAGMENT), _DIRECT_RECV_MAX)
        eng = self._eng
        if (not avail and not eng.eof_received and not eng.pending()
                and not eng.incoming_pending()):
            # Nothing to decrypt: read (or wait for) the kernel before taking buffer memory,
            # so an idle reader parks holding none (after a wait the caller calls again).
            if not self._tls_recv():
                if block:
                    self._drop_empty_buffer()
                    self._park_readable(deadline)
                return True
        self._room(size)
        end = self._end
        with memoryview(self._buf) as mv:
            view = mv[end:end + size]
            try:
                n = self._tls_pull(view, deadline, block)
            except OSError:
                if avail:
                    return False
                raise
            finally:
                view.release()  # before the buffer may be resized
        if n is None or n < 0:
            return True
        if n == 0:
            return False
        self._end = end + n
        held = avail + n
        if held > self.max_buffered:
            self.max_buffered = held
        return True

    def _tls_drain(self) -> None:
        """Move what the engine can decrypt into the buffer, without reading the kernel."""
        while self._tls_alive():
            self._room(MAX_FRAGMENT)
            end = self._end
            with memoryview(self._buf) as mv:
                view = mv[end:end + MAX_FRAGMENT]
                try:
                    n = self._tls_pull(view, None, block=False, recv=False)
                except OSError:
                    return  # recorded: the next read raises it
                finally:
                    view.release()
            if n is None or n <= 0:
                return
            self._end = end + n

    def _tls_out(self) -> None:
        """Send the engine's ciphertext: what the kernel takes now, the rest queued
        through the TLS handler (behind queued writes). After our close_notify (or once
        the channel is down) nothing may follow: it is dropped."""
        data = self._eng.data_to_send()
        if not data or self._write_closed or self._shut_down:
            return
        try:
            n = self._dsock.send_now(memoryview(data))
        except OSError as exc:
            if self._write_error is None:
                self._write_error = exc
            self.slot.channel.shutdown(exc)
            raise
        if n < len(data):
            rest = data[n:]
            k = len(rest)
            self._in_flight += k
            try:
                self._tlsh.send_ciphertext(rest, functools.partial(self._on_written, k))
            except BaseException:
                self._in_flight -= k
                raise

    def _write_tls(self, view: memoryview) -> int:
        """Direct TLS write: encrypt (``BIO_STEP`` per engine call: the outgoing BIO keeps
        its peak) and send; at most one write's remainder is queued, as in plain direct
        mode."""
        total = len(view)
        off = 0
        deadline = None
        eng = self._eng
        while off < total:
            if self._in_flight and (self._in_flight >= WRITE_HIGH_WATER
                                    or (self._timeout != 0 and not in_hub())):
                if deadline is None:
                    deadline = self._deadline()
                self._park(self._write_parker(), deadline)
                self._check_write()
                continue
            n = min(total - off, BIO_STEP)
            try:
                eng.write(view[off:off + n] if n < total else view)
            except (ssl.SSLError, OSError) as exc:
                if self._write_error is None:
                    self._write_error = exc
                self.slot.channel.shutdown(exc)
                raise
            off += n
            self._tls_out()
        return total

    def read(self, n: int = -1) -> bytes:
        """``n`` bytes, fewer only at EOF; ``n < 0`` reads to EOF."""
        self._check_thread("read")
        deadline = self._deadline()
        self._want = n if n is not None and n > 0 else 65536
        self._need = n if n is not None and n > 0 else -1
        if n is None or n < 0:
            while self._wait_more(deadline):
                pass
            return self._take(self._available())
        if self._state is not _State.CONNECTED:
            raise _ebadf()
        while self._available() < n:
            if not self._wait_more(deadline):
                break
        return self._take(min(n, self._available()))

    def readinto(self, buf: bytearray | memoryview) -> int:
        """Copy up to ``len(buf)`` bytes once at least one is available; 0 at EOF."""
        if not self._loop.is_loop_thread():
            self._check_thread("readinto")
        view = memoryview(buf).cast("B")
        if not len(view):
            return 0
        if self._direct:
            deadline = None
            # _direct_ready(), spelled out: the hottest wait of the Sockets API.
            while (self._pos == self._end and not self._eof and self._read_error is None
                   and self._state is _CONNECTED and not self._dsh.shutting_down
                   and self._direct):
                try:
                    n = _C.recv_into(self._draw, view)
                except (BlockingIOError, InterruptedError):
                    n = -1
                except OSError as exc:
                    self._recv_failed(exc)
                    raise
                if n < 0:  # park outside the except block (no exception kept alive)
                    if deadline is None and self._timeout is not None:
                        deadline = time.monotonic() + self._timeout
                    self._park_readable(deadline)
                    continue
                if not n:
                    self._got_eof()
                return n
        if self._tls_try:
            self._try_tls_direct()
        if self._eng is not None and self._tls_ready():
            got = self._tls_pull(view, None)
            if got is not None:
                return got
        self._want = len(view)
        self._need = 1
        if not self._wait_readable(self._deadline()):
            return 0
        n = min(len(view), self._available())
        with memoryview(self._buf) as mv:
            view[:n] = mv[self._pos:self._pos + n]
        self._consumed(n)
        return n

    def readavailable(self) -> bytes:
        """Everything buffered, waiting for at least one byte; ``b""`` at EOF."""
        self._check_thread("readavailable")
        if self._direct:
            deadline = None
            while self._direct_ready():
                try:
                    data = _C.recv(self._draw, 65536)
                except (BlockingIOError, InterruptedError):
                    data = None
                except OSError as exc:
                    self._recv_failed(exc)
                    raise
                if data is None:  # park outside the except block (no exception kept alive)
                    if deadline is None and self._timeout is not None:
                        deadline = time.monotonic() + self._timeout
                    self._park_readable(deadline)
                    continue
                if not data:
                    self._got_eof()
                return data
        self._want = 65536
        self._need = 1
        if not self._wait_readable(self._deadline()):
            return b""
        return self._take(self._available())

    def readline(self, limit: int = -1) -> bytes:
        """Up to and including ``b"\\n"`` (or ``limit`` bytes, or EOF)."""
        self._check_thread("readline")
        deadline = self._deadline()
        self._want = limit if limit > 0 else 8192
        self._need = limit if limit > 0 else -1
        scanned = 0
        while True:
            idx = self._buf.find(b"\n", self._pos + scanned, self._end)
            if idx >= 0:
                n = idx - self._pos + 1
                break
            scanned = self._available()
            if 0 <= limit <= scanned:
                n = limit
                break
            if not self._wait_more(deadline):
                n = self._available()
                break
        if 0 <= limit < n:
            n = limit
        return self._take(n)

    def peek(self, n: int = 1) -> bytes:
        """Up to ``max(n, 1)`` buffered bytes without consuming them; ``b""`` at EOF.

        Waits until at least one byte is buffered (or ``n`` bytes, if that many can come).
        """
        self._check_thread("peek")
        deadline = self._deadline()
        self._want = self._need = max(n, 1)
        while self._available() < max(n, 1):
            if not self._wait_more(deadline):
                break
        return bytes(self._buf[self._pos:min(self._pos + max(n, 1), self._end)])

    def bytesavailable(self) -> int:
        """Bytes buffered right now (never blocks). In direct mode the bytes the kernel
        holds are pulled into the buffer first (one non-blocking ``recv``)."""
        if self._tls_try and self._loop.is_loop_thread():
            self._try_tls_direct()
        if self._loop.is_loop_thread() and (self._direct_ready() or self._tls_ready()):
            self._want = 65536
            try:
                if self._direct:
                    self._fill_direct(None, block=False)
                else:
                    self._fill_tls(None, block=False)
            except OSError:
                pass  # recorded: the next read raises it
        return self._available()

    def eof(self) -> bool:
        """Block until data or EOF; True when the peer closed and nothing is buffered."""
        self._check_thread("eof")
        self._want = self._need = 1
        try:
            return not self._wait_readable(self._deadline())
        except OSError:
            if self._state is not _State.CONNECTED:
                raise
            return True

    # ---------------------------------------------------------------- writing
    def _check_write(self) -> None:
        if self._state is not _State.CONNECTED:
            raise _ebadf()
        if self._write_error is not None:
            raise self._write_error
        if self._write_closed:
            raise os_error(errno.EPIPE, "write after closewrite()")
        if self._shut_down or self.slot is None:
            raise os_error(errno.EPIPE, "connection is shut down")

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Queue all of ``data``; returns its length. Parks while too much is in flight."""
        if not self._loop.is_loop_thread():
            self._check_thread("write")
        self._check_write()
        view = memoryview(data).cast("B")
        if self._tls_try:
            self._try_tls_direct()
        if self._eng is not None:
            return self._write_tls(view)
        total = len(view)
        deadline = None
        off = 0
        slot = self.slot
        while off < total:
            if self._direct:
                # Straight to the kernel when nothing is queued ahead (send_now checks).
                try:
                    off += self._dsock.send_now(view[off:] if off else view)
                except OSError as exc:
                    if self._write_error is None:
                        self._write_error = exc
                    self.slot.channel.shutdown(exc)
                    raise
                if off == total:
                    break
            if self._in_flight and (self._in_flight >= WRITE_HIGH_WATER
                                    or (self._direct and self._timeout != 0 and not in_hub())):
                # Direct mode queues at most one write's remainder: waiting for it to drain
                # (rather than queueing up to the high-water mark) keeps the bytes in
                # flight cache-hot and the next write on the direct path. Non-blocking
                # writes and writes from the hub keep the high-water rule.
                if deadline is None:
                    deadline = self._deadline()
                self._park(self._write_parker(), deadline)
                self._check_write()
                continue
            # One message owning a copy of (part of) the rest: a bulk write costs the
            # channel one message per 256 KiB (TLS encrypts each in one engine call).
            n = min(total - off, _QUEUE_CHUNK)
            msg = IoMessage.owning(bytes(view[off:off + n]))
            off += n
            self._in_flight += n
            msg.on_completion = functools.partial(self._on_written, n)
            try:
                slot.send_message(msg, Direction.WRITE)
            except BaseException:
                self._in_flight -= n
                msg.release()
                raise
        return total

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        """Wait until every written byte reached the kernel; raise a pending write error."""
        self._check_thread("flush")
        deadline = self._deadline()
        while self._in_flight and self._write_error is None and not self._shut_down:
            self._park(self._write_parker(), deadline)
        if self._write_error is not None:
            raise self._write_error
        if self._state is not _State.CONNECTED:
            raise _ebadf()

    def closewrite(self) -> None:
        """Half-close: queued bytes go out, then the peer reads EOF. Reading continues."""
        self._check_thread("closewrite")
        if self._state is not _State.CONNECTED:
            raise _ebadf()
        if self._write_closed or self._shut_down:
            return
        if self._eng is not None:
            self._tls_drain()  # before close_notify: SSL_shutdown drops records it reads
        self._write_closed = True
        self.slot.send_write_eof()

    # ---------------------------------------------------------------- lifecycle
    def close(self) -> None:
        """Flush, shut the channel down and wait for it (idempotent)."""
        if self._state is not _State.CONNECTED:
            return
        self._check_thread("close")
        self._state = _State.CLOSING
        ch = self.channel
        if ch is not None and not self._shut_down:
            flush_for = self._timeout if self._timeout else CLOSE_FLUSH_DEFAULT
            ch.shutdown()
            try:
                if not self._shut_down:
                    deadline = time.monotonic() + flush_for
                    closer = self._close_parker()
                    while not self._shut_down:
                        left = max(0.0, deadline - time.monotonic())
                        if closer.park(self._loop, left) is TIMED_OUT:
                            break
            except RuntimeError:
                pass  # called from inside the hub: the shutdown finishes on its own
            if not self._shut_down:
                self._abort()
        self._state = _State.CLOSED
        self._buf = _NO_BUFFER
        self._pos = self._end = 0

    def _abort(self) -> None:
        """Drop unsent bytes: close the OS socket so the shutdown completes now."""
        ch = self.channel
        first = ch.first if ch is not None else None
        handler = first.handler if first is not None else None
        sock = getattr(handler, "socket", None)
        if sock is not None and not sock.closed:
            sock.close()
        while not self._shut_down:
            if self._close_parker().park(self._loop, 5.0) is TIMED_OUT:
                break

    @property
    def closed(self) -> bool:
        return self._state is not _State.CONNECTED

    @property
    def mode(self) -> str:
        """How reads and writes reach the kernel: ``"direct"`` (plain, the fd itself),
        ``"tls-direct"`` (this socket drives the TLS engine and the fd) or ``"channel"``
        (every byte through the channel's handlers)."""
        if self._direct:
            return "direct"
        return "tls-direct" if self._eng is not None else "channel"

    @property
    def buffer_memory(self) -> int:
        """Bytes of memory the receive buffer holds now (its capacity, not its contents):
        0 for a direct or TLS-direct reader parked with nothing buffered."""
        return len(self._buf)

    @property
    def isopen(self) -> bool:
        return self._state is _State.CONNECTED and not self._shut_down

    def settimeout(self, timeout: float | None) -> None:
        """Per-call deadline for blocking methods, in seconds (``None``: wait forever)."""
        if self._state is not _State.CONNECTED:
            raise _ebadf()
        if timeout is not None:
            timeout = float(timeout)
            if timeout < 0:
                raise ValueError(f"Timeout value out of range: {timeout}")
        self._timeout = timeout

    def gettimeout(self) -> float | None:
        return self._timeout

    def getsockname(self) -> tuple[IPAddr, int] | str:
        if self._state is not _CONNECTED:
            raise _ebadf()
        addr = self._sockname if self._sockname is not None else self._kernel_address(False)
        if addr is None:
            raise _ebadf()
        return sockaddr_to_inetaddr(addr)

    def getpeername(self) -> tuple[IPAddr, int] | str:
        if self._state is not _CONNECTED:
            raise _ebadf()
        addr = self._peername if self._peername is not None else self._kernel_address(True)
        if addr is None:
            raise os_error(errno.ENOTCONN)  # reset, or the fd is gone: as the stdlib says
        return sockaddr_to_inetaddr(addr)

    def _kernel_address(self, remote: bool) -> Any:
        """The connection's address from the kernel (not kept: ~112 bytes per idle
        connection); None once its fd is closed or the peer reset it."""
        ch = self.channel
        first = ch.first if ch is not None else None
        sock = getattr(first.handler, "socket", None) if first is not None else None
        if sock is None or sock.closed:
            return None
        try:
            return sock.remote_address() if remote else sock.local_address()
        except OSError:
            return None

    # ================================================================ TLS

    @property
    def tls(self) -> TlsHandler | None:
        """The TLS handler under this socket, or None for a plaintext connection."""
        s = self.slot.left if self.slot is not None else None
        while s is not None:
            if isinstance(s.handler, TlsHandler):
                return s.handler
            s = s.left
        return None

    def selected_alpn_protocol(self) -> str | None:
        """The ALPN protocol both sides agreed on (None without TLS or ALPN)."""
        tls = self.tls
        return tls.selected_alpn_protocol() if tls is not None else None

    def getpeercert(self, binary_form: bool = False) -> Any:
        """As ``ssl.SSLSocket.getpeercert`` (``{}`` for an unverified peer unless
        ``binary_form``); None without TLS."""
        tls = self.tls
        return tls.getpeercert(binary_form) if tls is not None else None

    def cipher(self) -> tuple[str, str, int] | None:
        tls = self.tls
        return tls.cipher() if tls is not None else None

    def version(self) -> str | None:
        """``"TLSv1.3"`` and the like; None without TLS."""
        tls = self.tls
        return tls.version() if tls is not None else None

    def _start_tls(self, tls: TlsHandler) -> None:
        """``tlsupgrade``: put ``tls`` between the socket handler and this socket and start
        it (loop thread). Buffered bytes nobody read came after the upgrade point: they
        are the peer's first TLS bytes, so they go to ``tls`` and leave our buffer."""
        self._check_thread("tlsupgrade")
        if self._state is not _State.CONNECTED:
            raise _ebadf()
        if self._shut_down or self.slot is None or self.channel is None:
            raise os_error(errno.EPIPE, "connection is shut down")
        if self._read_error is not None:
            raise self._read_error
        slot = self.slot
        was_direct = self._direct
        if was_direct:
            self._leave_direct()  # the socket handler reads for the TLS handler from now on
        leftover = bytes(self._buf[self._pos:self._end])
        self._pos = self._end = 0
        eof, self._eof = self._eof, False  # from now on EOF is the TLS layer's to report
        tls_slot = ChannelSlot(slot.channel)
        slot.insert_left(tls_slot)
        tls_slot.set_handler(tls)
        tls.feed(leftover)
        if eof:
            tls.feed_eof()
        if leftover and self.back_pressure and not was_direct:
            # They left our buffer: re-credit (direct reads never debited the window).
            slot.increment_read_window(len(leftover))
        tls.start()
        self._tls_try = True  # direct TLS once negotiated, if the chain allows it

    def __enter__(self) -> TCPSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        local = self._sockname or self._kernel_address(False)
        peer = self._peername or self._kernel_address(True)
        return (f"<TCPSocket {self._state.value} local={local!r} peer={peer!r} "
                f"buffered={self._available()}>")
