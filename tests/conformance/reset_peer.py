"""A peer in a real thread (stdlib sockets, blocking) that sends, waits until the kernel
says every byte was acknowledged, then resets the connection (SO_LINGER 0)."""

from __future__ import annotations

import fcntl
import socket
import ssl
import struct
import termios
import threading
import time


class ResettingPeer:
    def __init__(self, payload: bytes, tls: ssl.SSLContext | None = None) -> None:
        self.payload = payload
        self.tls = tls
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(10)
        self.address = self.listener.getsockname()
        self.error: BaseException | None = None
        self.acked = False
        self.thread = threading.Thread(target=self._run, name="resetting-peer")
        self.thread.start()

    def _run(self) -> None:
        try:
            conn, _ = self.listener.accept()
            conn.settimeout(10)
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
            conn.sendall(self.payload)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:  # TIOCOUTQ: bytes not yet acknowledged
                unacked = struct.unpack("i", fcntl.ioctl(conn.fileno(), termios.TIOCOUTQ,
                                                         b"\0\0\0\0"))[0]
                if unacked == 0:
                    self.acked = True
                    break
                time.sleep(0.005)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()  # an SSLSocket's close sends no close_notify: the RST ends it
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc
        finally:
            self.listener.close()

    def done(self) -> bool:
        return not self.thread.is_alive()
