"""Scenario (run under ``python -m reseau_patch run``): a stdlib ``socketserver`` on the
patched socket, under RLIMIT_NOFILE 128, runs out of fds while clients queue; once fds
are free it serves all of them (the stdlib's own recovery, kept on our socket).
Prints one JSON line; exits 1 on a failure.
"""

from __future__ import annotations

import json
import os
import resource
import socket
import socketserver
import sys
import threading

import gevent

LIMIT = 128
CLIENTS = 10


accepted = [0]


class Echo(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        accepted[0] += 1
        self.wfile.write(self.rfile.readline())
        self.rfile.read()  # until the client closes


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def main() -> int:
    from reseau_patch import is_patched
    assert is_patched()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(LIMIT, hard), hard))
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Echo)
    server.daemon_threads = True
    port = server.server_address[1]
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    t.start()
    gevent.sleep(0.1)
    baseline = fd_count()
    fillers = []
    while fd_count() < LIMIT - CLIENTS - 3:
        fillers.append(os.open(os.devnull, os.O_RDONLY))
    clients = []
    for _ in range(CLIENTS):
        c = socket.socket()
        c.setblocking(False)
        c.connect_ex(("127.0.0.1", port))
        clients.append(c)
    gevent.sleep(0.3)  # the server accepts what fits, then meets EMFILE
    starved = accepted[0]
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
        while fd_count() > baseline:
            gevent.sleep(0.01)
    out = {"accepted_while_out_of_fds": starved, "echoed": echoed,
           "fds_over_baseline": fd_count() - baseline}
    server.shutdown()
    server.server_close()
    t.join(5)
    print(json.dumps(out))
    ok = starved < CLIENTS and echoed == CLIENTS and out["fds_over_baseline"] <= 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
