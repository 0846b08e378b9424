"""Scenario: a fast writer and a slow reader move ``SIZE`` bytes (default 1 GiB) through
one stream kind with back-pressure on; the reader's process must not buffer them.

Usage: ``slow_reader.py plain|tls`` (Sockets API, run unpatched) or ``slow_reader.py
patched`` (the patched socket: run under ``python -m reseau_patch run``). The reader reads
a burst, then lets the writer run unopposed until it stalls (hub turns, not sleeps:
every buffer fills to whatever limit it has; without back-pressure the writer would
never stall and the whole transfer would pile up in memory), and samples RSS each time.
Prints one JSON line; exits 1 if bytes went missing or RSS grew by ``LIMIT_MIB`` or more.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile

import gevent

SIZE = int(os.environ.get("RESEAU_SLOW_READER_BYTES", str(1 << 30)))
CHUNK = 64 << 10         # the writer's write size: small, so its progress shows each turn
BURST = 4 << 20          # the reader's burst
STALLED = 50             # hub turns without writer progress that mean "it is blocked"
LIMIT_MIB = 64
_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


def pattern() -> bytes:
    return bytes(range(256)) * (CHUNK // 256)


def transfer(write, readinto) -> dict:
    """Write SIZE bytes in a greenlet; read them in bursts here. Returns the numbers."""
    block = pattern()
    expect = hashlib.sha256()
    for _ in range(SIZE // CHUNK):
        expect.update(block)

    written = [0]

    def writer() -> None:
        for _ in range(SIZE // CHUNK):
            write(block)
            written[0] += 1

    buf = bytearray(256 << 10)
    view = memoryview(buf)
    got = hashlib.sha256()
    total = 0
    base = rss()
    peak = base
    w = gevent.spawn(writer)
    while total < SIZE:
        burst = 0
        while burst < BURST and total < SIZE:
            n = readinto(view)
            if not n:
                raise EOFError(f"EOF after {total} bytes")
            got.update(view[:n])
            burst += n
            total += n
        last, still = written[0], 0
        while still < STALLED and not w.dead:  # the slow part: the writer runs, we don't
            gevent.sleep(0)
            still = still + 1 if written[0] == last else 0
            last = written[0]
        peak = max(peak, rss())
    w.get(timeout=60)
    return {"bytes": total, "intact": got.digest() == expect.digest(),
            "rss_base_mib": base / 2**20, "rss_growth_mib": (peak - base) / 2**20}


def sockets_api(kind: str) -> dict:
    from reseau_patch import pki
    from reseau_patch import sockets as S

    kw_srv: dict = {}
    kw_cli: dict = {}
    if kind == "tls":
        d = tempfile.mkdtemp()
        ca = pki.make_ca("slow reader CA")
        from pathlib import Path
        cert, key = ca.issue(["localhost"], ["127.0.0.1"]).write_pem(Path(d), "s")
        (Path(d) / "ca.pem").write_bytes(ca.cert_pem())
        kw_srv = {"tls": True, "ssl_cert": cert, "ssl_key": key}
        kw_cli = {"tls": True, "ssl_cacert": str(Path(d) / "ca.pem"), "server_name": "localhost"}
    srv = S.listen(0, **kw_srv)
    acc = gevent.spawn(srv.accept)
    c = S.connect(*srv.getsockname(), **kw_cli)
    s = acc.get(timeout=30)
    srv.close()
    out = transfer(s.write, c.readinto)
    c.close()
    s.close()
    return out


def patched() -> dict:
    import socket

    from reseau_patch import is_patched
    assert is_patched(), "run this kind under python -m reseau_patch run"
    lst = socket.create_server(("127.0.0.1", 0))
    acc = gevent.spawn(lst.accept)
    c = socket.create_connection(lst.getsockname())
    s, _ = acc.get(timeout=30)
    lst.close()
    out = transfer(s.sendall, c.recv_into)
    c.close()
    s.close()
    return out


def main() -> int:
    kind = sys.argv[1]
    out = patched() if kind == "patched" else sockets_api(kind)
    out["kind"] = kind
    print(json.dumps(out))
    return 0 if out["intact"] and out["bytes"] == SIZE and out["rss_growth_mib"] < LIMIT_MIB \
        else 1


if __name__ == "__main__":
    sys.exit(main())
