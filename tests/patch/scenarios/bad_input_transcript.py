"""Bad arguments and calls in the wrong state, on plain and TLS sockets: one transcript
that must read the same unpatched and under patch_all().

Each line is a call and its outcome: the result's type, or the exception's type and
message (the socket's class name normalised: ours is a subclass of the stdlib's).
"""

import array
import os
import select
import socket
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from tls_common import client_context, server_context  # noqa: E402

TIMEOUT = 10


def outcome(fn, *args):
    try:
        got = fn(*args)
    except BaseException as exc:  # noqa: BLE001 - the transcript is the point
        text = str(exc)
        for name in ("reseau_patch.patch.green_ssl.ReseauSSLSocket", "ssl.SSLSocket",
                     "reseau_patch.patch.green_socket.GreenSocket", "socket.socket",
                     "ReseauSSLSocket", "SSLSocket"):
            text = text.replace(name, "SOCKET")
        return f"{type(exc).__name__}: {text}"
    return f"ok {type(got).__name__}"


def run(title, calls):
    for name, fn, *args in calls:
        print(title, name, "->", outcome(fn, *args))


def plain_calls(c, u, addr):
    return [
        ("recv -1", c.recv, -1), ("recv str", c.recv, "x"), ("recv None", c.recv, None),
        ("recv float", c.recv, 1.5), ("recv huge", c.recv, 2**63),
        ("recv flags str", c.recv, 1, "x"),
        ("recv_into neg", c.recv_into, bytearray(10), -1),
        ("recv_into beyond buffer", c.recv_into, bytearray(10), 20),
        ("recv_into bytes", c.recv_into, b"immutable"), ("recv_into str", c.recv_into, "abc"),
        ("recv_into None", c.recv_into, None),
        ("send str", c.send, "str"), ("send int", c.send, 5), ("send None", c.send, None),
        ("send flags str", c.send, b"x", "y"),
        ("sendall str", c.sendall, "str"), ("sendall None", c.sendall, None),
        ("sendall 2-d view", c.sendall, memoryview(bytearray(8)).cast("B", (2, 4))),
        ("sendall array", c.sendall, array.array("i", [1, 2])),
        ("sendto on tcp", c.sendto, b"x", addr),
        ("sendto bad address", u.sendto, b"x", "nothost"),
        ("sendto bad port", u.sendto, b"x", ("127.0.0.1", 70000)),
        ("sendto str", u.sendto, "x", ("127.0.0.1", 9)),
        ("sendto 4 args", u.sendto, b"x", 0, ("127.0.0.1", 9), 1),
        ("recvfrom -1", u.recvfrom, -1),
        ("recvfrom_into beyond buffer", u.recvfrom_into, bytearray(2), 5),
        ("settimeout -1", c.settimeout, -1), ("settimeout str", c.settimeout, "x"),
        ("settimeout nan", c.settimeout, float("nan")),
        ("setblocking str", c.setblocking, "x"), ("setblocking None", c.setblocking, None),
        ("setblocking float", c.setblocking, 1.5), ("setblocking 2**70", c.setblocking, 2**70),
        ("makefile mode", c.makefile, "x"), ("shutdown 7", c.shutdown, 7),
        ("shutdown str", c.shutdown, "x"),
        ("connect str", socket.socket().connect, "x"),
        ("connect port -1", socket.socket().connect, ("127.0.0.1", -1)),
        ("connect_ex short tuple", socket.socket().connect_ex, ("127.0.0.1",)),
        ("bind port", socket.socket().bind, ("127.0.0.1", 99999)),
        ("listen str", c.listen, "x"),
        ("recvmsg -1", c.recvmsg, -1), ("sendmsg str", c.sendmsg, ["x"]),
        ("recvmsg_into bytes", c.recvmsg_into, [b"x"]),
        ("sendfile str", c.sendfile, "notafile"),
        ("getsockopt unknown", c.getsockopt, socket.SOL_SOCKET, 99999),
        ("setsockopt unknown", c.setsockopt, socket.SOL_SOCKET, 99999, 1),
        ("connect again", c.connect, addr), ("connect_ex again", c.connect_ex, addr),
        ("non-blocking recv", lambda: (c.setblocking(False), c.recv(1))[1]),
        ("non-blocking recv_into", c.recv_into, bytearray(3)),
    ]


def section_plain():
    lsock = socket.create_server(("127.0.0.1", 0))
    addr = lsock.getsockname()
    with lsock, socket.create_connection(addr, timeout=TIMEOUT) as c, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        peer, _ = lsock.accept()
        u.bind(("127.0.0.1", 0))
        run("plain", plain_calls(c, u, addr))
        peer.close()
    # A blocking connect leaves the socket connected: connecting again is EISCONN.
    with socket.create_server(("127.0.0.1", 0)) as lsock:
        for timeout in (None, TIMEOUT):
            with socket.socket() as s:
                s.settimeout(timeout)
                s.connect(lsock.getsockname())
                run(f"timeout={timeout}", [("connect again", s.connect, lsock.getsockname()),
                                           ("connect_ex again", s.connect_ex,
                                            lsock.getsockname())])
    run("closed", [(name, getattr(c, name), *args) for name, *args in (
        ("recv", 1), ("send", b"x"), ("sendall", b"x"), ("recv_into", bytearray(3)),
        ("fileno",), ("settimeout", 1), ("setblocking", True), ("shutdown", 2),
        ("getpeername",), ("connect", addr), ("gettimeout",), ("getblocking",), ("dup",))])


def echo_server(lsock):
    def serve():
        conn, _ = lsock.accept()
        conn.settimeout(TIMEOUT)
        s = server_context().wrap_socket(conn, server_side=True)
        for _ in range(2):  # one record each for the client's two recv_into calls
            s.sendall(b"0123456789")
        try:
            while True:
                data = s.recv(65536)
                if not data:
                    break
                s.sendall(data)
        except OSError:
            pass  # the transcript shows what the client saw
        s.close()
    t = threading.Thread(target=serve)
    t.start()
    return t


def section_tls():
    lsock = socket.create_server(("127.0.0.1", 0))
    addr = lsock.getsockname()
    t = echo_server(lsock)
    raw = socket.create_connection(addr, timeout=TIMEOUT)
    c = client_context().wrap_socket(raw, server_hostname="localhost")
    run("tls", [
        ("recv -1", c.recv, -1), ("recv str", c.recv, "x"), ("recv float", c.recv, 1.5),
        ("recv MSG_PEEK", c.recv, 10, socket.MSG_PEEK),
        ("recv_into neg", c.recv_into, bytearray(10), -1),
        ("recv_into beyond buffer", c.recv_into, bytearray(10), 20),
        ("recv_into bytes", c.recv_into, b"immutable"),
        ("recv_into flags", c.recv_into, bytearray(10), 5, 1),
        ("read -1", c.read, -1), ("read into bytes", c.read, 5, b"xx"),
        ("send str", c.send, "str"), ("send int", c.send, 5), ("send flags", c.send, b"x", 1),
        ("sendall str", c.sendall, "str"), ("sendall None", c.sendall, None),
        ("sendall flags", c.sendall, b"x", 1),
        ("write None", c.write, None), ("write str", c.write, "s"),
        ("sendto", c.sendto, b"x", addr), ("sendto flags", c.sendto, b"x", 0, addr),
        ("recvfrom", c.recvfrom, 10), ("recvfrom_into", c.recvfrom_into, bytearray(10)),
        ("recvmsg", c.recvmsg, 10), ("recvmsg_into", c.recvmsg_into, [bytearray(10)]),
        ("sendmsg", c.sendmsg, [b"x"]),
        ("settimeout -1", c.settimeout, -1), ("setblocking str", c.setblocking, "x"),
        ("get_channel_binding unknown", c.get_channel_binding, "bad"),
        ("makefile mode", c.makefile, "x"), ("dup", c.dup),
        ("connect again", c.connect, addr), ("connect_ex again", c.connect_ex, addr),
        ("verify_client_post_handshake", c.verify_client_post_handshake),
        ("sendall 2-d view", c.sendall, memoryview(bytearray(8)).cast("B", (2, 4))),
        ("send empty", c.send, b""), ("sendall array", c.sendall, array.array("i", [1, 2])),
        ("recv 0", c.recv, 0), ("recv_into empty", c.recv_into, bytearray(0)),
        ("accept", c.accept), ("listen", c.listen, 5), ("bind", c.bind, ("127.0.0.1", 0)),
    ])
    c.sendall(b"ping!")
    got = b""
    while len(got) < 8 + 8 + 5:  # the 2-d view, the array, ping!
        got += c.recv(64)
    print("tls echo", got, "pending", c.pending())
    # The stdlib drops TLS before the shutdown(2) that fails: the socket is plain after.
    run("tls", [("shutdown 7", c.shutdown, 7), ("version after", c.version)])
    c.close()
    run("tls closed", [(name, getattr(c, name), *args) for name, *args in (
        ("recv", 1), ("send", b"x"), ("sendall", b"x"), ("recv_into", bytearray(3)),
        ("read", 1), ("write", b"x"), ("do_handshake",), ("getpeercert",), ("cipher",),
        ("pending",), ("fileno",), ("settimeout", 1), ("shutdown", 2), ("getpeername",),
        ("version",), ("selected_alpn_protocol",), ("shared_ciphers",), ("compression",),
        ("get_channel_binding",))])
    t.join(TIMEOUT)
    lsock.close()


def section_select():
    """Timeouts and arguments of select/poll/epoll, on an always-writable socket (so no
    call waits): the C parsers' limits, rounding and messages."""
    a, b = socket.socketpair()
    timeouts = (2**70, 2.0**70, -2**70, 2**62, 1e18, 2**40, 2**31, 2**31 * 1000,
                2**31 * 1000 - 1, 2.0**31 * 1000, -2**31 * 1000 - 1000, 9.3e9, 2**33,
                float("inf"), float("-inf"), float("nan"), -1, -1.5, -0.0001, "x", 1 + 2j,
                True, None, 3.0, 0.0004)

    def poll_once(factory, out, t):
        p = factory()
        p.register(a, out)
        return p.poll(t)

    for t in timeouts:
        run(f"timeout {t!r}", [
            ("select", select.select, [], [a], [], t),
            ("poll", poll_once, select.poll, select.POLLOUT, t),
            ("epoll", poll_once, select.epoll, select.EPOLLOUT, t)])
    run("select", [("int list", select.select, 5, [], []),
                   ("None list", select.select, None, [], []),
                   ("str list", select.select, "ab", [], [], 0)])
    a.close()
    b.close()


for section in (section_plain, section_tls, section_select):
    print("==", section.__name__)
    section()
print("done")
