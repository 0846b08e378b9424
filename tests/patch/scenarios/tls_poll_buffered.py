"""Default patch: select.poll counts a TLS socket whose bytes are already read into user
space (``_rp_pending``) as readable, as select and selectors do, though its fd is not.

Also: only a registration asking for read bits gets it, with the bits it asked for; an
fd number registered without its object is the kernel's answer alone; unregister and
modify keep the tracking right; the poll object keeps no socket alive."""

import gc
import os
import select
import socket
import sys
import weakref

import gevent

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tls_common import client_context, server_context  # noqa: E402

listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(1)
accepted = gevent.spawn(
    lambda: server_context().wrap_socket(listener.accept()[0], server_side=True))
client = client_context().wrap_socket(
    socket.create_connection(listener.getsockname(), timeout=30), server_hostname="localhost")
server = accepted.get(timeout=30)
server.settimeout(30)
client.sendall(b"hello buffered world")
assert server.recv(1) == b"h"
# The one record came in one segment and was read whole: the fd shows nothing more.
assert select.select([server.fileno()], [], [], 0) == ([], [], []), "fd still readable"
assert server._rp_pending() > 0
fd = server.fileno()

p = select.poll()
p.register(server, select.POLLIN)
assert p.poll(0) == [(fd, select.POLLIN)], p.poll(0)
assert p.poll(30000) == [(fd, select.POLLIN)]  # a blocking poll returns at once too
p.modify(server, select.POLLIN | select.POLLRDNORM | select.POLLOUT)
assert p.poll(0) == [(fd, select.POLLIN | select.POLLRDNORM | select.POLLOUT)], p.poll(0)
p.modify(server, select.POLLOUT)  # no read interest: only what the kernel says
assert p.poll(0) == [(fd, select.POLLOUT)], p.poll(0)
p.unregister(server)
p.register(fd, select.POLLIN)  # a bare number: nothing to ask, the kernel's answer
assert p.poll(0) == [], p.poll(0)
p.unregister(fd)
p.register(server, select.POLLRDNORM)
assert p.poll(0) == [(fd, select.POLLRDNORM)], p.poll(0)
p.unregister(server)
assert p.poll(0) == []
print("poll counts buffered TLS bytes")

assert server.recv(100) == b"ello buffered world"
p.register(server, select.POLLIN)
assert p.poll(0) == [], "nothing buffered any more"

client.close()
server.close()
listener.close()
ref = weakref.ref(server)
del server, accepted
gc.collect()
assert ref() is None, "the poll object kept the socket alive"
print("done")
