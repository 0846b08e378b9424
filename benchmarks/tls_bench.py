"""Workload adapter for ``tls_patched.py`` (TLS through the patch; the "tls" engineer's).

Its server (plain stdlib ``ssl``, a thread per connection) runs in another process; its
``run_client`` patches as the implementation says (so the registry lists this workload in
``PATCHES_ITSELF``) and measures bulk receive/send, keep-alive HTTPS GETs and handshakes.
Available once ``benchmarks/tls_patched.py`` is in the checkout (``REQUIRES``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from .harness import Metric

REQUIRES = "benchmarks.tls_patched"
TITLE = "TLS through the patch: bulk, HTTPS GETs, handshakes (server in another process)"
BASELINE = "gevent"
IMPLS = ("reseau", "gevent", "stdlib")
METRICS = {
    "recv": Metric("TLS bulk receive", "MB/s"),
    "send": Metric("TLS bulk send", "MB/s"),
    "gets": Metric("requests HTTPS GETs (stdlib TLS server)", "GETs/s"),
    "handshakes": Metric("TLS handshakes", "handshakes/s"),
}
TARGETS = {k: (">=", 1.0, f"{m.title} vs gevent") for k, m in METRICS.items()}
HEADLINE = ("recv", "send", "handshakes")
TIMEOUT = 300


def run(impl: str, quick: bool, part: str) -> dict[str, Any]:
    from . import tls_patched as tp

    # Long enough that one burst of load on a shared machine moves a round little: at
    # ~1 GB/s, 32 MiB took ~30 ms and rounds of one implementation differed by 30 %.
    mib, gets, handshakes = (2, 10, 5) if quick else (128, 400, 200)
    with tempfile.TemporaryDirectory(prefix="reseau-tls-bench-") as workdir:
        tp.make_pki(workdir)
        server = subprocess.Popen([sys.executable, str(Path(tp.__file__)), "--server", workdir,
                                   "--mib", str(mib)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        try:
            ports = json.loads(server.stdout.readline())
            return tp.run_client(impl, workdir, ports, mib, gets, handshakes)
        finally:
            server.stdin.close()
            server.terminate()
            server.wait(10)
            server.stdout.close()
