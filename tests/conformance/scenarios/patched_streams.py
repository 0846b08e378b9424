"""The stream conformance suite against the patched socket (``plain``) or the patched SSL
socket (``tls``): run under ``python -m reseau_patch run patched_streams.py KIND [CHECK...]``
(no CHECK: all of them).

Each check is bounded by a gevent.Timeout; the script prints ``ok <check>`` per check and
``all checks passed`` at the end, or exits non-zero with the failure.
"""

import os
import socket
import ssl
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import gevent  # noqa: E402
import stream_suite as suite  # noqa: E402

from reseau_patch import is_patched, pki  # noqa: E402

KIND = sys.argv[1]
assert KIND in ("plain", "tls"), KIND
assert is_patched(), "run me under python -m reseau_patch run"


class SocketEndpoint:
    """stream_suite's Endpoint over a (patched) socket."""

    half_close = True

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv(self, n: int) -> bytes:
        return self.sock.recv(n)

    def close_write(self) -> None:
        self.sock.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.sock.close()


class SslEndpoint(SocketEndpoint):
    # The stdlib's SSLSocket has no half-close (shutdown drops TLS; unwrap is a full
    # close_notify exchange), so the half-close checks do not apply.
    half_close = False


def _certs(d: str):
    ca = pki.make_ca("patched conformance CA")
    ca_file = os.path.join(d, "ca.pem")
    with open(ca_file, "wb") as f:
        f.write(ca.cert_pem())
    cert, key = ca.issue(["localhost"], ["127.0.0.1"]).write_pem(d, "server")
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(cert, key)
    # No TLS 1.3 session tickets: a client that never reads them holds unread bytes, so its
    # close() sends a RST (tcp(7)), which discards the records still in flight to the peer —
    # with the stdlib's ssl socket too (checked: it then loses the last writes as well).
    sctx.num_tickets = 0
    cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    cctx.load_verify_locations(ca_file)
    return sctx, cctx


def make_factory(sctx, cctx):
    def make(window=None, back_pressure=True):
        # window: the kernel's receive buffer (SO_RCVBUF), at least 128 KiB: a buffer far
        # below loopback's 64 KiB MSS makes Linux stop advertising window updates, and the
        # sender then waits for zero-window probes with exponential backoff (minutes; the
        # stdlib's blocking socket stalls the same way). back_pressure has no knob here.
        with socket.create_server(("127.0.0.1", 0)) as lsock:
            a = socket.create_connection(lsock.getsockname(), timeout=30)
            b, _ = lsock.accept()
        b.settimeout(30)
        if window:
            for s in (a, b):
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, max(window, 128 << 10))
        if KIND == "plain":
            return SocketEndpoint(a), SocketEndpoint(b)
        server = gevent.spawn(sctx.wrap_socket, b, server_side=True)
        ca = cctx.wrap_socket(a, server_hostname="localhost")
        return SslEndpoint(ca), SslEndpoint(server.get(timeout=30))
    return make


CHECKS = {
    "echo_both_ways": suite.check_echo_both_ways,
    "half_close_both_ways": suite.check_half_close_both_ways,
    "eof_after_close": suite.check_eof_after_close,
    "writes_then_close": suite.check_writes_then_close,
    "large_transfer_sha256": lambda m: suite.check_large_transfer_sha256(m, size=8 << 20),
    "large_transfer_sha256_small_window":
        lambda m: suite.check_large_transfer_sha256(m, size=4 << 20, window=20_000),
    "random_transfers": lambda m: suite.random_transfers(m, max_examples=20)(),
}


def main() -> None:
    names = sys.argv[2:] or list(CHECKS)
    with tempfile.TemporaryDirectory() as d:
        make = make_factory(*_certs(d))
        for name in names:
            with gevent.Timeout(120, AssertionError(f"{name} did not finish in 120 s")):
                CHECKS[name](make)
            print("ok", name, flush=True)
    print("all checks passed")


main()
