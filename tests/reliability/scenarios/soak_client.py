"""Scenario (run under ``python -m reseau_patch run``): COUNT keep-alive HTTP requests
with the stdlib's ``http.client`` over CONNECTIONS connections against the server at
``sys.argv[1]`` (port). After a warm-up and at the end it records fds, live greenlets and
RSS; prints one JSON line and exits 1 unless all three are flat.
"""

from __future__ import annotations

import gc
import http.client
import json
import os
import sys

import gevent
import greenlet

COUNT = int(os.environ.get("RESEAU_SOAK_COUNT", "100000"))
CONNECTIONS = 4
WARMUP = min(2000, COUNT // 10)
RSS_SLACK_MIB = 16
_PAGE = os.sysconf("SC_PAGE_SIZE")


def snapshot() -> dict:
    gc.collect()
    with open("/proc/self/statm") as f:
        rss = int(f.read().split()[1]) * _PAGE
    live = sum(1 for o in gc.get_objects() if isinstance(o, greenlet.greenlet) and o)
    return {"fds": len(os.listdir("/proc/self/fd")), "greenlets": live,
            "rss_mib": rss / 2**20}


def run(port: int, n: int) -> int:
    """``n`` requests split over CONNECTIONS keep-alive connections; returns failures."""
    bad = [0]

    def client(count: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            for _ in range(count):
                conn.request("GET", "/")
                resp = conn.getresponse()
                if resp.status != 200 or resp.read() != b"ok":
                    bad[0] += 1
        finally:
            conn.close()

    per = n // CONNECTIONS
    jobs = [gevent.spawn(client, per + (1 if i < n % CONNECTIONS else 0))
            for i in range(CONNECTIONS)]
    gevent.joinall(jobs, timeout=600, raise_error=True)
    return bad[0] + sum(1 for j in jobs if not j.dead)


def main() -> int:
    port = int(sys.argv[1])
    failures = run(port, WARMUP)
    before = snapshot()
    failures += run(port, COUNT - WARMUP)
    after = snapshot()
    out = {"requests": COUNT, "failures": failures, "before": before, "after": after}
    print(json.dumps(out))
    flat = (after["fds"] <= before["fds"] and after["greenlets"] <= before["greenlets"]
            and after["rss_mib"] - before["rss_mib"] < RSS_SLACK_MIB)
    return 0 if failures == 0 and flat else 1


if __name__ == "__main__":
    sys.exit(main())
