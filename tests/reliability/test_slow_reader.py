"""A slow reader of 1 GiB with back-pressure on: the process's RSS grows by less than
64 MiB, for the Sockets API (plain, TLS) and the patched socket. Each kind runs in its
own interpreter (``scenarios/slow_reader.py``) so RSS is the transfer's alone; size is
``RESEAU_SLOW_READER_BYTES`` (default 1 GiB)."""

from __future__ import annotations

import json

import pytest

LIMIT_MIB = 64


@pytest.mark.parametrize("kind", ["plain", "tls", "patched"])
def test_slow_reader_of_1gib_stays_under_64mib(tools, kind):
    proc = tools.run_scenario("slow_reader.py", kind, patched=kind == "patched", timeout=110)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["intact"] and out["bytes"] >= 1 << 20
    assert out["rss_growth_mib"] < LIMIT_MIB, out
