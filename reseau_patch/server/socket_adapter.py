"""``SocketAdapter``: a :class:`TCPSocket` seen through the stdlib socket methods that
gevent ``StreamServer`` handlers use (``recv``, ``recv_into``, ``send``, ``sendall``,
``makefile``, ``settimeout``, ``shutdown``, ``close``, ``getpeername``).

``StreamServer(address, handle, wrap=SocketAdapter)`` hands ``handle`` an adapter instead
of the bare ``TCPSocket``, so handlers written for gevent run unchanged. Same thread and
one-reader/one-writer rules as the ``TCPSocket`` it wraps; closing the adapter closes it.
Errors are the stdlib's (``TimeoutError`` for a deadline, ``OSError(EBADF)`` once closed).
"""

from __future__ import annotations

import io
import socket
from typing import Any

from ..sockets import TCPSocket

__all__ = ["SocketAdapter"]


class SocketAdapter:
    """The stdlib socket calls a gevent handler makes, over one :class:`TCPSocket`."""

    def __init__(self, tcp: TCPSocket) -> None:
        self.tcp = tcp
        self._io_refs = 0
        self._closed = False

    # ---------------------------------------------------------------- reading
    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        if flags:
            raise ValueError(f"recv flags are not supported, got {flags!r}")
        if bufsize < 0:
            raise ValueError(f"negative buffersize in recv: {bufsize}")
        buf = bytearray(bufsize)
        n = self.tcp.readinto(buf) if bufsize else 0
        del buf[n:]
        return bytes(buf)

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        if flags:
            raise ValueError(f"recv_into flags are not supported, got {flags!r}")
        view = memoryview(buffer).cast("B")
        if nbytes < 0:
            raise ValueError(f"negative buffersize in recv_into: {nbytes}")
        if nbytes:
            if nbytes > len(view):
                raise ValueError(f"buffer too small for requested bytes: {nbytes}")
            view = view[:nbytes]
        return self.tcp.readinto(view) if len(view) else 0

    # ---------------------------------------------------------------- writing
    def send(self, data: Any, flags: int = 0) -> int:
        if flags:
            raise ValueError(f"send flags are not supported, got {flags!r}")
        return self.tcp.write(data)

    def sendall(self, data: Any, flags: int = 0) -> None:
        self.send(data, flags)

    # ---------------------------------------------------------------- the rest
    def makefile(self, mode: str = "r", buffering: int | None = None, *,
                 encoding: str | None = None, errors: str | None = None,
                 newline: str | None = None) -> Any:
        """As ``socket.socket.makefile`` (the same SocketIO-based file objects)."""
        if not set(mode) <= {"r", "w", "b"}:
            raise ValueError(f"invalid mode {mode!r} (only r, w, b allowed)")
        writing, reading, binary = "w" in mode, "r" in mode or "w" not in mode, "b" in mode
        rawmode = ("r" if reading else "") + ("w" if writing else "")
        raw = socket.SocketIO(self, rawmode)  # type: ignore[arg-type]
        self._io_refs += 1
        if buffering is None:
            buffering = -1
        if buffering < 0:
            buffering = io.DEFAULT_BUFFER_SIZE
        if buffering == 0:
            if not binary:
                raise ValueError("unbuffered streams must be binary")
            return raw
        if reading and writing:
            buffer: Any = io.BufferedRWPair(raw, raw, buffering)
        elif reading:
            buffer = io.BufferedReader(raw, buffering)
        else:
            buffer = io.BufferedWriter(raw, buffering)
        if binary:
            return buffer
        text = io.TextIOWrapper(buffer, encoding, errors, newline)
        text.mode = mode
        return text

    def _decref_socketios(self) -> None:  # the stdlib SocketIO protocol
        if self._io_refs > 0:
            self._io_refs -= 1
        if self._closed and not self._io_refs:
            self.tcp.close()

    def fileno(self) -> int:
        """-1: the channel owns the fd, and a caller polling it would miss buffered bytes."""
        return -1

    def settimeout(self, timeout: float | None) -> None:
        self.tcp.settimeout(timeout)

    def gettimeout(self) -> float | None:
        return self.tcp.gettimeout()

    def setblocking(self, flag: bool) -> None:
        self.tcp.settimeout(None if flag else 0.0)

    def getpeername(self) -> Any:
        return _addr(self.tcp.getpeername())

    def getsockname(self) -> Any:
        return _addr(self.tcp.getsockname())

    def shutdown(self, how: int) -> None:
        if how in (socket.SHUT_WR, socket.SHUT_RDWR):
            self.tcp.closewrite()
        elif how != socket.SHUT_RD:
            raise ValueError(f"invalid shutdown how: {how!r}")

    def close(self) -> None:
        self._closed = True
        if not self._io_refs:
            self.tcp.close()

    @property
    def closed(self) -> bool:
        return self.tcp.closed

    def __enter__(self) -> SocketAdapter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<SocketAdapter {self.tcp!r}>"


def _addr(a: Any) -> Any:
    return (str(a[0]), a[1]) if isinstance(a, tuple) else a
