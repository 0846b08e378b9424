"""urllib3 imported *before* patch_all(): its create_connection is adapted all the same.
Run with plain ``python`` (not ``reseau_patch run``)."""

import socket
import unittest.mock

import urllib3.util.connection as u3conn

original = u3conn.create_connection
assert not getattr(original, "__reseau__", False)

import reseau_patch  # noqa: E402

reseau_patch.patch_all()
assert u3conn.create_connection.__wrapped__ is original
assert u3conn.create_connection.__reseau__

from reseau_patch.patch.clients import RaceStats  # noqa: E402

# Two addresses (refused on the first, live on the second): both tried, the live one wins,
# with urllib3's socket options applied.
live = socket.socket()
live.bind(("127.0.0.1", 0))
live.listen(1)
port = live.getsockname()[1]
answer = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.3", port)),
          (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
# urllib3's tests mock getaddrinfo this way; the racing twin looks it up at call time.
with unittest.mock.patch.object(u3conn.socket, "getaddrinfo", return_value=answer):
    sock = u3conn.create_connection(("two.reseau.test", port), timeout=5,
                                    socket_options=[(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)])
print("tried", [info[4][0] for info in RaceStats.started], sock.getpeername()[0],
      sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) != 0, sock.gettimeout())
sock.close()
live.close()
print("done")
