"""Workload adapter for ``wsgi_servers.py`` (WSGI hello-world under ``wrk``; the "server"
engineer's): requests/s and p99 latency, one worker, 50 connections.

The implementations are server processes that ``wsgi_servers.workload`` starts and
stops; this child only drives ``wrk`` (Debian package ``wrk``), so nothing is patched here
(``PATCHES_ITSELF`` in the registry). Available once ``benchmarks/wsgi_servers.py`` is in
the checkout (``REQUIRES``).
"""

from __future__ import annotations

from typing import Any

from .harness import Metric

REQUIRES = "benchmarks.wsgi_servers"
REQUIRES_COMMANDS = ("wrk",)
IMPL_REQUIRES = {"gunicorn-gevent": "gunicorn", "uvicorn-asgi": "uvicorn"}
TITLE = "WSGI hello world under wrk (1 worker, 50 connections)"
BASELINE = "gevent-pywsgi"
IMPLS = ("reseau", "gevent-pywsgi", "gunicorn-gevent", "uvicorn-asgi")
LABELS = {"reseau": "reseau_patch.server.WSGIServer",
          "gevent-pywsgi": "gevent.pywsgi.WSGIServer (monkey-patched)",
          "gunicorn-gevent": "gunicorn -k gevent", "uvicorn-asgi": "uvicorn, bare ASGI app"}
METRICS = {"rps": Metric("WSGI hello world under wrk -c50", "requests/s"),
           "p99": Metric("WSGI hello world p99 latency", "ms", higher_is_better=False)}
TARGETS = {"rps": (">=", 1.0, "requests/s vs gevent.pywsgi"),
           "p99": ("<=", 1.0, "p99 latency vs gevent.pywsgi")}
HEADLINE = ("rps", "p99")
TIMEOUT = 120
#: wrk and the server under test each need a CPU: not pinned (see harness.py).
PIN = False


def run(impl: str, quick: bool, part: str) -> dict[str, Any]:
    from . import wsgi_servers as ws

    res = ws.workload(impl, "hello", 50, 1, 1.0 if quick else 3.0)
    if res.get("errors"):
        raise RuntimeError(f"wrk saw {res['errors']} errors")
    return {"rps": res["rps"], "p99": res["p99_ms"]}
