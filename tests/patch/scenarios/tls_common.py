"""Shared by the TLS scenarios: a CA, a "localhost" certificate and contexts, in a temp dir.

Importable patched or not (it imports only the stdlib and reseau_patch.pki).
"""

import atexit
import os
import shutil
import ssl
import tempfile

from reseau_patch import pki

workdir = tempfile.mkdtemp(prefix="reseau-tls-scenario-")
atexit.register(shutil.rmtree, workdir, True)
ca = pki.make_ca()
cert, key = ca.issue(["localhost"]).write_pem(workdir, "server")
ca_path = os.path.join(workdir, "ca.pem")
with open(ca_path, "wb") as f:
    f.write(ca.cert_pem())


def server_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx


def client_context() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca_path)


def https_server(keep_alive: bool = False):
    """A ThreadingHTTPServer over TLS answering ``GET /x`` with ``secret /x``."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1" if keep_alive else "HTTP/1.0"

        def do_GET(self):
            body = ("secret " + self.path).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    http.server.ThreadingHTTPServer.request_queue_size = 256
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = server_context().wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]
