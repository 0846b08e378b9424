"""Under reseau_patch.patch_all() alone, gevent.server's
StreamServer and gevent.pywsgi's WSGIServer run over the patched socket (plain and TLS).
Prints one JSON line."""

import reseau_patch

reseau_patch.patch_all()

import json  # noqa: E402
import os  # noqa: E402
import socket  # noqa: E402
import ssl  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import urllib.request  # noqa: E402

import gevent  # noqa: E402
import gevent.pywsgi  # noqa: E402
import gevent.server  # noqa: E402
import trustme  # noqa: E402

out = {}


def kind(obj):
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def main():
    seen = []

    def handle(sock, address):
        seen.append(kind(sock))
        sock.sendall(sock.recv(100).upper())

    srv = gevent.server.StreamServer(("127.0.0.1", 0), handle)
    srv.start()
    out["listener"] = kind(srv.socket)
    c = socket.create_connection(("127.0.0.1", srv.server_port), timeout=10)
    c.sendall(b"hello")
    out["echo"] = c.recv(100).decode()
    c.close()
    srv.stop(timeout=2)
    out["accepted"] = seen[0]

    def app(environ, start_response):
        body = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"pywsgi got " + body]

    wsgi = gevent.pywsgi.WSGIServer(("127.0.0.1", 0), app, log=None)
    wsgi.start()
    url = f"http://127.0.0.1:{wsgi.server_port}/"
    with urllib.request.urlopen(urllib.request.Request(url, data=b"data"), timeout=10) as r:
        out["pywsgi"] = r.read().decode()
    wsgi.stop(timeout=2)

    ca = trustme.CA()
    with tempfile.TemporaryDirectory() as d:
        cert, key = os.path.join(d, "c.pem"), os.path.join(d, "k.pem")
        leaf = ca.issue_cert("127.0.0.1")
        leaf.cert_chain_pems[0].write_to_path(cert)
        leaf.private_key_pem.write_to_path(key)
        tls_seen = []

        def tls_handle(sock, address):
            tls_seen.append(kind(sock))
            sock.sendall(sock.recv(100)[::-1])

        tls = gevent.server.StreamServer(("127.0.0.1", 0), tls_handle, certfile=cert,
                                         keyfile=key)
        tls.start()
        ctx = ssl.create_default_context()
        ca.configure_trust(ctx)
        raw = socket.create_connection(("127.0.0.1", tls.server_port), timeout=10)
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            s.sendall(b"abc")
            out["tls_echo"] = s.recv(100).decode()
        tls.stop(timeout=2)
        out["tls_accepted"] = tls_seen[0]


g = gevent.spawn(main)
g.join(60)
print(json.dumps(out))
sys.exit(0 if g.successful() else 1)
