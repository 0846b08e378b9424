"""``python -m reseau_patch demo``: unmodified ``urllib.request`` over HTTPS, patched.

1. ``patch_all()`` — before ``urllib``/``http.client`` are imported.
2. A green HTTPS server on our listener: ``reseau_patch.sockets.listen(tls=True)`` with a
   certificate made at start by :mod:`reseau_patch.pki`; one greenlet per connection
   speaks just enough HTTP/1.1 to answer ``GET /<n>``.
3. ``--clients`` greenlets call plain ``urllib.request.urlopen("https://localhost:…")``
   with a stdlib ``SSLContext`` trusting that CA, and check every body.
4. It prints which layer ran what (loop, resolver, socket and SSL socket classes, the
   TLS engine of one client connection) and the loop's statistics. Exit status 0 only if
   every response was right. Loopback only, bounded by ``--timeout``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from typing import Any

__all__ = ["add_arguments", "main"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clients", type=int, default=100,
                        help="concurrent urllib clients (default 100)")
    parser.add_argument("--requests", type=int, default=5,
                        help="requests per client (default 5)")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="give up after this many seconds (default 60)")


def _serve(sock: Any) -> None:
    """Minimal HTTP/1.1: ``GET /<path>`` → ``hello <path>``, keep-alive until EOF."""
    try:
        while True:
            request_line = sock.readline()
            if not request_line:
                return
            while sock.readline() not in (b"\r\n", b"\n", b""):
                pass  # headers: nothing we need
            path = request_line.split()[1] if len(request_line.split()) > 1 else b"/"
            body = b"hello " + path
            sock.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                       b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    except OSError:
        return
    finally:
        sock.close()


def main(args: argparse.Namespace) -> int:
    from .patch import patch_all

    patch_all()
    import ssl
    import urllib.request

    import gevent

    from . import pki, sockets
    from .patch.green_ssl import ReseauSSLSocket

    workdir = tempfile.mkdtemp(prefix="reseau-demo-")
    ca = pki.make_ca("reseau demo CA")
    cert, key = ca.issue(["localhost"]).write_pem(workdir, "server")
    ca_path = os.path.join(workdir, "ca.pem")
    with open(ca_path, "wb") as f:
        f.write(ca.cert_pem())

    server = sockets.listen("127.0.0.1", 0, tls=True, ssl_cert=cert, ssl_key=key)
    port = server.getsockname()[1]
    acceptor = sockets.accept(server, _serve)
    print(f"server: reseau_patch.sockets.listen(tls=True) on 127.0.0.1:{port}, "
          f"certificate for 'localhost' issued by a CA made just now")

    ctx = ssl.create_default_context(cafile=ca_path)  # the stdlib's own context
    layers: dict[str, Any] = {}
    import http.client

    class Observed(http.client.HTTPSConnection):
        """Records what the first connection runs on; the request path is untouched."""

        def connect(self) -> None:
            super().connect()
            if not layers:
                sock = self.sock
                layers["socket"] = type(sock)
                engine = type(sock._sslobj)
                layers["engine"] = f"{engine.__module__}.{engine.__qualname__} over memory BIOs"
                layers["tls"] = f"{sock.version()} {sock.cipher()[0]}"

    class Handler(urllib.request.HTTPSHandler):
        def https_open(self, req: Any) -> Any:
            return self.do_open(Observed, req, context=ctx)

    opener = urllib.request.build_opener(Handler(context=ctx))

    def client(i: int) -> int:
        ok = 0
        for j in range(args.requests):
            path = f"/c{i}r{j}"
            with opener.open(f"https://localhost:{port}{path}", timeout=30) as resp:
                if resp.status == 200 and resp.read() == b"hello " + path.encode():
                    ok += 1
        return ok

    started = time.monotonic()
    jobs = [gevent.spawn(client, i) for i in range(args.clients)]
    gevent.joinall(jobs, timeout=args.timeout)
    elapsed = time.monotonic() - started
    done = sum(j.value or 0 for j in jobs if j.successful())
    failed = [j for j in jobs if j.dead and not j.successful()]
    unfinished = [j for j in jobs if not j.dead]
    gevent.killall(unfinished, timeout=5)
    server.close()
    acceptor.join(5)

    hub = gevent.get_hub()
    ev = hub.loop.io_loop
    total = args.clients * args.requests
    print(f"clients: {args.clients} greenlets x {args.requests} requests with unmodified "
          f"urllib.request + ssl.create_default_context()")
    print(f"result: {done}/{total} HTTPS responses correct in {elapsed:.2f} s "
          f"({done / elapsed if elapsed else 0:.0f} req/s)")
    print("layers:")
    print(f"  gevent hub loop   {type(hub.loop).__module__}.{type(hub.loop).__qualname__} "
          f"(io EventLoop, {ev.backend})")
    print(f"  resolver          {type(hub.resolver).__module__}."
          f"{type(hub.resolver).__qualname__}")
    import socket as stdsocket

    print(f"  socket.socket     {stdsocket.socket.__module__}.{stdsocket.socket.__qualname__}")
    sock_cls = layers.get("socket", ReseauSSLSocket)
    print(f"  client TLS socket {sock_cls.__module__}.{sock_cls.__qualname__}")
    print(f"  client TLS engine {layers.get('engine')}, driven by the calling greenlet")
    print(f"  negotiated        {layers.get('tls')}")
    stats = ev.stats.snapshot()
    print("loop stats: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                     for k, v in stats.items()))
    for j in failed[:3]:
        print(f"failure: {j.exception!r}")
    ok = done == total and not failed and not unfinished
    print("OK" if ok else "FAILED")
    return 0 if ok else 1
