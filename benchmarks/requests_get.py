"""``requests.Session`` keep-alive GETs, 1 client and 32 concurrent clients, HTTP and HTTPS.

The server is another process (``servers.py``: uvloop, HTTP/1.1 keep-alive, 13-byte body,
TLS with a test CA for ``https``), the same for every row. Concurrency is 32
``threading.Thread`` s, each with its own Session: green threads under ``reseau``
(``patch_all()``) and ``gevent`` (``monkey.patch_all()``), OS threads under ``stdlib``.
Each part (http, https) runs in its own process; each number is the best of ``REPEAT``
measurements in that process (timing: see ``NOTES``). Requests per second, higher is better.
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
RATES = {
    "http_1": Metric("requests keep-alive GETs, 1 client", "requests/s", part="http"),
    "http_32": Metric("requests keep-alive GETs, 32 green threads", "requests/s", part="http"),
    "https_1": Metric("requests HTTPS keep-alive GETs, 1 client", "requests/s", part="https"),
    "https_32": Metric("requests HTTPS keep-alive GETs, 32 green threads", "requests/s",
                       part="https"),
}
#: The client process's CPU time per request (all its threads): what the rate costs,
#: much less sensitive than the rate to other processes' load on a shared machine.
CPU = {f"{k}_cpu": Metric(f"{m.title}: client CPU per request", "µs", False, part=m.part)
       for k, m in RATES.items()}
METRICS = {**RATES, **CPU}
TARGETS = {k: (">=", 1.0, f"{m.title} vs gevent") for k, m in RATES.items()}
HEADLINE = tuple(RATES)
CLIENTS = 32
REPEAT = 3
TIMEOUT = 240
NOTES = """The clock starts when the last client is warm (the barrier's action, run before any
client is released) and stops at the last client's last response (each client stamps
its own finish), so no measurement waits for the main thread to be scheduled. The peer
(uvloop, another process) is not the bottleneck: with 32 clients it used 2-5 % of a core
for the client's ~100 % (its CPU time per request is ~25 us plaintext, ~50 us TLS, against
the client's ~800-1000 us), so every row measures the client stack. On a shared 2-core
machine the rows still move with the load of other processes: compare ratios from one run."""


def _client(url: str, verify: Any, n: int, warmup: int, barrier: threading.Barrier,
            ends: list[float], errors: list[str]) -> None:
    import requests

    try:
        with requests.Session() as s:
            for i in range(warmup + n):
                if i == warmup:
                    barrier.wait(120)  # every session is connected and warm
                r = s.get(url, verify=verify, timeout=30)
                if r.status_code != 200 or r.content != b"Hello, world!":
                    raise RuntimeError(f"bad response {r.status_code} {r.content[:40]!r}")
            ends.append((time.perf_counter(), time.process_time()))
    except BaseException as exc:  # noqa: BLE001 - reported by the caller
        errors.append(f"{type(exc).__name__}: {exc}")
        barrier.abort()


def _measure(url: str, verify: Any, clients: int, per: int,
             warmup: int) -> tuple[float, float]:
    """(requests/s, client CPU µs per request) of ``clients`` sessions doing ``per`` GETs
    each after ``warmup`` each."""
    errors: list[str] = []
    ends: list[tuple[float, float]] = []
    start: list[tuple[float, float]] = []
    barrier = threading.Barrier(
        clients, action=lambda: start.append((time.perf_counter(), time.process_time())))
    threads = [threading.Thread(target=_client,
                                args=(url, verify, per, warmup, barrier, ends, errors))
               for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    if errors:
        raise RuntimeError(f"{len(errors)} client(s) failed, first: {errors[0]}")
    if len(ends) != clients or not start:
        raise RuntimeError(f"{clients - len(ends)} client(s) did not finish in {TIMEOUT} s")
    (t0, cpu0), (t1, cpu1) = start[0], max(ends)
    n = per * clients
    return n / (t1 - t0), (cpu1 - cpu0) / n * 1e6


def run(impl: str, quick: bool, part: str) -> dict[str, Any]:
    tls = part == "https"
    one, per = (20, 2) if quick else (600, 40)  # GETs: 1 client; each of CLIENTS
    warmup = 2 if quick else 10
    repeat = 1 if quick else REPEAT
    with peer("http", tls=tls) as (port, ca):
        url = f"{'https' if tls else 'http'}://127.0.0.1:{port}/"
        verify: Any = ca if tls else False
        # Best of REPEAT inside the process (load bursts on a shared machine only slow a
        # run down); the harness then takes the median over rounds.
        out: dict[str, Any] = {}
        for key, clients, n in ((f"{part}_1", 1, one), (f"{part}_32", CLIENTS, per)):
            runs = [_measure(url, verify, clients, n, warmup) for _ in range(repeat)]
            out[key] = max(rate for rate, _ in runs)
            out[f"{key}_cpu"] = min(cpu for _, cpu in runs)
        return out
