"""Default patch: select.select and the DefaultSelector count a TLS socket whose plaintext
is already buffered in user space (``_rp_pending``) as readable, though its fd is not."""

import os
import select
import selectors
import shutil
import socket
import ssl
import tempfile

import gevent

from reseau_patch import pki

folder = tempfile.mkdtemp()
ca = pki.make_ca()
cert, key = ca.issue(["localhost"]).write_pem(folder, "server")
ca_path = os.path.join(folder, "ca.pem")
with open(ca_path, "wb") as f:
    f.write(ca.cert_pem())
server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
server_ctx.load_cert_chain(cert, key)
client_ctx = ssl.create_default_context(cafile=ca_path)

listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(1)
accepted = gevent.spawn(lambda: server_ctx.wrap_socket(listener.accept()[0], server_side=True))
client = client_ctx.wrap_socket(socket.create_connection(listener.getsockname(), timeout=30),
                                server_hostname="localhost")
server = accepted.get(timeout=30)
server.settimeout(30)
client.sendall(b"hello buffered world")
assert server.recv(1) == b"h"
# The one record came in one segment and was read whole: the fd shows nothing more.
assert select.select([server.fileno()], [], [], 0) == ([], [], []), "fd still readable"
assert server._rp_pending() > 0
r, _, _ = select.select([server], [], [], 30)
assert r == [server], r
sel = selectors.DefaultSelector()
sel.register(server, selectors.EVENT_READ, "tls")
ready = sel.select(30)
assert [(key.data, ev) for key, ev in ready] == [("tls", selectors.EVENT_READ)], ready
sel.unregister(server)
sel.register(server, selectors.EVENT_READ, "again")  # unregister/register keep tracking
assert [key.data for key, _ in sel.select(30)] == ["again"]
assert server.recv(100) == b"ello buffered world"
sel.close()
print("buffered TLS bytes count as readable")
client.close()
server.close()
listener.close()
shutil.rmtree(folder)
print("done")
