"""TLS for patched code: ``ctx.wrap_socket(sock)`` runs our TLS channel handler.

Nothing replaces ``ssl.SSLContext``: the hook is the class attribute
``SSLContext.sslsocket_class``, which ``SSLContext.wrap_socket`` looks up at call time. So
contexts made *before* ``patch_all`` (urllib3 builds them at import) use it too, the
caller's context is used unchanged (its verify mode, CA store, ALPN, SNI callback), and
gevent's "ssl imported before patching" RecursionError class cannot happen.

The wrapped connection is a channel ``SocketHandler → TlsHandler → TCPSocket`` on the
calling thread's loop; :class:`ReseauSSLSocket` is the stdlib-shaped face of that
``TCPSocket`` (on-demand reads: ciphertext is pulled only when someone reads). Errors are
the ``ssl`` module's own. The fd stays owned by this socket object, as in the stdlib.
"""

from __future__ import annotations

import _socket
import errno
import ssl
import threading
import time
from typing import Any

from gevent import get_hub
from gevent import sleep as gevent_sleep
from gevent.monkey import get_original

from ..io.channel import Channel, ChannelState
from ..io.event_loop import EventLoop, LoopThreadError
from ..io.socket import Socket as IoSocket
from ..io.socket_handler import SocketHandler
from ..io.tls import TlsHandler, TlsState
from ..sockets.parking import TIMED_OUT, Parker, current_io_loop
from ..sockets.tcp import TCPSocket
from ..sockets.tcp import _State as _TCPState
from .green_socket import GreenSocket, _yield_to_hub

__all__ = ["ReseauSSLSocket", "install", "uninstall"]

_TCP_CONNECTED, _TCP_CLOSED = _TCPState.CONNECTED, _TCPState.CLOSED
#: Longest wait for the old loop to leave a callback of a connection being handed over.
_HANDOVER_WAIT = 1.0
_real_sleep = get_original("time", "sleep")  # releases the GIL without the hub


class _Busy(LoopThreadError):
    """A TLS socket cannot move to this thread yet: another thread's call holds it."""


def _hub_io_loop() -> EventLoop | None:
    """The io loop under this thread's hub (made on first use, as the stdlib-shaped calls
    that reach here are allowed to)."""
    return getattr(get_hub().loop, "io_loop", None)

_original_sslsocket_class = ssl.SSLContext.sslsocket_class
_READ_CHUNK = 64 * 1024


def _want_read() -> ssl.SSLWantReadError:
    return ssl.SSLWantReadError(ssl.SSL_ERROR_WANT_READ,
                                "The operation did not complete (read)")


class ReseauSSLSocket(ssl.SSLSocket, GreenSocket):
    """``ssl.SSLSocket`` whose TLS runs in a Reseau channel (see the module docstring)."""

    _rp_tcp: TCPSocket | None = None
    _rp_tls: TlsHandler | None = None

    @classmethod
    def _create(cls, sock: Any, server_side: bool = False,
                do_handshake_on_connect: bool = True, suppress_ragged_eofs: bool = True,
                server_hostname: str | None = None, context: ssl.SSLContext | None = None,
                session: ssl.SSLSession | None = None) -> ReseauSSLSocket:
        if sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_TYPE) != _socket.SOCK_STREAM:
            raise NotImplementedError("only stream sockets are supported")
        if server_side:
            if server_hostname:
                raise ValueError("server_hostname can only be specified in server mode")
            if session is not None:
                raise ValueError("session can only be specified in client mode")
        if context.check_hostname and not server_hostname:
            raise ValueError("check_hostname requires server_hostname")
        kwargs = dict(family=sock.family, type=sock.type, proto=sock.proto,
                      fileno=sock.fileno())
        self = cls.__new__(cls, **kwargs)
        GreenSocket.__init__(self, **kwargs)
        # One entry per read/write/handshake in progress, from any thread (list append and
        # pop are atomic under the GIL): a channel never moves under another thread's call.
        self._rp_ops: list[None] = []
        timeout = sock.gettimeout()
        sock.detach()
        self._context = context
        self._session = session
        self._closed = False
        self._sslobj = None
        self.server_side = server_side
        self.server_hostname = context._encode_hostname(server_hostname)
        self.do_handshake_on_connect = do_handshake_on_connect
        self.suppress_ragged_eofs = suppress_ragged_eofs
        self.settimeout(timeout)
        try:
            self.getpeername()
        except OSError as exc:
            if exc.errno != errno.ENOTCONN:
                raise
            connected = False
        else:
            connected = True
        self._connected = connected
        if connected:
            try:
                self._rp_start()
                if do_handshake_on_connect:
                    self.do_handshake()
            except BaseException:
                self.close()
                raise
        return self

    # ------------------------------------------------------------------ the channel
    def _rp_start(self) -> None:
        tls = TlsHandler(self._context, server_side=self.server_side,
                         server_hostname=self.server_hostname, timeout=None,
                         session=self._session, notify_on_close=False)
        self._rp_build(current_io_loop(), tls, None)
        tls.start()

    def _rp_build(self, loop: EventLoop, tls: TlsHandler, old: TCPSocket | None) -> TCPSocket:
        """Install ``SocketHandler → tls → TCPSocket`` on ``loop`` (continuing ``old``'s
        stream if given) and make it this socket's channel."""
        io_sock = IoSocket(loop, sock=self, owns_fd=False)
        channel = Channel(loop, back_pressure=True)
        channel.activate()
        channel.add_handler(SocketHandler(io_sock))
        channel.add_handler(tls)
        tcp = TCPSocket(loop, on_demand=True)
        if old is not None:
            tcp.inherit(old)
        tcp.attach(channel)
        channel.add_handler(tcp)

        def on_shutdown(ch: Channel, err: BaseException | None) -> None:
            tcp.on_channel_shutdown(ch, err)
            ch.destroy()

        channel.on_shutdown = on_shutdown
        self._rp_tcp, self._rp_tls = tcp, tls
        self._sslobj = tls.sslobj  # what stdlib helpers (and users) inspect
        return tcp

    def _rp_channel_tcp(self, mine: int = 1) -> TCPSocket:
        """The TCPSocket, moved to this thread's loop if needed; ``mine`` is how many of the
        calls in progress are the caller's own (see ``_rp_ops``)."""
        tcp = self._rp_tcp
        if tcp is None:
            if self._closed or self.fileno() < 0:
                raise OSError(errno.EBADF, "Bad file descriptor")
            raise OSError(errno.ENOTCONN, "Socket is not connected")
        if tcp._loop is not _hub_io_loop():
            # Compared by loop, not thread id: a finished thread's id is soon reused.
            tcp = self._rp_move_here(tcp, mine)
        tcp._timeout = self._rp_timeout
        return tcp

    def _rp_channel_tcp_when_free(self) -> TCPSocket:
        """As ``_rp_channel_tcp``, but wait (green, so this thread's loop runs, and within
        the socket's timeout) while another thread's call holds the channel elsewhere."""
        deadline = None if self._rp_timeout is None else time.monotonic() + self._rp_timeout
        while True:
            try:
                return self._rp_channel_tcp()
            except _Busy:
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError("The read operation timed out") from None
                gevent_sleep(0.001)

    def _rp_move_here(self, old: TCPSocket, mine: int) -> TCPSocket:
        """Continue the connection on the calling thread's loop (a pooled connection picked
        up by another thread, a server socket accepted in one thread and served in another).

        Only a quiet connection moves: no reader, writer or handshake waiting on it, every
        write on the wire (else :class:`_Busy`); one whose channel already shut down raises
        the error it ended with. The old loop is not asked (its thread may be blocked anywhere):
        its handlers are frozen from here, a callback already running is waited for, and
        the SSL object, its buffered ciphertext and the unread plaintext move to a new
        channel. The old loop only learns to drop its read watcher.
        """
        tls, ch = self._rp_tls, old.channel
        sh = ch.first.handler if ch is not None and ch.first is not None else None
        if tls is None or not isinstance(sh, SocketHandler):
            raise OSError(errno.EBADF, "Bad file descriptor")
        owner = old._loop

        def busy_elsewhere() -> str | None:
            """Why it cannot move now; a reason ending in "(for now)" passes."""
            if old._state is not _TCP_CONNECTED or old._shut_down \
                    or ch.state is not ChannelState.ACTIVE:
                return "its channel is shutting down"
            if tls.state is TlsState.FAILED:
                return "its TLS handshake failed"
            if len(self._rp_ops) > mine or old._reader.waiting or old._writer.waiting \
                    or old._closer.waiting or tls._callbacks:
                return "another thread is using it (for now)"
            if old._in_flight or sh.socket._writes or tls._pending_writes:
                return "writes are queued on the other thread's loop (for now)"
            return None

        why = busy_elsewhere()
        if why is None:
            sh.freeze()
            tls.freeze()
            deadline = time.monotonic() + _HANDOVER_WAIT
            while (sh.busy or tls.busy) and time.monotonic() < deadline:
                _real_sleep(0.0002)  # the other thread finishes its callback (GIL released)
            why = "its loop is still running a callback" if sh.busy or tls.busy else \
                busy_elsewhere()
            if why is not None:  # changed under us: give it back untouched
                sh.frozen = False
                tls._frozen = False
        if why is not None:
            if not why.endswith("(for now)"):
                # The connection is over: report how it ended, as the stdlib's call would,
                # without waiting on a loop whose thread may never run again.
                raise old._write_error or old._read_error or tls.error or OSError(
                    errno.EPIPE, f"Broken pipe ({why})")
            raise _Busy(f"{self!r} cannot move to thread {threading.get_ident()}: {why} "
                        f"(loop of thread {owner._owner})")
        new_tls = TlsHandler.take_over(tls)
        tcp = self._rp_build(current_io_loop(), new_tls, old)
        old._state = _TCP_CLOSED  # the abandoned stream refuses use; its channel is dropped
        if not owner.closed:
            owner.post(sh.socket.unsubscribe_readable)
        tcp.channel.trigger_read()  # the old reader may have stopped mid-handshake: read on
        new_tls.resume()
        return tcp

    def _rp_pending(self) -> int:
        """Bytes held in user space that the fd no longer shows: plaintext buffered in the
        TCPSocket or the SSL object, and ciphertext the TLS handler already pulled in
        (possibly a partial record: then a blocking read waits for the rest)."""
        tcp, tls = self._rp_tcp, self._rp_tls
        if tcp is None or tls is None:
            return GreenSocket._rp_pending(self)  # unwrapped: what followed close_notify
        return tcp.pending() + tls.sslobj.pending() + tls._in.pending

    # ------------------------------------------------------------------ handshake
    def do_handshake(self, block: bool = False) -> None:
        ops = self._rp_ops
        ops.append(None)
        try:
            self._rp_do_handshake(block)
        finally:
            ops.pop()

    def _rp_do_handshake(self, block: bool) -> None:
        tcp = self._rp_channel_tcp_when_free()
        tls = self._rp_tls
        if tls.state is TlsState.NEGOTIATED:
            return
        if tls.state is TlsState.FAILED:
            raise tls.error
        timeout = self._rp_timeout
        if timeout == 0.0 and not block:
            raise _want_read()
        parker = Parker(self, "handshake")
        result: list[BaseException | None] = []

        def done(_h: TlsHandler, err: BaseException | None) -> None:
            result.append(err)
            parker.wake()

        tls.add_negotiation_callback(done)
        deadline = None if timeout is None or block else time.monotonic() + timeout
        while not result:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if parker.park(tcp._loop, remaining) is TIMED_OUT and not result:
                tcp.channel.shutdown(TimeoutError("The handshake operation timed out"))
                raise TimeoutError("_ssl.c:983: The handshake operation timed out")
        if result[0] is not None:
            raise result[0]

    def connect(self, address: Any) -> None:
        self._rp_real_connect(address)

    def connect_ex(self, address: Any) -> int:
        try:
            self._rp_real_connect(address)
        except OSError as exc:
            if exc.errno is None:
                raise
            return exc.errno
        return 0

    def _rp_real_connect(self, address: Any) -> None:
        if self.server_side:
            raise ValueError("can't connect in server-side mode")
        if self._connected or self._rp_tcp is not None:
            raise ValueError("attempt to connect already-connected SSLSocket!")
        GreenSocket._connect(self, address)
        self._connected = True
        try:
            self._rp_start()
            if self.do_handshake_on_connect:
                self.do_handshake()
        except BaseException:
            self._rp_tcp = self._rp_tls = None
            self._sslobj = None
            raise

    # ------------------------------------------------------------------ reading
    def read(self, len: int = 1024, buffer: Any = None) -> Any:  # noqa: A002
        if self._rp_tcp is None and self._connected:
            raise ValueError("Read on closed or unwrapped SSL socket.")
        if buffer is not None:
            view = memoryview(buffer).cast("B")
            n = min(len, view.nbytes) if len else view.nbytes
            return self._rp_readinto(view[:n])
        buf = bytearray(len)
        n = self._rp_readinto(memoryview(buf))
        return bytes(buf[:n])

    def _rp_readinto(self, view: memoryview) -> int:
        ops = self._rp_ops
        ops.append(None)
        try:
            return self._rp_readinto_now(self._rp_channel_tcp_when_free(), view)
        finally:
            ops.pop()

    def _rp_readinto_now(self, tcp: TCPSocket, view: memoryview) -> int:
        if not view.nbytes:
            return 0
        if self._rp_timeout == 0.0 and not tcp.pending():
            if tcp._eof:
                return 0
            tcp._want = view.nbytes
            tcp._request()
            raise _want_read()
        try:
            n = tcp.readinto(view)
        except ssl.SSLEOFError:
            if not self.suppress_ragged_eofs:
                raise
            n = 0
        if not n:
            _yield_to_hub()  # see green_socket._yield_to_hub
        return n

    # Without a TLS channel (never connected, closed, or unwrapped) these are the plain
    # socket's, as in the stdlib, which falls back to socket.socket when _sslobj is None.
    def recv(self, buflen: int = 1024, flags: int = 0) -> bytes:
        if self._rp_tcp is None:
            return GreenSocket.recv(self, buflen, flags)
        if flags:
            raise ValueError(f"non-zero flags not allowed in calls to recv() on {type(self)}")
        return self.read(buflen)

    def recv_into(self, buffer: Any, nbytes: int | None = None, flags: int = 0) -> int:
        if self._rp_tcp is None:
            return GreenSocket.recv_into(self, buffer, nbytes or 0, flags)
        if flags:
            raise ValueError(
                f"non-zero flags not allowed in calls to recv_into() on {type(self)}")
        view = memoryview(buffer).cast("B")
        n = nbytes or view.nbytes
        return self._rp_readinto(view[:n])

    def recvfrom(self, buflen: int = 1024, flags: int = 0) -> Any:
        raise ValueError(f"recvfrom not allowed on instances of {type(self)}")

    def recvfrom_into(self, buffer: Any, nbytes: int | None = None, flags: int = 0) -> Any:
        raise ValueError(f"recvfrom_into not allowed on instances of {type(self)}")

    def recvmsg(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"recvmsg not allowed on instances of {type(self)}")

    def recvmsg_into(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"recvmsg_into not allowed on instances of {type(self)}")

    def pending(self) -> int:
        """Decrypted bytes ready to read without blocking (``SSLSocket.pending``)."""
        tcp, tls = self._rp_tcp, self._rp_tls
        if tcp is None or tls is None:
            return 0
        return tcp.pending() + tls.sslobj.pending()

    # ------------------------------------------------------------------ writing
    def write(self, data: Any) -> int:
        if self._rp_tcp is None and self._connected:
            raise ValueError("Write on closed or unwrapped SSL socket.")
        return self._rp_write(data)

    def send(self, data: Any, flags: int = 0) -> int:
        if self._rp_tcp is None:
            return GreenSocket.send(self, data, flags)
        if flags:
            raise ValueError(f"non-zero flags not allowed in calls to send() on {type(self)}")
        return self._rp_write(data)

    def sendall(self, data: Any, flags: int = 0) -> None:
        if self._rp_tcp is None:
            return GreenSocket.sendall(self, data, flags)
        if flags:
            raise ValueError(
                f"non-zero flags not allowed in calls to sendall() on {type(self)}")
        self._rp_write(data)

    def _rp_write(self, data: Any) -> int:
        ops = self._rp_ops
        ops.append(None)
        try:
            try:
                tcp = self._rp_channel_tcp()
            except _Busy:
                # Another thread is in a call on this socket (full duplex: it reads, we
                # write): the write runs on that thread's loop, which runs while it waits.
                return self._rp_write_via_owner(data)
            return tcp.write(data)
        finally:
            ops.pop()

    def _rp_write_via_owner(self, data: Any) -> int:
        tcp = self._rp_tcp
        owner, here = tcp._loop, current_io_loop()
        payload = bytes(data)  # ours: the caller may reuse its buffer once we return
        parker = Parker(self, "write")
        owner.post(tcp.write_from_loop, payload, lambda err: here.post(parker.wake, err))
        result = parker.park(here, self._rp_timeout)
        if result is TIMED_OUT:
            raise TimeoutError("The write operation timed out")  # the stdlib ssl message
        if result is not None:
            raise result
        return len(payload)

    def sendto(self, data: Any, flags_or_addr: Any, addr: Any = None) -> int:
        raise ValueError(f"sendto not allowed on instances of {type(self)}")

    def sendmsg(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"sendmsg not allowed on instances of {type(self)}")

    def sendfile(self, file: Any, offset: int = 0, count: int | None = None) -> int:
        return self._sendfile_use_send(file, offset, count)

    # ------------------------------------------------------------------ TLS facts
    def _rp_tls_or_none(self) -> TlsHandler | None:
        return self._rp_tls

    def getpeercert(self, binary_form: bool = False) -> Any:
        self._checkClosed()
        tls = self._rp_tls
        if tls is None or tls.state is not TlsState.NEGOTIATED:
            raise ValueError("handshake not done yet")
        return tls.getpeercert(binary_form)

    def selected_alpn_protocol(self) -> str | None:
        tls = self._rp_tls
        return tls.selected_alpn_protocol() if tls is not None else None

    def selected_npn_protocol(self) -> None:
        return None

    def cipher(self) -> Any:
        tls = self._rp_tls
        return tls.cipher() if tls is not None else None

    def shared_ciphers(self) -> Any:
        tls = self._rp_tls
        return tls.sslobj.shared_ciphers() if tls is not None else None

    def compression(self) -> Any:
        tls = self._rp_tls
        return tls.sslobj.compression() if tls is not None else None

    def version(self) -> str | None:
        tls = self._rp_tls
        return tls.version() if tls is not None else None

    def get_channel_binding(self, cb_type: str = "tls-unique") -> Any:
        tls = self._rp_tls
        return tls.sslobj.get_channel_binding(cb_type) if tls is not None else None

    @property
    def session(self) -> Any:
        tls = self._rp_tls
        return tls.sslobj.session if tls is not None else self._session

    @session.setter
    def session(self, session: Any) -> None:
        self._session = session
        if self._rp_tls is not None:
            self._rp_tls.sslobj.session = session

    @property
    def session_reused(self) -> Any:
        tls = self._rp_tls
        return tls.sslobj.session_reused if tls is not None else None

    @property
    def context(self) -> ssl.SSLContext:
        return self._context

    @context.setter
    def context(self, ctx: ssl.SSLContext) -> None:
        self._context = ctx
        if self._rp_tls is not None:
            self._rp_tls.sslobj.context = ctx

    def verify_client_post_handshake(self) -> None:
        tls = self._rp_tls
        if tls is None:
            raise ValueError("No SSL wrapper around " + str(self))
        tls.sslobj.verify_client_post_handshake()

    # ------------------------------------------------------------------ closing
    def unwrap(self) -> ReseauSSLSocket:
        """Exchange close_notify and go on as the plain connection (STARTTLS's reverse).

        The channel is taken off first, then the shutdown runs on the SSL object directly
        over the fd: no TCP FIN, and bytes that follow the peer's close_notify (the next
        protocol's) stay in the incoming BIO and are served first by later plain reads.
        Like the stdlib, this returns the socket itself, now without TLS: ``recv``/``send``
        are the plain socket's, ``read``/``write`` raise ``ValueError``, ``close`` closes.
        """
        if self._rp_tcp is None:
            raise ValueError("No SSL wrapper around " + str(self))
        tcp = self._rp_channel_tcp(mine=0)
        tls = self._rp_tls
        tcp.flush()
        self._rp_abort_channel()
        sslobj, incoming, outgoing = tls.sslobj, tls._in, tls._out
        while True:
            try:
                sslobj.unwrap()
                done = True
            except ssl.SSLWantReadError:
                done = False
            data = outgoing.read()
            if data:
                GreenSocket.sendall(self, data)
            if done:
                break
            data = GreenSocket.recv(self, 65536)
            if not data:
                break  # the peer closed without its close_notify: nothing more to wait for
            incoming.write(data)
        self._rp_prefix = incoming.read()
        return self

    def _rp_abort_channel(self) -> None:
        """Take the channel off the connection without sending anything more."""
        tcp, self._rp_tcp = self._rp_tcp, None
        self._rp_tls = None
        self._sslobj = None
        if tcp is None or tcp.channel is None or tcp._shut_down:
            return
        tcp.channel.shutdown(abort=True)
        deadline = time.monotonic() + 5
        while not tcp._shut_down and time.monotonic() < deadline:
            tcp._closer.park(tcp._loop, max(0.0, deadline - time.monotonic()))
        tcp._state = type(tcp._state).CLOSED

    def _rp_detach_channel(self) -> None:
        tcp = self._rp_tcp
        if tcp is not None and not tcp.closed and tcp._loop is not _hub_io_loop():
            try:
                tcp = self._rp_move_here(tcp, 0)
            except (LoopThreadError, OSError):
                # In use on its own thread (a reader blocked there): that loop aborts the
                # channel, so the reader wakes with an error instead of waiting on a
                # closed fd. Nothing more is sent.
                if tcp.channel is not None:
                    tcp.channel.shutdown(None, abort=True)  # any thread may call it
                tcp = None
        self._rp_tcp = None
        self._rp_tls = None
        self._sslobj = None
        if tcp is not None and not tcp.closed:
            try:
                tcp.close()
            except OSError:
                pass

    def shutdown(self, how: int) -> None:
        self._checkClosed()
        tcp = self._rp_tcp
        if tcp is not None and how in (_socket.SHUT_WR, _socket.SHUT_RDWR) and tcp.isopen \
                and tcp._loop is _hub_io_loop():
            # Another thread's writes are flushed by that thread (sendall waits for them).
            try:
                tcp.flush()
            except OSError:
                pass
        GreenSocket.shutdown(self, how)

    def _real_close(self) -> None:  # type: ignore[override]
        try:
            self._rp_detach_channel()
        finally:
            GreenSocket._real_close(self)  # the fd is closed even if the channel was not

    def detach(self) -> int:
        self._rp_tcp = None
        self._rp_tls = None
        self._sslobj = None
        return GreenSocket.detach(self)


def install() -> None:
    """Route every ``SSLContext.wrap_socket`` through :class:`ReseauSSLSocket`."""
    from gevent.monkey.api import patch_item

    patch_item(ssl.SSLContext, "sslsocket_class", ReseauSSLSocket)


def uninstall() -> None:
    ssl.SSLContext.sslsocket_class = _original_sslsocket_class
