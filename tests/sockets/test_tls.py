"""TLS on the Sockets surface: echo over TLS 1.2/1.3 with back-pressure, refusals, ALPN,
STARTTLS (``tlsupgrade``), handshake timeouts, and how a peer's close is reported.

Certificates are made at test time (``reseau_patch.pki``); everything is on loopback.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import ssl
import time
from dataclasses import dataclass

import gevent
import pytest

from reseau_patch import pki
from reseau_patch import sockets as S
from reseau_patch.io.tls_options import TlsConnectionOptions, TlsContextOptions

V12, V13 = ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3


@dataclass
class Pki:
    ca: str          # CA file trusted by clients (and by mTLS servers)
    cert: str        # server leaf for localhost / 127.0.0.1
    key: str
    other_ca: str    # a CA nobody's certificate is signed by
    expired_cert: str
    expired_key: str
    client_cert: str
    client_key: str
    ca_obj: pki.CertificateAuthority


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca = pki.make_ca("reseau test CA")
    other = pki.make_ca("some other CA")
    now = dt.datetime.now(dt.UTC)
    server = ca.issue(["localhost"], ["127.0.0.1"])
    expired = ca.issue(["localhost"], ["127.0.0.1"], not_before=now - dt.timedelta(days=10),
                       not_after=now - dt.timedelta(days=1))
    client = ca.issue(["client.test"], client=True, server=False)
    (d / "ca.pem").write_bytes(ca.cert_pem())
    (d / "other.pem").write_bytes(other.cert_pem())
    cert, key = server.write_pem(d, "server")
    ecert, ekey = expired.write_pem(d, "expired")
    ccert, ckey = client.write_pem(d, "client")
    return Pki(str(d / "ca.pem"), cert, key, str(d / "other.pem"), ecert, ekey, ccert, ckey, ca)


def _server_opts(certs: Pki, **kw) -> TlsConnectionOptions:
    timeout = kw.pop("timeout", 10.0)
    ctx = TlsContextOptions(server_side=True, cert_file=certs.cert, key_file=certs.key, **kw)
    return TlsConnectionOptions(ctx, timeout=timeout)


def _echo(srv):
    def handle(c):
        try:
            while True:
                data = c.readavailable()
                if not data:
                    break
                c.write(data)
        except (OSError, ssl.SSLError):
            pass
        c.close()
    return S.accept(srv, handle)


# ------------------------------------------------------------------ echo
@pytest.mark.parametrize("version", [V12, V13], ids=["tls1.2", "tls1.3"])
def test_echo_64mib_both_directions_with_back_pressure(run, certs, version):
    total = 64 << 20
    window = 128 * 1024

    def body():
        srv = S.listen(0, tls_options=_server_opts(certs, maximum_version=version),
                       read_buffer_capacity=window)
        port = srv.getsockname()[1]
        server_side = {}

        def handle(c):
            h = hashlib.sha256()
            n = 0
            while True:
                data = c.readavailable()
                if not data:
                    break
                h.update(data)
                n += len(data)
                c.write(data)
            server_side.update(n=n, digest=h.hexdigest(), max_buffered=c.max_buffered,
                               version=c.version())
            c.close()

        acceptor = S.accept(srv, handle)
        c = S.connect("localhost", port, tls=True, ssl_cacert=certs.ca,
                      read_buffer_capacity=window)
        client_version = c.version()
        assert client_version == ("TLSv1.2" if version is V12 else "TLSv1.3")
        sent = hashlib.sha256()
        block = os.urandom(1 << 20)

        def sender():
            for i in range(total >> 20):
                chunk = i.to_bytes(8, "big") + block[8:]  # no two MiB alike
                sent.update(chunk)
                c.write(chunk)
            c.closewrite()

        g = gevent.spawn(sender)
        got = hashlib.sha256()
        n = 0
        while True:
            data = c.readavailable()
            if not data:
                break
            got.update(data)
            n += len(data)
        g.get(timeout=60)
        assert n == total
        assert got.hexdigest() == sent.hexdigest()
        c.close()
        srv.close()
        acceptor.join(10)
        assert server_side["n"] == total and server_side["digest"] == sent.hexdigest()
        assert server_side["version"] == client_version
        # TLS hands the application at most its window.
        assert c.max_buffered <= window, c.max_buffered
        assert server_side["max_buffered"] <= window, server_side["max_buffered"]
    run(body, timeout=110)


def test_accessors_and_plaintext_socket(run, certs):
    def body():
        srv = S.listen(0, tls=True, ssl_cert=certs.cert, ssl_key=certs.key)
        acceptor = _echo(srv)
        c = S.connect("127.0.0.1", srv.getsockname()[1], tls=True, ssl_cacert=certs.ca)
        peer = c.getpeercert()
        assert peer["subject"] == ((("commonName", "localhost"),),)
        assert ("IP Address", "127.0.0.1") in peer["subjectAltName"]
        der = c.getpeercert(binary_form=True)
        assert pki.describe_certificate(der)["subject"] == peer["subject"]
        name, proto, bits = c.cipher()
        assert proto == c.version() and bits >= 128
        assert c.selected_alpn_protocol() is None
        c.write(b"ping")
        assert c.read(4) == b"ping"
        c.close()
        plain_srv = S.listen(0)
        p = S.connect(plain_srv.getsockname()[1])
        assert p.tls is None and p.version() is None and p.getpeercert() is None
        p.close()
        plain_srv.close()
        srv.close()
        acceptor.join(5)
    run(body)


def test_ready_ssl_context_is_used_unchanged(run, certs):
    def body():
        sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        sctx.load_cert_chain(certs.cert, certs.key)
        srv = S.listen(0, ssl_context=sctx)
        acceptor = _echo(srv)
        cctx = ssl.create_default_context(cafile=certs.ca)
        cctx.maximum_version = V12
        before = (cctx.verify_mode, cctx.check_hostname, cctx.minimum_version)
        c = S.connect("127.0.0.1", srv.getsockname()[1], ssl_context=cctx)
        assert c.tls.context is cctx
        assert c.version() == "TLSv1.2"
        assert (cctx.verify_mode, cctx.check_hostname, cctx.minimum_version) == before
        c.write(b"x")
        assert c.read(1) == b"x"
        c.close()
        with pytest.raises(ValueError, match="ssl_cacert"):
            S.connect("127.0.0.1", 1, ssl_context=cctx, ssl_cacert=certs.ca)
        with pytest.raises(ValueError, match="without tls=True"):
            S.connect("127.0.0.1", 1, ssl_cacert=certs.ca)
        srv.close()
        acceptor.join(5)
    run(body)


# ------------------------------------------------------------------ refusals
def _refused(port, **kw):
    with pytest.raises(ssl.SSLError) as ei:
        S.connect("127.0.0.1", port, tls=True, **kw)
    return ei.value


def test_refusals_untrusted_hostname_expired_and_insecure(run, certs):
    def body():
        good = S.listen(0, tls=True, ssl_cert=certs.cert, ssl_key=certs.key)
        expired = S.listen(0, tls=True, ssl_cert=certs.expired_cert, ssl_key=certs.expired_key)
        acceptors = [_echo(good), _echo(expired)]
        gport, eport = good.getsockname()[1], expired.getsockname()[1]

        err = _refused(gport, ssl_cacert=certs.other_ca)
        assert isinstance(err, ssl.SSLCertVerificationError)
        assert "certificate verify failed" in str(err)
        assert "issuer" in err.verify_message

        err = _refused(gport, ssl_cacert=certs.ca, server_name="wrong.example")
        assert isinstance(err, ssl.SSLCertVerificationError)
        assert "wrong.example" in err.verify_message and "mismatch" in err.verify_message

        err = _refused(eport, ssl_cacert=certs.ca)
        assert isinstance(err, ssl.SSLCertVerificationError)
        assert "expired" in err.verify_message

        # With the system store only, our private CA is unknown too.
        err = _refused(gport)
        assert isinstance(err, ssl.SSLCertVerificationError)

        # ssl_insecure=True connects to each of them — and only it does.
        for port, extra in [(gport, {}), (gport, {"server_name": "wrong.example"}),
                            (eport, {})]:
            c = S.connect("127.0.0.1", port, tls=True, ssl_insecure=True, **extra)
            assert c.getpeercert() == {}  # not verified: the stdlib reports nothing
            assert c.getpeercert(binary_form=True)
            c.write(b"ok")
            assert c.read(2) == b"ok"
            c.close()
        for srv in (good, expired):
            srv.close()
        for a in acceptors:
            a.join(5)
    run(body)


@pytest.mark.parametrize("version", [V12, V13], ids=["tls1.2", "tls1.3"])
def test_mtls_requires_a_client_certificate(run, certs, version):
    def body():
        srv = S.listen(0, tls_options=_server_opts(certs, ca_file=certs.ca, verify_peer=True,
                                                   maximum_version=version))
        port = srv.getsockname()[1]
        seen = []

        def handle(c):
            seen.append(c.getpeercert())
            c.write(b"hi")
            c.close()

        acceptor = S.accept(srv, handle)
        # Without a certificate: TLS 1.2 refuses in the handshake; TLS 1.3 completes the
        # client's handshake first and the refusal arrives as an alert on the first read.
        with pytest.raises(ssl.SSLError) as ei:
            c = S.connect("127.0.0.1", port, tls=True, ssl_cacert=certs.ca)
            try:
                c.settimeout(5)
                c.read(1)
            finally:
                c.close()
        msg = str(ei.value).lower()
        assert "certificate" in msg or "handshake failure" in msg, msg
        deadline = time.monotonic() + 5
        while not srv.tls_handshake_errors and time.monotonic() < deadline:
            gevent.sleep(0.01)
        assert "certificate" in str(srv.tls_handshake_errors[-1])
        assert not seen  # accept() never handed out the refused connection
        # With one, the server sees who we are.
        c = S.connect("127.0.0.1", port, tls=True, ssl_cacert=certs.ca,
                      ssl_cert=certs.client_cert, ssl_key=certs.client_key)
        c.settimeout(5)
        assert c.read(2) == b"hi"
        c.close()
        srv.close()
        acceptor.join(5)
        assert seen[0]["subject"] == ((("commonName", "client.test"),),)
    run(body)


def test_tls12_only_server_refuses_tls13_minimum_client(run, certs):
    def body():
        srv = S.listen(0, tls_options=_server_opts(certs, maximum_version=V12))
        acceptor = _echo(srv)
        cctx = ssl.create_default_context(cafile=certs.ca)
        cctx.minimum_version = V13
        with pytest.raises(ssl.SSLError) as ei:
            S.connect("127.0.0.1", srv.getsockname()[1], ssl_context=cctx)
        assert "protocol version" in str(ei.value) or "unsupported" in str(ei.value).lower()
        # Our own options reach the same refusal.
        opts = TlsConnectionOptions(TlsContextOptions(ca_file=certs.ca, minimum_version=V13))
        with pytest.raises(ssl.SSLError):
            S.connect("127.0.0.1", srv.getsockname()[1], tls_options=opts)
        srv.close()
        acceptor.join(5)
    run(body)


# ------------------------------------------------------------------ ALPN
@pytest.mark.parametrize("server_pref,expected", [
    (["h2", "http/1.1"], "h2"),
    (["http/1.1", "h2"], "http/1.1"),
    (["spdy/3"], None),
])
def test_alpn_server_preference_reported_on_both_sides(run, certs, server_pref, expected):
    def body():
        srv = S.listen(0, tls=True, ssl_cert=certs.cert, ssl_key=certs.key,
                       alpn_list=server_pref)
        server_saw = []

        def handle(c):
            server_saw.append(c.selected_alpn_protocol())
            c.close()

        acceptor = S.accept(srv, handle)
        c = S.connect("127.0.0.1", srv.getsockname()[1], tls=True, ssl_cacert=certs.ca,
                      alpn_list=["h2", "http/1.1"])
        assert c.selected_alpn_protocol() == expected
        c.settimeout(5)
        assert c.read() == b""
        c.close()
        srv.close()
        acceptor.join(5)
        assert server_saw == [expected]
    run(body)


# ------------------------------------------------------------------ STARTTLS
def test_starttls_line_protocol(run, certs):
    def body():
        srv = S.listen(0)
        port = srv.getsockname()[1]
        log = []

        def server(c):
            assert c.readline() == b"HELLO\n"
            c.write(b"250 hi\n")
            assert c.readline() == b"STARTTLS\n"
            c.write(b"220 go ahead\n")
            S.tlsupgrade(c, server_side=True, ssl_cert=certs.cert, ssl_key=certs.key)
            log.append(c.version())
            line = c.readline()
            c.write(b"secret echo: " + line)
            c.close()

        g = gevent.spawn(lambda: server(srv.accept()))
        c = S.connect("localhost", port)
        c.settimeout(5)
        c.write(b"HELLO\n")
        assert c.readline() == b"250 hi\n"
        c.write(b"STARTTLS\n")
        assert c.readline() == b"220 go ahead\n"
        assert c.tls is None
        S.tlsupgrade(c, ssl_cacert=certs.ca)  # server name: the host we connected to
        version = c.version()
        assert version in ("TLSv1.2", "TLSv1.3")
        c.write(b"over tls\n")
        assert c.readline() == b"secret echo: over tls\n"
        assert c.read() == b""  # close_notify, then FIN
        c.close()
        g.get(timeout=5)
        assert log == [version]
        with pytest.raises(OSError):
            S.tlsupgrade(c, ssl_cacert=certs.ca)  # closed
        srv.close()
    run(body)


class ManualTls:
    """A TLS peer driven by hand over a plaintext TCPSocket (an SSLObject + memory BIOs),
    so a test controls every byte: pipelining, and closing without close_notify."""

    def __init__(self, sock, ctx: ssl.SSLContext, server_side=False, server_hostname=None):
        self.sock = sock
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.out, server_side=server_side,
                                server_hostname=server_hostname)

    def pending_output(self) -> bytes:
        return self.out.read()

    def _flush(self):
        data = self.out.read()
        if data:
            self.sock.write(data)

    def _more(self):
        data = self.sock.readavailable()
        if not data:
            self.inc.write_eof()
        else:
            self.inc.write(data)

    def handshake(self):
        while True:
            try:
                self.obj.do_handshake()
                self._flush()
                return
            except ssl.SSLWantReadError:
                self._flush()
                self._more()

    def write(self, data: bytes):
        self.obj.write(data)
        self._flush()

    def read(self, n: int) -> bytes:
        while True:
            try:
                return self.obj.read(n)
            except ssl.SSLWantReadError:
                self._more()


def _pipelining_starttls_peer(accept, certs) -> None:
    """The peer of the STARTTLS tests: answers "OK\\n" and its ClientHello in one segment,
    then exchanges one line each way over TLS."""
    p = accept()
    assert p.readline() == b"STARTTLS\n"
    cctx = ssl.create_default_context(cafile=certs.ca)
    m = ManualTls(p, cctx, server_hostname="localhost")
    try:
        m.obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    p.write(b"OK\n" + m.pending_output())  # one segment: reply + ClientHello
    m.handshake()
    m.write(b"after upgrade\n")
    assert m.read(100) == b"echo after upgrade\n"
    p.close()


def test_starttls_peer_pipelines_tls_bytes_behind_plaintext_reply(run, certs):
    """The peer answers our STARTTLS with "OK\\n" and its ClientHello in the same write;
    our reader has both buffered when it upgrades (as TLS server)."""
    def body():
        srv = S.listen(0)
        port = srv.getsockname()[1]

        g = gevent.spawn(_pipelining_starttls_peer, srv.accept, certs)
        c = S.connect("127.0.0.1", port)
        c.settimeout(5)
        c.write(b"STARTTLS\n")
        assert c.readline() == b"OK\n"
        deadline = time.monotonic() + 5
        while not c.bytesavailable() and time.monotonic() < deadline:
            gevent.sleep(0.005)
        assert c.bytesavailable() > 0  # the ClientHello is in our plaintext buffer
        S.tlsupgrade(c, server_side=True, ssl_cert=certs.cert, ssl_key=certs.key)
        assert c.readline() == b"after upgrade\n"
        c.write(b"echo after upgrade\n")
        g.get(timeout=5)
        c.close()
        srv.close()
    run(body)


def test_starttls_after_direct_read_with_tls_bytes_still_in_the_kernel(run, certs):
    """A plaintext socket reads the reply with ``readinto`` straight from the kernel; the
    peer's ClientHello, pipelined behind it, is still in the kernel at the upgrade: the
    socket handler must take over reading and hand it to the TLS handler."""
    def body():
        srv = S.listen(0)
        port = srv.getsockname()[1]

        g = gevent.spawn(_pipelining_starttls_peer, srv.accept, certs)
        c = S.connect("127.0.0.1", port)
        c.settimeout(5)
        assert c._direct
        c.write(b"STARTTLS\n")
        buf = bytearray(3)
        got = 0
        while got < 3:
            got += c.readinto(memoryview(buf)[got:])
        assert buf == b"OK\n"
        assert c.max_buffered == 0  # the ClientHello was not pulled into our buffer
        S.tlsupgrade(c, server_side=True, ssl_cert=certs.cert, ssl_key=certs.key)
        assert not c._direct and c.tls is not None
        assert c.readline() == b"after upgrade\n"
        c.write(b"echo after upgrade\n")
        g.get(timeout=5)
        c.close()
        srv.close()
    run(body)


# ------------------------------------------------------------------ timeouts and closes
def test_client_handshake_timeout_against_silent_peer(run, certs):
    def body():
        srv = S.listen(0)  # plaintext: takes the ClientHello and never answers
        held = []
        acceptor = S.accept(srv, held.append)
        t0 = time.monotonic()
        with pytest.raises(TimeoutError, match="TLS handshake timed out after 0.3"):
            S.connect("127.0.0.1", srv.getsockname()[1], tls=True, ssl_cacert=certs.ca,
                      tls_timeout=0.3)
        assert 0.25 <= time.monotonic() - t0 < 5
        gevent.sleep(0.05)
        for s in held:
            s.close()
        srv.close()
        acceptor.join(5)
    run(body)


def test_server_handshake_timeout_starts_at_first_byte(run, certs):
    def body():
        srv = S.listen(0, tls=True, ssl_cert=certs.cert, ssl_key=certs.key, tls_timeout=0.3)
        raw = S.connect(srv.getsockname()[1])
        raw.settimeout(5)
        gevent.sleep(0.6)  # idle, but no byte yet: the server's clock has not started
        assert not srv.tls_handshake_errors
        raw.write(b"\x16\x03\x01")  # the start of a record, then silence
        t0 = time.monotonic()
        assert raw.read() == b""  # the server gives up and closes
        assert 0.25 <= time.monotonic() - t0 < 5
        assert isinstance(srv.tls_handshake_errors[-1], TimeoutError)
        raw.close()
        srv.close()
    run(body)


def test_peer_drops_mid_handshake(run, certs):
    def body():
        srv = S.listen(0)

        def drop(s):
            s.readavailable()  # take the ClientHello (so close sends FIN, not RST)
            s.close()

        acceptor = S.accept(srv, drop)
        with pytest.raises(ssl.SSLEOFError):
            S.connect("127.0.0.1", srv.getsockname()[1], tls=True, ssl_cacert=certs.ca)
        srv.close()
        acceptor.join(5)
    run(body)


def test_server_listener_close_aborts_pending_handshakes(run, certs):
    def body():
        srv = S.listen(0, tls=True, ssl_cert=certs.cert, ssl_key=certs.key)
        raw = S.connect(srv.getsockname()[1])
        raw.settimeout(5)
        raw.write(b"\x16\x03\x01")
        gevent.sleep(0.05)
        srv.close()
        assert raw.read() == b""
        raw.close()
    run(body)


@pytest.mark.parametrize("version", [V12, V13], ids=["tls1.2", "tls1.3"])
def test_close_notify_is_eof_but_bare_close_is_truncation(run, certs, version):
    def body():
        srv = S.listen(0)
        port = srv.getsockname()[1]
        sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        sctx.load_cert_chain(certs.cert, certs.key)
        sctx.maximum_version = version

        def peer(p, clean):
            m = ManualTls(p, sctx, server_side=True)
            m.handshake()
            m.write(b"last words")
            if clean:
                try:
                    m.obj.unwrap()
                except ssl.SSLWantReadError:
                    pass
                m._flush()
            p.close()  # FIN, with or without close_notify before it

        for clean in (True, False):
            g = gevent.spawn(lambda clean=clean: peer(srv.accept(), clean))
            c = S.connect("127.0.0.1", port, tls=True, ssl_cacert=certs.ca)
            c.settimeout(5)
            if clean:
                assert c.read() == b"last words"
                assert c.eof()
                c.write(b"we may still write")  # TLS half-close: the app decides
            else:
                assert c.read(10) == b"last words"  # data before the truncation first
                with pytest.raises(ssl.SSLEOFError, match="EOF occurred in violation"):
                    c.read(1)
            g.get(timeout=5)
            c.close()
        srv.close()
    run(body)


def test_server_from_pkcs12_and_sni_selects_certificate(run, certs, tmp_path):
    def body():
        alt = certs.ca_obj.issue(["alt.test"])
        p12 = tmp_path / "alt.p12"
        p12.write_bytes(alt.to_pkcs12(b"pw"))
        sni = {"alt.test": TlsContextOptions(server_side=True, pkcs12_file=str(p12),
                                             pkcs12_password="pw")}
        opts = TlsConnectionOptions(TlsContextOptions(
            server_side=True, cert_file=certs.cert, key_file=certs.key, sni=sni))
        srv = S.listen(0, tls_options=opts)
        acceptor = _echo(srv)
        port = srv.getsockname()[1]
        for name in ("alt.test", "localhost"):
            c = S.connect("127.0.0.1", port, tls=True, ssl_cacert=certs.ca, server_name=name)
            assert c.getpeercert()["subject"] == ((("commonName", name),),)
            c.close()
        srv.close()
        acceptor.join(5)
    run(body)
