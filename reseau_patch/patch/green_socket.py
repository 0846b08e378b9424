"""The patched ``socket.socket``: the stdlib class, cooperative on the Reseau loop.

It *subclasses* the original ``socket.socket`` (unlike gevent's wrapper), so code that
captured the original class before patching still sees ``isinstance(s, socket)`` hold,
and every C method it does not override keeps the stdlib's exact behaviour and errors.

Truthful fd readiness (DESIGN.md): a read goes to the kernel first and subscribes to
readiness only on ``EAGAIN``; bytes stay in the kernel until someone asks, so code that
polls ``fileno()`` with a poller it captured before patching sees the truth, and an idle
socket holds no buffer and no loop state. The C socket is always non-blocking; the
stdlib timeout (``settimeout``/``setblocking``/``getdefaulttimeout``) is emulated here,
with the stdlib's errors (``TimeoutError("timed out")``, ``BlockingIOError``, and
``OSError(EBADF)`` for timeout calls on a closed socket, which gevent gets wrong).

TLS: ``SSLContext.wrap_socket(sock)`` moves the connection onto a channel with our TLS
handler (see :mod:`reseau_patch.patch.green_ssl`).

Threads: waits park on the *calling* thread's loop, so a socket made in one thread works
in another (connection pools do this). ``close()``/``shutdown()`` from another thread
wake a blocked reader with ``OSError(EBADF)`` / EOF, never ``ValueError``.
"""

from __future__ import annotations

import _socket
import errno
import os
import socket as _stdsocket
import time
import warnings
from typing import Any

from .waiting import READ, WRITE, FdWaits, timed_out

__all__ = ["GreenSocket", "original_socket_class"]

#: The class we subclass, captured before anything is patched.
original_socket_class: type = _stdsocket.socket
_C = _socket.socket
_c_recv = _C.recv
_c_recv_into = _C.recv_into
_c_recvfrom = _C.recvfrom
_c_recvfrom_into = _C.recvfrom_into
_c_send = _C.send
_c_sendto = _C.sendto
_c_connect_ex = _C.connect_ex
_c_accept = _C._accept
_c_setblocking = _C.setblocking
_c_gettimeout = _C.gettimeout
_c_fileno = _C.fileno
_c_shutdown = _C.shutdown
_c_getsockopt = _C.getsockopt
_INPROGRESS = (errno.EINPROGRESS, errno.EALREADY, errno.EWOULDBLOCK)
_SENTINEL = object()


def _ebadf() -> OSError:
    return OSError(errno.EBADF, "Bad file descriptor")


class GreenSocket(original_socket_class):  # type: ignore[misc, valid-type]
    """``socket.socket`` after ``reseau_patch.patch_all()``."""

    #: Bytes read past a TLS close_notify by ``SSLSocket.unwrap()``: the plaintext that
    #: followed it, served before the kernel's.
    _rp_prefix = b""

    def _rp_pending(self) -> int:
        return len(self._rp_prefix)

    def _rp_take_prefix(self, n: int) -> bytes:
        data, self._rp_prefix = self._rp_prefix[:n], self._rp_prefix[n:]
        return data

    def __init__(self, family: int = -1, type: int = -1, proto: int = -1,  # noqa: A002
                 fileno: int | None = None) -> None:
        super().__init__(family, type, proto, fileno)
        self._rp_timeout: float | None = _stdsocket.getdefaulttimeout()
        self._rp_waits = FdWaits(self)
        _c_setblocking(self, False)

    # ------------------------------------------------------------------ timeouts
    def _check_open(self) -> None:
        if _c_fileno(self) < 0:
            raise _ebadf()

    def settimeout(self, timeout: float | None) -> None:
        self._check_open()
        if timeout is not None:
            try:
                timeout = float(timeout)
            except TypeError:
                raise TypeError(f"Timeout value must be int, float or None, "
                                f"got {type(timeout).__name__}") from None
            if timeout < 0.0:
                raise ValueError("Timeout value out of range")
        self._rp_timeout = timeout

    def gettimeout(self) -> float | None:
        return self._rp_timeout

    @property
    def timeout(self) -> float | None:  # type: ignore[override]
        return self._rp_timeout

    def setblocking(self, flag: bool) -> None:
        self._check_open()
        self._rp_timeout = None if flag else 0.0

    def getblocking(self) -> bool:
        self._check_open()
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
        self._rp_waits.wait(fd, events, deadline)

    def _io(self, op: Any, events: int, *args: Any) -> Any:
        deadline = self._deadline()
        while True:
            try:
                return op(self, *args)
            except (BlockingIOError, InterruptedError):
                pass
            self._wait(events, deadline)

    # ------------------------------------------------------------------ reading
    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        if self._rp_prefix and bufsize > 0 and not flags:
            return self._rp_take_prefix(bufsize)
        data = self._io(_c_recv, READ, bufsize, flags)
        if not data and bufsize:
            _yield_to_hub()  # a loop polling a closed peer must not starve the others
        return data

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        if self._rp_prefix and not flags:
            view = memoryview(buffer).cast("B")
            data = self._rp_take_prefix(nbytes or view.nbytes)
            view[:len(data)] = data
            return len(data)
        n = self._io(_c_recv_into, READ, buffer, nbytes, flags)
        if not n:
            _yield_to_hub()
        return n

    def recvfrom(self, bufsize: int, flags: int = 0) -> tuple[bytes, Any]:
        return self._io(_c_recvfrom, READ, bufsize, flags)

    def recvfrom_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> tuple[int, Any]:
        return self._io(_c_recvfrom_into, READ, buffer, nbytes, flags)

    if hasattr(_C, "recvmsg"):
        def recvmsg(self, bufsize: int, ancbufsize: int = 0, flags: int = 0) -> Any:
            return self._io(_C.recvmsg, READ, bufsize, ancbufsize, flags)

        def recvmsg_into(self, buffers: Any, ancbufsize: int = 0, flags: int = 0) -> Any:
            return self._io(_C.recvmsg_into, READ, buffers, ancbufsize, flags)

    # ------------------------------------------------------------------ writing
    def send(self, data: Any, flags: int = 0) -> int:
        return self._io(_c_send, WRITE, data, flags)

    def sendall(self, data: Any, flags: int = 0) -> None:
        """All of ``data``; the timeout bounds the whole call, as in the stdlib."""
        view = memoryview(data).cast("B")
        deadline = self._deadline()
        total = len(view)
        sent = 0
        while sent < total:
            try:
                sent += _c_send(self, view[sent:], flags)
                continue
            except (BlockingIOError, InterruptedError):
                pass
            self._wait(WRITE, deadline)

    def sendto(self, data: Any, flags_or_addr: Any, addr: Any = _SENTINEL) -> int:
        if addr is _SENTINEL:
            return self._io(_c_sendto, WRITE, data, flags_or_addr)
        return self._io(_c_sendto, WRITE, data, flags_or_addr, addr)

    if hasattr(_C, "sendmsg"):
        def sendmsg(self, buffers: Any, ancdata: Any = (), flags: int = 0,
                    address: Any = None) -> int:
            if address is None:
                return self._io(_C.sendmsg, WRITE, buffers, ancdata, flags)
            return self._io(_C.sendmsg, WRITE, buffers, ancdata, flags, address)

    # ------------------------------------------------------------------ connect/accept
    def _resolve(self, address: Any) -> Any:
        """Resolve a host name cooperatively (the C connect would block in getaddrinfo)."""
        if self.family not in (_socket.AF_INET, _socket.AF_INET6) or not isinstance(
                address, tuple) or len(address) < 2:
            return address
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
            self._connect(address)
        except TimeoutError:
            return errno.ETIMEDOUT
        except OSError as exc:
            if exc.errno is None:
                raise
            return exc.errno
        return 0

    def connect(self, address: Any) -> None:
        self._connect(address)

    def _connect(self, address: Any) -> None:
        self._check_open()
        address = self._resolve(address)
        deadline = self._deadline()
        code = _c_connect_ex(self, address)
        if code == 0 or code == errno.EISCONN:
            return
        if code not in _INPROGRESS:
            raise OSError(code, os.strerror(code))
        if self._rp_timeout == 0.0:
            raise BlockingIOError(code, os.strerror(code))
        while True:
            self._wait(WRITE, deadline)
            code = _c_getsockopt(self, _socket.SOL_SOCKET, _socket.SO_ERROR)
            if code == 0:
                return
            if code not in _INPROGRESS:
                raise OSError(code, os.strerror(code))

    def _accept(self) -> tuple[int, Any]:
        return self._io(_c_accept, READ)

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
        if _c_fileno(self) < 0:
            return
        if not getattr(self, "_closed", False):
            warnings.warn(f"unclosed {self!r}", ResourceWarning, stacklevel=2, source=self)
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
        if self._rp_timeout is None and _c_fileno(self) >= 0:
            _c_setblocking(self, True)  # hand the fd out in the mode the caller expects
        return super().detach()


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
