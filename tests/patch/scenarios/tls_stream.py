"""Random write and read sizes through patched TLS sockets, both directions at once:
every byte arrives once, in order (seeded; 4 connections, blocking and timeout modes)."""

import hashlib
import os
import random
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import gevent  # noqa: E402
from tls_common import client_context, server_context  # noqa: E402

sctx, cctx = server_context(), client_context()
lsock = socket.create_server(("127.0.0.1", 0))
port = lsock.getsockname()[1]


def reader(s, rng, total):
    h = hashlib.sha256()
    got = 0
    buf = bytearray(1 << 20)
    while got < total:
        n = rng.choice([1, 7, 100, 4096, 16384, 16385, 65536, 300000, 1 << 20])
        if rng.random() < 0.5:
            data = s.recv(n)
        else:
            k = s.recv_into(buf, n)
            data = bytes(buf[:k])
        assert data, f"EOF after {got} of {total}"
        h.update(data)
        got += len(data)
    return h.hexdigest()


def writer(s, rng, payload):
    pos = 0
    while pos < len(payload):
        n = rng.choice([1, 13, 5000, 16384, 70000, 1 << 20])
        piece = payload[pos:pos + n]
        if rng.random() < 0.5:
            s.sendall(piece)
            pos += len(piece)
        else:
            pos += s.send(piece)


def echo(conn):
    s = sctx.wrap_socket(conn, server_side=True)
    while True:
        data = s.recv(rng_server.choice([10, 1000, 65536]))
        if not data:
            break
        s.sendall(data)
    s.close()


def acceptor(count):
    for _ in range(count):
        conn, _ = lsock.accept()
        gevent.spawn(echo, conn)


rng_server = random.Random(7)
results = []
CONNS = 4
acc = gevent.spawn(acceptor, CONNS)
for i in range(CONNS):
    rng = random.Random(i)
    payload = random.Random(100 + i).randbytes(3_000_000 + i)
    c = cctx.wrap_socket(socket.create_connection(("127.0.0.1", port)),
                         server_hostname="localhost")
    c.settimeout(None if i % 2 else 30)
    r = gevent.spawn(reader, c, random.Random(50 + i), len(payload))
    w = gevent.spawn(writer, c, rng, payload)
    gevent.joinall([r, w], timeout=60, raise_error=True)
    results.append(r.value == hashlib.sha256(payload).hexdigest())
    c.close()
acc.join(10)
lsock.close()
print("all bytes once, in order", results)
