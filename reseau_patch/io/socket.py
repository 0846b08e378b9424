"""Non-blocking stream sockets on an :class:`EventLoop`.

Built on ``_socket.socket`` (the C type) so that a patched ``socket.socket`` never
recurses into this module. Every socket is non-blocking and close-on-exec from birth
(``SOCK_NONBLOCK | SOCK_CLOEXEC``, see socket(2)).

State machine (one state at a time; ``close()`` goes to CLOSED from anywhere)::

    INIT --bind--> BOUND --listen--> LISTENING
    INIT|BOUND --connect--> CONNECTING --ok--> CONNECTED
                                       \\--error/timeout--> CLOSED
    (accepted sockets start CONNECTED)

Contract:

* ``bind``/``listen``/``set_options`` are plain syscalls and may run on any thread before
  the socket is used on its loop. ``connect``, ``start_accept``, ``subscribe_readable``,
  ``write``, ``shutdown`` and ``close`` are loop-only.
* Callbacks (``on_connected``, ``on_accept``, write completions) always run on the loop
  thread and **never inside the call that registered them**: a completion is at least
  one callback hop away, so callers may hold state across ``write()``.
* Write completions run in submission order; after ``close()`` the unsent ones complete
  with ``OSError(ECANCELED)``.
* Errors are the stdlib's ``OSError`` subclasses built from the real errno
  (``ConnectionRefusedError``, ``TimeoutError``, ``BrokenPipeError``, ...).
"""

from __future__ import annotations

import _socket
import enum
import errno
import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from .event_loop import READ, WRITE, EventLoop, IOWatcher, TimerHandle

__all__ = ["Socket", "SocketDomain", "SocketOptions", "SocketState", "os_error"]

# Unbound C methods: a borrowed socket may be a Python subclass (the patched
# socket.socket, an SSL socket) whose overrides must not be re-entered from here.
_C = _socket.socket
_SOCK_FLAGS = getattr(_socket, "SOCK_NONBLOCK", 0) | getattr(_socket, "SOCK_CLOEXEC", 0)
_ACCEPT_BATCH = 64  # accepts per readiness report, so one busy listener cannot starve the loop
_SEND_MAX = 1 << 20


class SocketDomain(enum.IntEnum):
    """Address family of a stream socket."""

    IPV4 = _socket.AF_INET
    IPV6 = _socket.AF_INET6
    LOCAL = _socket.AF_UNIX


class SocketState(enum.Enum):
    INIT = "init"
    BOUND = "bound"
    LISTENING = "listening"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    CLOSED = "closed"


def os_error(code: int, detail: str | None = None) -> OSError:
    """The stdlib's ``OSError`` subclass for ``code`` (``OSError(errno, msg)`` maps it)."""
    msg = os.strerror(code)
    if detail:
        msg = f"{msg} ({detail})"
    return OSError(code, msg)


@dataclass
class SocketOptions:
    """How a socket is set up. Times are in seconds; ``None`` leaves the OS default."""

    domain: SocketDomain = SocketDomain.IPV4
    connect_timeout: float | None = None
    keepalive: bool = False
    keep_idle: int | None = None
    keep_interval: int | None = None
    keep_count: int | None = None
    nodelay: bool = True
    reuseaddr: bool = True
    interface: str | None = None
    send_buffer: int | None = None
    recv_buffer: int | None = None
    #: Local address to bind before connecting (``create_connection``'s source_address).
    bind_address: object = None

    def __post_init__(self) -> None:
        self.domain = SocketDomain(self.domain)
        if self.connect_timeout is not None and self.connect_timeout <= 0:
            raise ValueError(f"connect_timeout must be > 0 or None, got {self.connect_timeout!r}")
        for name in ("keep_idle", "keep_interval", "keep_count", "send_buffer", "recv_buffer"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v <= 0):
                raise ValueError(f"{name} must be a positive int or None, got {v!r}")
        if self.interface is not None:
            # IFNAMSIZ is 16 including the NUL (netdevice(7)).
            if not self.interface or len(self.interface.encode()) >= 16:
                raise ValueError(f"interface name must be 1-15 bytes, got {self.interface!r}")


def check_port(port: object) -> int:
    """Validate a TCP port as the stdlib does (TypeError / OverflowError)."""
    if not isinstance(port, int) or isinstance(port, bool):
        raise TypeError(f"port must be an int, got {type(port).__name__} {port!r}")
    if not 0 <= port <= 65535:
        raise OverflowError(f"port must be 0-65535, got {port}")
    return port


def _check_address(domain: SocketDomain, address: object) -> object:
    if domain is SocketDomain.LOCAL:
        if isinstance(address, (str, bytes)):
            if not address:
                raise os_error(errno.EINVAL, "empty unix socket path ''")  # as connect("")
            return address
        raise TypeError(f"LOCAL address must be a str or bytes path, got {address!r}")
    if not isinstance(address, tuple) or len(address) < 2:
        raise TypeError(f"{domain.name} address must be a (host, port) tuple, got {address!r}")
    check_port(address[1])
    return address


class Socket:
    """A non-blocking stream socket owned by one :class:`EventLoop`."""

    # One per connection: slots, not a dict.
    __slots__ = ("loop", "options", "owns_fd", "state", "_sock", "_fd", "_read_watcher",
                 "_write_watcher", "_writes", "_write_error", "_shut_wr_pending", "_read_shut",
                 "_write_shut", "_connect_cb", "_connect_timer", "_connect_addr", "_accept_cb",
                 "bytes_read", "bytes_written", "backlog")

    def __init__(self, loop: EventLoop, options: SocketOptions | None = None, *,
                 sock: _socket.socket | None = None, owns_fd: bool = True) -> None:
        """A new socket, or ``sock`` (connected) adopted.

        ``owns_fd=False`` borrows a caller's socket (the patch layer's): its options are
        left exactly as the caller set them and ``close()`` only detaches it from the loop.
        """
        self.loop = loop
        self.options = options = options or SocketOptions()
        self.owns_fd = owns_fd
        if sock is None:
            sock = _socket.socket(int(options.domain), _socket.SOCK_STREAM | _SOCK_FLAGS)
            self.state = SocketState.INIT
        else:
            _C.setblocking(sock, False)
            self.state = SocketState.CONNECTED
        self._sock = sock
        self._fd = _C.fileno(sock)
        if owns_fd:
            try:
                self._apply_options()
            except BaseException:
                _C.close(sock)
                raise
        self._read_watcher: IOWatcher | None = None
        self._write_watcher: IOWatcher | None = None
        # [memoryview, callback, total] entries; () while nothing is queued (an empty deque
        # costs ~600 bytes per idle connection).
        self._writes: deque[list] | tuple[()] = ()
        self._write_error: OSError | None = None
        self._shut_wr_pending = False
        self._read_shut = False
        self._write_shut = False
        self._connect_cb: Callable[[OSError | None], None] | None = None
        self._connect_timer: TimerHandle | None = None
        self._connect_addr: object = None
        self._accept_cb: Callable[[Socket | None, OSError | None], None] | None = None
        self.bytes_read = 0
        self.bytes_written = 0

    # ------------------------------------------------------------------ options
    def _apply_options(self) -> None:
        o, s = self.options, self._sock
        if o.domain is not SocketDomain.LOCAL:
            if o.nodelay:
                s.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
            if o.keepalive:
                s.setsockopt(_socket.SOL_SOCKET, _socket.SO_KEEPALIVE, 1)
                for opt, v in (("TCP_KEEPIDLE", o.keep_idle), ("TCP_KEEPINTVL", o.keep_interval),
                               ("TCP_KEEPCNT", o.keep_count)):
                    if v is not None and hasattr(_socket, opt):
                        s.setsockopt(_socket.IPPROTO_TCP, getattr(_socket, opt), v)
            if o.interface is not None:
                s.setsockopt(_socket.SOL_SOCKET, _socket.SO_BINDTODEVICE, o.interface.encode())
        if o.reuseaddr and self.state is SocketState.INIT:
            s.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
        if o.send_buffer:
            s.setsockopt(_socket.SOL_SOCKET, _socket.SO_SNDBUF, o.send_buffer)
        if o.recv_buffer:
            s.setsockopt(_socket.SOL_SOCKET, _socket.SO_RCVBUF, o.recv_buffer)

    # ------------------------------------------------------------------ basics
    def _watcher(self, events: int) -> IOWatcher:
        return IOWatcher(self.loop, self._fd, events, ref=self.loop.socket_watchers_ref)

    def fileno(self) -> int:
        return self._fd if self.state is not SocketState.CLOSED else -1

    @property
    def closed(self) -> bool:
        return self.state is SocketState.CLOSED

    @property
    def raw(self) -> _socket.socket:
        """The underlying ``_socket.socket`` (for getsockopt and friends)."""
        return self._sock

    def _require_open(self) -> None:
        if self.state is SocketState.CLOSED:
            raise os_error(errno.EBADF, "socket is closed")

    def local_address(self) -> object:
        self._require_open()
        return _C.getsockname(self._sock)

    def remote_address(self) -> object:
        self._require_open()
        return _C.getpeername(self._sock)

    def bind(self, address: object) -> None:
        """Bind to ``(host, port)`` or a unix path ("\\0name" for a Linux abstract name)."""
        self._require_open()
        if self.state is not SocketState.INIT:
            raise os_error(errno.EINVAL, f"bind in state {self.state.value}")
        _C.bind(self._sock, _check_address(self.options.domain, address))
        self.state = SocketState.BOUND

    def listen(self, backlog: int = 511) -> None:
        """Start listening with ``backlog`` queued connections (listen(2))."""
        self._require_open()
        if self.state is not SocketState.BOUND:
            raise os_error(errno.EINVAL, f"listen in state {self.state.value}; bind first")
        if not isinstance(backlog, int) or backlog < 0:
            raise ValueError(f"backlog must be a non-negative int, got {backlog!r}")
        _C.listen(self._sock, backlog)
        self.state = SocketState.LISTENING
        self.backlog = backlog

    # ------------------------------------------------------------------ connect
    def connect(self, address: object, on_connected: Callable[[OSError | None], None]) -> None:
        """Start a non-blocking connect (loop-only); ``on_connected(err)`` runs exactly once.

        On failure or timeout the socket is closed before the callback runs. ``address``
        must be numeric: name resolution is the bootstrap's job.
        """
        self.loop.check_thread("Socket.connect")
        self._require_open()
        if self.state not in (SocketState.INIT, SocketState.BOUND):
            raise os_error(errno.EISCONN if self.state is SocketState.CONNECTED else errno.EINVAL,
                           f"connect in state {self.state.value}")
        address = _check_address(self.options.domain, address)
        if self.options.bind_address is not None and self.state is SocketState.INIT:
            self.bind(self.options.bind_address)
        self._connect_cb = on_connected
        self._connect_addr = address
        self.state = SocketState.CONNECTING
        code = _C.connect_ex(self._sock, address)
        if code == 0:
            self.loop.call_soon(self._connect_done, None)
            return
        if code not in (errno.EINPROGRESS, errno.EAGAIN, errno.EALREADY):
            self.loop.call_soon(self._connect_done, os_error(code))
            return
        w = self._write_watcher = self._watcher(WRITE)
        w.start(self._on_connect_ready)
        if self.options.connect_timeout is not None:
            self._connect_timer = self.loop.call_later(self.options.connect_timeout,
                                                       self._on_connect_timeout)

    def _on_connect_ready(self, revents: int) -> None:
        code = _C.getsockopt(self._sock, _socket.SOL_SOCKET, _socket.SO_ERROR)
        self._connect_done(os_error(code) if code else None)

    def _on_connect_timeout(self) -> None:
        self._connect_timer = None
        t = self.options.connect_timeout
        self._connect_done(TimeoutError(errno.ETIMEDOUT,
                                        f"connect to {self._connect_addr!r} timed out after {t} s"))

    def _connect_done(self, err: OSError | None) -> None:
        cb, self._connect_cb = self._connect_cb, None
        if cb is None:
            return
        if self._connect_timer is not None:
            self._connect_timer.cancel()
            self._connect_timer = None
        # The connect's watcher and address are done with (~190 bytes per connection);
        # a write that meets EAGAIN makes its own watcher.
        if self._write_watcher is not None:
            self._write_watcher.stop()
            self._write_watcher = None
        self._connect_addr = None
        if err is None and self.state is SocketState.CONNECTING:
            self.state = SocketState.CONNECTED
        elif err is None:  # closed while the success was queued
            err = os_error(errno.ECANCELED, "socket closed during connect")
        else:
            self._close_now()
        cb(err)

    # ------------------------------------------------------------------ accept
    def start_accept(self, on_accept: Callable[[Socket | None, OSError | None], None]) -> None:
        """Accept connections as they come (loop-only): ``on_accept(sock, None)`` for each,
        ``on_accept(None, err)`` for a resource error such as EMFILE (accepting continues)."""
        self.loop.check_thread("Socket.start_accept")
        if self.state is not SocketState.LISTENING:
            raise os_error(errno.EINVAL, f"accept in state {self.state.value}; listen first")
        self._accept_cb = on_accept
        if self._read_watcher is None:
            self._read_watcher = self._watcher(READ)
        self._read_watcher.start(self._on_acceptable)

    def stop_accept(self) -> None:
        """Stop accepting (loop-only); queued connections stay in the kernel's backlog."""
        self._accept_cb = None
        if self._read_watcher is not None:
            self._read_watcher.stop()

    def _on_acceptable(self, revents: int) -> None:
        for _ in range(_ACCEPT_BATCH):
            if self._accept_cb is None:
                return
            try:
                fd, _addr = _C._accept(self._sock)
            except BlockingIOError:
                return
            except InterruptedError:
                continue
            except OSError as exc:
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO):
                    continue  # the peer gave up while queued: nothing to report
                self._accept_cb(None, exc)
                return
            # _accept() uses accept4(SOCK_CLOEXEC); Socket() makes it non-blocking.
            raw = _socket.socket(int(self.options.domain), _socket.SOCK_STREAM, fileno=fd)
            try:
                child = Socket(self.loop, self.options, sock=raw)
            except OSError as exc:
                raw.close()
                self._accept_cb(None, exc)
                continue
            self._accept_cb(child, None)

    # ------------------------------------------------------------------ reading
    def subscribe_readable(self, on_readable: Callable[[int], None]) -> None:
        """Call ``on_readable(revents)`` each tick data, EOF or an error is pending (loop-only).

        Level-triggered: unsubscribe while you cannot consume, or the loop spins.
        """
        if self.state is SocketState.CLOSED:  # _require_open, inline: every wait calls this
            raise os_error(errno.EBADF, "socket is closed")
        watcher = self._read_watcher
        if watcher is None:
            watcher = self._read_watcher = self._watcher(READ)
        watcher.start(on_readable)

    def unsubscribe_readable(self) -> None:
        if self._read_watcher is not None:
            self._read_watcher.stop()

    @property
    def reading(self) -> bool:
        """Whether read interest is registered right now."""
        return self._read_watcher is not None and self._read_watcher.active

    def read_into(self, buf: memoryview | bytearray, nbytes: int = 0) -> int | None:
        """One ``recv_into`` of at most ``nbytes`` (0: ``len(buf)``): bytes read, 0 at EOF,
        ``None`` if it would block."""
        if self.state is SocketState.CLOSED:
            raise os_error(errno.EBADF, "socket is closed")
        try:
            n = _C.recv_into(self._sock, buf, nbytes)
        except (BlockingIOError, InterruptedError):
            return None
        self.bytes_read += n
        return n

    # ------------------------------------------------------------------ writing
    def write(self, data: bytes | bytearray | memoryview,
              on_complete: Callable[[OSError | None, int], None] | None = None) -> None:
        """Queue ``data`` (loop-only). ``on_complete(err, nbytes)`` runs later, in order.

        The caller must not mutate ``data`` until its completion ran. An empty write is a
        marker: it completes once everything queued before it is on the wire.
        """
        if not self.loop.is_loop_thread():
            self.loop.check_thread("Socket.write")
        if self.state is SocketState.CLOSED:
            raise os_error(errno.EBADF, "socket is closed")
        if self._write_shut or self._shut_wr_pending:
            raise os_error(errno.EPIPE, "write after shutdown(SHUT_WR)")
        if self._write_error is not None:
            raise self._write_error
        view = data if isinstance(data, memoryview) else memoryview(data)
        if view.format != "B" or view.ndim != 1:
            view = view.cast("B")
        total = len(view)
        if self._writes:
            self._writes.append([view, on_complete, total])
            return
        # Nothing queued: send at once, and queue only what the kernel did not take (a
        # write that fits costs no queue entry; its completion still runs later).
        sent = 0
        if total:
            try:
                sent = _C.send(self._sock, view[:_SEND_MAX] if total > _SEND_MAX else view)
            except (BlockingIOError, InterruptedError):
                self._writes = deque(([view, on_complete, total],))
                self._arm_write_watcher()  # the kernel is full: no second try this tick
                return
            except OSError as exc:
                self._writes = deque(([view, on_complete, total],))
                self._fail_writes(exc)
                return
            self.bytes_written += sent
        if sent == total:
            if on_complete is not None:
                self.loop.call_soon(on_complete, None, total)
            return
        self._writes = deque(([view[sent:], on_complete, total],))
        self._flush_writes()

    def send_now(self, view: memoryview) -> int:
        """Send what the kernel takes right now, only if nothing is queued ahead (loop-only).

        Returns the bytes sent: 0 when it would block, when writes are queued (the caller
        queues the rest with :meth:`write`, which keeps the order) or after a write
        shutdown. A send error is raised and is sticky, as for :meth:`write`.
        """
        if self._writes or self.state is not SocketState.CONNECTED or self._write_shut \
                or self._shut_wr_pending:
            return 0
        if self._write_error is not None:
            raise self._write_error
        try:
            n = _C.send(self._sock, view)
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError as exc:
            self._write_error = exc
            raise
        self.bytes_written += n
        return n

    def when_flushed(self, callback: Callable[[OSError | None, int], None]) -> None:
        """``callback(err, 0)`` once every byte queued so far is on the wire (loop-only).

        Unlike an empty ``write`` it is allowed after ``shutdown(SHUT_WR)``.
        """
        self.loop.check_thread("Socket.when_flushed")
        if self._writes:
            self._writes.append([memoryview(b""), callback, 0])
        else:
            self.loop.call_soon(callback, self._write_error, 0)

    def _flush_writes(self, revents: int = 0) -> None:
        writes = self._writes
        loop = self.loop
        while writes:
            entry = writes[0]
            view = entry[0]
            if view:
                try:
                    n = _C.send(self._sock, view[:_SEND_MAX])
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as exc:
                    self._fail_writes(exc)
                    return
                self.bytes_written += n
                if n < len(view):
                    entry[0] = view[n:]
                    continue
            writes.popleft()
            if entry[1] is not None:
                loop.call_soon(entry[1], None, entry[2])
        if writes:
            self._arm_write_watcher()
            return
        self._writes = ()
        if self._write_watcher is not None and self._write_watcher.active:
            self._write_watcher.stop()
        if self._shut_wr_pending:
            self._shut_wr_pending = False
            self._do_shutdown_wr()

    def _arm_write_watcher(self) -> None:
        if self._write_watcher is None:
            self._write_watcher = self._watcher(WRITE)
        if not self._write_watcher.active:
            self._write_watcher.start(self._flush_writes)

    def _fail_writes(self, exc: OSError) -> None:
        self._write_error = exc
        if self._write_watcher is not None:
            self._write_watcher.stop()
        while self._writes:
            _, cb, _total = self._writes.popleft()
            if cb is not None:
                self.loop.call_soon(cb, exc, 0)
        self._writes = ()

    @property
    def write_queue_bytes(self) -> int:
        """Bytes accepted by ``write()`` and not yet handed to the kernel."""
        return sum(len(e[0]) for e in self._writes)

    # ------------------------------------------------------------------ shutdown / close
    def shutdown(self, how: int) -> None:
        """Half-close (loop-only). ``SHUT_WR`` waits for queued writes, then sends FIN."""
        self._require_open()
        if how not in (_socket.SHUT_RD, _socket.SHUT_WR, _socket.SHUT_RDWR):
            raise ValueError(f"how must be SHUT_RD, SHUT_WR or SHUT_RDWR, got {how!r}")
        if how in (_socket.SHUT_RD, _socket.SHUT_RDWR) and not self._read_shut:
            self._read_shut = True
            self.unsubscribe_readable()
            self._shutdown_syscall(_socket.SHUT_RD)
        if how in (_socket.SHUT_WR, _socket.SHUT_RDWR) and not (self._write_shut
                                                                 or self._shut_wr_pending):
            if self._writes:
                self._shut_wr_pending = True
            else:
                self._do_shutdown_wr()

    def _do_shutdown_wr(self) -> None:
        self._write_shut = True
        self._shutdown_syscall(_socket.SHUT_WR)

    def _shutdown_syscall(self, how: int) -> None:
        try:
            _C.shutdown(self._sock, how)
        except OSError as exc:
            if exc.errno != errno.ENOTCONN:  # the peer already reset: nothing to half-close
                raise

    def close(self) -> None:
        """Close now (loop-only; idempotent). Pending writes and a pending connect complete
        later with ``ECANCELED``."""
        if self.state is SocketState.CLOSED:
            return
        if not self.loop.closed:
            self.loop.check_thread("Socket.close")
        cancelled = os_error(errno.ECANCELED, "socket closed")
        if self._writes:
            self._fail_writes(cancelled)
        if self._connect_cb is not None:
            self.loop.call_soon(self._connect_done, cancelled)
        self._accept_cb = None
        self._close_now()

    def detach(self) -> int:
        """Leave the loop and hand the fd to the caller (loop-only); the socket is CLOSED.

        Only for a quiet socket: nothing queued for writing, no connect in flight.
        """
        if self.state is SocketState.CLOSED:
            raise os_error(errno.EBADF, "socket is closed")
        if self._writes or self._connect_cb is not None:
            raise os_error(errno.EBUSY, "detach with writes or a connect in flight")
        for w in (self._read_watcher, self._write_watcher):
            if w is not None:
                w.stop()
        self._accept_cb = None
        if not self.loop.closed:
            self.loop.closing_fd(self._fd)
        self.state = SocketState.CLOSED
        return _C.detach(self._sock)

    def _close_now(self) -> None:
        if self.state is SocketState.CLOSED:
            return
        for w in (self._read_watcher, self._write_watcher):
            if w is not None:
                w.stop()
        if self._connect_timer is not None:
            self._connect_timer.cancel()
            self._connect_timer = None
        if not self.loop.closed:
            self.loop.closing_fd(self._fd)
        self.state = SocketState.CLOSED
        if self.owns_fd:
            _C.close(self._sock)

    def __repr__(self) -> str:
        return f"<Socket fd={self._fd} {self.options.domain.name} {self.state.value}>"
