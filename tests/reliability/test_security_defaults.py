"""Security defaults: each test fails if its default is weakened.

Peer and hostname verified by default, TLS 1.2 at least, ``ssl_insecure`` the only way to
skip verification (and never silently), no plaintext fallback for a TLS connect,
``listen(port)`` on localhost, unix socket files made with the caller's umask and removed
on close. Certificates are made at test time (``reseau_patch.pki``); loopback only.
"""

from __future__ import annotations

import itertools
import logging
import os
import socket as stdsocket
import ssl
import stat
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import gevent
import pytest

from reseau_patch import pki
from reseau_patch import sockets as S
from reseau_patch.io.tls_options import InsecureTlsWarning, TlsContextOptions
from reseau_patch.sockets.tls import client_tls_options, server_tls_options

V12 = ssl.TLSVersion.TLSv1_2


@dataclass
class Pki:
    ca: str
    cert: str
    key: str
    other_ca: str


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca, other = pki.make_ca("reliability CA"), pki.make_ca("unrelated CA")
    cert, key = ca.issue(["localhost"], ["127.0.0.1"]).write_pem(d, "server")
    (d / "ca.pem").write_bytes(ca.cert_pem())
    (d / "other.pem").write_bytes(other.cert_pem())
    return Pki(str(d / "ca.pem"), cert, key, str(d / "other.pem"))


def _tls_server(certs: Pki):
    srv = S.listen(0, tls=True, ssl_cert=certs.cert, ssl_key=certs.key)

    def handle(c):
        try:
            c.write(c.read(2))
        except (OSError, ssl.SSLError):
            pass
        c.close()
    return srv, S.accept(srv, handle)


# ------------------------------------------------------------------ verification
def test_default_client_context_verifies_chain_and_hostname():
    for ctx in (TlsContextOptions().build(), client_tls_options(tls=True).ssl_context()):
        assert ctx.verify_mode is ssl.CERT_REQUIRED
        assert ctx.check_hostname is True
        assert ctx.minimum_version >= V12


def test_minimum_tls_1_2_on_every_path(certs):
    contexts = [
        TlsContextOptions().build(),
        TlsContextOptions(server_side=True, cert_file=certs.cert, key_file=certs.key).build(),
        client_tls_options(tls=True, ssl_cacert=certs.ca).ssl_context(),
        server_tls_options(tls=True, ssl_cert=certs.cert, ssl_key=certs.key).ssl_context(),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureTlsWarning)
        contexts.append(client_tls_options(tls=True, ssl_insecure=True).ssl_context())
    for ctx in contexts:
        assert ctx.minimum_version >= V12, ctx


def test_a_tls_1_1_server_is_refused(run, certs):
    """A server speaking at most TLS 1.1 (possible here with SECLEVEL=0) is refused."""
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(certs.cert, certs.key)
    sctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        sctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        sctx.maximum_version = ssl.TLSVersion.TLSv1_1
    lst = stdsocket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(4)
    lst.settimeout(10)
    seen: list = []

    def serve() -> None:  # a real thread: the stdlib's blocking TLS server
        try:
            conn, _ = lst.accept()
        except OSError as exc:
            seen.append(exc)
            return
        conn.settimeout(10)
        try:
            with sctx.wrap_socket(conn, server_side=True) as s:
                seen.append(s.version())
        except (OSError, ssl.SSLError) as exc:
            seen.append(exc)

    t = threading.Thread(target=serve)
    t.start()
    try:
        def body():
            with pytest.raises(ssl.SSLError):
                S.connect(*lst.getsockname(), tls=True, ssl_cacert=certs.ca,
                          server_name="localhost", timeout=10).close()
        run(body)
    finally:
        t.join(15)
        lst.close()
    assert seen and not isinstance(seen[0], str), f"a TLS 1.1 handshake succeeded: {seen}"


def test_wrong_ca_and_wrong_name_are_refused(run, certs):
    srv, acceptor = _tls_server(certs)
    port = srv.getsockname()[1]

    def body():
        with pytest.raises(ssl.SSLCertVerificationError):
            S.connect("127.0.0.1", port, tls=True, ssl_cacert=certs.other_ca)
        with pytest.raises(ssl.SSLCertVerificationError, match="wrong.example|mismatch"):
            S.connect("127.0.0.1", port, tls=True, ssl_cacert=certs.ca,
                      server_name="wrong.example")
        c = S.connect("127.0.0.1", port, tls=True, ssl_cacert=certs.ca)  # the control
        c.write(b"ok")
        assert c.read(2) == b"ok"
        c.close()
    try:
        run(body)
    finally:
        srv.close()
        acceptor.join(5)


_KNOB_VALUES = {"ssl_cacert": "ca", "ssl_capath": "capath", "ssl_cert": "client",
                "alpn_list": "h2", "server_name": "localhost"}


@pytest.mark.parametrize("knobs", [c for n in range(len(_KNOB_VALUES) + 1)
                                   for c in itertools.combinations(_KNOB_VALUES, n)],
                         ids=lambda c: "+".join(c) or "none")
def test_only_ssl_insecure_turns_verification_off(certs, tmp_path, knobs):
    values = {"ca": certs.ca, "capath": str(tmp_path), "client": certs.cert,
              "h2": "h2", "localhost": "localhost"}
    kw = {k: values[_KNOB_VALUES[k]] for k in knobs}
    if "ssl_cert" in kw:
        kw["ssl_key"] = certs.key
    with warnings.catch_warnings():
        warnings.simplefilter("error", InsecureTlsWarning)  # none of these may warn
        ctx = client_tls_options(tls=True, **kw).ssl_context()
    assert ctx.verify_mode is ssl.CERT_REQUIRED and ctx.check_hostname
    with pytest.warns(InsecureTlsWarning, match="ssl_insecure"):
        ctx = client_tls_options(tls=True, ssl_insecure=True, **kw).ssl_context()
    assert ctx.verify_mode is ssl.CERT_NONE


def test_ssl_insecure_warns_and_logs_on_every_connect(run, certs, caplog):
    # Found: ssl_insecure=True said nothing, even with warnings "always" and DEBUG logs.
    srv, acceptor = _tls_server(certs)

    def body():
        for _ in range(2):
            with pytest.warns(InsecureTlsWarning, match="ssl_insecure") as got:
                c = S.connect(*srv.getsockname(), tls=True, ssl_insecure=True)
            assert got[0].filename == __file__  # names the caller's line, not ours
            c.write(b"ok")
            assert c.read(2) == b"ok"
            c.close()
    try:
        with caplog.at_level(logging.WARNING, logger="reseau_patch"):
            run(body)
    finally:
        srv.close()
        acceptor.join(5)
    records = [r for r in caplog.records if "ssl_insecure" in r.getMessage()]
    assert len(records) == 2 and all(r.levelno == logging.WARNING for r in records)


def test_mtls_server_told_insecure_warns(certs):
    with pytest.warns(InsecureTlsWarning, match="ssl_insecure"):
        ctx = server_tls_options(tls=True, ssl_cert=certs.cert, ssl_key=certs.key,
                                 ssl_cacert=certs.ca, ssl_insecure=True).ssl_context()
    assert ctx.verify_mode is ssl.CERT_NONE
    with warnings.catch_warnings():
        warnings.simplefilter("error", InsecureTlsWarning)
        ctx = server_tls_options(tls=True, ssl_cert=certs.cert, ssl_key=certs.key,
                                 ssl_cacert=certs.ca).ssl_context()
    assert ctx.verify_mode is ssl.CERT_REQUIRED


# ------------------------------------------------------------------ no plaintext fallback
@pytest.mark.parametrize("reply", [b"HTTP/1.0 400 Bad Request\r\n\r\n", b""],
                         ids=["plaintext-reply", "close"])
def test_tls_connect_never_falls_back_to_plaintext(run, reply):
    lst = S.listen(0)
    first: list[bytes] = []

    def serve():
        s = lst.accept()
        s.settimeout(10)
        first.append(s.read(1))
        if reply:
            s.write(reply)
        s.close()

    def body():
        g = gevent.spawn(serve)
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)) as err:
            S.connect(*lst.getsockname(), tls=True, timeout=10)
        assert not isinstance(err.value, TimeoutError)
        g.join(10)
        assert first == [b"\x16"]  # what the server saw first was a TLS handshake record
    try:
        run(body)
    finally:
        lst.close()


# ------------------------------------------------------------------ listen defaults
def test_listen_port_binds_localhost_only(run):
    def body():
        srv = S.listen(0)
        assert str(srv.getsockname()[0]) == "127.0.0.1"
        srv.close()
        port, srv = S.listenany()
        assert str(srv.getsockname()[0]) == "127.0.0.1"
        srv.close()
    run(body)


@pytest.mark.parametrize("umask", [0o077, 0o022])
def test_unix_socket_file_follows_umask_and_goes_on_close(run, tmp_path, umask):
    path = tmp_path / "s.sock"

    def body():
        old = os.umask(umask)
        try:
            srv = S.listen(str(path))
        finally:
            os.umask(old)
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
            assert stat.S_ISSOCK(os.stat(path).st_mode)
            assert mode == 0o777 & ~umask, oct(mode)
            c = S.connect(str(path))
            s = srv.accept()
            c.write(b"u")
            assert s.read(1) == b"u"
            c.close()
            s.close()
        finally:
            srv.close()
        assert not Path(path).exists(), "the socket file outlived close()"
    run(body)
