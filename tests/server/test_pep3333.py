"""PEP 3333 conformance of WSGIServer: environ, wsgi.input, write(), exc_info, close()."""

from __future__ import annotations

import sys

import gevent
import pytest

REQUIRED_KEYS = {"REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING",
                 "SERVER_NAME", "SERVER_PORT", "SERVER_PROTOCOL", "wsgi.version",
                 "wsgi.url_scheme", "wsgi.input", "wsgi.errors", "wsgi.multithread",
                 "wsgi.multiprocess", "wsgi.run_once"}


def test_environ_keys_and_types(run, wsgi_server, client_factory):
    seen = {}

    def app(environ, start_response):
        seen.update(environ)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    srv = wsgi_server(app)

    def body():
        c = client_factory(srv.server_port)
        status, _, _ = c.request(
            "POST", "/a%20b/%C3%A9?x=1&y=%20#frag",
            headers=[("Content-Type", "text/plain"), ("X-Multi", "1"), ("X-Multi", "2"),
                     ("X_Underscore", "dropped")],
            body=b"12345")
        assert status == 200

    run(body)
    assert REQUIRED_KEYS <= set(seen)
    for key, value in seen.items():
        if not key.startswith("wsgi."):
            assert type(value) is str, (key, value)  # native strings (PEP 3333)
    assert seen["REQUEST_METHOD"] == "POST"
    assert seen["SCRIPT_NAME"] == ""
    # PATH_INFO is decoded bytes as latin-1, QUERY_STRING stays quoted, no fragment.
    assert seen["PATH_INFO"] == "/a b/\xc3\xa9"
    assert seen["QUERY_STRING"] == "x=1&y=%20"
    assert seen["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert seen["SERVER_NAME"] == "127.0.0.1"
    assert seen["SERVER_PORT"] == str(srv.server_port)
    assert seen["REMOTE_ADDR"] == "127.0.0.1"
    assert seen["CONTENT_TYPE"] == "text/plain"
    assert seen["CONTENT_LENGTH"] == "5"
    assert "HTTP_CONTENT_LENGTH" not in seen and "HTTP_CONTENT_TYPE" not in seen
    assert seen["HTTP_X_MULTI"] == "1,2"
    assert "HTTP_X_UNDERSCORE" not in seen  # could spoof X-Underscore
    assert seen["HTTP_HOST"] == "test"
    assert seen["wsgi.version"] == (1, 0)
    assert seen["wsgi.url_scheme"] == "http"
    assert seen["wsgi.errors"] is sys.stderr
    for flag in ("wsgi.multithread", "wsgi.multiprocess", "wsgi.run_once"):
        assert type(seen[flag]) is bool


def test_wsgi_input_read_readline_readlines_and_iteration(run, wsgi_server, client_factory):
    results = {}

    def app(environ, start_response):
        inp = environ["wsgi.input"]
        mode = environ["PATH_INFO"]
        if mode == "/read-sizes":
            results[mode] = [inp.read(3), inp.read(0), inp.read(100), inp.read(), inp.read(5)]
        elif mode == "/readline":
            results[mode] = [inp.readline(), inp.readline(4), inp.readline(-1),
                             inp.readline(None), inp.readline(), inp.readline()]
        elif mode == "/readlines":
            results[mode] = inp.readlines()
        elif mode == "/iter":
            results[mode] = list(inp)
        elif mode == "/read-none":
            results[mode] = inp.read(None)
        start_response("200 OK", [("Content-Length", "0")])
        return []

    srv = wsgi_server(app)
    lines = b"first line\nsecond\nthird line here\nno newline at end"

    def body():
        c = client_factory(srv.server_port)
        for path in ("/read-sizes", "/readline", "/readlines", "/iter", "/read-none"):
            # chunked too: the reads must not depend on a Content-Length
            for chunked in (False, True):
                headers = [("Transfer-Encoding", "chunked")] if chunked else []
                assert c.request("POST", path, headers=headers, body=lines)[0] == 200
                got = results.pop(path)
                if path == "/read-sizes":
                    assert got == [lines[:3], b"", lines[3:103], b"", b""]
                elif path == "/readline":
                    assert got == [b"first line\n", b"seco", b"nd\n", b"third line here\n",
                                   b"no newline at end", b""]
                elif path in ("/readlines", "/iter"):
                    assert got == lines.splitlines(keepends=True)
                else:
                    assert got == lines

    run(body)


def test_write_callable_streams_before_the_iterable(run, wsgi_server, client_factory):
    def app(environ, start_response):
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"from write; ")
        write(b"")
        return [b"from ", b"iterable"]

    srv = wsgi_server(app)

    def body():
        status, headers, got = client_factory(srv.server_port).request("GET", "/")
        assert status == 200
        assert headers["transfer-encoding"] == "chunked"
        assert got == b"from write; from iterable"

    run(body)


def test_start_response_exc_info_replaces_headers_before_they_are_sent(run, wsgi_server,
                                                                     client_factory):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise ValueError("late failure")
        except ValueError:
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")],
                           sys.exc_info())
        return [b"sorry"]

    srv = wsgi_server(app)

    def body():
        status, _, got = client_factory(srv.server_port).request("GET", "/")
        assert (status, got) == (503, b"sorry")

    run(body)


def test_start_response_exc_info_reraises_after_headers_were_sent(run, wsgi_server,
                                                                 client_factory):
    reraised = []

    def app(environ, start_response):
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"partial")
        try:
            raise KeyError("mid-stream")
        except KeyError:
            try:
                start_response("500 Oops", [], sys.exc_info())
            except KeyError as exc:
                reraised.append(exc)
                raise

    srv = wsgi_server(app)

    def body():
        c = client_factory(srv.server_port)
        with pytest.raises(Exception):  # noqa: B017 - the body is cut short; h11 says so
            c.request("GET", "/")

    run(body)
    assert reraised and str(reraised[0]) == "'mid-stream'"


def test_second_start_response_without_exc_info_is_an_error(run, wsgi_server, client_factory):
    def app(environ, start_response):
        start_response("200 OK", [])
        start_response("200 OK", [])
        return [b""]

    srv = wsgi_server(app)

    def body():
        assert client_factory(srv.server_port).request("GET", "/")[0] == 500

    run(body)


@pytest.mark.parametrize("status, headers", [
    (b"200 OK", []),
    ("200", []),
    ("200 OK", [("X-Bad", "a\r\nInjected: yes")]),
    ("200 OK", [("Connection", "close")]),  # hop-by-hop: the server's business
    ("200 OK", (("X-Tuple", "not a list"),)),
])
def test_bad_start_response_arguments_answer_500(run, wsgi_server, client_factory,
                                                 status, headers):
    def app(environ, start_response):
        start_response(status, headers)
        return [b"never sent"]

    srv = wsgi_server(app)

    def body():
        status_code, h, got = client_factory(srv.server_port).request("GET", "/")
        assert status_code == 500
        assert "injected" not in h

    run(body)


def test_result_close_is_called_even_when_iteration_fails(run, wsgi_server, client_factory):
    closed = []

    class Result:
        def __init__(self, fail: bool) -> None:
            self.fail = fail

        def __iter__(self):
            yield b"one"
            if self.fail:
                raise RuntimeError("iteration failed")
            yield b"two"

        def close(self) -> None:
            closed.append(self.fail)

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Result(environ["PATH_INFO"] == "/fail")

    srv = wsgi_server(app)

    def body():
        assert client_factory(srv.server_port).request("GET", "/ok")[2] == b"onetwo"
        with pytest.raises(Exception):  # noqa: B017 - truncated chunked body
            client_factory(srv.server_port).request("GET", "/fail")

    run(body)
    gevent.sleep(0.05)
    assert closed == [False, True]


def test_content_length_from_app_is_honoured(run, wsgi_server, client_factory):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Length", "10")])
        return [b"01234", b"56789"]

    srv = wsgi_server(app)

    def body():
        c = client_factory(srv.server_port)
        for _ in range(2):
            status, headers, got = c.request("GET", "/")
            assert (status, got) == (200, b"0123456789")
            assert "transfer-encoding" not in headers

    run(body)


def test_the_stdlib_wsgi_validator_finds_nothing(run, wsgi_server, client_factory, recwarn):
    """``wsgiref.validate`` checks the server's side of PEP 3333 (environ types and keys,
    wsgi.input/errors signatures, start_response use) on every call."""
    import warnings
    from wsgiref.validate import validator

    def inner(environ, start_response):
        inp = environ["wsgi.input"]
        length = environ.get("CONTENT_LENGTH")
        if length:
            body = inp.read(int(length))  # the validator insists on read(size)
        else:
            body = b"".join(iter(inp.readline, b""))  # chunked: no length known
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(body)))])
        return [body]

    app = validator(inner)
    srv = wsgi_server(app)

    def body():
        c = client_factory(srv.server_port)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a WSGIWarning inside the app answers 500
            for method, payload, headers in (
                    ("GET", b"", []), ("POST", b"line one\nline two", []),
                    ("POST", b"chunked\nbody", [("Transfer-Encoding", "chunked")]),
                    ("HEAD", b"", [])):
                status, _, got = c.request(method, "/v?q=1", headers=headers, body=payload)
                assert status == 200, (method, headers)
                assert got == (b"" if method == "HEAD" else payload)

    run(body)
    assert not [w for w in recwarn.list if "wsgiref" in str(w.filename)]


def test_body_longer_than_declared_content_length_is_cut_and_connection_closed(
        run, wsgi_server):
    from reseau_patch import sockets

    def app(environ, start_response):
        start_response("200 OK", [("Content-Length", "3")])
        return [b"abcdef"]

    srv = wsgi_server(app)

    def body():
        sock = sockets.connect(srv.server_port, timeout=10)
        sock.settimeout(10)
        try:
            sock.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            got = b""
            while data := sock.readavailable():
                got += data
            assert got.endswith(b"\r\n\r\nabc")  # never more than declared; then closed
        finally:
            sock.close()

    run(body)
