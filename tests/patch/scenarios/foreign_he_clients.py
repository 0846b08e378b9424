"""Default patch: redis-py and websocket-client, which connect address by address, skip a
black-holed first address (Happy Eyeballs through patch/clients.py). Asserts on the path
taken and on the options each client sets, never on time."""

import os
import socket

import gevent
import redis.connection
import urllib3.util.connection
import websocket._http

from reseau_patch.io.resolver import StaticResolver
from reseau_patch.patch.clients import RaceStats

NAME = "clients.reseau.test"


def black_holes_and_listener():
    """Black holes on 127.0.0.2 and 127.0.0.3 and a listener on 127.0.0.1, one port."""
    for _ in range(50):
        opened = []
        try:
            hole = socket.socket()
            opened.append(hole)
            hole.bind(("127.0.0.2", 0))
            hole.listen(0)
            port = hole.getsockname()[1]
            opened.append(socket.create_connection(("127.0.0.2", port), timeout=30))
            hole3 = socket.socket()
            opened.append(hole3)
            hole3.bind(("127.0.0.3", port))
            hole3.listen(0)
            opened.append(socket.create_connection(("127.0.0.3", port), timeout=30))
            live = socket.socket()
            opened.append(live)
            live.bind(("127.0.0.1", port))
            live.listen(8)
        except OSError:
            for sock in opened:
                sock.close()
            continue
        return opened, live, port
    raise RuntimeError("no port free on 127.0.0.1, 127.0.0.2 and 127.0.0.3")


opened, live, port = black_holes_and_listener()
hub_resolver = gevent.get_hub().resolver
hub_resolver.resolver = StaticResolver({NAME: ["127.0.0.2", "127.0.0.1"]},
                                       fallback=hub_resolver.resolver)
try:
    # A losing attempt is killed inside the client's own per-address code, which closes its
    # socket on OSError only: the race closes it (else it would stay open until the hub let
    # the GreenletExit go, then warn as unclosed wherever that happens).
    fds_at_start = sorted(os.listdir("/proc/self/fd"))
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
    assert sorted(os.listdir("/proc/self/fd")) == fds_at_start, "a losing attempt left a socket"

    # Cancelling a race (gevent.Timeout) closes every attempt's socket.
    hub_resolver.resolver.set(NAME, ["127.0.0.2", "127.0.0.3"])
    before = sorted(os.listdir("/proc/self/fd"))
    try:
        with gevent.Timeout(0.6):
            urllib3.util.connection.create_connection((NAME, port), timeout=10)
    except gevent.Timeout:
        pass
    else:
        raise AssertionError("connected to a black hole")
    tried = [info[4][0] for info in RaceStats.started]
    assert tried == ["127.0.0.2", "127.0.0.3"], tried
    assert sorted(os.listdir("/proc/self/fd")) == before, "a cancelled race left a socket"
    print("cancelled race leaves nothing")
finally:
    for sock in opened:
        sock.close()
print("done")
