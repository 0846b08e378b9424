"""TLS under patch_all(): the caller's SSLContext runs in our channel's TLS handler."""

from __future__ import annotations

# A CA, a "localhost" certificate (cert, key) and the CA file (ca_path), in a temp dir.
PKI = """
import os, socket, ssl, tempfile, threading, http.server
from reseau_patch import pki

d = tempfile.mkdtemp()
ca = pki.make_ca()
cert, key = ca.issue(["localhost"]).write_pem(d, "server")
ca_path = os.path.join(d, "ca.pem")
with open(ca_path, "wb") as f:
    f.write(ca.cert_pem())
"""

PKI_SERVER = PKI + """
class Handler(http.server.BaseHTTPRequestHandler):
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
sctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
sctx.load_cert_chain(cert, key)
server.socket = sctx.wrap_socket(server.socket, server_side=True)
threading.Thread(target=server.serve_forever, daemon=True).start()
port = server.server_address[1]
"""


def test_requests_https_runs_on_our_tls_handler(run_patched):
    out = run_patched(PKI_SERVER + """
import requests
from reseau_patch.io.tls import TlsHandler
from reseau_patch.patch.green_ssl import ReseauSSLSocket
from reseau_patch.sockets.tcp import TCPSocket

import urllib3.connection

seen = {}
orig_connect = urllib3.connection.HTTPSConnection.connect
def spy(self):
    orig_connect(self)
    sock = self.sock
    seen["sock"] = sock
    seen["tcp"] = sock._rp_tcp
    seen["handlers"] = [type(s.handler).__name__ for s in sock._rp_tcp.channel.slots()]
    seen["tls"] = sock._rp_tcp.tls
    seen["version"] = sock.version()
urllib3.connection.HTTPSConnection.connect = spy
r = requests.get(f"https://localhost:{port}/path", verify=ca_path, timeout=10)
assert r.status_code == 200 and r.text == "secret /path", r.text
assert isinstance(seen["sock"], ReseauSSLSocket)
assert isinstance(seen["tcp"], TCPSocket)
assert seen["handlers"] == ["SocketHandler", "TlsHandler", "TCPSocket"], seen["handlers"]
assert isinstance(seen["tls"], TlsHandler)
print("version", seen["version"])
server.shutdown()
""")
    assert "version TLSv1.3" in out.stdout


def test_patch_all_after_importing_requests_no_warning(tmp_path):
    import subprocess
    import sys
    script = tmp_path / "late.py"
    script.write_text("import requests, urllib3, ssl\n"
                      "import reseau_patch\n"
                      "reseau_patch.patch_all()\n" + PKI_SERVER + """
import gevent
def get(i):
    return requests.get(f"https://localhost:{port}/{i}", verify=ca_path, timeout=10).text
jobs = [gevent.spawn(get, i) for i in range(20)]
gevent.joinall(jobs, timeout=30, raise_error=True)
assert [j.value for j in jobs] == ["secret /%d" % i for i in range(20)]
try:
    requests.get(f"https://127.0.0.1:{port}/", verify=ca_path, timeout=5)
except requests.exceptions.SSLError as e:
    assert "certificate" in str(e).lower() or "hostname" in str(e).lower(), e
else:
    raise AssertionError("a hostname mismatch was accepted")
server.shutdown()
print("ok")
""")
    proc = subprocess.run([sys.executable, "-W", "error", str(script)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "Warning" not in proc.stderr, proc.stderr
    assert proc.stdout.strip().endswith("ok")


SSL_SOCKET_SCENARIO = PKI + """
sctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
sctx.load_cert_chain(cert, key)
sctx.set_alpn_protocols(["h2", "http/1.1"])
cctx = ssl.create_default_context(cafile=ca_path)
cctx.set_alpn_protocols(["http/1.1"])
lsock = socket.create_server(("127.0.0.1", 0))
lsock.settimeout(20)
port = lsock.getsockname()[1]

def server():
    for how in ("close", "unwrap"):
        conn, _ = lsock.accept()
        s = sctx.wrap_socket(conn, server_side=True)
        s.sendall(b"hello world")
        if how == "close":
            s.close()  # the stdlib sends no close_notify here
        else:
            plain = s.unwrap()  # close_notify both ways, then the plain stream
            plain.sendall(b"after tls")
            plain.close()

t = threading.Thread(target=server)
t.start()

def recv_exact(s, n):
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        assert chunk, out
        out += chunk
    return out

def client():
    raw = socket.create_connection(("127.0.0.1", port), timeout=20)
    return cctx.wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False)

c = client()
print("version", c.version(), c.cipher()[1], c.selected_alpn_protocol())
print("peer", c.getpeercert()["subjectAltName"])
print("first", recv_exact(c, 5))
print("pending", c.pending())
print("rest", recv_exact(c, 6))
try:
    print("eof", c.recv(10))
except ssl.SSLEOFError as e:
    print("eof SSLEOFError")
c.close()

c = client()
print("first", recv_exact(c, 11))
plain = c.unwrap()
print("plain", plain is c, recv_exact(plain, 9), plain.recv(10))
try:
    c.read(1)
except ValueError as e:
    print("read after unwrap", e)
c.close()
print("closed", c.fileno())
t.join(20)
lsock.close()
print("done")
"""


def test_ssl_socket_matches_the_stdlib_close_unwrap_pending(run_patched):
    """Run the same script unpatched and patched: the transcripts must agree. Close sends no
    close_notify (the reader sees SSLEOFError), unwrap exchanges it and hands back the plain
    stream, pending() counts the decrypted bytes not yet read."""
    import subprocess
    import sys
    import textwrap

    plain = subprocess.run([sys.executable, "-c", textwrap.dedent(SSL_SOCKET_SCENARIO)],
                           capture_output=True, text=True, timeout=90)
    assert plain.returncode == 0, plain.stderr[-4000:]
    ours = run_patched(SSL_SOCKET_SCENARIO)
    assert ours.stdout == plain.stdout
    assert "eof SSLEOFError" in ours.stdout and "plain True b'after tls' b''" in ours.stdout


CROSS_THREAD_SCENARIO = PKI_SERVER + """
import concurrent.futures, socket, time
Handler.protocol_version = "HTTP/1.1"  # keep-alive: pooled connections get reused
import requests
from reseau_patch.patch.green_ssl import ReseauSSLSocket

moves = []
orig_move = ReseauSSLSocket._rp_move_here
def counting_move(self, *args):
    moves.append(1)
    return orig_move(self, *args)
ReseauSSLSocket._rp_move_here = counting_move

# A pooled HTTPS connection is picked up by whichever real thread asks next, and the server
# accepts (and handshakes) in one thread and serves in another.
session = requests.Session()
def get(i):
    return session.get(f"https://localhost:{port}/{i}", verify=ca_path, timeout=10).text
with concurrent.futures.ThreadPoolExecutor(8) as ex:
    out = list(ex.map(get, range(200)))
assert out == ["secret /%d" % i for i in range(200)], out[:5]
assert len(moves) > 0, "no connection crossed threads: the scenario proves nothing"
print("moved", len(moves) > 0)
session.close()  # the server's keep-alive threads see EOF and end

# Accepted and wrapped in one thread, handshake and I/O in another (no handshake yet).
lsock = socket.create_server(("127.0.0.1", 0))
accepted = []
def acceptor():
    conn, _ = lsock.accept()
    accepted.append(sctx.wrap_socket(conn, server_side=True, do_handshake_on_connect=False))
def serve_one():
    t_acc.join(10)
    srv = accepted[0]
    srv.settimeout(10)
    srv.do_handshake()
    srv.sendall(srv.recv(100).upper())
    srv.close()
t_acc = threading.Thread(target=acceptor)
t_acc.start()
raw = socket.create_connection(lsock.getsockname(), timeout=10)
t_acc.join(10)
t_srv = threading.Thread(target=serve_one)
t_srv.start()
cli = ssl.create_default_context(cafile=ca_path).wrap_socket(raw, server_hostname="localhost")
cli.sendall(b"ping")
print("handshake in another thread", cli.recv(100))
cli.close()
t_srv.join(10)
lsock.close()

# A reader blocked in one thread while another thread closes the socket: the read ends.
ctx = ssl.create_default_context(cafile=ca_path)
c = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost")
result = []
def reader():
    try:
        result.append(c.recv(100))
    except (OSError, ValueError) as e:
        result.append(type(e).__name__)
t = threading.Thread(target=reader)
t.start()
time.sleep(0.2)
c.close()
t.join(10)
assert not t.is_alive() and result, result
print("blocked reader ended")

# Full duplex across threads: one thread blocked reading, another writing the same socket.
echo_l = socket.create_server(("127.0.0.1", 0))
def echo_server():
    conn, _ = echo_l.accept()
    s = sctx.wrap_socket(conn, server_side=True)
    while True:
        data = s.recv(65536)
        if not data:
            break
        s.sendall(data)
    s.close()
te = threading.Thread(target=echo_server)
te.start()
c = ctx.wrap_socket(socket.create_connection(echo_l.getsockname(), timeout=20),
                    server_hostname="localhost")
payload = os.urandom(1 << 20)
got = bytearray()
def read_all():
    while len(got) < len(payload):
        chunk = c.recv(65536)
        if not chunk:
            break
        got.extend(chunk)
tr = threading.Thread(target=read_all)
tr.start()
time.sleep(0.2)  # the reader is parked in recv on its own thread's loop
for i in range(0, len(payload), 100_000):
    c.sendall(payload[i:i + 100_000])
tr.join(20)
assert bytes(got) == payload, (len(got), len(payload))
c.close()
te.join(10)
echo_l.close()
print("full duplex ok")

# A connection that ended on another thread's loop (peer reset, seen there) fails at once
# when used from here, with the error it ended with, even with no timeout set.
import struct
rst_l = socket.create_server(("127.0.0.1", 0))
def resetter():
    conn, _ = rst_l.accept()
    s = sctx.wrap_socket(conn, server_side=True)
    s.recv(10)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
tz = threading.Thread(target=resetter)
tz.start()
c = ctx.wrap_socket(socket.create_connection(rst_l.getsockname()), server_hostname="localhost")
ended, release = [], threading.Event()  # a real Event: threading is not patched here
def use_until_reset():
    c.sendall(b"go")
    try:
        ended.append(c.recv(10))
    except OSError as e:
        ended.append(type(e).__name__)
    release.wait(20)  # blocked outside its hub: its loop will not run for us
tu = threading.Thread(target=use_until_reset)
tu.start()
tz.join(10)
deadline = time.monotonic() + 10
while not ended and time.monotonic() < deadline:
    time.sleep(0.01)
assert ended, "the reset never reached the reading thread"
t0 = time.monotonic()
try:
    c.sendall(b"more")
    c.sendall(b"more")
except OSError as e:
    print("after reset", type(e).__name__, time.monotonic() - t0 < 5)
release.set()
tu.join(10)
c.close()
rst_l.close()
server.shutdown()
"""


def test_tls_sockets_cross_real_threads(run_patched):
    out = run_patched(CROSS_THREAD_SCENARIO, "--no-thread", "--no-aggressive", "--no-queue")
    assert "moved True" in out.stdout and "blocked reader ended" in out.stdout
    assert "handshake in another thread b'PING'" in out.stdout
    assert "full duplex ok" in out.stdout
    assert "after reset ConnectionResetError True" in out.stdout, out.stdout
