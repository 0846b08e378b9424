"""Workload adapter for ``sockets_echo.py`` (the Sockets-shaped API vs gevent sockets).

``sockets_echo.py`` keeps its own command line for profiling; here its ``run_worker``
runs under the harness. Implementations map onto its worker names.
"""

from __future__ import annotations

from typing import Any

from .harness import Metric

TITLE = "Sockets API echo: reseau_patch.sockets vs gevent sockets (in-process echo)"
BASELINE = "libev-cext"
SUBJECT = "reseau-sockets"
IMPLS = ("reseau-sockets", "libev-cext", "libuv-cffi")
METRICS = {"pingpong": Metric("64 B ping-pong, sockets API", "µs/round trip",
                              higher_is_better=False),
           "bulk": Metric("bulk echo, sockets API", "MB/s"),
           "tls": Metric("TLS bulk echo, sockets API (gevent: its ssl wrap)", "MB/s"),
           "channel": Metric("bulk echo through the channel pipeline", "MB/s")}
TARGETS = {"pingpong": ("<=", 1.3, "sockets API ping-pong time vs gevent"),
           "bulk": (">=", 0.9, "sockets API bulk vs gevent"),
           "tls": (">=", 0.8, "sockets API TLS bulk vs gevent")}
TIMEOUT = 240
_WORKER = {"reseau-sockets": "reseau", "libev-cext": "gevent-libev", "libuv-cffi": "gevent-libuv"}


def run(impl: str, quick: bool, part: str) -> dict[str, Any]:
    from . import sockets_echo as se

    rounds, warmup, nbytes = (300, 30, 4 << 20) if quick else (10_000, 500, 256 << 20)
    extra = 2 << 20 if quick else 64 << 20
    res = se.run_worker(_WORKER[impl], rounds, warmup, nbytes, TIMEOUT - 30,
                        tls_bytes=extra, channel_bytes=extra, cert_dir=se._make_certs())
    return {"pingpong": res["pingpong_us"], "bulk": res["bulk_mbps"],
            "tls": res["tls_mbps"], "channel": res["channel_mbps"], "note": res["note"]}
