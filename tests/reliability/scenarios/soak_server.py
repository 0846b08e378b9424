"""Scenario: a fast keep-alive HTTP/1.1 server for the soak; prints its port, then serves
until stdin closes.

It is our WSGI server (``reseau_patch.server.WSGIServer``) when that package and its
parser are installed, else a minimal keep-alive responder on the Sockets API (requests
without a body, one fixed response). The first line printed says which.
"""

from __future__ import annotations

import sys

import gevent
from gevent import os as gos

from reseau_patch import sockets as S

BODY = b"ok"
RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s"
            % (len(BODY), BODY))


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(BODY)))])
    return [BODY]


def minimal_handler(sock) -> None:
    try:
        while True:
            line = sock.readline()
            if not line:
                return
            while sock.readline() not in (b"\r\n", b"\n", b""):
                pass  # headers: nothing here has a body
            sock.write(RESPONSE)
    except OSError:
        pass
    finally:
        sock.close()


def main() -> int:
    try:
        from reseau_patch.server import WSGIServer
    except ImportError:
        WSGIServer = None  # noqa: N806 - the class, when present
    if WSGIServer is not None:
        server = WSGIServer(("127.0.0.1", 0), app)
        server.start()
        print("wsgi", server.server_port, flush=True)
        stop = server.stop
    else:
        srv = S.listen(0)
        acceptor = S.accept(srv, minimal_handler)
        print("minimal", srv.getsockname()[1], flush=True)

        def stop() -> None:
            srv.close()
            acceptor.join(5)
    # Serve until the client side closes our stdin (read green: the hub keeps running).
    while gos.tp_read(sys.stdin.fileno(), 1):
        pass
    stop()
    return 0


if __name__ == "__main__":
    gevent.get_hub()
    sys.exit(main())
