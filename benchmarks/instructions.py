"""Instructions per operation in the client process, counted by callgrind.

Wall-clock rows on a shared 2-vCPU VM move by 10-30 % between runs of one implementation;
an instruction count moves much less: repeat runs agree to 0.1 % for the GET rows and to a
few % (reseau 14.5-16.4 k, gevent 22.6-22.8 k) for ping-pong, where how often a read finds
the reply already there instead of parking depends on timing. Each implementation's
client (``instructions_client.py``: patched as the implementation says, peer in another
process) runs under valgrind (cachegrind, no cache simulation) twice, with N and 2N operations; the
difference divided by N is what one operation costs, start-up and imports cancelled out
(``--quick`` runs once and divides everything by N: a check of the harness, not a number).
It counts user-space instructions only: not the kernel's work (syscalls per operation:
``perf trace -s``), nor cache misses or stalls, so it says which client does less work,
not by how much it is faster. Lower is better.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from typing import Any

from .harness import Metric
from .servers import peer

TITLE = "Client instructions per operation (callgrind; deterministic)"
BASELINE = "gevent"
IMPLS = ("reseau", "gevent", "stdlib")
PARTS = ("pingpong", "http", "https", "sockets")
#: The Sockets-shaped API against gevent's own socket module, nothing patched.
PART_IMPLS = {"sockets": ("reseau", "gevent")}
METRICS = {
    "pingpong": Metric("64 B ping-pong through the patched socket", "instructions/round trip",
                       higher_is_better=False, part="pingpong"),
    "http": Metric("requests keep-alive GET", "instructions/request", higher_is_better=False,
                   part="http"),
    "https": Metric("requests HTTPS keep-alive GET", "instructions/request",
                    higher_is_better=False, part="https"),
    "sockets": Metric("64 B ping-pong in one process, reseau_patch.sockets vs gevent's "
                      "socket module (libev-cext)", "instructions/round trip",
                      higher_is_better=False, part="sockets"),
}
REQUIRES_COMMANDS = ("valgrind",)
MAX_ROUNDS = 1  # deterministic: one round says it
TIMEOUT = 600
COUNTS = {"pingpong": 2000, "http": 100, "https": 100, "sockets": 2000}
_COLLECTED = re.compile(r"I\s+refs:\s+([\d,]+)")


def _instructions(impl: str, op: str, n: int, port: int, ca: str | None) -> int:
    with tempfile.TemporaryDirectory(prefix="reseau-callgrind-") as tmp:
        # cachegrind without its cache simulation: the same instruction count as
        # callgrind's, a third faster.
        cmd = ["valgrind", "--tool=cachegrind", "--cache-sim=no",
               f"--cachegrind-out-file={tmp}/out",
               sys.executable, "-m", "benchmarks.instructions_client", impl, op, str(n),
               str(port)] + ([ca] if ca else [])
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT / 3,
                              env=os.environ.copy())
    m = _COLLECTED.search(proc.stderr)
    if proc.returncode != 0 or not m:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"callgrind run of {impl} {op} x{n} failed: {tail}")
    return int(m.group(1).replace(",", ""))


def _per_op(impl: str, op: str, n: int, port: int, ca: str | None, quick: bool) -> float:
    """Instructions per operation: (I(2N) - I(N)) / N; a smoke run (``quick``) runs once
    and divides everything, start-up included, by N."""
    one = _instructions(impl, op, n, port, ca)
    if quick:
        return one / n
    return (_instructions(impl, op, 2 * n, port, ca) - one) / n


def run(impl: str, quick: bool, part: str) -> dict[str, Any]:
    n = max(COUNTS[part] // 20, 5) if quick else COUNTS[part]
    if part == "sockets":  # both ends in the client process: no peer
        return {part: _per_op(impl, part, n, 0, None, quick)}
    op = "pingpong" if part == "pingpong" else "get"
    with peer("echo" if part == "pingpong" else "http", tls=part == "https") as (port, ca):
        return {part: _per_op(impl, op, n, port, ca, quick)}
