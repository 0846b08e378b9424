"""A sans-IO TLS engine: ciphertext in, plaintext and ciphertext out (h11 is the model).

No socket, no loop, no greenlet: the driver (the patched SSL socket, the channel
``TlsHandler``) moves bytes between the engine and the wire, and decides when to wait.

It runs the C ``_ssl._SSLSocket`` that ``ssl.SSLObject`` wraps, made the same way
(``context._wrap_bio(incoming, outgoing, ...)``) over two ``ssl.MemoryBIO``\\ s, so:

- a caller's ``ssl.SSLContext`` is used unchanged (or one built from
  :class:`~reseau_patch.io.tls_options.TlsContextOptions`);
- ``owner`` is what OpenSSL callbacks (``sni_callback``, ``_msg_callback``) receive and
  what ``getpeercert`` & co. report about: the patched socket passes itself, as the
  stdlib's ``SSLSocket`` does; :attr:`TlsEngine.sslobj` is that C object, usable as an
  ``SSLSocket._sslobj`` (``getpeercert``, ``get_verified_chain``, ``cipher``, ``version``,
  ``session``, ``selected_alpn_protocol``, ``verify_client_post_handshake``...);
- errors are the stdlib's, unchanged: ``ssl.SSLWantReadError`` (feed more ciphertext),
  ``ssl.SSLEOFError`` (stream ended without close_notify), ``ssl.SSLCertVerificationError``,
  ``ssl.SSLError``. A memory BIO never asks to wait for writing.

API (every method is non-blocking; who calls it must serialise the calls: one thread at
a time, the engine holds no lock)::

    eng = TlsEngine(ctx, server_side=False, server_hostname="example.com", owner=sock)
    eng.do_handshake()            # raises SSLWantReadError until the handshake is done
    eng.data_to_send()            # ciphertext to put on the wire (b"" when none)
    eng.receive_data(ciphertext)  # what the wire gave us; eng.receive_eof() at its end
    eng.bytes_needed()            # ciphertext bytes that complete the current TLS record
    eng.read_into(buf, n)         # plaintext; 0 after the peer's close_notify
    eng.read_available(buf, n)    # the same, from as many received records as fit
    eng.write(data)               # encrypt all of it (memory BIOs take everything; keep
                                  # each step to BIO_STEP: the BIOs keep their peak)
    eng.pending()                 # plaintext decrypted and not yet read (SSL_pending)
    eng.unwrap()                  # close_notify both ways; SSLWantReadError until done
    eng.unread_data()             # after unwrap: bytes that followed the peer's close_notify

``bytes_needed`` lets a driver read the wire record by record (what OpenSSL does on a
real socket), so a non-blocking caller never holds ciphertext that the kernel's
readiness no longer shows. It needs the engine to follow the record framing of every
byte received; a driver that never asks (the channel's ``TlsHandler``) passes
``track_records=False`` and saves that per-record work (~3% of bulk TLS CPU).

States (every change happens in :meth:`TlsEngine._set_state`)::

                    do_handshake() done
      HANDSHAKING ----------------------> OPEN ----- read sees close_notify ----+
           |                               |                                    v
           |                    unwrap(): our close_notify sent          CLOSE_RECEIVED
           |                               v                                    |
           |                          CLOSE_SENT                     unwrap(): ours sent
           |                               |  peer's close_notify read          |
           |                               v                                    |
           |                            CLOSED <--------------------------------+
           |
           +--- any state: a TLS error, or EOF without close_notify ---> FAILED (error copy kept)
"""

from __future__ import annotations

import copy
import enum
import ssl
from typing import Any

from .tls_options import TlsContextOptions

__all__ = ["BIO_STEP", "RECORD_MAX", "RECV_STEP", "TlsEngine", "TlsState"]

#: The most a driver should hand the engine at once, either way (ciphertext to
#: ``receive_data``, plaintext to ``write``). OpenSSL's memory BIOs never give memory back:
#: each keeps ~4/3 of the most it ever held, for the connection's life. At 256 KiB steps an
#: idle connection kept ~630-660 KiB after bulk traffic, at 64 KiB ~170 (gevent's stdlib
#: SSLSocket: 36); bulk MB/s moved less than the run-to-run noise.
BIO_STEP = 64 * 1024
#: Ciphertext of one TLS record at most: 2**14 plaintext bytes + 256 (RFC 8446 §5.2).
RECORD_MAX = 16384 + 256
#: A driver's kernel read: the whole records that hold BIO_STEP of plaintext. Exactly 64 KiB
#: is 3 records and part of a 4th, so a 64 KiB reader got 48 KiB per call (patched-socket
#: TLS bulk receive 0.90x gevent pooled over 21 rounds; 0.97x with this size).
RECV_STEP = BIO_STEP // 16384 * RECORD_MAX

_HEADER = 5  # TLS record header: type(1) version(2) length(2), RFC 8446 §5.1


def _detached(exc: BaseException) -> BaseException:
    """A copy of ``exc`` without its traceback: what the engine keeps, and raises again.

    The raised error's traceback holds the frames that hold this engine (its own methods,
    the driver's), so keeping that very object would put the engine — and the socket that
    drives it — in a reference cycle freed only by the cyclic gc.
    """
    try:
        return copy.copy(exc)  # type, args and attributes (verify_code, reason, library...)
    except Exception:  # noqa: BLE001 - an exception type that cannot be rebuilt
        return exc


class TlsState(enum.Enum):
    HANDSHAKING = "handshaking"
    OPEN = "open"
    CLOSE_SENT = "close_sent"
    CLOSE_RECEIVED = "close_received"
    CLOSED = "closed"
    FAILED = "failed"


class TlsEngine:
    """One TLS connection's protocol state (see the module docstring)."""

    __slots__ = ("_sslobj", "_in", "_out", "_state", "error", "server_side",
                 "_rec_left", "_hdr", "_eof", "_handshake_done", "_deferred", "_track",
                 "__weakref__")

    def __init__(self, context: ssl.SSLContext | TlsContextOptions, *,
                 server_side: bool = False, server_hostname: str | None = None,
                 session: ssl.SSLSession | None = None, owner: Any = None,
                 track_records: bool = True) -> None:
        if isinstance(context, TlsContextOptions):
            context = context.build()
        if not isinstance(context, ssl.SSLContext):
            raise TypeError(f"context must be an ssl.SSLContext or TlsContextOptions, "
                            f"got {type(context).__name__}")
        if not server_side and context.check_hostname and not server_hostname:
            raise ValueError("check_hostname requires server_hostname")  # as SSLSocket
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        # As ssl.SSLObject._create does; the C constructor raises the stdlib's ValueErrors
        # (check_hostname without a name, a client context on the server side...).
        self._sslobj = context._wrap_bio(
            self._in, self._out, server_side=server_side,
            server_hostname=context._encode_hostname(server_hostname),
            owner=owner, session=session)
        self.server_side = server_side
        self._state = TlsState.HANDSHAKING
        self.error: BaseException | None = None
        self._rec_left = 0     # body bytes of the current record still to come
        self._hdr = b""       # header bytes of the next record received so far
        self._eof = False
        self._track = track_records  # whether bytes_needed() is available
        self._handshake_done = False
        # An error read_available() met after it had read some bytes: the next read raises
        # it, where a one-record-per-call reader would have met it.
        self._deferred: BaseException | None = None

    # ------------------------------------------------------------------ state
    @property
    def state(self) -> TlsState:
        return self._state

    @property
    def sslobj(self) -> Any:
        """The C ``_ssl._SSLSocket`` (what ``SSLSocket._sslobj`` is in the stdlib)."""
        return self._sslobj

    @property
    def handshake_done(self) -> bool:
        return self._handshake_done

    def _set_state(self, state: TlsState, error: BaseException | None = None) -> None:
        if self._state is TlsState.FAILED:
            return  # terminal: the first error is the one reported
        self._state = state
        if error is not None:
            self.error = error

    def _fail(self, exc: BaseException) -> None:
        self._set_state(TlsState.FAILED, _detached(exc))

    # ------------------------------------------------------------------ ciphertext in/out
    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Ciphertext from the peer (any amount; it is copied)."""
        if self._eof:
            raise ValueError("receive_data() after receive_eof()")
        n = self._in.write(data)
        if not self._track:
            return
        # Track TLS record framing so bytes_needed() knows where the current record ends:
        # one step per record, reading only the two length bytes of each header.
        left = self._rec_left
        if n <= left:
            self._rec_left = left - n
            return
        view = data if isinstance(data, bytes) else memoryview(data)
        if not isinstance(view, bytes) and (view.format != "B" or view.ndim != 1):
            view = view.cast("B")
        pos = left
        hdr = self._hdr
        if hdr:  # a header split across two pieces (rare)
            take = min(_HEADER - len(hdr), n - pos)
            hdr += bytes(view[pos:pos + take])
            pos += take
            if len(hdr) < _HEADER:
                self._hdr = hdr
                return
            pos += (hdr[3] << 8) | hdr[4]
        last = n - _HEADER
        while pos <= last:
            pos += _HEADER + ((view[pos + 3] << 8) | view[pos + 4])
        if pos >= n:
            self._rec_left = pos - n
            self._hdr = b""
        else:
            self._rec_left = 0
            self._hdr = bytes(view[pos:n])

    def receive_eof(self) -> None:
        """The peer's transport ended: after what is buffered, reads see it."""
        if not self._eof:
            self._eof = True
            self._in.write_eof()

    @property
    def eof_received(self) -> bool:
        return self._eof

    def bytes_needed(self) -> int:
        """Ciphertext bytes that complete the TLS record being received (or its header).

        ``RuntimeError`` on an engine made with ``track_records=False``."""
        if not self._track:
            raise RuntimeError("bytes_needed() needs an engine made with track_records=True")
        return self._rec_left or (_HEADER - len(self._hdr))

    def incoming_pending(self) -> int:
        """Ciphertext received and not yet consumed by OpenSSL."""
        return self._in.pending

    def outgoing_pending(self) -> int:
        """Ciphertext waiting in :meth:`data_to_send`."""
        return self._out.pending

    def data_to_send(self, max_bytes: int = -1) -> bytes:
        """Ciphertext for the peer, in order; ``b""`` when there is none."""
        return self._out.read(max_bytes) if self._out.pending else b""

    # ------------------------------------------------------------------ TLS operations
    def do_handshake(self) -> None:
        """Advance the handshake; ``SSLWantReadError`` means: feed more ciphertext (and
        send :meth:`data_to_send` first). Returns once it is done (also when called again)."""
        if self._state is not TlsState.HANDSHAKING:
            if self._state is TlsState.FAILED and self.error is not None:
                raise _detached(self.error)
            return
        try:
            self._sslobj.do_handshake()
        except ssl.SSLWantReadError:
            raise
        except (ssl.SSLError, OSError) as exc:
            self._fail(exc)
            raise
        self._handshake_done = True
        self._set_state(TlsState.OPEN)

    def read_into(self, buffer: Any, n: int = 0) -> int:
        """Decrypt up to ``n`` bytes into ``buffer`` (``n`` <= 0 or larger than the buffer:
        the buffer's size, as ``SSLObject.read``).

        0 means the peer sent close_notify. ``SSLWantReadError``: feed
        more. ``SSLEOFError``: the transport ended without close_notify (truncation).
        """
        if self._deferred is not None:
            self._raise_deferred()
        try:
            got = self._sslobj.read(n, buffer)  # n <= 0 or beyond the buffer: its size
        except ssl.SSLWantReadError:
            if not self._in.pending and self._state is TlsState.OPEN:
                self._release_write_buffer()
            raise
        except ssl.SSLZeroReturnError:
            self._close_received()
            raise
        except (ssl.SSLError, OSError) as exc:
            self._fail(exc)
            raise
        if not got and (n > 0 or len(buffer)):
            self._close_received()
        return got

    def read_available(self, buffer: Any, n: int = 0) -> int:
        """As :meth:`read_into`, but from as many of the records already received as fit.

        OpenSSL gives one record per read; this goes on while the buffer has room and
        ciphertext is buffered, without a driver round trip per record. Raises as
        :meth:`read_into` when it read nothing; an error met after some bytes were read
        is kept, and the next read raises it.
        """
        got = self.read_into(buffer, n)
        incoming = self._in
        if not got or not incoming.pending:
            return got
        view = memoryview(buffer)
        if view.format != "B" or view.ndim != 1:
            view = view.cast("B")
        size = view.nbytes if n <= 0 or n > view.nbytes else n
        read = self._sslobj.read
        while got < size and incoming.pending:
            try:
                k = read(size - got, view[got:size])
            except ssl.SSLWantReadError:
                break  # the rest of the next record has not arrived yet
            except ssl.SSLZeroReturnError as exc:
                self._close_received()
                self._deferred = _detached(exc)
                break
            except (ssl.SSLError, OSError) as exc:
                self._fail(exc)
                self._deferred = _detached(exc)
                break
            if not k:
                self._close_received()
                break
            got += k
        return got

    def _raise_deferred(self) -> None:
        exc, self._deferred = self._deferred, None
        raise exc

    def read(self, n: int = 1024) -> bytes:
        """As :meth:`read_into`, returning new bytes."""
        if self._deferred is not None:
            self._raise_deferred()
        try:
            data = self._sslobj.read(n)
        except ssl.SSLWantReadError:
            if not self._in.pending and self._state is TlsState.OPEN:
                self._release_write_buffer()
            raise
        except ssl.SSLZeroReturnError:
            self._close_received()
            raise
        except (ssl.SSLError, OSError) as exc:
            self._fail(exc)
            raise
        if not data and n:
            self._close_received()
        return data

    def _release_write_buffer(self) -> None:
        """Free the 16 KiB record write buffer OpenSSL keeps after reading a handshake
        message, so an idle reader holds none (called when a read wants more ciphertext
        and none is buffered).

        OpenSSL's state machine sets up its record write buffer whenever it processes a
        handshake message, post-handshake ones too (TLS 1.3 ``NewSessionTicket``,
        ``KeyUpdate``), and ``SSL_MODE_RELEASE_BUFFERS`` (which CPython sets) frees it only
        when a write completes: a client that reads the server's tickets and then waits
        kept ~16.6 KB, as the stdlib's ``SSLSocket`` does. A 0-byte write completes one
        and sends nothing (``SSL_write_ex`` with 0 bytes "will not send application data
        to the peer", SSL_write(3)); with no ciphertext buffered it cannot consume any.
        """
        try:
            self._sslobj.write(b"")
        except ssl.SSLError:
            # Best effort: a renegotiation in progress (want read) goes on with the next
            # read, and a connection that cannot write reports it at its next operation.
            pass

    def _close_received(self) -> None:
        if self._state is TlsState.OPEN or self._state is TlsState.HANDSHAKING:
            self._set_state(TlsState.CLOSE_RECEIVED)
        elif self._state is TlsState.CLOSE_SENT:
            self._set_state(TlsState.CLOSED)

    def write(self, data: Any) -> int:
        """Encrypt all of ``data`` into :meth:`data_to_send`; returns its length.

        During the handshake this raises ``SSLWantReadError`` (as ``SSLObject.write``).
        """
        try:
            return self._sslobj.write(data)
        except ssl.SSLWantReadError:
            raise
        except (ssl.SSLError, OSError) as exc:
            self._fail(exc)
            raise

    def pending(self) -> int:
        """Plaintext already decrypted and not yet read (``SSLSocket.pending``)."""
        return self._sslobj.pending()

    def verify_client_post_handshake(self) -> None:
        """TLS 1.3 post-handshake authentication (server side): the request goes out
        with the next :meth:`data_to_send`."""
        self._sslobj.verify_client_post_handshake()

    # ------------------------------------------------------------------ closing
    def start_close(self) -> bool:
        """Send our close_notify (once); True when the peer's was already read too."""
        try:
            self.unwrap()
        except ssl.SSLWantReadError:
            return False
        return True

    def unwrap(self) -> None:
        """close_notify both ways (``SSLObject.unwrap``): ours is queued at once;
        ``SSLWantReadError`` until the peer's has been received. Afterwards
        :meth:`unread_data` holds what followed the peer's close_notify."""
        if self._state is TlsState.CLOSED:
            return
        try:
            self._sslobj.shutdown()
        except ssl.SSLWantReadError:
            if self._state is TlsState.OPEN or self._state is TlsState.HANDSHAKING:
                self._set_state(TlsState.CLOSE_SENT)
            raise
        except (ssl.SSLError, OSError) as exc:
            self._fail(exc)
            raise
        self._set_state(TlsState.CLOSED)

    def unread_data(self) -> bytes:
        """Ciphertext-side bytes not consumed by TLS: after :meth:`unwrap`, the next
        protocol's plaintext (STARTTLS's reverse)."""
        return self._in.read() if self._in.pending else b""

    def __repr__(self) -> str:
        side = "server" if self.server_side else "client"
        return f"<TlsEngine {side} {self._state.value}>"
