"""Peer abort (RST via SO_LINGER 0) mid-stream and mid-TLS-record, for the Sockets API's
plain and TLS sockets: every byte the peer's kernel saw acknowledged arrives exactly once,
then the reader gets what the stdlib's plain socket gets in the same spot (for TLS too: see
``test_rst_then_the_stdlib_outcome``).

The peer is a stdlib thread. It sends a payload, waits until its send queue is empty
(every byte acknowledged: ``SIOCOUTQ`` is 0), for TLS also sends half of one more record,
then resets. The same peer is run once against a stdlib client to learn the stdlib's
outcome, and once against ours.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import socket as stdsocket
import ssl
import struct
import termios
import threading
import time
from dataclasses import dataclass

import gevent
import pytest

from reseau_patch import pki
from reseau_patch import sockets as S

PAYLOAD = os.urandom(60_000)  # fits the receive buffer: acknowledged unread
WAIT_S = 10.0


@dataclass
class Certs:
    ca: str
    cert: str
    key: str


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Certs:
    d = tmp_path_factory.mktemp("pki")
    ca = pki.make_ca("abort CA")
    cert, key = ca.issue(["localhost"], ["127.0.0.1"]).write_pem(d, "server")
    (d / "ca.pem").write_bytes(ca.cert_pem())
    return Certs(str(d / "ca.pem"), cert, key)


class AbortingPeer:
    """A one-connection stdlib server thread: payload, all acknowledged, (half a TLS
    record), RST. ``reset_done`` is set once the RST went out."""

    def __init__(self, tls: ssl.SSLContext | None) -> None:
        self.tls = tls
        self.lst = stdsocket.socket()
        self.lst.bind(("127.0.0.1", 0))
        self.lst.listen(1)
        self.lst.settimeout(WAIT_S)
        self.address = self.lst.getsockname()
        self.reset_done = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="aborting-peer")
        self.thread.start()

    def _run(self) -> None:
        try:
            conn, _ = self.lst.accept()
            with conn:
                conn.settimeout(WAIT_S)
                if self.tls is None:
                    conn.sendall(PAYLOAD)
                    tail = b""
                else:
                    tail = self._tls_session(conn)
                self._wait_acknowledged(conn)
                if tail:
                    conn.sendall(tail)  # the first half of a record; the rest never comes
                    self._wait_acknowledged(conn)
                conn.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_LINGER,
                                struct.pack("ii", 1, 0))
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc
        finally:
            self.reset_done.set()
            self.lst.close()

    def _tls_session(self, conn: stdsocket.socket) -> bytes:
        """Handshake and send PAYLOAD over an SSLObject; returns half of one more record."""
        inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = self.tls.wrap_bio(inc, out, server_side=True)
        while True:
            try:
                obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                conn.sendall(out.read())
                data = conn.recv(65536)
                if not data:
                    raise ConnectionError("client left during the handshake") from None
                inc.write(data)
        conn.sendall(out.read())
        obj.write(PAYLOAD)
        conn.sendall(out.read())
        obj.write(b"never delivered: this record is cut in half")
        record = out.read()
        return record[: len(record) // 2]

    @staticmethod
    def _wait_acknowledged(conn: stdsocket.socket) -> None:
        deadline = time.monotonic() + WAIT_S
        buf = bytearray(4)
        while True:
            fcntl.ioctl(conn.fileno(), termios.TIOCOUTQ, buf)
            if struct.unpack("i", buf)[0] == 0:
                return
            if time.monotonic() > deadline:
                raise TimeoutError("the client never acknowledged the payload")
            time.sleep(0.002)

    def close(self) -> None:
        self.thread.join(WAIT_S)
        self.lst.close()
        assert not self.thread.is_alive()


def _server_ctx(certs: Certs) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certs.cert, certs.key)
    return ctx


def _stdlib_outcome(tls: bool, certs: Certs, wait_for_reset: bool) -> tuple[str, str]:
    peer = AbortingPeer(_server_ctx(certs) if tls else None)
    try:
        sock = stdsocket.create_connection(peer.address, timeout=WAIT_S)
        if tls:
            ctx = ssl.create_default_context(cafile=certs.ca)
            sock = ctx.wrap_socket(sock, server_hostname="localhost")
        with sock:
            if wait_for_reset:
                assert peer.reset_done.wait(WAIT_S)
            got, err = bytearray(), None
            try:
                while True:
                    data = sock.recv(65536)
                    if not data:
                        break
                    got += data
            except OSError as exc:
                err = exc
    finally:
        peer.close()
    assert peer.error is None, peer.error
    return hashlib.sha256(got).hexdigest(), type(err).__name__


def _our_outcome(tls: bool, certs: Certs, wait_for_reset: bool) -> tuple[str, str]:
    peer = AbortingPeer(_server_ctx(certs) if tls else None)
    got, err = bytearray(), None
    try:
        kw = {"tls": True, "ssl_cacert": certs.ca, "server_name": "localhost"} if tls else {}
        sock = S.connect(*peer.address, timeout=WAIT_S, **kw)
        sock.settimeout(WAIT_S)
        try:
            if wait_for_reset:
                deadline = time.monotonic() + WAIT_S
                while not peer.reset_done.is_set() and time.monotonic() < deadline:
                    gevent.sleep(0.005)  # the hub runs; the peer is a real thread
            try:
                while True:
                    data = sock.readavailable()
                    if not data:
                        break
                    got += data
            except OSError as exc:
                err = exc
        finally:
            sock.close()
    finally:
        peer.close()
    assert peer.error is None, peer.error
    return hashlib.sha256(got).hexdigest(), type(err).__name__


_WAIT = pytest.mark.parametrize("wait_for_reset", [True, False],
                                ids=["read-after-rst", "reading"])


@_WAIT
@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_rst_delivers_acknowledged_bytes_exactly_once(run, certs, tls, wait_for_reset):
    got, _err = run(_our_outcome, tls, certs, wait_for_reset)
    assert got == hashlib.sha256(PAYLOAD).hexdigest()


@_WAIT
@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_rst_then_the_stdlib_outcome(run, certs, tls, wait_for_reset):
    """After the bytes, the reset itself: what the stdlib's plain socket raises.

    For TLS this is TCPSocket's documented contract (the reset is reported, as on plain
    sockets): the ``ssl`` module's ``suppress_ragged_eofs`` turns the same reset into ``b""``,
    and the *patched* SSL socket reproduces that (tests/patch/scenarios/tls_transcript.py)."""
    expected = _stdlib_outcome(False, certs, wait_for_reset)
    assert expected[0] == hashlib.sha256(PAYLOAD).hexdigest()  # the probe itself is sound
    assert expected[1] == "ConnectionResetError"
    assert run(_our_outcome, tls, certs, wait_for_reset) == expected
