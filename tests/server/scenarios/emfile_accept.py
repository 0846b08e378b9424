"""StreamServer under RLIMIT_NOFILE: EMFILE on accept is logged and retried; the server
recovers once fds free up. Prints one JSON line with what happened."""

import json
import logging
import resource
import sys

import gevent

from reseau_patch import sockets
from reseau_patch.server import StreamServer

LIMIT = 96
records = []


class Keep(logging.Handler):
    def emit(self, record):
        records.append(record.getMessage())


logging.getLogger("reseau_patch.server").addHandler(Keep())


def echo(sock, address):
    while data := sock.readavailable():
        sock.write(data)


def main():
    srv = StreamServer(("127.0.0.1", 0), echo)
    srv.start()
    port = srv.server_port
    resource.setrlimit(resource.RLIMIT_NOFILE, (LIMIT, resource.getrlimit(
        resource.RLIMIT_NOFILE)[1]))
    held = []
    try:
        while True:  # fill the table: our client fds, then the server's accepted ones
            held.append(sockets.connect(port, timeout=2))
    except OSError:
        pass
    gevent.sleep(0.5)  # the accept loop meets EMFILE and backs off
    for s in held:
        s.close()
    gevent.sleep(0.2)
    ok = 0
    for i in range(10):
        c = sockets.connect(port, timeout=5)
        c.settimeout(5)
        c.write(b"ping%d" % i)
        if c.read(5) == b"ping%d" % i:
            ok += 1
        c.close()
    srv.stop(timeout=2)
    print(json.dumps({"held": len(held), "ok": ok,
                      "emfile_logged": any("retrying" in r for r in records)}))


g = gevent.spawn(main)
g.join(60)
sys.exit(0 if g.successful() else 1)
