"""Scenario: a sockets-API server under RLIMIT_NOFILE 128 runs out of fds while clients
keep coming; it must log, keep serving, and serve everyone once fds are free.

Run unpatched (sockets API). Prints one JSON line with what it saw; exits 1 on a failure.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import resource
import socket
import sys

import gevent
from gevent import socket as gsocket

from reseau_patch import sockets as S

LIMIT = 128
CLIENTS = 10
records: list[logging.LogRecord] = []


class Keep(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        records.append(record)


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def main() -> int:
    logging.getLogger("reseau_patch").addHandler(Keep())
    logging.getLogger("reseau_patch").setLevel(logging.WARNING)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(LIMIT, hard), hard))
    srv = S.listen(0)
    port = srv.getsockname()[1]
    served: list[int] = []

    def handler(sock) -> None:
        try:
            line = sock.readline()
            sock.write(line)
            sock.flush()
            sock.read()  # until the client closes
        finally:
            sock.close()
        served.append(1)

    acceptor = S.accept(srv, handler)
    gevent.sleep(0.05)
    baseline = fd_count()

    # Eat fds until only the clients' own sockets fit: the server's accepts then fail.
    fillers = []
    while fd_count() < LIMIT - CLIENTS - 3:
        fillers.append(os.open(os.devnull, os.O_RDONLY))
    # Connect without running the hub (stdlib, non-blocking): all land in the backlog
    # first, then the server accepts a few and runs out of fds.
    raw = []
    for _ in range(CLIENTS):
        r = socket.socket()
        r.setblocking(False)
        r.connect_ex(("127.0.0.1", port))
        raw.append(r)
    clients = [gsocket.socket(fileno=r.detach()) for r in raw]
    with gevent.Timeout(5, False):
        while not any(r.getMessage().find("Too many open files") >= 0 for r in records):
            gevent.sleep(0.01)
    gevent.sleep(0.3)  # out of fds for a while: the listener must back off, not spin
    saw_emfile = [r.getMessage() for r in records]

    # One more connect now fails clearly: OSError(EMFILE), not a hang or a vague error.
    connect_error = None
    try:
        S.connect(port, timeout=5).close()
    except OSError as exc:
        connect_error = [exc.errno, str(exc)]

    for fd in fillers:
        os.close(fd)
    echoed = 0
    for i, c in enumerate(clients):
        c.settimeout(10)
        c.sendall(b"hello %d\n" % i)
        if c.makefile("rb").readline() == b"hello %d\n" % i:
            echoed += 1
    for c in clients:
        c.close()
    with gevent.Timeout(10, False):
        while len(served) < CLIENTS or fd_count() > baseline:
            gevent.sleep(0.01)
    out = {"acceptor_alive": not acceptor.dead, "echoed": echoed, "served": len(served),
           "fds_over_baseline": fd_count() - baseline, "log": saw_emfile[:3],
           "emfile_logs": len(saw_emfile),
           "connect_error": connect_error}
    srv.close()
    acceptor.join(5)
    print(json.dumps(out))
    ok = (out["acceptor_alive"] and echoed == CLIENTS and len(served) == CLIENTS
          and out["fds_over_baseline"] <= 0 and 0 < len(saw_emfile) <= 50
          and connect_error is not None and connect_error[0] == errno.EMFILE)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
