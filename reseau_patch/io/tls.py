"""TLS as a channel handler: a thin driver of the sans-IO :class:`TlsEngine`.

The handler sits between the socket handler (left, ciphertext) and the application
(right, plaintext): ciphertext messages in → engine → plaintext messages right; writes
→ engine → ciphertext left. Contract (design brief §7.2, adapted to this channel):

* **Ownership.** ``process_read`` gives the ciphertext to the engine and releases the
  message at once. Everything the engine can decrypt is decrypted right away into fresh
  pool messages (the *backlog*), which this handler owns until it hands them right (the
  receiver then owns them). ``process_write`` encrypts the message, releases it, and sends
  the ciphertext left as one message that owns it; that message carries the original
  ``on_completion``, so a write completes once, after all its bytes reached the kernel.
  Writes made before the handshake completes are queued in order and sent after it
  (their completions then fail with the handshake error if it fails).
* **Windows** (back-pressure on). The application is handed at most its window; the rest
  of the backlog waits for ``increment_read_window``. This handler's ciphertext credit
  (its window, granted increments, ciphertext inside the engine and the plaintext backlog
  together) is kept at ``downstream window + 53 bytes per 16 KiB`` and never below two
  records. So memory stays bounded by the application's window, and the handshake, a
  record larger than that window and a partial record can always be read in full: no
  read pattern stalls this slot. Decrypting eagerly also means the engine holds no
  plaintext and no whole record when close_notify is sent (OpenSSL's ``SSL_shutdown``
  discards application records it reads while waiting for the peer's close_notify).
* **Order of callbacks.** A client starts with :meth:`TlsHandler.start`; a server starts at
  its first byte, and so does its handshake timeout. The negotiation callbacks run exactly
  once — on success before any application byte is delivered (so an ALPN hook can install
  the protocol handler first), on failure before the channel shuts down with the error.
* **EOF and errors.** Peer ``close_notify`` → ``process_read_eof`` to the right, after all
  data; the channel stays open for writing (TLS half-close). A peer that closes the TCP
  stream without ``close_notify`` → ``ssl.SSLEOFError``, exactly what ``SSLObject.read``
  raises for a truncated stream, as the channel's shutdown error; a transport error (a
  reset) is the shutdown error as is. Either comes after every byte decrypted before it.
  Every error is the stdlib's ``ssl`` exception (``SSLCertVerificationError`` with
  ``verify_message``, ...), or ``TimeoutError`` for the handshake timeout.
* **Shutdown.** ``process_write_eof`` and a graceful (error-free, non-abort) WRITE shutdown
  send ``close_notify``; an abort or an error does not, and neither does a graceful shutdown
  when the handler was made with ``notify_on_close=False`` (the stdlib's ``SSLSocket.close``
  never sends one; only ``unwrap`` does, and peers such as pyOpenSSL tell the two apart).
  A READ shutdown that is not an abort delivers the whole backlog, past the window (the
  channel allows that while its read direction shuts down: the application will never
  grant again, and the bytes were acknowledged by the peer's TCP).

Handler states (the engine has its own, drawn in :mod:`.tls_engine`)::

    IDLE --start() / a server's first byte--> HANDSHAKING --done--> NEGOTIATED
      |                                           |
      +------ handshake error, timeout, shutdown -+--> FAILED
"""

from __future__ import annotations

import enum
import errno
import ssl
from collections import deque
from collections.abc import Callable
from typing import Any

from .alpn import AlpnHandler, AlpnSelector
from .channel import Channel, ChannelHandler, ChannelSlot, ChannelTask, Direction, TaskStatus
from .message import LARGE_FRAGMENT, MAX_FRAGMENT, IoMessage
from .tls_engine import BIO_STEP, TlsEngine
from .tls_options import DEFAULT_TLS_TIMEOUT, TlsConnectionOptions, TlsContextOptions

__all__ = [
    "TLS_RECORD_OVERHEAD",
    "TlsClientSetup",
    "TlsHandler",
    "TlsServerSetup",
    "TlsState",
    "find_tls_handler",
]

#: Bytes a TLS record may add to a write (aws-c-io's ``TLS_EST_RECORD_OVERHEAD``).
TLS_RECORD_OVERHEAD = 53
#: Smallest ciphertext credit: two full records, so a record never waits for the app.
_CIPHERTEXT_FLOOR = 2 * (MAX_FRAGMENT + 2 * TLS_RECORD_OVERHEAD)

NegotiationCallback = Callable[["TlsHandler", BaseException | None], Any]


class TlsState(enum.Enum):
    IDLE = "idle"  # a client before start(), a server before its first byte
    HANDSHAKING = "handshaking"
    NEGOTIATED = "negotiated"
    FAILED = "failed"


class TlsHandler(ChannelHandler):
    """Client or server TLS in one channel slot; see the module docstring.

    ``context`` is used unchanged. ``server_hostname`` (clients) is the SNI name and the
    name the certificate must match when the context checks hostnames. OpenSSL callbacks
    (``sni_callback``) receive this handler; setting its :attr:`context` switches the
    connection's context, as on an ``ssl.SSLObject``.
    """

    def __init__(self, context: ssl.SSLContext, *, server_side: bool = False,
                 server_hostname: str | None = None,
                 timeout: float | None = DEFAULT_TLS_TIMEOUT,
                 on_negotiated: NegotiationCallback | None = None,
                 session: ssl.SSLSession | None = None,
                 notify_on_close: bool = True) -> None:
        # The engine raises the stdlib's ValueError for bad combinations (a client
        # context used server-side, check_hostname without a server name, ...).
        self.engine = TlsEngine(context, server_side=server_side,
                                server_hostname=None if server_side else server_hostname,
                                session=session, owner=self, track_records=False)
        self.server_side = server_side
        self.server_hostname = server_hostname
        self.timeout = timeout
        self.notify_on_close = notify_on_close
        self.state = TlsState.IDLE
        self.error: BaseException | None = None
        self.slot: ChannelSlot | None = None
        #: Loop times of the handshake's start and end (statistics).
        self.handshake_started: float | None = None
        self.handshake_finished: float | None = None
        #: True once the peer's close_notify was read.
        self.peer_closed = False
        self._callbacks: list[NegotiationCallback] = [on_negotiated] if on_negotiated else []
        self._reported = False
        self._timer: ChannelTask | None = None
        # Queues start as () and become deques on first use (an empty deque is ~600 bytes
        # per idle connection); emptied, they return to ().
        self._pending_writes: deque[IoMessage] | tuple[()] = ()
        self._write_eof_pending = False
        self._close_notify_sent = False
        self._read_closed = False  # EOF or error delivered, or READ shut down
        # Decrypted plaintext not yet handed right, and how the stream ends after it.
        self._backlog: deque[IoMessage] | tuple[()] = ()
        self._backlog_bytes = 0
        self._head_off = 0  # bytes of the backlog's first message already handed right
        self._end_eof = False
        self._end_error: BaseException | None = None
        #: Set by :meth:`begin_direct`: the application handler reads the engine itself.
        self._direct = False

    # ================================================================ results
    @property
    def context(self) -> ssl.SSLContext:
        return self.engine.sslobj.context

    @context.setter
    def context(self, ctx: ssl.SSLContext) -> None:
        self.engine.sslobj.context = ctx  # an sni_callback choosing the certificate

    @property
    def sslobj(self) -> Any:
        """The C ``_ssl._SSLSocket`` the engine runs (cipher, certificates, session)."""
        return self.engine.sslobj

    @property
    def negotiated(self) -> bool:
        return self.state is TlsState.NEGOTIATED

    @property
    def pending_plaintext(self) -> int:
        """Decrypted bytes this handler holds for the application (past its window)."""
        return self._backlog_bytes + self.engine.pending()

    def add_negotiation_callback(self, callback: NegotiationCallback) -> None:
        """Call ``callback(handler, error)`` once the handshake ends (next tick if it has)."""
        if self._reported:
            loop = self.slot.channel.loop if self.slot is not None else None
            if loop is not None:
                loop.call_soon(callback, self, self.error if self.state is TlsState.FAILED
                               else None)
            return
        self._callbacks.append(callback)

    def selected_alpn_protocol(self) -> str | None:
        return self.sslobj.selected_alpn_protocol()

    def version(self) -> str | None:
        return self.sslobj.version()

    def cipher(self) -> tuple[str, str, int] | None:
        return self.sslobj.cipher()

    def getpeercert(self, binary_form: bool = False) -> Any:
        """As ``ssl.SSLSocket.getpeercert`` (``ValueError`` before the handshake)."""
        return self.sslobj.getpeercert(binary_form)

    @property
    def session(self) -> ssl.SSLSession | None:
        return self.sslobj.session

    @property
    def session_reused(self) -> bool:
        return self.sslobj.session_reused

    # ================================================================ handshake
    def initial_window_size(self) -> int:
        return _CIPHERTEXT_FLOOR

    def message_overhead(self) -> int:
        return TLS_RECORD_OVERHEAD

    def start(self) -> None:
        """Begin negotiating (loop-only, once installed). A client sends its hello now; a
        server waits for the peer's first byte (the timeout starts then) unless bytes were
        already :meth:`feed`\\ ed."""
        if self.state is not TlsState.IDLE:
            return
        eng = self.engine
        if self.server_side and not eng.incoming_pending() and not eng.eof_received:
            return
        self._begin()
        self._after_input()

    def feed(self, data: bytes) -> None:
        """Ciphertext that arrived outside the channel (tlsupgrade: bytes the plaintext
        reader had already buffered). Processed by the next :meth:`start`/read."""
        if data:
            self.engine.receive_data(data)

    def feed_eof(self) -> None:
        """The stream already ended before the handler was installed."""
        self.engine.receive_eof()

    def _begin(self) -> None:
        self.state = TlsState.HANDSHAKING
        ch = self.slot.channel
        self.handshake_started = ch.loop.now()
        if self.timeout is not None:
            self._timer = ch.schedule_task(self._on_timeout, self.timeout)
        self._drive_handshake()

    def _drive_handshake(self) -> None:
        try:
            self.engine.do_handshake()
        except ssl.SSLWantReadError:
            self._flush_out()
            return
        except Exception as exc:  # noqa: BLE001 - the stdlib's ssl error, reported as is
            self._flush_out()  # our alert tells the peer why
            self._fail(exc)
            return
        self._flush_out()
        self.state = TlsState.NEGOTIATED
        self._cancel_timer()
        self._report(None)
        # Writes queued during the handshake go out now, in order, then a queued write EOF.
        while self._pending_writes and self.state is TlsState.NEGOTIATED:
            msg = self._pending_writes.popleft()
            try:
                self._encrypt(msg)
            except Exception as exc:  # noqa: BLE001
                self._complete(msg, exc)
                self._fatal(exc)
        if not self._pending_writes:
            self._pending_writes = ()
        if self._write_eof_pending and self.state is TlsState.NEGOTIATED:
            self._write_eof_pending = False
            self._close_write()

    def _on_timeout(self, status: TaskStatus) -> None:
        self._timer = None
        if status is TaskStatus.RUN_READY and self.state in (TlsState.IDLE,
                                                              TlsState.HANDSHAKING):
            self._fail(TimeoutError(errno.ETIMEDOUT,
                                    f"TLS handshake timed out after {self.timeout:g} s"))

    def _cancel_timer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and not timer.done and self.slot is not None:
            self.slot.channel.cancel_task(timer)

    def _report(self, err: BaseException | None) -> None:
        if self._reported:
            return
        self._reported = True
        if self.slot is not None:
            self.handshake_finished = self.slot.channel.loop.now()
        callbacks, self._callbacks = self._callbacks, []
        for cb in callbacks:
            try:
                cb(self, err)
            except Exception as exc:  # noqa: BLE001 - a callback bug ends the connection
                self._fatal(exc)

    def _fail(self, exc: BaseException) -> None:
        """The handshake failed: report, fail queued writes, shut the channel down."""
        if self.state is TlsState.FAILED:
            return
        self.state = TlsState.FAILED
        self.error = exc
        self._read_closed = True
        self._cancel_timer()
        self._fail_pending_writes(exc)
        self._report(exc)
        if self.slot is not None:
            self.slot.channel.shutdown(exc)

    def _fatal(self, exc: BaseException) -> None:
        """An error after the handshake: no more input; the channel shuts down with it."""
        if self.error is None:
            self.error = exc
        self._read_closed = True
        if self.slot is not None:
            self.slot.channel.shutdown(exc)

    # ================================================================ reading
    def process_read(self, slot: ChannelSlot, msg: IoMessage) -> None:
        if self._read_closed or self._end_eof or self._end_error is not None:
            msg.release()
            return
        data = msg.data()
        # Up to BIO_STEP at a time, decrypting in between: the engine's BIO keeps its peak.
        for off in range(0, len(data), BIO_STEP):
            if self._read_closed or self._end_eof or self._end_error is not None:
                break
            self.engine.receive_data(data[off:off + BIO_STEP])
            self._after_input()
        data.release()
        msg.release()

    def process_read_eof(self, slot: ChannelSlot) -> None:
        if self._read_closed or self.engine.eof_received:
            return
        # After the data it still holds, the engine reports the peer's close_notify
        # (a clean EOF) or raises SSLEOFError (truncation).
        self.engine.receive_eof()
        self._after_input()

    def _after_input(self) -> None:
        if self.state is TlsState.IDLE:
            self._begin()  # a server's handshake (and timeout) starts at its first byte
        elif self.state is TlsState.HANDSHAKING:
            self._drive_handshake()
        if self.state is TlsState.NEGOTIATED:
            self._decrypt()
            self._deliver()
        elif self.state is TlsState.HANDSHAKING:
            self._regrant()

    def increment_read_window(self, slot: ChannelSlot, size: int) -> None:
        if self._read_closed:
            return
        if self.state is TlsState.NEGOTIATED:
            self._deliver()  # the backlog first, then more credit
        else:
            self._regrant()

    def _decrypt(self) -> None:
        """Move every byte the engine can decrypt into the backlog (see the module
        docstring: the engine is left without plaintext or whole records)."""
        if self._end_eof or self._end_error is not None or self._direct:
            return
        eng = self.engine
        pool = self.slot.channel.pool
        more = True
        while more:
            # Plaintext is at most the ciphertext held plus one record OpenSSL may have
            # begun: one message takes it all (up to 256 KiB), record after record.
            cap = min(LARGE_FRAGMENT,
                      eng.incoming_pending() + eng.pending() + MAX_FRAGMENT)
            msg = pool.acquire_read(cap)  # whole buffer: reads below stop at cap
            view = memoryview(msg.buf)
            off = 0
            while off < cap:
                try:
                    got = eng.read_into(view[off:], cap - off)
                except ssl.SSLWantReadError:
                    more = False
                    break
                except ssl.SSLZeroReturnError:
                    got = 0  # close_notify after we sent ours (unwrap): a clean EOF
                except Exception as exc:  # noqa: BLE001 - SSLEOFError, bad MAC, alert
                    self._end_error = exc
                    more = False
                    break
                if got == 0:
                    self._end_eof = True
                    more = False
                    break
                off += got
            view.release()
            if off:
                msg.len = off
                if not self._backlog:
                    self._backlog = deque()
                self._backlog.append(msg)
                self._backlog_bytes += off
            else:
                msg.release()
        self._flush_out()  # reading may answer the peer (TLS 1.3 KeyUpdate, alerts)

    def _deliver(self, past_window: bool = False) -> None:
        """Hand the backlog right, as far as the application's window goes (all of it
        with ``past_window``), then the end of the stream if it came, then regrant."""
        if self._direct:
            return
        slot = self.slot
        backlog = self._backlog
        while backlog and not self._read_closed:
            msg = backlog[0]
            off = self._head_off
            left = msg.len - off
            window = left if past_window else slot.downstream_read_window()
            if window <= 0:
                break
            if off == 0 and left <= window:
                backlog.popleft()
                self._backlog_bytes -= left
                slot.send_message(msg, Direction.READ)
                continue
            # The window (or an earlier split) cuts this message: send a copy of a part.
            n = min(left, window)
            part = slot.channel.pool.acquire_large(n)
            part.fill(msg.data()[off:off + n])
            self._backlog_bytes -= n
            if n == left:
                backlog.popleft()
                msg.release()
                self._head_off = 0
            else:
                self._head_off = off + n
            slot.send_message(part, Direction.READ)
        if not self._backlog:
            self._backlog = ()
        if not backlog and not self._read_closed:
            if self._end_error is not None:
                self._fatal(self._end_error)
                return
            if self._end_eof:
                self._read_closed = True
                self.peer_closed = True
                slot.send_read_eof()
                return
        self._regrant()

    def _regrant(self) -> None:
        """Keep this slot's ciphertext credit at what the application's window needs."""
        slot = self.slot
        if slot is None or self._read_closed or self._direct or not slot.channel.back_pressure:
            return
        down = slot.downstream_read_window()
        want = max(_CIPHERTEXT_FLOOR,
                   down + -(-down // MAX_FRAGMENT) * TLS_RECORD_OVERHEAD)
        have = (slot.window + slot.pending_increment + self.engine.incoming_pending()
                + self._backlog_bytes)
        if want > have:
            slot.increment_read_window(want - have)

    # ================================================================ direct mode
    @property
    def direct(self) -> bool:
        """Whether the application handler drives the engine itself (:meth:`begin_direct`)."""
        return self._direct

    def begin_direct(self) -> bytes | None:
        """Hand reading to the application handler right of this one (``TCPSocket``'s
        direct TLS mode), for good; None when that cannot be done now (not negotiated,
        the stream already ended or failed, writes still queued here).

        Returns the plaintext this handler decrypted and did not hand right yet: it comes
        before anything the caller decrypts. From then on the caller (loop thread only)
        feeds the engine with the kernel's ciphertext, reads its plaintext, and sends its
        ciphertext itself (the rest via :meth:`send_ciphertext`); this handler still
        writes close_notify on ``process_write_eof``/shutdown, but no longer decrypts:
        the caller drains the engine's plaintext before it sends a write EOF (else
        ``SSL_shutdown`` would discard records it reads).
        """
        if (self._direct or self.state is not TlsState.NEGOTIATED or self.error is not None
                or self._read_closed or self._end_eof or self._end_error is not None
                or self._pending_writes or self._write_eof_pending or self._close_notify_sent
                or self.slot is None):
            return None
        self._decrypt()  # whole records the engine holds: hand them over as plaintext
        if self._end_eof or self._end_error is not None:
            return None  # the stream ended in there: the channel path reports it
        parts = []
        off = self._head_off
        for msg in self._backlog:
            parts.append(bytes(msg.data()[off:]))
            off = 0
        self._drop_backlog()
        self._direct = True
        return b"".join(parts)

    def send_ciphertext(self, data: bytes,
                        on_completion: Callable[[BaseException | None], None] | None) -> None:
        """Direct mode: queue ciphertext the caller encrypted (behind every queued write,
        so order is kept); ``on_completion`` runs once it reached the kernel."""
        msg = IoMessage.owning(data)
        msg.on_completion = on_completion
        self.slot.send_message(msg, Direction.WRITE)

    # ================================================================ writing
    def process_write(self, slot: ChannelSlot, msg: IoMessage) -> None:
        if self.state is TlsState.FAILED or self.error is not None:
            raise self.error  # the sender releases msg (channel contract)
        if self.state is not TlsState.NEGOTIATED:
            if not self._pending_writes:
                self._pending_writes = deque()
            self._pending_writes.append(msg)
            return
        self._encrypt(msg)

    def _encrypt(self, msg: IoMessage) -> None:
        data = msg.data()
        # A memory BIO takes everything (no partial writes) and keeps its peak: encrypt
        # BIO_STEP at a time, each step's ciphertext sent on before the next.
        for off in range(0, len(data), BIO_STEP):
            if off:
                self._flush_out()
            self.engine.write(data[off:off + BIO_STEP])
        data.release()
        cb = msg.on_completion
        msg.release()
        self._flush_out(cb)

    def _flush_out(self, on_completion: Callable[[BaseException | None], None] | None = None
                   ) -> None:
        """Send what the engine has for the wire left, as one message owning it, which
        carries ``on_completion``."""
        slot = self.slot
        data = self.engine.data_to_send() if slot is not None else b""
        if not data:
            if on_completion is not None and slot is not None:
                slot.channel.loop.call_soon(on_completion, None)
            return
        msg = IoMessage.owning(data)
        msg.on_completion = on_completion
        slot.send_message(msg, Direction.WRITE)

    def _complete(self, msg: IoMessage, err: BaseException | None) -> None:
        cb = msg.on_completion
        msg.release()
        if cb is not None and self.slot is not None:
            self.slot.channel.loop.call_soon(cb, err)

    def _fail_pending_writes(self, err: BaseException) -> None:
        while self._pending_writes:
            self._complete(self._pending_writes.popleft(), err)

    def process_write_eof(self, slot: ChannelSlot) -> None:
        if self.state in (TlsState.IDLE, TlsState.HANDSHAKING):
            self._write_eof_pending = True  # after the queued writes, once negotiated
            return
        if self.state is TlsState.NEGOTIATED:
            self._close_write()

    def _close_write(self) -> None:
        self._send_close_notify()
        self.slot.send_write_eof()

    def _send_close_notify(self) -> None:
        if self._close_notify_sent or self.state is not TlsState.NEGOTIATED:
            return
        self._close_notify_sent = True
        self._decrypt()  # nothing whole may stay in the engine (module docstring)
        try:
            self.engine.start_close()
        except (ssl.SSLError, OSError, ValueError):
            pass  # the session is already broken: nothing to notify
        self._flush_out()

    # ================================================================ shutdown
    def shutdown(self, slot: ChannelSlot, direction: Direction, error: BaseException | None,
                 abort: bool) -> None:
        if direction is Direction.READ:
            if self.state in (TlsState.IDLE, TlsState.HANDSHAKING):
                self._fail(error or ConnectionAbortedError(
                    errno.ECONNABORTED, "connection shut down during the TLS handshake"))
            elif self.state is TlsState.NEGOTIATED and not abort and not self._read_closed:
                self._decrypt()
                self._end_error = None  # the channel's own error is what gets reported
                self._deliver(past_window=True)  # everything received, window or not
            self._read_closed = True
            self._cancel_timer()
            self._drop_backlog()
        else:
            self._fail_pending_writes(error or BrokenPipeError(
                errno.EPIPE, "TLS connection shut down before the handshake completed"))
            if error is None and not abort and self.notify_on_close:
                self._send_close_notify()
        slot.on_shutdown_complete(direction, error, abort)

    def _drop_backlog(self) -> None:
        while self._backlog:
            self._backlog.popleft().release()
        self._backlog = ()
        self._backlog_bytes = 0
        self._head_off = 0

    def destroy(self) -> None:
        self._pending_writes = ()
        self._callbacks = []
        self._drop_backlog()

    def __repr__(self) -> str:
        side = "server" if self.server_side else "client"
        return f"<TlsHandler {side} {self.state.value} {self.version() or ''}>"


def find_tls_handler(channel: Channel) -> TlsHandler | None:
    """The first TLS handler in ``channel`` (left to right), if any."""
    for slot in channel.slots():
        if isinstance(slot.handler, TlsHandler):
            return slot.handler
    return None


# ==================================================================== bootstrap glue
SetupCallback = Callable[[Channel | None, BaseException | None], Any]
ShutdownCallback = Callable[[Channel, BaseException | None], Any]
HandlerFactory = Callable[[Channel], ChannelHandler]


class _TlsSetup:
    """Wraps a bootstrap's factory and callbacks so that TLS sits between the socket
    handler and the application handler, and setup is reported only once the handshake
    succeeded (with the ALPN protocol handler installed, if a hook was given)."""

    server_side = False

    def __init__(self, options: TlsConnectionOptions, factory: HandlerFactory,
                 on_setup: SetupCallback, on_shutdown: ShutdownCallback | None) -> None:
        ctx_opts = options.context
        if isinstance(ctx_opts, TlsContextOptions) and ctx_opts.server_side != self.server_side:
            raise ValueError(f"TlsContextOptions(server_side={ctx_opts.server_side}) used for "
                             f"a {'server' if self.server_side else 'client'} connection")
        self.options = options
        self.context = options.ssl_context()  # build now: bad options fail at the call
        wrong = ssl.PROTOCOL_TLS_CLIENT if self.server_side else ssl.PROTOCOL_TLS_SERVER
        if self.context.protocol == wrong:
            raise ValueError(f"a {'server' if self.server_side else 'client'} cannot use an "
                             f"ssl.SSLContext made with {wrong.name}")
        self.selector: AlpnSelector | None = options.alpn_handlers
        self.user_factory = factory
        self.user_on_setup = on_setup
        self.user_on_shutdown = on_shutdown
        #: Channels whose handshake has not been reported as a setup yet (None: reported
        #: as failed already, the channel is shutting down).
        self.pending: dict[Channel, TlsHandler | None] = {}

    def _server_hostname(self) -> str | None:
        return None

    def factory(self, channel: Channel) -> ChannelHandler:
        tls = TlsHandler(self.context, server_side=self.server_side,
                         server_hostname=self._server_hostname(),
                         timeout=self.options.timeout,
                         on_negotiated=lambda h, err: self._negotiated(channel, h, err))
        channel.add_handler(tls)
        self.pending[channel] = tls
        if self.selector is not None:
            return AlpnHandler(self.selector)
        return self.user_factory(channel)

    def on_setup(self, channel: Channel | None, err: BaseException | None) -> None:
        if channel is None:
            self.user_on_setup(None, err)
            return
        tls = self.pending.get(channel)
        if tls is not None:
            tls.start()

    def _negotiated(self, channel: Channel, tls: TlsHandler, err: BaseException | None) -> None:
        if err is not None:
            self._handshake_failed(channel, err)
            return
        right = tls.slot.right.handler if tls.slot and tls.slot.right else None
        if isinstance(right, AlpnHandler):
            try:
                right.install(tls.selected_alpn_protocol())
            except Exception as exc:  # noqa: BLE001 - UnhandledAlpnProtocolError & co
                tls.error = exc
                channel.shutdown(exc)
                return
        self.pending.pop(channel, None)
        if channel.on_shutdown == self.on_shutdown:
            # Set up: our on_shutdown would only forward now, so the channel calls the
            # caller's directly and a client's setup (its options, ~700 bytes) is freed.
            channel.on_shutdown = self.user_on_shutdown
        self.user_on_setup(channel, None)

    def _handshake_failed(self, channel: Channel, err: BaseException) -> None:
        """The handshake failed and the channel is shutting down: by default
        :meth:`on_shutdown` reports it, once the channel is down."""

    def on_shutdown(self, channel: Channel, err: BaseException | None) -> None:
        if channel not in self.pending:
            if self.user_on_shutdown is not None:
                self.user_on_shutdown(channel, err)
            return
        tls = self.pending.pop(channel)
        if tls is None:
            return  # reported when the handshake failed (_handshake_failed)
        self._setup_failed(channel, err or tls.error or ConnectionAbortedError(
            errno.ECONNABORTED, "connection closed during the TLS handshake"))

    def _setup_failed(self, channel: Channel, err: BaseException) -> None:
        raise NotImplementedError


class TlsClientSetup(_TlsSetup):
    """Client side: ``on_setup(channel, None)`` after the handshake, or
    ``on_setup(None, error)`` once the failed channel has shut down (and is destroyed)."""

    def __init__(self, options: TlsConnectionOptions, factory: HandlerFactory,
                 on_setup: SetupCallback, on_shutdown: ShutdownCallback | None = None, *,
                 default_server_name: str | None = None) -> None:
        super().__init__(options, factory, on_setup, on_shutdown)
        self.server_name = options.server_name or default_server_name

    def _server_hostname(self) -> str | None:
        return self.server_name

    def _setup_failed(self, channel: Channel, err: BaseException) -> None:
        channel.destroy()
        self.user_on_setup(None, err)


class TlsServerSetup(_TlsSetup):
    """Server side: ``on_incoming(channel, None)`` only after the handshake. A failed
    handshake is not an accept error: it goes to ``on_handshake_error(err)`` (if set) and
    :attr:`handshake_errors` (the last 16), and the listener destroys the channel."""

    server_side = True

    def __init__(self, options: TlsConnectionOptions, factory: HandlerFactory,
                 on_incoming: SetupCallback, on_shutdown: ShutdownCallback | None = None,
                 on_handshake_error: Callable[[BaseException], Any] | None = None) -> None:
        super().__init__(options, factory, on_incoming, on_shutdown)
        self.on_handshake_error = on_handshake_error
        self.handshake_errors: deque[BaseException] = deque(maxlen=16)

    def _handshake_failed(self, channel: Channel, err: BaseException) -> None:
        # Recorded now, not once the channel is down: the peer may see the close (and
        # look at the errors) before the channel's shutdown completes.
        self.pending[channel] = None
        self._setup_failed(channel, err)

    def _setup_failed(self, channel: Channel, err: BaseException) -> None:
        self.handshake_errors.append(err)
        if self.on_handshake_error is not None:
            self.on_handshake_error(err)

    def abort_pending(self) -> None:
        """Abort every connection still handshaking (the listener is going away)."""
        for channel in list(self.pending):
            channel.shutdown(ConnectionAbortedError(errno.ECONNABORTED,
                                                    "TLS listener closed during the handshake"),
                             abort=True)
