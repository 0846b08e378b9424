"""Scenario (run under ``python -m reseau_patch run``; args: ca cert key): hypothesis-driven
chunking through the patched socket and the patched SSL socket — random ``sendall``
sizes, ``recv``/``recv_into`` sizes, reader stalls; every byte once, in order (SHA-256).
Exits non-zero (with hypothesis's falsifying example) on a failure.
"""

from __future__ import annotations

import hashlib
import os
import socket
import ssl
import sys

import gevent
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

CA, CERT, KEY = sys.argv[1:4]
SIZES = st.integers(min_value=1, max_value=70_000)
PLAN = st.fixed_dictionaries({
    "writes": st.lists(SIZES, min_size=1, max_size=12),
    "reads": st.lists(st.tuples(st.sampled_from(["recv", "recv_into"]), SIZES,
                                st.integers(0, 3)), min_size=1, max_size=12),
    "tls": st.booleans(),
})


def pair(tls: bool):
    lst = socket.create_server(("127.0.0.1", 0))
    try:
        acc = gevent.spawn(lst.accept)
        c = socket.create_connection(lst.getsockname(), timeout=20)
        s, _ = acc.get(timeout=20)
    finally:
        lst.close()
    s.settimeout(20)
    if not tls:
        return c, s
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(CERT, KEY)
    cctx = ssl.create_default_context(cafile=CA)
    hs = gevent.spawn(sctx.wrap_socket, s, server_side=True)
    c = cctx.wrap_socket(c, server_hostname="localhost")
    return c, hs.get(timeout=20)


@settings(max_examples=int(os.environ.get("RESEAU_CHUNKING_EXAMPLES", "25")), deadline=None,
          database=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=PLAN)
def check(plan: dict) -> None:
    data = os.urandom(sum(plan["writes"]))
    c, s = pair(plan["tls"])

    def writer() -> None:
        view, pos = memoryview(data), 0
        for n in plan["writes"]:
            s.sendall(view[pos:pos + n])
            pos += n
        s.shutdown(socket.SHUT_WR)  # TLS: a ragged EOF, which wrap_socket reads as b""

    w = gevent.spawn(writer)
    got = bytearray()
    buf = bytearray(70_000)
    i = 0
    try:
        while True:
            how, n, stall = plan["reads"][i % len(plan["reads"])]
            i += 1
            for _ in range(stall):
                gevent.sleep(0)
            if how == "recv":
                chunk = c.recv(n)
            else:
                k = c.recv_into(memoryview(buf)[:n])
                chunk = bytes(buf[:k])
            if not chunk:
                break
            got += chunk
        w.get(timeout=20)
    finally:
        c.close()
        s.close()
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest(), (len(got),
                                                                           len(data))


if __name__ == "__main__":
    from reseau_patch import is_patched
    assert is_patched()
    check()
