"""gevent.Timeout / kill in the middle of TLS calls (under patch_all()): no fd, no
greenlet left behind, and a connection whose read was cancelled keeps working."""

import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import gevent  # noqa: E402
from tls_common import client_context, server_context  # noqa: E402


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


sctx, cctx = server_context(), client_context()
lsock = socket.create_server(("127.0.0.1", 0))
port = lsock.getsockname()[1]
gevent.sleep(0.01)  # the hub and its loop fds exist from here on
before = fds()

# A handshake with a peer that never answers, cut by gevent.Timeout: the fd is closed.
silent = socket.create_server(("127.0.0.1", 0))
raw = socket.create_connection(silent.getsockname())
try:
    with gevent.Timeout(0.2):
        cctx.wrap_socket(raw, server_hostname="localhost")
except gevent.Timeout:
    print("handshake cancelled")
raw.close()  # detached by wrap_socket: a no-op, as in the stdlib
peer, _ = silent.accept()
peer.close()
silent.close()
print("fds after cancelled handshake", fds() - before)

# A read cut by a Timeout, then the same connection reads and writes on.
release = gevent.event.Event()


def server():
    conn, _ = lsock.accept()
    s = sctx.wrap_socket(conn, server_side=True)
    release.wait(10)
    s.sendall(b"late")
    s.sendall(s.recv(10).upper())
    s.close()


srv = gevent.spawn(server)
c = cctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                     server_hostname="localhost")
try:
    with gevent.Timeout(0.2):
        c.recv(10)
except gevent.Timeout:
    print("read cancelled")
release.set()
print("after cancel", c.recv(10))
c.sendall(b"ok")
print("echo", c.recv(10))

# A greenlet blocked in recv, killed.
reader = gevent.spawn(c.recv, 10)
gevent.sleep(0.05)
reader.kill(block=True, timeout=5)
print("killed reader dead", reader.dead)
c.close()
srv.join(10)
lsock.close()
gevent.sleep(0.05)
print("fds at the end", fds() - (before - 1))  # the listener counted in before is closed
