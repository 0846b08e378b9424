"""Default patch: redis-py and websocket-client, which connect address by address, skip a
black-holed first address (Happy Eyeballs through patch/clients.py). Asserts on the path
taken and on the options each client sets, never on time."""

import socket

import gevent
import redis.connection
import websocket._http

from reseau_patch.io.resolver import StaticResolver
from reseau_patch.patch.clients import RaceStats

NAME = "clients.reseau.test"


def black_hole_and_listener():
    for _ in range(50):
        hole = socket.socket()
        hole.bind(("127.0.0.2", 0))
        hole.listen(0)
        port = hole.getsockname()[1]
        filler = socket.create_connection(("127.0.0.2", port), timeout=30)
        live = socket.socket()
        try:
            live.bind(("127.0.0.1", port))
        except OSError:
            live.close()
            filler.close()
            hole.close()
            continue
        live.listen(8)
        return hole, filler, live, port
    raise RuntimeError("no port free on both 127.0.0.1 and 127.0.0.2")


hole, filler, live, port = black_hole_and_listener()
hub_resolver = gevent.get_hub().resolver
hub_resolver.resolver = StaticResolver({NAME: ["127.0.0.2", "127.0.0.1"]},
                                       fallback=hub_resolver.resolver)
try:
    conn = redis.connection.Connection(host=NAME, port=port, socket_connect_timeout=3,
                                       socket_timeout=7)
    sock = conn._connect()
    tried = [info[4][0] for info in RaceStats.started]
    print("redis", tried, sock.getpeername()[0], sock.gettimeout(),
          sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0, conn.host == NAME)
    sock.close()

    infos = socket.getaddrinfo(NAME, port, 0, socket.SOCK_STREAM)
    sock = websocket._http._open_socket(infos, [], 3.0)
    tried = [info[4][0] for info in RaceStats.started]
    print("websocket", tried, sock.getpeername()[0], sock.gettimeout())
    sock.close()
finally:
    live.close()
    filler.close()
    hole.close()
print("done")
