"""Where a benchmark peer runs: the CPUs the harness left for it (see ``harness.py``).

Imported by the peers themselves (``servers.py``, the TLS server), so stdlib only.
"""

from __future__ import annotations

import os

#: Set by the harness in a pinned child's environment: the CPUs its peers should use.
PEER_CPUS_ENV = "RESEAU_BENCH_PEER_CPUS"


def pin_peer() -> None:
    """Move this (peer) process to the CPUs the harness named, if it named any."""
    spec = os.environ.get(PEER_CPUS_ENV, "")
    if spec:
        os.sched_setaffinity(0, {int(c) for c in spec.split(",")})
