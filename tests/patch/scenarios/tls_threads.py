"""TLS sockets crossing real threads (run under patch_all(thread=False)): pooled HTTPS
connections, accept+wrap in one thread and handshake in another, a reader blocked while
another thread closes, full duplex, a second handshake after a failed verification."""

import concurrent.futures
import http.client
import os
import socket
import ssl
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import requests  # noqa: E402
from tls_common import ca_path, client_context, https_server, server_context  # noqa: E402

TIMEOUT = 20
server, port = https_server(keep_alive=True)
sctx, ctx = server_context(), client_context()

# 8 threads x 200 requests on one requests.Session: pooled connections go to whichever
# real thread asks next.
session = requests.Session()


def get(i):
    return session.get(f"https://localhost:{port}/{i}", verify=ca_path, timeout=10).text


with concurrent.futures.ThreadPoolExecutor(8) as ex:
    out = list(ex.map(get, range(200)))
assert out == [f"secret /{i}" for i in range(200)], out[:5]
session.close()

# One keep-alive connection, each request from a new real thread (the handshake in the
# first); the server serves it from one thread.
conn = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=TIMEOUT)
answers = []


def one_request(i):
    conn.request("GET", f"/t{i}")
    answers.append(conn.getresponse().read())


for i in range(5):
    th = threading.Thread(target=one_request, args=(i,))
    th.start()
    th.join(TIMEOUT)
conn.close()
print("one connection, five threads", answers == [f"secret /t{i}".encode() for i in range(5)])

# Accepted and wrapped in one thread, handshake and I/O in another.
lsock = socket.create_server(("127.0.0.1", 0))
accepted = []


def acceptor():
    conn, _ = lsock.accept()
    accepted.append(sctx.wrap_socket(conn, server_side=True, do_handshake_on_connect=False))


def serve_one():
    t_acc.join(TIMEOUT)
    srv = accepted[0]
    srv.settimeout(TIMEOUT)
    srv.do_handshake()
    srv.sendall(srv.recv(100).upper())
    srv.close()


t_acc = threading.Thread(target=acceptor)
t_acc.start()
raw = socket.create_connection(lsock.getsockname(), timeout=TIMEOUT)
t_acc.join(TIMEOUT)
t_srv = threading.Thread(target=serve_one)
t_srv.start()
cli = ctx.wrap_socket(raw, server_hostname="localhost")
cli.sendall(b"ping")
print("handshake in another thread", cli.recv(100))
cli.close()
t_srv.join(TIMEOUT)
lsock.close()

# A reader blocked in one thread while another thread closes the socket: the read ends.
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
t.join(TIMEOUT)
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
c = ctx.wrap_socket(socket.create_connection(echo_l.getsockname(), timeout=TIMEOUT),
                    server_hostname="localhost")
payload = os.urandom(4 << 20)
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
tr.join(TIMEOUT)
assert bytes(got) == payload, (len(got), len(payload))
c.close()
te.join(TIMEOUT)
echo_l.close()
print("full duplex ok")

# test_crl_check's shape: a handshake that fails verification between two real threads,
# then a second one that succeeds on the same listener.
crl_l = socket.create_server(("127.0.0.1", 0))
failed = []


def crl_server():
    for _ in range(2):
        conn, _ = crl_l.accept()
        conn.settimeout(TIMEOUT)
        try:
            s = sctx.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError) as e:
            failed.append(type(e).__name__)
            conn.close()
            continue
        s.sendall(s.recv(10).upper())
        s.close()


ts = threading.Thread(target=crl_server)
ts.start()
strict = ssl.create_default_context()  # does not trust our CA
try:
    strict.wrap_socket(socket.create_connection(crl_l.getsockname(), timeout=TIMEOUT),
                       server_hostname="localhost")
except ssl.SSLCertVerificationError as e:
    print("client verification failed", e.verify_message)
c = ctx.wrap_socket(socket.create_connection(crl_l.getsockname(), timeout=TIMEOUT),
                    server_hostname="localhost")
c.sendall(b"again")
print("second handshake", c.recv(10))
c.close()
ts.join(TIMEOUT)
print("server side of the failed handshake", failed)
crl_l.close()
server.shutdown()
server.server_close()
print("done")
