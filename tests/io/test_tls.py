"""The TLS channel handler on a bare EventLoop: window accounting, queued writes, the order
of callbacks, the ALPN hook, close_notify vs abort; plus TLS options and the PKI helper."""

from __future__ import annotations

import datetime as dt
import ssl
import threading
import time

import pytest
from cryptography.hazmat.primitives.serialization import pkcs12

from reseau_patch import pki
from reseau_patch.io.alpn import UnhandledAlpnProtocolError
from reseau_patch.io.bootstrap import ClientBootstrap, ServerBootstrap
from reseau_patch.io.channel import ChannelHandler, ChannelSlot, Direction
from reseau_patch.io.message import IoMessage
from reseau_patch.io.tls import TlsHandler, find_tls_handler
from reseau_patch.io.tls_engine import BIO_STEP, TlsEngine
from reseau_patch.io.tls_options import TlsConnectionOptions, TlsContextOptions

WAIT = 10.0


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca = pki.make_ca()
    (d / "ca.pem").write_bytes(ca.cert_pem())
    cert, key = ca.issue(["localhost"], ["127.0.0.1"]).write_pem(d, "server")
    return {"ca": str(d / "ca.pem"), "cert": cert, "key": key, "ca_obj": ca, "dir": d}


def _server(certs, **kw):
    return TlsConnectionOptions(TlsContextOptions(server_side=True, cert_file=certs["cert"],
                                                  key_file=certs["key"], **kw))


def _client(certs, **kw):
    alpn = kw.pop("alpn_handlers", None)
    return TlsConnectionOptions(TlsContextOptions(ca_file=certs["ca"], **kw),
                                alpn_handlers=alpn)


def _until(pred, timeout=WAIT):
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


class App(ChannelHandler):
    """Records reads and events; grants ``window`` initially and nothing more by itself."""

    def __init__(self, window: int = 1 << 30, greeting: bytes = b"", tag: str = "") -> None:
        self.window = window
        self.greeting = greeting
        self.tag = tag
        self.data = bytearray()
        self.events: list[str] = []
        self.eof = threading.Event()

    def initial_window_size(self) -> int:
        return self.window

    def process_read(self, slot, msg):
        self.events.append("data")
        self.data += msg.data()
        msg.release()

    def process_read_eof(self, slot):
        self.events.append("eof")
        self.eof.set()

    def write(self, data: bytes, on_done=None) -> None:
        view = memoryview(data)
        while view:
            msg = self.slot.acquire_message(len(view))
            view = view[msg.fill(view):]
            if not view:
                msg.on_completion = on_done
            self.slot.send_message(msg, Direction.WRITE)


class Pair:
    """A TLS server (ServerBootstrap) and client (ClientBootstrap) on one loop thread."""

    def __init__(self, lt, server_tls, server_app, back_pressure=True):
        self.lt = lt
        self.server_channels = []
        self.server_ready = threading.Event()
        self.server_errors = []

        def incoming(ch, err):
            if ch is not None:
                self.server_channels.append(ch)
                self.server_ready.set()

        def listen():
            boot = ServerBootstrap(lt.loop, back_pressure=back_pressure)
            return boot.listen(("127.0.0.1", 0), lambda ch: server_app(), incoming,
                               tls=server_tls)

        self.listener = lt.call(listen)
        self.port = self.listener.address[1]

    def connect(self, client_tls, app, back_pressure=True):
        box = {"setup": threading.Event(), "shutdown": threading.Event()}

        def on_setup(ch, err):
            box["channel"], box["error"] = ch, err
            box["setup"].set()

        def on_shutdown(ch, err):
            box["shutdown_error"] = err
            box["shutdown"].set()
            ch.destroy()

        boot = ClientBootstrap(self.lt.loop, back_pressure=back_pressure)
        boot.connect("127.0.0.1", self.port, lambda ch: app, on_setup, on_shutdown,
                     tls=client_tls)
        assert box["setup"].wait(WAIT)
        return box

    def close(self):
        done = threading.Event()
        self.lt.call(lambda: self.listener.destroy(done.set))
        for ch in list(self.server_channels):
            ch.shutdown()
        assert done.wait(WAIT)


def _shutdown(lt, box):
    ch = box.get("channel")
    if ch is not None and not box["shutdown"].is_set():
        lt.call(ch.shutdown)
        assert box["shutdown"].wait(WAIT)


def test_app_gets_only_its_window_rest_stays_pending(lt, certs):
    payload = bytes(range(256)) * 200  # 51,200 bytes in 4 records

    class Sender(App):
        def initial_window_size(self):
            return 1 << 20

    pair = Pair(lt, _server(certs), Sender)
    app = App(window=100)
    box = pair.connect(_client(certs), app)
    assert box["error"] is None
    assert pair.server_ready.wait(WAIT)
    sender = pair.server_channels[0].last.handler
    lt.call(lambda: (sender.write(payload), sender.slot.send_write_eof()))
    _until(lambda: len(app.data) == 100)
    time.sleep(0.2)
    assert len(app.data) == 100  # not one byte beyond the window
    tls = find_tls_handler(box["channel"])
    assert lt.call(lambda: tls.pending_plaintext) > 0
    lt.call(app.slot.increment_read_window, 1000)
    _until(lambda: len(app.data) == 1100)
    time.sleep(0.1)
    assert len(app.data) == 1100 and not app.eof.is_set()
    lt.call(app.slot.increment_read_window, 1 << 20)
    assert app.eof.wait(WAIT)  # close_notify arrives after all the data
    assert bytes(app.data) == payload
    assert app.events[-1] == "eof" and app.events.count("eof") == 1
    _shutdown(lt, box)
    assert box["shutdown_error"] is None
    pair.close()


def test_zero_app_window_does_not_stall_handshake(lt, certs):
    pair = Pair(lt, _server(certs), lambda: App(greeting=b""))
    app = App(window=0)
    box = pair.connect(_client(certs), app)
    assert box["error"] is None  # the handshake completed with the app granting nothing
    assert pair.server_ready.wait(WAIT)
    srv_app = pair.server_channels[0].last.handler
    lt.call(srv_app.write, b"x" * 5000)
    time.sleep(0.1)
    assert not app.data
    lt.call(app.slot.increment_read_window, 5000)
    _until(lambda: len(app.data) == 5000)
    _shutdown(lt, box)
    pair.close()


def test_writes_before_handshake_are_queued_and_callbacks_ordered(lt, certs):
    """Insert TLS into a live plaintext channel, write before starting it: the writes (and
    the write EOF) go out after the handshake, in order, and complete once each."""
    pair = Pair(lt, _server(certs), App)
    ctx = _client(certs).ssl_context()
    app = App()
    box = pair.connect(None, app)  # plaintext setup, TLS inserted by hand below
    completions = []
    events = app.events

    def upgrade():
        tls = TlsHandler(ctx, server_hostname="localhost",
                         on_negotiated=lambda h, err: events.append(f"negotiated {err}"))
        slot = ChannelSlot(box["channel"])
        app.slot.insert_left(slot)
        slot.set_handler(tls)
        app.write(b"early-1 ", lambda err: completions.append(("1", err)))
        app.write(b"early-2", lambda err: completions.append(("2", err)))
        app.slot.send_write_eof()
        assert not completions  # nothing written yet: queued behind the handshake
        tls.start()
        return tls

    tls = lt.call(upgrade)
    assert pair.server_ready.wait(WAIT)
    srv_app = pair.server_channels[0].last.handler
    assert srv_app.eof.wait(WAIT)
    assert bytes(srv_app.data) == b"early-1 early-2"
    _until(lambda: len(completions) == 2)
    assert completions == [("1", None), ("2", None)]
    lt.call(srv_app.write, b"reply")
    _until(lambda: bytes(app.data) == b"reply")
    assert events[0] == "negotiated None" and "data" in events
    assert tls.negotiated and tls.version() in ("TLSv1.2", "TLSv1.3")
    _shutdown(lt, box)
    pair.close()


@pytest.mark.parametrize("offer,hook,expect", [
    (["h2", "http/1.1"], {"h2": "H2", "http/1.1": "H1"}, "H2"),
    (["http/1.1"], {"h2": "H2", "http/1.1": "H1"}, "H1"),
    (["spdy/3"], {"h2": "H2"}, UnhandledAlpnProtocolError),
])
def test_alpn_hook_installs_protocol_handler(lt, certs, offer, hook, expect):
    pair = Pair(lt, _server(certs, alpn_list=["h2", "http/1.1"]),
                lambda: App(greeting=b""))
    made = {}

    def factory(tag):
        def make(channel):
            made[tag] = App(tag=tag)
            return made[tag]
        return make

    selector = {proto: factory(tag) for proto, tag in hook.items()}
    box = pair.connect(_client(certs, alpn_list=offer, alpn_handlers=selector), App())
    if expect is UnhandledAlpnProtocolError:
        assert isinstance(box["error"], UnhandledAlpnProtocolError)
        assert "None" in str(box["error"])  # no protocol was negotiated
    else:
        assert box["error"] is None
        handler = box["channel"].last.handler
        assert handler is made[expect] and list(made) == [expect]
        assert pair.server_ready.wait(WAIT)
        lt.call(pair.server_channels[0].last.handler.write, b"hello protocol")
        _until(lambda: bytes(handler.data) == b"hello protocol")
        _shutdown(lt, box)
    pair.close()


@pytest.mark.parametrize("how", ["graceful", "abort", "quiet"])
def test_graceful_close_sends_close_notify_abort_does_not(lt, certs, how):
    """``quiet``: a graceful shutdown of a handler made with notify_on_close=False (the
    stdlib's SSLSocket.close) flushes the data but sends no close_notify."""
    pair = Pair(lt, _server(certs), App)
    app = App()
    box = pair.connect(_client(certs), app)
    assert pair.server_ready.wait(WAIT)
    srv = pair.server_channels[0]
    if how == "quiet":
        lt.call(lambda: setattr(find_tls_handler(srv), "notify_on_close", False))
    lt.call(srv.last.handler.write, b"bye")
    _until(lambda: bytes(app.data) == b"bye")
    lt.call(lambda: srv.shutdown(None, abort=how == "abort"))
    if how != "graceful":
        assert box["shutdown"].wait(WAIT)
        assert isinstance(box["shutdown_error"], ssl.SSLEOFError)
        assert not app.eof.is_set()
    else:
        assert app.eof.wait(WAIT)  # close_notify: EOF, and the channel stays up
        assert not box["shutdown"].is_set()
        _shutdown(lt, box)
        assert box["shutdown_error"] is None
    pair.close()


def test_set_up_client_channel_calls_the_callers_on_shutdown_directly(lt, certs):
    """Once set up, a TLS client's channel keeps no wrapper of the connect (its
    TlsClientSetup, options and ConnectRequest were ~1 KiB per idle connection), and the
    caller's on_shutdown still runs."""
    pair = Pair(lt, _server(certs), App)
    box = pair.connect(_client(certs), App())
    cb = lt.call(lambda: box["channel"].on_shutdown)
    assert not hasattr(cb, "__self__"), cb
    assert cb.__qualname__ == "Pair.connect.<locals>.on_shutdown"
    _shutdown(lt, box)
    assert box["shutdown_error"] is None
    pair.close()


def test_read_shutdown_delivers_what_already_arrived(lt, certs):
    pair = Pair(lt, _server(certs), App)
    app = App(window=10)
    box = pair.connect(_client(certs), app)
    assert pair.server_ready.wait(WAIT)
    lt.call(pair.server_channels[0].last.handler.write, b"0123456789abcdefghij")
    _until(lambda: len(app.data) == 10)

    def grant_and_shut():
        app.slot.window += 10  # room the TLS handler has not been told about yet
        box["channel"].shutdown()

    lt.call(grant_and_shut)
    assert box["shutdown"].wait(WAIT)
    assert bytes(app.data) == b"0123456789abcdefghij"
    pair.close()


def test_handshake_timeout_reports_timeout_error(lt, certs):
    import socket as stdsocket

    silent = stdsocket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)
    try:
        opts = _client(certs)
        opts.timeout = 0.2
        box = {"setup": threading.Event()}

        def on_setup(ch, err):
            box["error"] = err
            box["setup"].set()

        ClientBootstrap(lt.loop).connect("127.0.0.1", silent.getsockname()[1],
                                         lambda ch: App(), on_setup, tls=opts)
        assert box["setup"].wait(WAIT)
        assert isinstance(box["error"], TimeoutError)
        conn, _ = silent.accept()
        conn.close()
    finally:
        silent.close()


# ------------------------------------------------------------------ options and PKI
def test_context_options_defaults_are_safe():
    ctx = TlsContextOptions().build()
    assert ctx.verify_mode is ssl.CERT_REQUIRED and ctx.check_hostname
    assert ctx.minimum_version is ssl.TLSVersion.TLSv1_2
    insecure = TlsContextOptions(verify_peer=False).build()
    assert insecure.verify_mode is ssl.CERT_NONE and not insecure.check_hostname
    with pytest.raises(ValueError, match="needs a certificate"):
        TlsContextOptions(server_side=True).build()
    with pytest.raises(ValueError, match="without cert_file"):
        TlsContextOptions(key_file="k.pem").build()
    with pytest.raises(ValueError, match="invalid ALPN"):
        TlsContextOptions(alpn_list=["h2", ""]).build()
    with pytest.raises(ValueError, match="set_alpn_protocols"):
        TlsConnectionOptions(ssl.create_default_context(), alpn_list=["h2"])
    with pytest.raises(FileNotFoundError):
        TlsContextOptions(ca_file="/nonexistent/ca.pem").build()
    ready = ssl.create_default_context()
    assert TlsConnectionOptions(ready).ssl_context() is ready
    opts = TlsConnectionOptions(TlsContextOptions(verify_peer=False), alpn_list="h2;http/1.1")
    assert opts.ssl_context() is opts.ssl_context()  # built once


def test_pkcs12_and_in_memory_identity(certs):
    ca = certs["ca_obj"]
    leaf = ca.issue(["p12.test"])
    bundle = leaf.to_pkcs12("secret")
    ctx = TlsContextOptions(server_side=True, pkcs12_data=bundle,
                            pkcs12_password="secret").build()
    assert isinstance(ctx, ssl.SSLContext)
    with pytest.raises(ValueError):
        TlsContextOptions(server_side=True, pkcs12_data=bundle, pkcs12_password="no").build()
    TlsContextOptions(server_side=True, cert_data=leaf.cert_pem(),
                      key_data=leaf.key_pem()).build()
    back = pki.load_pkcs12(bundle, b"secret")
    assert back.cert == leaf.cert and back.chain == [ca.cert]
    nokey = pkcs12.serialize_key_and_certificates(b"x", None, None, [ca.cert],
                                                  pki.serialization.NoEncryption())
    with pytest.raises(ValueError, match="no private key"):
        pki.load_pkcs12(nokey)


def test_pki_validity_window_and_description(certs, tmp_path):
    ca = certs["ca_obj"]
    now = dt.datetime.now(dt.UTC)
    old = ca.issue(["old.test"], ["10.0.0.1"], not_before=now - dt.timedelta(days=3),
                   not_after=now - dt.timedelta(days=1), client=True)
    info = pki.describe_certificate(old.cert)
    assert info["subject"] == ((("commonName", "old.test"),),)
    assert info["subjectAltName"] == (("DNS", "old.test"), ("IP Address", "10.0.0.1"))
    assert old.cert.not_valid_after_utc < now
    with pytest.raises(ValueError, match="not_after"):
        ca.issue(["x"], not_before=now, not_after=now - dt.timedelta(seconds=1))
    with pytest.raises(ValueError, match="at least one"):
        ca.issue([])
    cert_path, key_path = old.write_pem(tmp_path, "old", password="pw")
    ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert_path, key_path, password="pw")
    rsa_ca = pki.make_ca(key_type="rsa")
    assert pki.describe_certificate(rsa_ca.cert.public_bytes(pki.serialization.Encoding.DER)
                                    )["issuer"] == ((("commonName", "reseau test CA"),),)


def _loaded_client(lt, certs, window, nbytes):
    """A client whose app grants ``window`` while the server sends ``nbytes``: returns the
    pair, the client's box and app, the server app and the client's TLS handler once the
    client holds more than its window."""
    class Sender(App):
        def initial_window_size(self):
            return 1 << 20

    pair = Pair(lt, _server(certs), Sender)
    app = App(window=window)
    box = pair.connect(_client(certs), app)
    assert box["error"] is None
    assert pair.server_ready.wait(WAIT)
    sender = pair.server_channels[0].last.handler
    lt.call(sender.write, bytes(range(256)) * (nbytes // 256))
    tls = find_tls_handler(box["channel"])
    _until(lambda: len(app.data) == window
           and lt.call(lambda: tls.pending_plaintext) >= 20_000)
    return pair, box, app, sender, tls


def test_close_notify_keeps_records_already_received(lt, certs):
    """Our close_notify while the peer's records wait for the app's window: none of
    them is lost (SSL_shutdown discards application records it reads itself)."""
    pair, box, app, sender, tls = _loaded_client(lt, certs, 10, 51_200)
    lt.call(app.slot.send_write_eof)  # close_notify now, with records waiting
    assert sender.eof.wait(WAIT)  # the server saw our close_notify
    lt.call(lambda: (sender.write(b"after"), sender.slot.send_write_eof()))
    lt.call(app.slot.increment_read_window, 1 << 20)
    assert app.eof.wait(WAIT)
    assert bytes(app.data) == bytes(range(256)) * 200 + b"after"
    _shutdown(lt, box)
    pair.close()


def test_read_shutdown_delivers_everything_received_past_the_window(lt, certs):
    pair, box, app, sender, tls = _loaded_client(lt, certs, 100, 51_200)

    def shut():
        held = tls.pending_plaintext
        box["channel"].shutdown()
        return held

    held = lt.call(shut)
    assert box["shutdown"].wait(WAIT)
    assert len(app.data) == 100 + held  # all of it, not just what fit the window
    assert bytes(app.data) == (bytes(range(256)) * 200)[:100 + held]
    pair.close()


def test_engine_takes_at_most_bio_step_at_once_and_large_transfers_arrive_whole(
        lt, certs, monkeypatch):
    """OpenSSL's memory BIOs keep their peak for the connection's life: the handler feeds
    the engine and encrypts at most BIO_STEP at a time, with messages far larger than that
    in both directions, and every byte still arrives in order."""
    payload = bytes(range(256)) * (5 * BIO_STEP // 256) + b"tail"  # 5 steps and a bit
    sizes: dict[str, list[int]] = {"write": [], "receive_data": []}
    for name in sizes:
        real = getattr(TlsEngine, name)

        def spy(engine, data, _real=real, _seen=sizes[name]):
            _seen.append(len(data))
            return _real(engine, data)

        monkeypatch.setattr(TlsEngine, name, spy)
    pair = Pair(lt, _server(certs), App)
    app = App()
    box = pair.connect(_client(certs), app)
    assert box["error"] is None
    assert pair.server_ready.wait(WAIT)
    server_app = pair.server_channels[0].last.handler

    def send_one_message():  # as TCPSocket sends a large write: one message owning it
        app.slot.send_message(IoMessage.owning(payload), Direction.WRITE)

    lt.call(send_one_message)
    _until(lambda: len(server_app.data) == len(payload))
    assert bytes(server_app.data) == payload
    assert max(sizes["write"]) == BIO_STEP  # the 5-step write was cut into steps
    assert max(sizes["receive_data"]) <= BIO_STEP
    _shutdown(lt, box)
    pair.close()
