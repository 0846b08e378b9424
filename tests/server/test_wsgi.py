"""WSGIServer: keep-alive under concurrency, framing, limits, timeouts, errors, stop."""

from __future__ import annotations

import hashlib
import logging

import gevent
import pytest

from reseau_patch import sockets


def echo_app(environ, start_response):
    """Answers the SHA-256 of the body and the body itself (so both can be checked)."""
    body = environ["wsgi.input"].read()
    digest = hashlib.sha256(body).hexdigest()
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("X-Digest", digest)])
    return [body]


def test_500_concurrent_keepalive_clients_bodies_verified(run, wsgi_server, client_factory):
    srv = wsgi_server(echo_app)
    n_clients, n_requests = 500, 3

    def one_client(i: int) -> int:
        c = client_factory(srv.server_port)
        for j in range(n_requests):
            body = (f"client {i} request {j} ".encode() * (1 + (i * 7 + j) % 50))
            status, headers, got = c.request("POST", f"/c/{i}", body=body)
            assert status == 200
            assert got == body
            assert headers["x-digest"] == hashlib.sha256(body).hexdigest()
        return i

    def body():
        jobs = [gevent.spawn(one_client, i) for i in range(n_clients)]
        gevent.joinall(jobs, timeout=90, raise_error=True)
        assert sorted(j.value for j in jobs) == list(range(n_clients))
        assert srv.active_connections == n_clients  # all kept alive

    run(body, timeout=110)


def test_handler_exception_answers_500_and_server_keeps_serving(run, wsgi_server,
                                                               client_factory, caplog):
    def app(environ, start_response):
        if environ["PATH_INFO"] == "/boom":
            raise RuntimeError("boom")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"fine"]

    srv = wsgi_server(app)

    def body():
        with caplog.at_level(logging.ERROR, logger="reseau_patch.server"):
            status, headers, _ = client_factory(srv.server_port).request("GET", "/boom")
        assert status == 500
        assert headers["connection"] == "close"
        assert any("boom" in (r.exc_text or "") for r in caplog.records)
        for _ in range(3):
            status, _, got = client_factory(srv.server_port).request("GET", "/ok")
            assert (status, got) == (200, b"fine")

    run(body)


def test_slow_header_client_is_closed_by_header_timeout_while_others_are_served(
        run, wsgi_server, client_factory):
    srv = wsgi_server(echo_app, header_timeout=2.5)
    sent = []
    served = []

    def slowloris() -> bytes:
        sock = sockets.connect(srv.server_port, timeout=10)
        sock.settimeout(10)
        try:
            for byte in b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000:
                try:
                    sock.write(bytes([byte]))
                except OSError:
                    break
                if sock.bytesavailable() or not sock.isopen:
                    break
                sent.append(byte)
                gevent.sleep(1.0)  # one byte a second: ~17 minutes for the header alone
            return sock.readavailable()
        except OSError:
            return b""
        finally:
            sock.close()

    def others() -> None:
        c = client_factory(srv.server_port)
        for i in range(40):
            status, _, got = c.request("POST", "/", body=b"x%d" % i)
            assert status == 200 and got == b"x%d" % i
            served.append(i)
            gevent.sleep(0.05)

    def body():
        slow = gevent.spawn(slowloris)
        fast = gevent.spawn(others)
        gevent.joinall([slow, fast], timeout=30, raise_error=True)
        assert slow.dead and fast.dead
        assert slow.value == b""  # closed without an answer
        assert 2 <= len(sent) <= 10  # by the header timeout, not by running out of bytes
        assert len(served) == 40

    run(body, timeout=40)


def test_idle_keepalive_connection_closes_after_idle_timeout(run, wsgi_server, client_factory):
    srv = wsgi_server(echo_app, idle_timeout=0.3)

    def body():
        c = client_factory(srv.server_port)
        assert c.request("GET", "/")[0] == 200
        assert c.read_until_close() == b""  # the server closed the idle connection

    run(body)


@pytest.mark.parametrize("what", ["one_huge", "many_small"])
def test_oversized_headers_get_431(run, wsgi_server, client_factory, what):
    srv = wsgi_server(echo_app, max_header_size=4096, max_headers=20)

    def body():
        if what == "one_huge":
            headers = [("X-Big", "b" * 8000)]
        else:
            headers = [(f"X-H{i}", "v") for i in range(30)]
        status, h, _ = client_factory(srv.server_port).request("GET", "/", headers=headers)
        assert status == 431
        assert h["connection"] == "close"
        # A normal request on a new connection is still served.
        assert client_factory(srv.server_port).request("GET", "/")[0] == 200

    run(body)


def test_long_url_gets_414(run, wsgi_server, client_factory):
    srv = wsgi_server(echo_app, max_url_size=1024)

    def body():
        status, _, _ = client_factory(srv.server_port).request("GET", "/" + "u" * 2000)
        assert status == 414

    run(body)


def test_too_big_body_gets_413(run, wsgi_server, client_factory):
    srv = wsgi_server(echo_app, max_body_size=1000)

    def body():
        c = client_factory(srv.server_port)
        assert c.request("POST", "/", body=b"a" * 1000)[2] == b"a" * 1000  # at the limit
        status, _, _ = client_factory(srv.server_port).request("POST", "/", body=b"a" * 1001)
        assert status == 413
        # Chunked: the size is only known as it arrives.
        chunked = client_factory(srv.server_port)
        status, _, _ = chunked.request("POST", "/", headers=[("Transfer-Encoding", "chunked")],
                                       body=b"b" * 5000)
        assert status == 413

    run(body)


def test_chunked_request_and_response_bodies(run, wsgi_server, client_factory):
    def app(environ, start_response):
        data = environ["wsgi.input"].read()
        assert "CONTENT_LENGTH" not in environ
        start_response("200 OK", [("Content-Type", "text/plain")])

        def gen():  # no length: the server must chunk it
            for i in range(0, len(data), 1000):
                yield data[i:i + 1000]
            yield b""  # an empty item must not end the chunked body early
            yield b"<end>"
        return gen()

    srv = wsgi_server(app)

    def body():
        c = client_factory(srv.server_port)
        payload = bytes(range(256)) * 40
        for _ in range(2):  # and the connection stays usable
            status, headers, got = c.request(
                "POST", "/", headers=[("Transfer-Encoding", "chunked")], body=payload)
            assert status == 200
            assert headers["transfer-encoding"] == "chunked"
            assert got == payload + b"<end>"
        # The raw framing of a chunked request split at awkward places.
        raw = sockets.connect(srv.server_port, timeout=10)
        raw.settimeout(10)
        try:
            for piece in (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5",
                          b"\r\nhel", b"lo\r\n6\r\n world\r\n0\r\n", b"\r\n"):
                raw.write(piece)
                gevent.sleep(0.01)
            got = b""
            while not got.endswith(b"0\r\n\r\n"):
                got += raw.readavailable()
            assert b"\r\n\r\nb\r\nhello world\r\n5\r\n<end>\r\n0\r\n\r\n" in got
        finally:
            raw.close()

    run(body)


def test_expect_100_continue(run, wsgi_server):
    srv = wsgi_server(echo_app)

    def body():
        sock = sockets.connect(srv.server_port, timeout=10)
        sock.settimeout(10)
        try:
            sock.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                       b"Expect: 100-continue\r\n\r\n")
            assert sock.readline() == b"HTTP/1.1 100 Continue\r\n"
            assert sock.readline() == b"\r\n"
            sock.write(b"hello")
            head = b""
            while not head.endswith(b"\r\n\r\n"):
                head += sock.readline()
            assert head.startswith(b"HTTP/1.1 200 OK\r\n")
            assert sock.read(5) == b"hello"
        finally:
            sock.close()

    run(body)


def test_expect_100_continue_not_sent_when_app_ignores_body(run, wsgi_server):
    def app(environ, start_response):
        start_response("401 Unauthorized", [("Content-Length", "0")])
        return []

    srv = wsgi_server(app)

    def body():
        sock = sockets.connect(srv.server_port, timeout=10)
        sock.settimeout(10)
        try:
            sock.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n"
                       b"Expect: 100-continue\r\n\r\n")
            got = b""
            while True:
                data = sock.readavailable()
                if not data:
                    break
                got += data
            assert got.startswith(b"HTTP/1.1 401 Unauthorized\r\n")
            assert b"100 Continue" not in got
        finally:
            sock.close()

    run(body)


def test_pipelined_requests_answered_in_order(run, wsgi_server):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [environ["PATH_INFO"].encode()]

    srv = wsgi_server(app)

    def body():
        sock = sockets.connect(srv.server_port, timeout=10)
        sock.settimeout(10)
        try:
            sock.write(b"".join(b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(50)))
            got = b""
            while got.count(b"HTTP/1.1 200 OK") < 50 or not got.endswith(b"/49"):
                got += sock.readavailable()
            bodies = [part.split(b"\r\n\r\n", 1)[1] for part in got.split(b"HTTP/1.1 ")[1:]]
            assert bodies == [b"/%d" % i for i in range(50)]
        finally:
            sock.close()

    run(body)


def test_http10_closes_unless_keepalive_and_head_has_no_body(run, wsgi_server):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"abc"]

    srv = wsgi_server(app)

    def body():
        sock = sockets.connect(srv.server_port, timeout=10)
        sock.settimeout(10)
        try:
            sock.write(b"GET / HTTP/1.0\r\n\r\n")
            got = b""
            while data := sock.readavailable():
                got += data
            assert got.startswith(b"HTTP/1.1 200 OK\r\n") and got.endswith(b"\r\n\r\nabc")
            assert b"Connection: close" in got
        finally:
            sock.close()
        sock = sockets.connect(srv.server_port, timeout=10)
        sock.settimeout(10)
        try:
            sock.write(b"HEAD / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            head = b""
            while not head.endswith(b"\r\n\r\n"):
                head += sock.readavailable()
            assert b"Content-Length: 3\r\n" in head and b"Connection: keep-alive" in head
            sock.write(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            got = b""
            while not got.endswith(b"abc"):
                got += sock.readavailable()
            assert got.startswith(b"HTTP/1.1 200 OK")  # no stray HEAD body before it
        finally:
            sock.close()

    run(body)


def test_malformed_request_gets_400(run, wsgi_server):
    srv = wsgi_server(echo_app)

    def body():
        sock = sockets.connect(srv.server_port, timeout=10)
        sock.settimeout(10)
        try:
            sock.write(b"GARBAGE\x00 / HTTP/1.1\r\n\r\n")
            got = b""
            while data := sock.readavailable():
                got += data
            assert got.startswith(b"HTTP/1.1 400 Bad Request\r\n")
        finally:
            sock.close()

    run(body)


def test_stop_finishes_in_flight_requests_and_refuses_new_ones(run, wsgi_server,
                                                               client_factory):
    started = gevent.event.Event()
    release = gevent.event.Event()

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/slow":
            started.set()
            release.wait(10)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"done " + environ["PATH_INFO"].encode()]

    srv = wsgi_server(app)
    port = srv.server_port

    def body():
        idle = client_factory(port)
        assert idle.request("GET", "/warm")[0] == 200  # an idle keep-alive connection
        slow_client = client_factory(port)
        slow = gevent.spawn(slow_client.request, "GET", "/slow")
        assert started.wait(10)
        stopper = gevent.spawn(srv.stop, 10)
        gevent.sleep(0.1)
        with pytest.raises(ConnectionRefusedError):
            sockets.connect(port, timeout=5)
        assert idle.read_until_close() == b""  # idle keep-alive ends at once
        assert not stopper.dead  # still waiting for /slow
        release.set()
        status, headers, got = slow.get(timeout=10)
        assert (status, got) == (200, b"done /slow")
        assert headers["connection"] == "close"
        stopper.get(timeout=10)
        assert srv.active_connections == 0

    run(body)


def test_stop_timeout_kills_handlers_that_do_not_finish(run, wsgi_server, client_factory):
    started = gevent.event.Event()

    def app(environ, start_response):
        started.set()
        gevent.sleep(60)
        start_response("200 OK", [])
        return [b""]

    srv = wsgi_server(app)

    def body():
        c = client_factory(srv.server_port)
        g = gevent.spawn(c.request, "GET", "/")
        assert started.wait(10)
        srv.stop(timeout=0.2)
        assert srv.active_connections == 0
        with pytest.raises(Exception):  # noqa: B017 - the connection was cut: h11 or OSError
            g.get(timeout=10)

    run(body)


def test_tls_with_alpn(run, wsgi_server):
    import ssl

    import trustme

    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    server_ctx.set_alpn_protocols(["http/1.1"])
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    client_ctx.set_alpn_protocols(["h2", "http/1.1"])

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [environ["wsgi.url_scheme"].encode()]

    srv = wsgi_server(app, ssl_context=server_ctx)

    def body():
        sock = sockets.connect("127.0.0.1", srv.server_port, ssl_context=client_ctx,
                               timeout=10)
        sock.settimeout(10)
        try:
            assert sock.selected_alpn_protocol() == "http/1.1"
            for _ in range(2):
                sock.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                got = b""
                while not got.endswith(b"https"):
                    got += sock.readavailable()
                assert got.startswith(b"HTTP/1.1 200 OK\r\n")
        finally:
            sock.close()

    run(body)


def test_bad_arguments_raise_like_the_stdlib(wsgi_server):
    from reseau_patch.server import WSGIServer

    with pytest.raises(ValueError, match="-1"):
        WSGIServer(("127.0.0.1", 0), echo_app, header_timeout=-1)
    with pytest.raises(TypeError, match="42"):
        WSGIServer(("127.0.0.1", 0), 42)
    with pytest.raises(ValueError, match="0"):
        WSGIServer(("127.0.0.1", 0), echo_app, max_headers=0)
    with pytest.raises(TypeError, match="object"):
        WSGIServer(object(), echo_app)


def test_client_that_never_reads_a_big_response_is_dropped_after_body_timeout(
        run, wsgi_server):
    done = []

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/octet-stream")])

        def body():
            try:
                for _ in range(4096):  # 256 MiB if anyone read it
                    yield b"z" * 65536
            finally:
                done.append(True)
        return body()

    srv = wsgi_server(app, body_timeout=0.5, header_timeout=60)

    def body():
        sock = sockets.connect(srv.server_port, timeout=10, read_buffer_capacity=65536)
        try:
            sock.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            deadline = gevent.Timeout(20)
            with deadline:
                while not done:
                    gevent.sleep(0.05)
            assert srv.active_connections == 0  # the server gave up on this client
        finally:
            sock.close()

    run(body)


def test_broken_chunk_framing_answers_400_and_the_app_sees_an_error(run, wsgi_server):
    from reseau_patch.server import BadRequestBody

    raised = []

    def app(environ, start_response):
        try:
            environ["wsgi.input"].read()
        except BadRequestBody as exc:
            raised.append(exc)
            raise
        start_response("200 OK", [])
        return [b"unreachable"]

    srv = wsgi_server(app)

    def body():
        sock = sockets.connect(srv.server_port, timeout=10)
        sock.settimeout(10)
        try:
            sock.write(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
            gevent.sleep(0.05)  # the app starts reading before the bad chunk arrives
            sock.write(b"5\r\nhello\r\nzz\r\nbad\r\n0\r\n\r\n")
            got = b""
            while data := sock.readavailable():
                got += data
            assert got.startswith(b"HTTP/1.1 400 Bad Request\r\n")
        finally:
            sock.close()

    run(body)
    assert len(raised) == 1
