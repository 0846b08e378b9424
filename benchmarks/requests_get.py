"""``requests.Session`` keep-alive GETs, 1 client and 32 concurrent clients, HTTP and HTTPS.

The server is another process (``servers.py``: uvloop, HTTP/1.1 keep-alive, 13-byte body,
TLS with a test CA for ``https``), the same for every row. Concurrency is 32
``threading.Thread`` s, each with its own Session: green threads under ``reseau``
(``patch_all()``) and ``gevent`` (``monkey.patch_all()``), OS threads under ``stdlib``.
Each part (http, https) runs in its own process; each number is the best of ``REPEAT``
measurements in that process. Requests per second, higher is better.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from .harness import Metric
from .servers import peer

TITLE = "requests.Session keep-alive GETs (server in another process)"
BASELINE = "gevent"
IMPLS = ("reseau", "gevent", "stdlib")
PARTS = ("http", "https")
METRICS = {
    "http_1": Metric("requests keep-alive GETs, 1 client", "requests/s", part="http"),
    "http_32": Metric("requests keep-alive GETs, 32 green threads", "requests/s", part="http"),
    "https_1": Metric("requests HTTPS keep-alive GETs, 1 client", "requests/s", part="https"),
    "https_32": Metric("requests HTTPS keep-alive GETs, 32 green threads", "requests/s",
                       part="https"),
}
TARGETS = {k: (">=", 1.0, f"{m.title} vs gevent") for k, m in METRICS.items()}
HEADLINE = tuple(METRICS)
CLIENTS = 32
REPEAT = 3
TIMEOUT = 240


def _client(url: str, verify: Any, n: int, warmup: int, errors: list[str]) -> None:
    import requests

    with requests.Session() as s:
        try:
            for i in range(n + warmup):
                r = s.get(url, verify=verify, timeout=30)
                if r.status_code != 200 or r.content != b"Hello, world!":
                    raise RuntimeError(f"bad response {r.status_code} {r.content[:40]!r}")
                if i == warmup - 1:
                    barrier.wait(60)
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            errors.append(f"{type(exc).__name__}: {exc}")
            barrier.abort()


barrier: threading.Barrier


def _measure(url: str, verify: Any, clients: int, total: int, warmup: int) -> float:
    """Requests/s of ``clients`` sessions doing ``total`` GETs after ``warmup`` each."""
    global barrier
    errors: list[str] = []
    barrier = threading.Barrier(clients + 1)
    per = total // clients
    threads = [threading.Thread(target=_client, args=(url, verify, per, warmup, errors))
               for _ in range(clients)]
    for t in threads:
        t.start()
    try:
        barrier.wait(120)  # every session is connected and warm
    except threading.BrokenBarrierError:
        pass
    t0 = time.perf_counter()
    for t in threads:
        t.join(TIMEOUT)
    elapsed = time.perf_counter() - t0
    if errors:
        raise RuntimeError(f"{len(errors)} client(s) failed, first: {errors[0]}")
    return per * clients / elapsed


def run(impl: str, quick: bool, part: str) -> dict[str, Any]:
    tls = part == "https"
    one, many = (20, 64) if quick else (300, 640)
    warmup = 2 if quick else 10
    repeat = 1 if quick else REPEAT
    with peer("http", tls=tls) as (port, ca):
        url = f"{'https' if tls else 'http'}://127.0.0.1:{port}/"
        verify: Any = ca if tls else False
        # Best of REPEAT inside the process (load bursts on a shared machine only slow a
        # run down); the harness then takes the median over rounds.
        return {f"{part}_1": max(_measure(url, verify, 1, one, warmup) for _ in range(repeat)),
                f"{part}_32": max(_measure(url, verify, CLIENTS, many, warmup)
                                  for _ in range(repeat))}
