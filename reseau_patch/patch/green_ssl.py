"""TLS for patched code: ``ctx.wrap_socket(sock)`` drives a sans-IO TLS engine from the
calling thread, the way :class:`GreenSocket` drives the kernel.

Nothing replaces ``ssl.SSLContext``: the hook is the class attribute
``SSLContext.sslsocket_class``, which ``SSLContext.wrap_socket`` looks up at call time. So
contexts made *before* ``patch_all`` (urllib3 builds them at import) use it too, the
caller's context is used unchanged, and gevent's "ssl imported before patching"
RecursionError class cannot happen.

:class:`ReseauSSLSocket` is the stdlib's ``ssl.SSLSocket`` (inherited, line for line)
except where the stdlib's C object would do socket I/O: its ``_sslobj`` is the engine's C
``_ssl._SSLSocket`` over memory BIOs, made with ``owner=self``, so ``getpeercert``,
``get_verified_chain``, ``cipher``, ``session``... and OpenSSL callbacks (which get the
socket and run in the calling greenlet, so they may sleep) behave as in the stdlib.

Owned by no loop (DESIGN.md): a read first takes what the engine already decrypted, then
reads the kernel directly (non-blocking) into the engine, and parks on the *calling*
thread's loop only on ``EAGAIN``. Blocking sockets read large pieces (256 KiB);
a non-blocking socket reads record by record, as OpenSSL does on a real socket, so the
fd's readiness stays what the stdlib's would be (asyncore-style servers poll it). A write
encrypts at most ``_WRITE_CHUNK`` bytes at a time and sends from the calling thread.

Threads: any thread may call; engine calls and the non-blocking syscalls around them run
under one per-socket lock, never held across a wait, so one thread can sit in ``recv``
while another writes. Ciphertext leaves in engine order through ``_rp_out`` (one FIFO
sent only under the lock). The lock is a real one, but an OpenSSL callback may switch
greenlets while holding it, so contenders poll it briefly and yield to their hub.
"""

from __future__ import annotations

import _socket
import errno
import ssl
from typing import Any

from gevent.monkey import get_original

from ..io.tls_engine import BIO_STEP, RECV_STEP, TlsEngine
from .green_socket import GreenSocket, _yield_to_hub, byte_view
from .waiting import READ, WRITE

__all__ = ["ReseauSSLSocket", "install", "uninstall"]

_original_sslsocket_class = ssl.SSLContext.sslsocket_class
_allocate_lock = get_original("_thread", "allocate_lock")
_c_recv_into = _socket.socket.recv_into
_c_send = _socket.socket.send
_c_setblocking = _socket.socket.setblocking
_SSLError = ssl.SSLError
_WantRead = ssl.SSLWantReadError
_SSL_ERROR_EOF = ssl.SSL_ERROR_EOF

#: Kernel reads of a blocking socket ask for this much (at least 64 KiB, as the issue asks),
#: the size of the shared buffers.
_READ_MAX = RECV_STEP
#: Plaintext encrypted per step: bounds the ciphertext the outgoing BIO holds.
_WRITE_CHUNK = BIO_STEP
#: Reusable receive buffers; list pop/append are atomic, so threads never share one.
_RECV_BUFFERS: list[bytearray] = []
_UNSET: Any = object()


def _want_read() -> ssl.SSLWantReadError:
    return ssl.SSLWantReadError(int(ssl.SSL_ERROR_WANT_READ),
                                "The operation did not complete (read)")


def _eof_on_write() -> ssl.SSLEOFError:
    """What the stdlib's SSL write raises when the kernel says EPIPE or ECONNRESET."""
    return ssl.SSLEOFError(int(ssl.SSL_ERROR_EOF),
                           "EOF occurred in violation of protocol (_ssl.c:2427)")


def _want_write() -> ssl.SSLWantWriteError:
    return ssl.SSLWantWriteError(int(ssl.SSL_ERROR_WANT_WRITE),
                                 "The operation did not complete (write)")


class ReseauSSLSocket(ssl.SSLSocket, GreenSocket):
    """``ssl.SSLSocket`` after ``patch_all()`` (see the module docstring)."""

    #: None when there is no TLS (unconnected, closed, shut down or unwrapped), exactly
    #: when the stdlib's ``_sslobj`` is None.
    _rp_engine: TlsEngine | None = None
    #: Ciphertext taken from the engine that the kernel has not accepted yet (from
    #: ``_rp_out_pos`` on); touched only under ``_rp_lock``.
    _rp_out = b""
    _rp_out_pos = 0

    @classmethod
    def _create(cls, sock: Any, server_side: bool = False,
                do_handshake_on_connect: bool = True, suppress_ragged_eofs: bool = True,
                server_hostname: str | None = None, context: ssl.SSLContext | None = None,
                session: ssl.SSLSession | None = None) -> ReseauSSLSocket:
        # ssl.SSLSocket._create, with the engine where the stdlib wraps the socket.
        if sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_TYPE) != _socket.SOCK_STREAM:
            raise NotImplementedError("only stream sockets are supported")
        if server_side:
            if server_hostname:
                raise ValueError("server_hostname can only be specified in client mode")
            if session is not None:
                raise ValueError("session can only be specified in client mode")
        if context.check_hostname and not server_hostname:
            raise ValueError("check_hostname requires server_hostname")
        kwargs = dict(family=sock.family, type=sock.type, proto=sock.proto,
                      fileno=sock.fileno())
        self = cls.__new__(cls, **kwargs)
        GreenSocket.__init__(self, **kwargs)
        self._rp_lock = _allocate_lock()
        sock_timeout = sock.gettimeout()
        # Plaintext a plain patched socket read past an earlier unwrap(): TLS bytes now.
        early = getattr(sock, "_rp_prefix", b"")
        sock.detach()  # a blocking socket's detach() hands its fd out blocking again
        _c_setblocking(self, False)

        self._context = context
        self._session = session
        self._closed = False
        self._sslobj = None
        self.server_side = server_side
        self.server_hostname = context._encode_hostname(server_hostname)
        self.do_handshake_on_connect = do_handshake_on_connect
        self.suppress_ragged_eofs = suppress_ragged_eofs

        try:
            self.getpeername()
        except OSError as e:
            if e.errno != errno.ENOTCONN:
                raise
            connected = False
            blocking = self.getblocking()
            self.setblocking(False)
            try:
                notconn_pre_handshake_data = self.recv(1)
            except OSError as e:
                if e.errno not in (errno.ENOTCONN, errno.EINVAL):
                    raise
                notconn_pre_handshake_data = b""
            self.setblocking(blocking)
            if notconn_pre_handshake_data:
                # gh-108310 (3.11.5): data that arrived before the handshake of a socket
                # that is closed must not pass for TLS-protected data.
                reason = "Closed before TLS handshake with data in recv buffer."
                err = ssl.SSLError(e.errno, reason)
                err.reason = reason
                err.library = None
                try:
                    self.close()
                except OSError:
                    pass
                try:
                    raise err
                finally:
                    err = None
        else:
            connected = True

        self.settimeout(sock_timeout)
        self._connected = connected
        if connected:
            try:
                self._rp_start(early)
                if do_handshake_on_connect:
                    if sock_timeout == 0.0:
                        raise ValueError("do_handshake_on_connect should not be specified "
                                         "for non-blocking sockets")
                    self.do_handshake()
            except BaseException:  # also gevent.Timeout: the fd is ours, close it
                self.close()
                raise
        return self

    def _rp_start(self, early: bytes = b"") -> None:
        engine = TlsEngine(self._context, server_side=self.server_side,
                           server_hostname=self.server_hostname, session=self._session,
                           owner=self)
        if early:
            engine.receive_data(early)
            self._rp_prefix = b""
        self._rp_engine = engine
        self._sslobj = engine.sslobj

    # ------------------------------------------------------------------ engine + kernel
    def _rp_acquire(self) -> None:
        lock = self._rp_lock
        if not lock.acquire(False):
            # Held by another thread (for microseconds) or by a greenlet of ours that an
            # OpenSSL callback switched away from: wait a little, then let it run.
            while not lock.acquire(True, 0.001):
                _yield_to_hub()

    def _rp_flush(self, engine: TlsEngine) -> bool:
        """Give the kernel the engine's ciphertext without waiting; True when all is out.
        Caller holds the lock."""
        out, pos = self._rp_out, self._rp_out_pos
        more = engine.data_to_send()
        if more:
            out = more if pos >= len(out) else out[pos:] + more
            pos = 0
        try:
            while pos < len(out):
                try:
                    pos += _c_send(self, memoryview(out)[pos:] if pos else out)
                except (BlockingIOError, InterruptedError):
                    break
                except (BrokenPipeError, ConnectionResetError):
                    raise _eof_on_write() from None
        finally:
            if pos >= len(out):
                out, pos = b"", 0
            self._rp_out, self._rp_out_pos = out, pos
        return not out

    def _rp_fill(self, engine: TlsEngine, nonblocking: bool) -> int:
        """Read the kernel into the engine without waiting: bytes read, 0 at EOF (given
        to the engine), -1 on EAGAIN. Caller holds the lock."""
        if engine.eof_received:
            return 0
        # Non-blocking: no further than this record (see the module doc). Blocking: as
        # much as the kernel has, up to the buffer (fewer, larger pieces cost less CPU).
        size = engine.bytes_needed() if nonblocking else _READ_MAX
        buf = _RECV_BUFFERS.pop() if _RECV_BUFFERS else bytearray(_READ_MAX)
        try:
            n = _c_recv_into(self, buf, size)
            if n:
                engine.receive_data(memoryview(buf)[:n])
        except (BlockingIOError, InterruptedError):
            return -1
        except ConnectionResetError:
            n = 0  # as the stdlib's reader: the data that came first, then EOF
        finally:
            _RECV_BUFFERS.append(buf)
        if not n:
            engine.receive_eof()
        return n

    def _rp_send_alert(self, engine: TlsEngine) -> None:
        """After a TLS failure: the alert OpenSSL wrote goes out, as the stdlib's would.
        Caller holds the lock."""
        try:
            self._rp_flush(engine)
        except OSError:
            pass

    def _rp_wait(self, events: int, deadline: float | None, what: str) -> None:
        try:
            self._wait(events, deadline)
        except TimeoutError:
            raise TimeoutError(what) from None

    def _rp_pull(self, engine: TlsEngine, n: int, buffer: Any) -> Any:
        """Plaintext from the engine (into ``buffer``, or as bytes when it is None), fed
        from the kernel until there is some."""
        nonblocking = self._rp_timeout == 0.0
        lock = self._rp_lock
        deadline = _UNSET
        while True:
            if not lock.acquire(False):
                self._rp_acquire()
            try:
                try:
                    if buffer is None:
                        return engine.read(n)
                    # Several records per call (the stdlib's read gives one): fewer calls
                    # for a reader with a large buffer. An error met after the first
                    # record is raised by the next read, where the stdlib would meet it.
                    return engine.read_available(buffer, n)
                except _WantRead:
                    pass
                if self._rp_out or engine.outgoing_pending():
                    try:  # a key update or post-handshake answer: best effort
                        self._rp_flush(engine)
                    except OSError:
                        pass  # the read below sees how the connection ended
                got = self._rp_fill(engine, nonblocking)
            finally:
                lock.release()
            if got >= 0:
                continue
            if nonblocking:
                raise _want_read()
            if deadline is _UNSET:
                deadline = self._deadline()
            self._rp_wait(READ, deadline, "The read operation timed out")

    def _rp_push(self, engine: TlsEngine, data: Any, everything: bool) -> int:
        """Encrypt and send ``data``: all of it (blocking), or one chunk that the kernel
        or ``_rp_out`` took (non-blocking; ``SSLWantWriteError`` if neither can)."""
        view = byte_view(data)
        total = len(view)
        nonblocking = self._rp_timeout == 0.0
        done = 0
        deadline = _UNSET
        lock = self._rp_lock
        while True:
            if not lock.acquire(False):
                self._rp_acquire()
            try:
                clear = self._rp_flush(engine)
                while clear:
                    if done >= total:
                        return total
                    chunk = view[done:done + _WRITE_CHUNK]
                    engine.write(chunk)
                    done += len(chunk)
                    clear = self._rp_flush(engine)
                    if nonblocking and not everything:
                        return done  # what did not fit waits in _rp_out, sent first next
            finally:
                lock.release()
            if nonblocking:
                raise _want_write()
            if deadline is _UNSET:
                deadline = self._deadline()
            self._rp_wait(WRITE, deadline, "The write operation timed out")

    def _rp_handshake(self, engine: TlsEngine, timeout: float | None) -> None:
        deadline = _UNSET
        # Whether the engine got ciphertext since its last "want read": if not, stepping
        # OpenSSL again cannot advance, so after a wait the kernel is read first.
        fed = True
        done = False
        while True:
            self._rp_acquire()
            try:
                if fed and not done:
                    try:
                        engine.do_handshake()  # callbacks run here, in the calling greenlet
                        done = True
                    except _WantRead:
                        fed = False
                    except BaseException:
                        self._rp_send_alert(engine)
                        raise
                clear = self._rp_flush(engine)
                got = 1
                if not done and clear:
                    got = self._rp_fill(engine, timeout == 0.0)
            finally:
                self._rp_lock.release()
            if done and clear:
                return
            if clear and got >= 0:
                fed = True
                continue
            events = WRITE if not clear else READ
            if timeout == 0.0:
                raise _want_write() if events == WRITE else _want_read()
            if deadline is _UNSET:
                deadline = self._deadline() if timeout is not None else None
            self._rp_wait(events, deadline, "_ssl.c:989: The handshake operation timed out")

    def _rp_pending(self) -> int:
        """Bytes held in user space that the fd no longer shows (for the patched select):
        decrypted plaintext and ciphertext read ahead; after unwrap, the plain prefix."""
        engine = self._rp_engine
        if engine is None:
            return len(self._rp_prefix)
        return engine.pending() + engine.incoming_pending()

    # ------------------------------------------------------------------ stdlib API
    def do_handshake(self, block: bool = False) -> None:
        self._check_connected()
        engine = self._rp_engine
        timeout = self._rp_timeout
        if engine is None:  # closed or unwrapped: the stdlib's errors, in its order
            try:
                self._sslobj.do_handshake()  # AttributeError: no TLS
            finally:
                self.settimeout(timeout)  # on a closed socket, EBADF replaces it
        self._rp_handshake(engine, None if timeout == 0.0 and block else timeout)

    def _real_connect(self, addr: Any, connect_ex: bool) -> int | None:
        if self.server_side:
            raise ValueError("can't connect in server-side mode")
        if self._connected or self._sslobj is not None:
            raise ValueError("attempt to connect already-connected SSLSocket!")
        self._rp_start()
        try:
            if connect_ex:
                rc = GreenSocket.connect_ex(self, addr)
            else:
                rc = None
                GreenSocket.connect(self, addr)
            if not rc:
                self._connected = True
                if self.do_handshake_on_connect:
                    self.do_handshake()
            return rc
        except (OSError, ValueError):
            self._rp_engine = None
            self._sslobj = None
            raise

    def read(self, len: int = 1024, buffer: Any = None) -> Any:  # noqa: A002
        """Read up to ``len`` bytes; ``b""`` (0) at EOF."""
        self._checkClosed()
        engine = self._rp_engine
        if engine is None:
            raise ValueError("Read on closed or unwrapped SSL socket.")
        return self._rp_read(engine, len, buffer)

    def _rp_read(self, engine: TlsEngine, len: int, buffer: Any) -> Any:  # noqa: A002
        try:
            if not engine.handshake_done:
                self._rp_handshake(engine, self._rp_timeout)
            got = self._rp_pull(engine, len, buffer)
        except _SSLError as x:
            if x.args[0] == _SSL_ERROR_EOF and self.suppress_ragged_eofs:
                got = 0 if buffer is not None else b""
            else:
                raise
        if not got and len != 0:
            _yield_to_hub()  # see green_socket._yield_to_hub
        return got

    def recv_into(self, buffer: Any, nbytes: int | None = None, flags: int = 0) -> int:
        """``ssl.SSLSocket.recv_into`` without its two extra calls on the hot path."""
        engine = self._rp_engine
        if engine is None or flags:
            return ssl.SSLSocket.recv_into(self, buffer, nbytes, flags)  # its errors
        if nbytes is None:
            if buffer is not None:  # bytes, not items; a __len__ of the buffer's own is ignored
                with memoryview(buffer) as view:
                    nbytes = view.nbytes
            nbytes = nbytes or 1024
        return self._rp_read(engine, nbytes, buffer)

    def write(self, data: Any) -> int:
        """Write all of ``data`` (blocking) or what fits (non-blocking)."""
        self._checkClosed()
        engine = self._rp_engine
        if engine is None:
            raise ValueError("Write on closed or unwrapped SSL socket.")
        if not engine.handshake_done:
            self._rp_handshake(engine, self._rp_timeout)
        return self._rp_push(engine, data, False)

    def send(self, data: Any, flags: int = 0) -> int:
        self._checkClosed()
        if self._rp_engine is None:
            return GreenSocket.send(self, data, flags)
        if flags != 0:
            raise ValueError(
                f"non-zero flags not allowed in calls to send() on {self.__class__}")
        return self.write(data)

    def sendall(self, data: Any, flags: int = 0) -> None:
        self._checkClosed()
        engine = self._rp_engine
        if engine is None:
            return GreenSocket.sendall(self, data, flags)
        if flags != 0:
            raise ValueError(
                f"non-zero flags not allowed in calls to sendall() on {self.__class__}")
        view = memoryview(data)  # the stdlib's sendall makes one: its TypeError message
        if not engine.handshake_done:
            self._rp_handshake(engine, self._rp_timeout)
        self._rp_push(engine, view, True)
        return None

    def unwrap(self) -> ReseauSSLSocket:
        """close_notify both ways, then this socket is the plain connection again; bytes
        that followed the peer's close_notify are served first by plain reads."""
        engine = self._rp_engine
        if engine is None:
            raise ValueError("No SSL wrapper around " + str(self))
        timeout = self._rp_timeout
        deadline = _UNSET
        while True:
            self._rp_acquire()
            try:
                try:
                    engine.unwrap()
                    done = True
                except _WantRead:
                    done = False
                clear = self._rp_flush(engine)
                got = 1
                if not done and clear:
                    # Record by record: what follows close_notify is the next protocol's.
                    got = self._rp_fill(engine, True)
            finally:
                self._rp_lock.release()
            if done and clear:
                break
            if clear and got >= 0:
                continue
            events = WRITE if not clear else READ
            if timeout == 0.0:
                raise _want_write() if events == WRITE else _want_read()
            if deadline is _UNSET:
                deadline = self._deadline()
            self._rp_wait(events, deadline, "The read operation timed out")
        self._rp_prefix = engine.unread_data() + self._rp_prefix
        self._rp_engine = None
        self._sslobj = None
        return self

    def shutdown(self, how: int) -> None:
        engine = self._rp_engine
        if engine is not None and how != _socket.SHUT_RD and self._rp_out:
            self._rp_acquire()
            try:
                self._rp_flush(engine)  # ciphertext a non-blocking write left queued
            except OSError:
                pass
            finally:
                self._rp_lock.release()
        self._rp_engine = None
        ssl.SSLSocket.shutdown(self, how)

    def _real_close(self) -> None:
        self._rp_engine = None
        ssl.SSLSocket._real_close(self)

    def detach(self) -> int:
        self._rp_engine = None
        self._sslobj = None
        return GreenSocket.detach(self)


def install() -> None:
    """Route every ``SSLContext.wrap_socket`` through :class:`ReseauSSLSocket`."""
    from gevent.monkey.api import patch_item

    patch_item(ssl.SSLContext, "sslsocket_class", ReseauSSLSocket)


def uninstall() -> None:
    ssl.SSLContext.sslsocket_class = _original_sslsocket_class
