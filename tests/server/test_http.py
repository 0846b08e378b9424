"""server/http.py: the httptools-backed request parser."""

from __future__ import annotations

import gc

from reseau_patch.server import http


def _live(cls: type) -> int:
    return sum(1 for o in gc.get_objects() if type(o) is cls)


def test_a_dropped_parser_is_freed_by_reference_counting_alone():
    # httptools' parser holds its protocol's callbacks and the gc cannot see through it:
    # a parser/protocol cycle would never be freed (one leak per request served).
    gc.collect()
    before = _live(http._Events)
    gc.disable()
    try:
        for _ in range(50):
            p = http.RequestParser(http.Limits())
            p.feed(b"GET /x?y=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi")
            (req,) = p.requests
            assert (req.method, req.url, req.complete, bytes(req.body)) == (
                "GET", b"/x?y=1", True, b"hi")
            del p, req
        assert _live(http._Events) == before
    finally:
        gc.enable()
    gc.collect()
    assert _live(http._Events) == before


def test_parse_errors_and_limits_still_stop_the_parser():
    p = http.RequestParser(http.Limits(max_headers=1))
    p.feed(b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\n\r\n")
    assert p.stopped and p.requests[0].error == 431 and not p.partial
    p = http.RequestParser(http.Limits())
    p.feed(b"NOT HTTP\r\n\r\n")
    assert p.stopped and p.error == 400
    p = http.RequestParser(http.Limits())
    p.feed(b"GET / HTTP/1.1\r\nHo")
    assert p.partial and not p.stopped
