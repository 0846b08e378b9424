"""The patched ``socket.socket``: the stdlib class, cooperative on the Reseau loop.

It *subclasses* the original ``socket.socket`` (unlike gevent's wrapper), so code that
captured the original class before patching still sees ``isinstance(s, socket)`` hold,
and every C method it does not override keeps the stdlib's exact behaviour and errors.
``socket.SocketType`` stays the C type, as in the stdlib.

Truthful fd readiness (DESIGN.md): a read goes to the kernel first and subscribes to
readiness only on ``EAGAIN``; bytes stay in the kernel until someone asks, so code that
polls ``fileno()`` with a poller it captured before patching sees the truth, and an idle
socket holds no buffer and no loop state.

Timeouts (what ``getblocking()`` and ``gettimeout()`` show) are the stdlib's:
``SOCK_NONBLOCK`` or ``setblocking(False)`` give timeout 0.0. The fd's mode (what ``fcntl``
shows) follows the stdlib's too — a timeout > 0 sets ``O_NONBLOCK``, a *blocking* socket
(timeout None) has it clear — under ``patch_all(thread=False)`` only
(:meth:`GreenSocket.set_fd_follows_timeout`). With green threads every fd stays
``O_NONBLOCK``, as under gevent: C code that works the fd itself (pyOpenSSL's
``SSL_do_handshake``, C database drivers) must get EAGAIN and let the caller wait
cooperatively; a kernel-blocking call there would stop every green thread of the process
(urllib3's pyOpenSSL tests against a green hypercorn server deadlock that way). The
cooperative part never relies on the fd's mode:
data calls pass ``MSG_DONTWAIT`` (one non-blocking try per call, whatever the fd's mode)
and park on ``EAGAIN``; ``connect``/``accept``/``sendfile``, which have no such flag,
set ``O_NONBLOCK`` for the one system call and restore the mode after. A caller's own
``MSG_DONTWAIT`` is honoured: one try, ``BlockingIOError`` instead of a wait. Errors are
the stdlib's (``TimeoutError("timed out")``, ``BlockingIOError``, ``OSError(EBADF)`` for
``settimeout``/``setblocking`` on a closed or bad fd, the C argument errors).

TLS: ``SSLContext.wrap_socket(sock)`` moves the connection onto a channel with our TLS
handler (see :mod:`reseau_patch.patch.green_ssl`). That channel's loop reads the fd
itself, so an ``ssl.SSLSocket`` subclass keeps ``O_NONBLOCK`` set whatever its timeout
(``_rp_fd_follows_timeout``).

Threads: waits park on the *calling* thread's loop, so a socket made in one thread works
in another (connection pools do this). ``close()``/``shutdown()`` from another thread
wake a blocked reader with ``OSError(EBADF)`` / EOF, never ``ValueError``.
"""

from __future__ import annotations

import _socket
import errno
import io
import operator
import os
import socket as _stdsocket
import sys
import time
import warnings
from typing import Any

from .waiting import READ, WRITE, FdWaits, timed_out

__all__ = ["GreenSocket", "original_socket_class", "parse_timeout"]


def _stdlib_socket_class() -> type:
    """The stdlib's ``socket.socket``, even when gevent.monkey replaced it before us."""
    cls = _stdsocket.socket
    if isinstance(cls, type) and issubclass(cls, _socket.socket):
        return cls
    from gevent.monkey import get_original

    return get_original("socket", "socket")


#: The class we subclass: the stdlib's, captured before anything is patched.
original_socket_class: type = _stdlib_socket_class()
_C = _socket.socket
_c_recv = _C.recv
_c_recv_into = _C.recv_into
_c_recvfrom = _C.recvfrom
_c_recvfrom_into = _C.recvfrom_into
_c_send = _C.send
_c_sendto = _C.sendto
_c_connect = _C.connect
_c_connect_ex = _C.connect_ex
_c_accept = _C._accept
_c_setblocking = _C.setblocking
_c_settimeout = _C.settimeout
_c_gettimeout = _C.gettimeout
_c_fileno = _C.fileno
_c_shutdown = _C.shutdown
_c_getsockopt = _C.getsockopt
_c_getpeername = _C.getpeername
_DONTWAIT: int = _socket.MSG_DONTWAIT
_INPROGRESS = (errno.EINPROGRESS, errno.EALREADY, errno.EWOULDBLOCK)


def _ebadf() -> OSError:
    return OSError(errno.EBADF, "Bad file descriptor")


def byte_view(data: Any) -> memoryview:
    """``data`` as unsigned bytes, with the C methods' ``TypeError`` for what is not
    bytes-like (``memoryview()`` names itself in its message; ``send`` does not)."""
    try:
        view = memoryview(data)
    except TypeError:
        raise TypeError(
            f"a bytes-like object is required, not '{type(data).__name__}'") from None
    return view if view.itemsize == 1 and view.ndim == 1 else view.cast("B")


def _c_long(value: Any) -> int:
    """``value`` as the C methods' ``PyLong_AsLong`` reads it, with its errors."""
    n = operator.index(value)
    if not -(1 << 63) <= n < (1 << 63):
        raise OverflowError("Python int too large to convert to C long")
    return n


#: Plain int/float timeouts already parsed -> the C parser's answer (urllib3 sets the same
#: one or two values before every request). Bounded; errors (NaN, < 0) are never stored.
_PARSED: dict[float, float | None] = {}


def parse_timeout(value: Any) -> float | None:
    """``value`` as the stdlib's ``settimeout`` reads it, with the stdlib's errors.

    The C parser itself does it, on a socket object that has no fd: it stores the value,
    then fails with EBADF where it would change an fd's mode (a failing ioctl, so a plain
    number's answer is remembered: ``1/3`` still reads back as the C parser rounds it).
    """
    if value is None:
        return None
    cacheable = type(value) is float or type(value) is int
    if cacheable:
        hit = _PARSED.get(value)
        if hit is not None:
            return hit
    scratch = _C.__new__(_C)
    try:
        _c_settimeout(scratch, value)
    except OSError:
        pass
    parsed = _c_gettimeout(scratch)
    if cacheable:
        if len(_PARSED) >= 64:
            _PARSED.clear()
        _PARSED[value] = parsed
    return parsed


def _dontwait(flags: Any) -> tuple[int, bool] | None:
    """``(flags | MSG_DONTWAIT, whether the caller asked for MSG_DONTWAIT)``; None when
    ``flags`` is no integer (the C method then raises the stdlib's TypeError)."""
    try:
        f = operator.index(flags)
    except TypeError:
        return None
    return f | _DONTWAIT, bool(f & _DONTWAIT)


class GreenSocket(original_socket_class):  # type: ignore[misc, valid-type]
    """``socket.socket`` after ``reseau_patch.patch_all()`` (see the module docstring).

    Invariant: the C object's own timeout is None (fd blocking, when the user's timeout
    is None and ``_rp_fd_follows_timeout``) or 0.0 (fd non-blocking), never > 0, so no C
    method ever waits in ``poll()`` and blocks the hub; the user's timeout is
    ``_rp_timeout``.
    """

    #: Bytes read past a TLS close_notify by ``SSLSocket.unwrap()``: the plaintext that
    #: followed it, served before the kernel's.
    _rp_prefix = b""
    #: Whether timeout None clears ``O_NONBLOCK`` on the fd, as in the stdlib. False for
    #: a socket whose fd an event loop reads directly (see ``__init_subclass__``).
    _rp_fd_follows_timeout = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "_rp_fd_follows_timeout" not in cls.__dict__:
            # No "import ssl" here: this runs while ssl itself defines SSLSocket (a re-import
            # after patching), when the module is only partially initialized.
            ssl_socket = getattr(sys.modules.get("ssl"), "SSLSocket", None)
            if (cls.__module__ == "ssl" and cls.__name__ == "SSLSocket") or (
                    isinstance(ssl_socket, type) and issubclass(cls, ssl_socket)):
                cls._rp_fd_follows_timeout = False  # its TLS engine reads the fd

    @classmethod
    def set_fd_follows_timeout(cls, flag: bool) -> None:
        """Whether a blocking socket (timeout None) made from now on clears ``O_NONBLOCK``
        on its fd as the stdlib's does (see the module docstring). ``patch_all`` sets it
        from ``thread=``; SSL subclasses keep their own False."""
        cls._rp_fd_follows_timeout = flag

    def _rp_pending(self) -> int:
        return len(self._rp_prefix)

    def _rp_take_prefix(self, n: int) -> bytes:
        data, self._rp_prefix = self._rp_prefix[:n], self._rp_prefix[n:]
        return data

    def __init__(self, family: int = -1, type: int = -1, proto: int = -1,  # noqa: A002
                 fileno: int | None = None) -> None:
        # The C init applies the stdlib's rules: SOCK_NONBLOCK -> 0.0, else the default
        # timeout (setting O_NONBLOCK when it is not None); a given fd keeps its mode.
        super().__init__(family, type, proto, fileno)
        self._rp_waits = FdWaits()
        self._rp_timeout: float | None = _c_gettimeout(self)
        if self._rp_timeout is not None or not self._rp_fd_follows_timeout:
            _c_setblocking(self, False)  # C timeout 0.0 (see the class invariant)

    # ------------------------------------------------------------------ timeouts
    def _check_open(self) -> None:
        if _c_fileno(self) < 0:
            raise _ebadf()

    def _rp_apply_timeout(self) -> None:
        # Like the stdlib, the new timeout is kept even when changing the fd fails (EBADF).
        _c_setblocking(self, self._rp_timeout is None and self._rp_fd_follows_timeout)

    def settimeout(self, timeout: float | None) -> None:
        t = self._rp_timeout = parse_timeout(timeout)
        # urllib3 sets a timeout twice a request: an open fd the C object already made
        # non-blocking (C timeout 0.0) needs no ioctl to stay so, as gevent never makes
        # one. A closed socket still gets the C method's EBADF; setblocking() always asks
        # the kernel (CPython's test_setblocking_invalidfd: an fd closed behind its back).
        if (t is None and self._rp_fd_follows_timeout) or _c_gettimeout(self) != 0.0 \
                or _c_fileno(self) < 0:
            self._rp_apply_timeout()

    def gettimeout(self) -> float | None:
        return self._rp_timeout

    @property
    def timeout(self) -> float | None:  # type: ignore[override]
        return self._rp_timeout

    def setblocking(self, flag: bool) -> None:
        self._rp_timeout = None if _c_long(flag) else 0.0
        self._rp_apply_timeout()

    def getblocking(self) -> bool:
        return self._rp_timeout != 0.0

    # ------------------------------------------------------------------ waiting
    def _deadline(self) -> float | None:
        t = self._rp_timeout
        return None if t is None else time.monotonic() + t

    def _wait(self, events: int, deadline: float | None) -> None:
        if self._rp_timeout == 0.0:
            _yield_to_hub()
            raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")
        if deadline is not None and time.monotonic() >= deadline:
            raise timed_out()
        fd = _c_fileno(self)
        if fd < 0:
            raise _ebadf()
        self._rp_waits.wait(fd, events, deadline, self)

    def _io(self, op: Any, events: int, *args: Any) -> Any:
        """``op(self, *args)`` (its flags include MSG_DONTWAIT) until it does not block."""
        deadline = self._deadline()
        while True:
            try:
                return op(self, *args)
            except (BlockingIOError, InterruptedError):
                pass
            self._wait(events, deadline)

    def _io_wait(self, op: Any, events: int, args: tuple) -> Any:
        """After ``op`` said EAGAIN: wait, then ``op(self, *args)`` again until it does not
        block. EAGAIN is caught in :func:`_attempt`, whose frame has returned before we
        park: a frame that catches an exception gets a frame object, kept while it parks
        (~200 bytes per idle reader)."""
        deadline = self._deadline()
        while True:
            self._wait(events, deadline)
            result = _attempt(self, op, *args)
            if result is not _AGAIN:
                return result

    def _nonblocking_call(self, op: Any, *args: Any) -> Any:
        """``op(self, *args)`` with ``O_NONBLOCK`` set for the call: for the system calls
        that take no MSG_DONTWAIT. The fd's mode is restored after."""
        fd = _c_fileno(self)
        if fd < 0 or not os.get_blocking(fd):
            return op(self, *args)
        os.set_blocking(fd, False)
        try:
            return op(self, *args)
        finally:
            try:
                os.set_blocking(fd, True)
            except OSError:
                pass  # closed meanwhile by another thread

    # ------------------------------------------------------------------ reading
    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        if self._rp_prefix and bufsize > 0 and not flags:
            return self._rp_take_prefix(bufsize)
        dw = _dontwait(flags)
        if dw is None or dw[1]:
            return _c_recv(self, bufsize, flags)
        data = _attempt(self, _c_recv, bufsize, dw[0])
        if data is _AGAIN:
            data = self._io_wait(_c_recv, READ, (bufsize, dw[0]))
        if not data and bufsize:
            _yield_to_hub()  # a loop polling a closed peer must not starve the others
        return data

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        if self._rp_prefix and not flags:
            view = memoryview(buffer).cast("B")
            data = self._rp_take_prefix(nbytes or view.nbytes)
            view[:len(data)] = data
            return len(data)
        dw = _dontwait(flags)
        if dw is None or dw[1]:
            return _c_recv_into(self, buffer, nbytes, flags)
        n = _attempt(self, _c_recv_into, buffer, nbytes, dw[0])
        if n is _AGAIN:
            n = self._io_wait(_c_recv_into, READ, (buffer, nbytes, dw[0]))
        if not n:
            _yield_to_hub()
        return n

    def recvfrom(self, bufsize: int, flags: int = 0) -> tuple[bytes, Any]:
        dw = _dontwait(flags)
        if dw is None or dw[1]:
            return _c_recvfrom(self, bufsize, flags)
        return self._io(_c_recvfrom, READ, bufsize, dw[0])

    def recvfrom_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> tuple[int, Any]:
        dw = _dontwait(flags)
        if dw is None or dw[1]:
            return _c_recvfrom_into(self, buffer, nbytes, flags)
        return self._io(_c_recvfrom_into, READ, buffer, nbytes, dw[0])

    if hasattr(_C, "recvmsg"):
        def recvmsg(self, bufsize: int, ancbufsize: int = 0, flags: int = 0) -> Any:
            dw = _dontwait(flags)
            if dw is None or dw[1]:
                return _C.recvmsg(self, bufsize, ancbufsize, flags)
            return self._io(_C.recvmsg, READ, bufsize, ancbufsize, dw[0])

        def recvmsg_into(self, buffers: Any, ancbufsize: int = 0, flags: int = 0) -> Any:
            dw = _dontwait(flags)
            if dw is None or dw[1]:
                return _C.recvmsg_into(self, buffers, ancbufsize, flags)
            return self._io(_C.recvmsg_into, READ, _reusable(buffers), ancbufsize, dw[0])

    # ------------------------------------------------------------------ writing
    def send(self, data: Any, flags: int = 0) -> int:
        dw = _dontwait(flags)
        if dw is None or dw[1]:
            return _c_send(self, data, flags)
        return self._io(_c_send, WRITE, data, dw[0])

    def sendall(self, data: Any, flags: int = 0) -> None:
        """All of ``data``; the timeout bounds the whole call, as in the stdlib. With the
        caller's MSG_DONTWAIT, what fits now, then ``BlockingIOError``."""
        dw = _dontwait(flags)
        if dw is None:
            return _C.sendall(self, data, flags)  # the stdlib's TypeError
        f, once = dw
        view = byte_view(data)
        deadline = self._deadline()
        total = len(view)
        sent = 0
        while sent < total:
            try:
                sent += _c_send(self, view[sent:], f)
                continue
            except (BlockingIOError, InterruptedError):
                if once:
                    raise
            self._wait(WRITE, deadline)
        return None

    def sendto(self, data: Any, *args: Any) -> int:
        # (data, address) or (data, flags, address); anything else is the C method's error.
        if len(args) == 2:
            dw = _dontwait(args[0])
            if dw is not None and not dw[1]:
                return self._io(_c_sendto, WRITE, data, dw[0], args[1])
        elif len(args) == 1:
            return self._io(_c_sendto, WRITE, data, _DONTWAIT, args[0])
        return _c_sendto(self, data, *args)

    if hasattr(_C, "sendmsg"):
        def sendmsg(self, buffers: Any, ancdata: Any = (), flags: int = 0,
                    address: Any = None) -> int:
            dw = _dontwait(flags)
            extra = () if address is None else (address,)
            if dw is None or dw[1]:
                return _C.sendmsg(self, buffers, ancdata, flags, *extra)
            return self._io(_C.sendmsg, WRITE, _reusable(buffers), _reusable(ancdata), dw[0],
                            *extra)

    def _sendfile_use_sendfile(self, file: Any, offset: int = 0,
                               count: int | None = None) -> int:
        """The stdlib's ``os.sendfile`` loop, waiting on the hub instead of in ``poll()``
        (each wait bounded by the timeout, as in the stdlib)."""
        self._check_sendfile_params(file, offset, count)
        giveup = _stdsocket._GiveupOnSendfile
        try:
            fileno = file.fileno()
            fsize = os.fstat(fileno).st_size
        except (AttributeError, io.UnsupportedOperation, OSError) as err:
            raise giveup(err) from None  # not a regular file: the send() fallback
        if not fsize:
            return 0
        blocksize = min(count or fsize, 2 ** 30)  # bpo-38319
        if self._rp_timeout == 0:
            raise ValueError("non-blocking sockets are not supported")
        total_sent = 0
        try:
            while True:
                if count:
                    blocksize = count - total_sent
                    if blocksize <= 0:
                        break
                try:
                    sent = self._nonblocking_call(_sendfile_op, fileno, offset, blocksize)
                except BlockingIOError:
                    self._wait(WRITE, self._deadline())
                    continue
                except OSError as err:
                    if total_sent == 0:
                        raise giveup(err) from None
                    raise err from None
                if sent == 0:
                    break  # EOF
                offset += sent
                total_sent += sent
            return total_sent
        finally:
            if total_sent > 0 and hasattr(file, "seek"):
                file.seek(offset)

    # ------------------------------------------------------------------ connect/accept
    def _resolve(self, address: Any) -> Any:
        """Resolve a host name cooperatively (the C connect would block in getaddrinfo)."""
        if self.family not in (_socket.AF_INET, _socket.AF_INET6) or not isinstance(
                address, tuple) or len(address) < 2:
            return address
        try:
            operator.index(address[1])
        except TypeError:
            return address  # the C method raises the stdlib's error before any lookup
        host = address[0]
        if isinstance(host, str) and host:
            try:
                _socket.inet_pton(self.family, host.split("%", 1)[0])
                return address
            except OSError:
                pass
            # Four arguments, like most code that wraps or fakes getaddrinfo expects.
            infos = _stdsocket.getaddrinfo(host, address[1], self.family, self.type)
            return infos[0][4]
        return address

    def connect_ex(self, address: Any) -> int:
        try:
            self._connect(address, _c_connect_ex)
        except TimeoutError:
            return errno.ETIMEDOUT
        except OSError as exc:
            if exc.errno is None:
                raise
            return exc.errno
        return 0

    def connect(self, address: Any) -> None:
        self._connect(address, _c_connect)

    def _connect(self, address: Any, op: Any) -> None:
        """Connect as the C ``op`` (``connect`` or ``connect_ex``: its argument errors name
        it) would, waiting on the loop instead of in the kernel.

        Linux keeps a socket whose non-blocking connect completed "connecting" until the
        next connect(2), which returns 0; later ones say EISCONN (net/ipv4/af_inet.c,
        ``__inet_stream_connect``). The stdlib's blocking connect leaves it connected and
        its timeout connect leaves it connecting, so a blocking socket gets that one extra
        connect(2) here: connecting it again is EISCONN, as in the stdlib.
        """
        self._check_open()
        address = self._resolve(address)
        deadline = self._deadline()
        try:
            code = self._nonblocking_call(op, address) or 0
        except OSError as exc:  # C connect: EINPROGRESS is a BlockingIOError
            if exc.errno is None or isinstance(exc, _socket.gaierror):
                raise
            code = exc.errno
        if code == 0:
            return
        if code not in _INPROGRESS:
            raise OSError(code, os.strerror(code))
        if self._rp_timeout == 0.0:
            raise BlockingIOError(code, os.strerror(code))
        # A local (loopback) connect completes inside connect(2), which still says
        # EINPROGRESS: one getpeername spares the loop round trip of a wait.
        try:
            _c_getpeername(self)
            code = 0
        except OSError:
            pass  # pending, or failed: the wait below and SO_ERROR tell which
        while code:
            self._wait(WRITE, deadline)
            code = _c_getsockopt(self, _socket.SOL_SOCKET, _socket.SO_ERROR)
            if code and code not in _INPROGRESS:
                raise OSError(code, os.strerror(code))
        if self._rp_timeout is None:
            self._nonblocking_call(_c_connect_ex, address)  # 0: now "connected"

    def _accept(self) -> tuple[int, Any]:
        return self._io(GreenSocket._nonblocking_call, READ, _c_accept)

    # ------------------------------------------------------------------ shutdown/close
    def shutdown(self, how: int) -> None:
        # A blocked reader sees EOF: the kernel makes the fd readable (shutdown(2)).
        _c_shutdown(self, how)

    def _real_close(self, _ss: Any = original_socket_class) -> None:
        self._before_close()
        _ss._real_close(self)

    def __del__(self) -> None:
        # Replaces _socket.socket's finalizer. A socket the user closed while makefile()
        # objects were open keeps its fd until the last of them closes; when both die in one
        # garbage cycle (a TLS socket is in one with its channel) the order is arbitrary, so
        # close that fd silently. A socket never closed gets the stdlib's ResourceWarning.
        # As the C finalizer: the fd is closed even when the warning raises (warnings as
        # errors, as urllib3's suite runs); the raise then reports as unraisable.
        if _c_fileno(self) < 0:
            return
        try:
            if not getattr(self, "_closed", False):
                warnings.warn(f"unclosed {self!r}", ResourceWarning, stacklevel=2, source=self)
        finally:
            try:
                _socket.socket.close(self)
            except OSError:
                pass

    def _before_close(self) -> None:
        fd = _c_fileno(self)
        if fd < 0:
            return
        waits = getattr(self, "_rp_waits", None)
        if waits is not None and waits.busy:
            waits.cancel_all()
        _forget_fd(fd)

    def detach(self) -> int:
        self._before_close()
        if self._rp_timeout is None and not self._rp_fd_follows_timeout \
                and _c_fileno(self) >= 0:
            _c_setblocking(self, True)  # hand the fd out in the mode the caller expects
        return super().detach()


_AGAIN: Any = object()


def _attempt(sock: Any, op: Any, *args: Any) -> Any:
    """``op(sock, *args)``, or :data:`_AGAIN` when it would block."""
    try:
        return op(sock, *args)
    except (BlockingIOError, InterruptedError):
        return _AGAIN


def _reusable(items: Any) -> Any:
    """An iterable argument as a tuple, so a retry after EAGAIN sees it again (a generator
    would be used up by the first try); a non-iterable as is, for the C method's error."""
    if isinstance(items, (list, tuple)):
        return items
    try:
        return tuple(items)
    except TypeError:
        return items


def _sendfile_op(sock: Any, fileno: int, offset: int, blocksize: int) -> int:
    return os.sendfile(_c_fileno(sock), fileno, offset, blocksize)


def _yield_to_hub() -> None:
    """Let other greenlets run before reporting EAGAIN or EOF.

    Code that polls a socket in a loop (``while True: try: recv ...``) in a green thread
    would otherwise never give other greenlets a chance to run: with real threads the OS
    preempts it, with greenlets nothing does. Only where a hub already runs
    in this thread (a real thread without one is preempted by the OS anyway).
    """
    from gevent import getcurrent, sleep
    from gevent._hub_local import get_hub_if_exists

    hub = get_hub_if_exists()
    if hub is not None and getcurrent() is not hub:
        sleep(0)


def _forget_fd(fd: int) -> None:
    """Tell this thread's loop the fd is going away, so a reused number is re-armed."""
    try:
        from gevent._hub_local import get_hub_if_exists

        hub = get_hub_if_exists()
        loop = getattr(hub, "loop", None) if hub is not None else None
        ev = getattr(loop, "io_loop", None)
        if ev is not None and ev.is_loop_thread() and not ev.closed:
            ev.closing_fd(fd)
    except Exception:  # noqa: BLE001 - best effort; the wait path re-arms anyway
        pass
