"""One TLS script whose output must be the same unpatched and under patch_all().

Each section prints what the stdlib's ssl.SSLSocket does; the test runs this file both
ways and compares the transcripts line by line.
"""

import gc
import os
import select
import socket
import ssl
import struct
import sys
import threading
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from tls_common import client_context, server_context  # noqa: E402

TIMEOUT = 20


def recv_exact(s, n):
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        assert chunk, out
        out += chunk
    return out


def outcome(fn, *args):
    try:
        return repr(fn(*args))
    except OSError as e:  # SSLError included
        return f"{type(e).__name__} errno={e.errno}"
    except ValueError as e:
        return f"ValueError {e}"


def serve(lsock, handler):
    def run():
        conn, _ = lsock.accept()
        conn.settimeout(TIMEOUT)
        handler(conn)
    t = threading.Thread(target=run)
    t.start()
    return t


def section_close_unwrap_pending():
    sctx = server_context()
    sctx.set_alpn_protocols(["h2", "http/1.1"])
    cctx = client_context()
    cctx.set_alpn_protocols(["http/1.1"])
    lsock = socket.create_server(("127.0.0.1", 0))
    lsock.settimeout(TIMEOUT)
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

    def client():
        raw = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        return cctx.wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False)

    c = client()
    print("version", c.version(), c.cipher()[1], c.selected_alpn_protocol())
    print("peer", c.getpeercert()["subjectAltName"])
    print("first", recv_exact(c, 5))
    print("pending", c.pending())
    print("rest", recv_exact(c, 6))
    print("eof", outcome(c.recv, 10))
    c.close()

    c = client()
    print("first", recv_exact(c, 11))
    plain = c.unwrap()
    print("plain", plain is c, recv_exact(plain, 9), plain.recv(10))
    print("read after unwrap", outcome(c.read, 1))
    c.close()
    print("closed", c.fileno())
    t.join(TIMEOUT)
    lsock.close()


def section_reset_after_data():
    """A TLS peer sends data, then resets the connection (SO_LINGER 0)."""
    sctx, cctx = server_context(), client_context()
    for ragged in (True, False):
        lsock = socket.create_server(("127.0.0.1", 0))

        def handler(conn):
            s = sctx.wrap_socket(conn, server_side=True)
            s.sendall(b"data before reset")
            s.recv(10)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()

        t = serve(lsock, handler)
        c = cctx.wrap_socket(socket.create_connection(lsock.getsockname(), timeout=TIMEOUT),
                             server_hostname="localhost", suppress_ragged_eofs=ragged)
        print("reset data", recv_exact(c, 17))
        c.sendall(b"go")
        t.join(TIMEOUT)
        time.sleep(0.2)  # the RST has arrived
        print("reset ragged", ragged, [outcome(c.recv, 100) for _ in range(3)],
              outcome(c.sendall, b"more"))
        c.close()
        lsock.close()


def section_unconnected():
    cctx = client_context()
    s = cctx.wrap_socket(socket.socket(), server_hostname="localhost")
    for name in ("recv", "send", "getpeercert", "do_handshake", "pending", "cipher",
                 "version", "selected_alpn_protocol"):
        fn = getattr(s, name)
        args = {"recv": (1,), "send": (b"x",)}.get(name, ())
        print("unconnected", name, outcome(fn, *args))
    s.close()


def section_resource_warning():
    cctx = client_context()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s = cctx.wrap_socket(socket.socket(), server_hostname="localhost")
        del s
        gc.collect()
    print("unclosed warns", [(w.category.__name__, str(w.message).split(" ")[0])
                             for w in caught])


def section_callbacks():
    """sni_callback and _msg_callback get the socket; a callback may sleep."""
    seen = []
    sctx = server_context()

    def sni(sock, name, ctx):
        time.sleep(0.05)  # green under the patch: must not abort the handshake
        seen.append(("sni", type(sock).__mro__.__contains__(ssl.SSLSocket), name))

    sctx.sni_callback = sni
    kinds = set()

    def msg(conn, direction, version, content_type, msg_type, data):
        kinds.add(isinstance(conn, ssl.SSLSocket))

    cctx = client_context()
    cctx._msg_callback = msg
    lsock = socket.create_server(("127.0.0.1", 0))

    def handler(conn):
        s = sctx.wrap_socket(conn, server_side=True)
        s.sendall(s.recv(10).upper())
        s.close()

    t = serve(lsock, handler)
    c = cctx.wrap_socket(socket.create_connection(lsock.getsockname(), timeout=TIMEOUT),
                         server_hostname="localhost")
    c.sendall(b"ping")
    print("callbacks echo", c.recv(10))
    t.join(TIMEOUT)
    print("callbacks", seen, "msg_callback owner is socket", kinds)
    c.close()
    lsock.close()


def section_partial_record_nonblocking():
    """poll/select say readable, only part of a record is there: SSLWantReadError."""
    sctx = server_context()
    cctx = client_context()
    cctx.maximum_version = ssl.TLSVersion.TLSv1_2  # no session tickets after the handshake
    lsock = socket.create_server(("127.0.0.1", 0))
    plsock = socket.create_server(("127.0.0.1", 0))
    split, go_on, served = threading.Event(), threading.Event(), threading.Event()

    def handler(conn):
        s = sctx.wrap_socket(conn, server_side=True)
        s.recv(10)
        s.sendall(b"hello")
        served.wait(TIMEOUT)
        s.close()

    def forward(src, dst, splitting):
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data:
                break
            if splitting and split.is_set():
                dst.sendall(data[:7])
                go_on.wait(TIMEOUT)
                dst.sendall(data[7:])
            else:
                dst.sendall(data)
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def proxy():
        down, _ = plsock.accept()
        up = socket.create_connection(lsock.getsockname(), timeout=TIMEOUT)
        threads = [threading.Thread(target=forward, args=(down, up, False)),
                   threading.Thread(target=forward, args=(up, down, True))]
        for th in threads:
            th.start()
        for th in threads:
            th.join(TIMEOUT)
        down.close()
        up.close()

    ts = serve(lsock, handler)
    tp = threading.Thread(target=proxy)
    tp.start()
    c = cctx.wrap_socket(socket.create_connection(plsock.getsockname(), timeout=TIMEOUT),
                         server_hostname="localhost")
    split.set()
    c.sendall(b"go")
    c.setblocking(False)
    r, _, _ = select.select([c], [], [], TIMEOUT)
    print("partial: select readable", bool(r))
    print("partial: recv", outcome(c.recv, 100))
    print("partial: pending", c.pending())
    p = select.poll()
    p.register(c, select.POLLIN)
    print("partial: poll after WantRead", p.poll(100))
    go_on.set()
    print("partial: poll", [ev & select.POLLIN for _, ev in p.poll(TIMEOUT * 1000)])
    print("partial: recv", outcome(c.recv, 100))
    print("partial: recv again", outcome(c.recv, 100))
    served.set()
    c.close()
    ts.join(TIMEOUT)
    tp.join(TIMEOUT)
    lsock.close()
    plsock.close()


def section_nonblocking_write():
    """A non-blocking writer fills the kernel: SSLWantWriteError, then all arrives once."""
    sctx, cctx = server_context(), client_context()
    lsock = socket.create_server(("127.0.0.1", 0))
    start, received = threading.Event(), []

    def handler(conn):
        s = sctx.wrap_socket(conn, server_side=True)
        start.wait(TIMEOUT)
        total = 0
        while True:
            data = s.recv(65536)
            if not data:
                break
            total += len(data)
        received.append(total)
        s.close()

    t = serve(lsock, handler)
    c = cctx.wrap_socket(socket.create_connection(lsock.getsockname(), timeout=TIMEOUT),
                         server_hostname="localhost")
    c.setblocking(False)
    chunk = b"z" * 65536
    sent, blocked = 0, False
    for _ in range(2000):  # far more than the kernel buffers hold
        try:
            sent += c.send(chunk)
        except ssl.SSLWantWriteError:
            blocked = True
            break
    print("nonblocking write blocked", blocked)
    start.set()
    target = sent + 3 * len(chunk)
    while sent < target:
        select.select([], [c], [], TIMEOUT)
        try:
            sent += c.send(chunk[:target - sent])
        except ssl.SSLWantWriteError:
            pass
    c.setblocking(True)
    c.sendall(b"")  # flushes nothing more; the stdlib accepts it
    c.shutdown(socket.SHUT_WR)
    t.join(TIMEOUT)
    print("nonblocking write all arrived", received == [sent])
    c.close()
    lsock.close()


for section in (section_close_unwrap_pending, section_reset_after_data, section_unconnected,
                section_resource_warning, section_callbacks,
                section_partial_record_nonblocking, section_nonblocking_write):
    print("==", section.__name__)
    section()
print("done")
